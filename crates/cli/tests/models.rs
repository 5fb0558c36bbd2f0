//! `vigil models promote --production` and `vigil models rollback` announce the change
//! (MODEL_PROMOTED), so predictors load it at once instead of at their next refresh.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use prost::Message as _;
use vigil_domain::ModelType;
use vigil_ml::ModelArtifact;
use vigil_proto::v1;
use vigil_store::NewModelVersion;
use vigil_testkit::{Sandbox, nsl_kdd};

mod common;
use common::{text, vigil, vigil_with};

/// How long an announcement may take to arrive (a bound, not a measurement).
const PATIENCE: Duration = Duration::from_secs(60);

/// The next `model_promoted` event's data.
async fn next_promotion(subscriber: &mut async_nats::Subscriber) -> serde_json::Value {
    let message = tokio::time::timeout(PATIENCE, subscriber.next())
        .await
        .expect("a model_promoted event arrives")
        .unwrap();
    let event = v1::SecurityEvent::decode(message.payload.as_ref()).unwrap();
    vigil_proto::convert::struct_to_json(event.data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_promotions_and_rollbacks_are_announced() {
    let sandbox = Sandbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = nsl_kdd::subset(dir.path(), 1_500);
    let model = dir.path().join("model.vigil");
    let out = vigil(
        &sandbox,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&model).unwrap();
    let artifact = ModelArtifact::from_bytes(&bytes).unwrap();

    // The same artifact registered twice: two ensemble versions, v1 and v2.
    let registry = sandbox.store().models();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut version = artifact
            .model_versions(1)
            .into_iter()
            .find(|v| v.model_type == ModelType::Ensemble)
            .unwrap();
        version.id = uuid::Uuid::now_v7().to_string();
        let record = registry
            .register(
                &NewModelVersion {
                    version,
                    feature_spec: serde_json::to_value(&artifact.ensemble.spec).unwrap(),
                    artifact: bytes.clone(),
                },
                "test",
                "registered by the test",
            )
            .await
            .unwrap();
        ids.push(record.version.id);
    }

    let subject = sandbox
        .bus()
        .topology()
        .event_subject("model_promoted")
        .unwrap();
    let mut subscriber = sandbox.bus().client().subscribe(subject).await.unwrap();
    // The core-NATS subscription is live on the server before the CLI publishes.
    sandbox.bus().client().flush().await.unwrap();

    // To active: no announcement (predictors serve production). Then to production: one,
    // and it is the first event to arrive.
    let out = vigil(&sandbox, &["models", "promote", &ids[0]]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("announced"),
        "{}",
        text(&out.stdout)
    );
    let out = vigil(&sandbox, &["models", "promote", &ids[0], "--production"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("announced: predictors load it now"),
        "{}",
        text(&out.stdout)
    );
    let data = next_promotion(&mut subscriber).await;
    assert_eq!(data["model_id"], ids[0].as_str());
    assert_eq!(data["by_hand"], true);
    assert_eq!(data["previous_model_id"], serde_json::Value::Null);

    // The second version replaces it; a rollback restores the first. Each is announced.
    let out = vigil(&sandbox, &["models", "promote", &ids[1], "--production"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data = next_promotion(&mut subscriber).await;
    assert_eq!(data["model_id"], ids[1].as_str());
    assert_eq!(data["previous_model_id"], ids[0].as_str());
    let out = vigil(&sandbox, &["models", "rollback", "ensemble"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data = next_promotion(&mut subscriber).await;
    assert_eq!(data["model_id"], ids[0].as_str());
    assert_eq!(data["previous_model_id"], ids[1].as_str());

    // NATS out of reach: the promotion is stored all the same, and the CLI says it could not
    // announce it and why.
    let out = vigil_with(
        &sandbox,
        &["models", "promote", &ids[1], "--production"],
        &[("VIGIL_NATS__URL", "nats://127.0.0.1:1")],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("could not announce the change on NATS (")
            && stderr.contains("predictors load it at their next refresh"),
        "{stderr}"
    );
    let production = registry
        .production(ModelType::Ensemble)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(production.version.id, ids[1]);
    let out = vigil(&sandbox, &["models", "promote", &ids[0], "--production"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        next_promotion(&mut subscriber).await["model_id"],
        ids[0].as_str()
    );

    // Promoting what already holds production changes nothing and announces nothing.
    let out = vigil(&sandbox, &["models", "promote", &ids[0], "--production"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nothing changed"));
    assert!(!text(&out.stdout).contains("announced"));
}
