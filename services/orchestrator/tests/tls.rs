//! The orchestrator gets its predictions over mutual TLS: the predictor serves TLS and asks for
//! a client certificate, the orchestrator trusts the CA and presents one it signed. Broker,
//! predictor and orchestrator run in-process against the real NATS and PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use vigil_ml::{
    BoostConfig, ForestConfig, MlpConfig, ModelArtifact, NoProgress, TrainConfig, train_ensemble,
};
use vigil_predictor::Predictor;
use vigil_proto::v1;
use vigil_testkit::tls::TestPki;
use vigil_testkit::{Sandbox, Service, eventually, nsl_kdd};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(240);

/// A small ensemble (seconds to train); the real pipeline.
fn trained() -> ModelArtifact {
    let config = TrainConfig {
        forest: ForestConfig {
            n_trees: 12,
            max_depth: 10,
            ..ForestConfig::default()
        },
        xgboost: BoostConfig {
            rounds: 15,
            ..BoostConfig::default()
        },
        mlp: MlpConfig {
            hidden: vec![16],
            max_epochs: 3,
            ..MlpConfig::default()
        },
        ..TrainConfig::default()
    };
    let (artifact, _) = train_ensemble(
        nsl_kdd::examples()[..2_500].to_vec(),
        &config,
        "nsl-kdd 20 % rows 0-2,499",
        &NoProgress,
    )
    .unwrap();
    artifact
}

async fn start_predictor(sandbox: &Sandbox, config: vigil_config::Config) -> (Service, SocketAddr) {
    let (bound, addr) = tokio::sync::oneshot::channel();
    let service = sandbox.spawn_with_config("predictor", config, |ctx, token| async move {
        let predictor = Predictor::start(ctx).await?;
        let _ = bound.send(predictor.local_addr());
        predictor.run(token).await
    });
    (service, addr.await.expect("the predictor bound its port"))
}

#[tokio::test]
async fn the_workflow_gets_its_prediction_over_mutual_tls() {
    let sandbox = Sandbox::with(&["predictor.refresh_secs=0"]).await;
    let pki = TestPki::generate();
    let model_dir = tempfile::tempdir().unwrap();
    let model_file = model_dir.path().join("model.vigil");
    let artifact = tokio::task::spawn_blocking(trained).await.unwrap();
    std::fs::write(&model_file, artifact.to_bytes().unwrap()).unwrap();

    let mut predictor_config = sandbox.config().clone();
    predictor_config.predictor.model_file = Some(model_file);
    predictor_config.predictor.tls = pki.server(true);
    let (mut predictor, addr) = start_predictor(&sandbox, predictor_config).await;
    predictor.ready(PATIENCE).await;

    let mut config = sandbox.config().clone();
    config.orchestrator.predictor_url = Some(format!("https://localhost:{}", addr.port()));
    config.orchestrator.predictor_tls = pki.client(Some("client"));
    // The predict step must not be skipped for being slow on a busy test machine.
    config.orchestrator.predict_timeout_ms = 60_000;
    config.validate().unwrap();
    let orchestrator =
        sandbox.spawn_with_config("orchestrator", config, vigil_orchestrator::run_in);
    let broker = sandbox.spawn("broker", vigil_broker::run_in);

    // An NSL-KDD row the model was not trained on: it carries the model's inputs.
    let mut signal = nsl_kdd::examples()[20_000].signal.clone();
    signal.timestamp = chrono::Utc::now();
    sandbox
        .publish_signal("tls", &v1::ThreatSignal::from(signal.clone()))
        .await;

    eventually(PATIENCE, "the signal's workflow", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        if done == 1 { Ok(done) } else { Err(done) }
    })
    .await;
    let (results, steps): (serde_json::Value, serde_json::Value) =
        sqlx::query_as("SELECT results, steps FROM workflows WHERE event_id = $1")
            .bind(&signal.id)
            .fetch_one(sandbox.store().pool())
            .await
            .unwrap();
    let predict = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "predict")
        .cloned()
        .unwrap();
    assert_eq!(predict["outcome"], "succeeded", "{predict}");
    assert_eq!(
        results["prediction"]["model_version_id"],
        serde_json::json!(artifact.metadata.model_version_id),
        "{results}"
    );
    assert!(results["ml_score"].is_number(), "{results}");

    broker.stop().await;
    orchestrator.stop().await;
    predictor.stop().await;
}
