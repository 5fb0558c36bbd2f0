//! `vigil evaluate --production`: the registry's production ensemble scored on a file, with
//! the same numbers `vigil evaluate --model` gives for the same artifact.

#![allow(clippy::unwrap_used)]

use vigil_domain::ModelType;
use vigil_ml::ModelArtifact;
use vigil_store::NewModelVersion;
use vigil_testkit::{Sandbox, nsl_kdd};

mod common;
use common::{text, vigil};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_is_scored_like_the_same_artifact_from_a_file() {
    let sandbox = Sandbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = nsl_kdd::subset(dir.path(), 1_500);
    let data = data.to_str().unwrap();

    // Nothing in production yet: one clear error.
    let out = vigil(
        &sandbox,
        &[
            "evaluate",
            "--production",
            "--data",
            data,
            "--format",
            "nsl-kdd",
        ],
    )
    .await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no ensemble is in production") && !err.contains("panicked"),
        "{err}"
    );

    // Neither or both of --model and --production is a usage error.
    let out = vigil(&sandbox, &["evaluate", "--data", data]).await;
    assert!(!out.status.success());

    let model = dir.path().join("model.vigil");
    let out = vigil(
        &sandbox,
        &["train", "--data", data, "--out", model.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&model).unwrap();
    let artifact = ModelArtifact::from_bytes(&bytes).unwrap();
    let registry = sandbox.store().models();
    let mut ensemble = None;
    for mut version in artifact.model_versions(1) {
        version.id = uuid::Uuid::now_v7().to_string();
        let record = registry
            .register(
                &NewModelVersion {
                    version,
                    feature_spec: serde_json::to_value(&artifact.ensemble.spec).unwrap(),
                    artifact: bytes.clone(),
                },
                "test",
                "trained by vigil train",
            )
            .await
            .unwrap();
        if record.version.model_type == ModelType::Ensemble {
            ensemble = Some(record.version.id.clone());
        }
    }
    let ensemble = ensemble.unwrap();
    registry
        .promote_to_production(&ensemble, "test", "the one to evaluate")
        .await
        .unwrap();

    let from_file = vigil(
        &sandbox,
        &[
            "evaluate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data,
            "--json",
        ],
    )
    .await;
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    let production = vigil(
        &sandbox,
        &[
            "evaluate",
            "--production",
            "--data",
            data,
            "--format",
            "nsl-kdd",
            "--json",
        ],
    )
    .await;
    assert!(production.status.success(), "{}", text(&production.stderr));
    let from_file: serde_json::Value = serde_json::from_slice(&from_file.stdout).unwrap();
    let mut production: serde_json::Value = serde_json::from_slice(&production.stdout).unwrap();
    assert_eq!(production["registry"]["id"], ensemble.as_str());
    assert_eq!(production["registry"]["version"], 1);
    production.as_object_mut().unwrap().remove("registry");
    assert_eq!(production, from_file, "the same metrics for the same model");
    assert_eq!(production["rows"], 1_500);

    let out = vigil(&sandbox, &["evaluate", "--production", "--data", data]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("production ensemble v1 ({ensemble})"))
            && stdout.contains("accuracy"),
        "{stdout}"
    );
}
