//! The model lifecycle through the CLI against `vigil up`: import labelled data, ask the
//! trainer for a run, promote by hand, and score signals through the predictor.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Cli, Events, PATIENCE, Up};
use vigil_testkit::{Sandbox, eventually, nsl_kdd};

/// Rows of NSL-KDD to learn from: enough for real models, quick to fit.
const ROWS: usize = 2_500;

/// A connection record as a sensor would describe it.
const SIGNAL: &str = r#"{"id": "conn-1", "threatType": "network_connection", "protocol": "tcp", "destinationPort": 80, "confidence": 0.5}"#;

/// Small models, so a run takes seconds; still the real learners.
fn small_train_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("train.json");
    let config = serde_json::json!({
        "forest": { "n_trees": 20 },
        "xgboost": { "rounds": 30 },
        "mlp": { "max_epochs": 5 },
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// The model version `vigil predict` answers with, once the predictor serves one.
async fn predicted_by(cli: &Cli, up: &Up) -> Result<String, String> {
    let grpc = up.grpc.to_string();
    let out = cli
        .run(&["predict", "--addr", &grpc, "--signal", SIGNAL])
        .await;
    if !out.status.success() {
        return Err(common::text(&out.stderr));
    }
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let score = result["risk_score"].as_f64().unwrap();
    assert!((0.0..=10.0).contains(&score), "{result}");
    Ok(result["model_version_id"].as_str().unwrap().to_owned())
}

/// The registry id of the ensemble a training report registered.
fn ensemble_of(report: &serde_json::Value) -> String {
    report["registered"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model_type"] == "ensemble")
        .unwrap_or_else(|| panic!("no ensemble registered: {report}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_data_trains_a_model_that_is_promoted_and_scores_signals() {
    let dir = tempfile::tempdir().unwrap();
    let data = nsl_kdd::subset(dir.path(), ROWS);
    let sandbox = Sandbox::start().await;
    let sets = vec![
        format!(
            "trainer.train_config=\"{}\"",
            small_train_config(dir.path()).display()
        ),
        // Runs only when asked: never on schedule or by the count of new examples.
        "trainer.schedule=\"0 0 0 1 1 *\"".to_string(),
        "trainer.min_new_examples=1000000000".to_string(),
        // A second run must beat production by more than 1.0 F1 to be promoted: never.
        "trainer.promotion_margin=1.0".to_string(),
        // The predictor looks for a new production version every second.
        "predictor.refresh_secs=1".to_string(),
    ];
    let mut events = Events::subscribe(&sandbox).await;
    let mut up = Up::start(&sandbox, &sets).await;
    let cli = up.cli.clone();

    assert_eq!(
        cli.ok(&["models", "list"]).await.trim(),
        "no model versions registered"
    );
    let out = predicted_by(&cli, &up).await;
    assert!(out.is_err(), "no model to serve yet: {out:?}");

    let imported = cli
        .ok(&["models", "import", "--data", data.to_str().unwrap()])
        .await;
    assert!(
        imported.contains(&format!("read {ROWS} examples")),
        "{imported}"
    );

    // The first run has nothing in production to beat: its ensemble is promoted and announced.
    let first: serde_json::Value =
        serde_json::from_str(&cli.ok(&["models", "train", "--json"]).await).unwrap();
    assert_eq!(first["outcome"], "promoted", "{first}");
    let v1 = ensemble_of(&first);
    let announced = events.wait_for("model_promoted", "").await;
    assert_eq!(
        announced.data["model_id"],
        v1.as_str(),
        "{}",
        announced.data
    );
    let listed = cli.ok(&["models", "list", "--type", "ensemble"]).await;
    let line = listed.lines().find(|l| l.starts_with(&v1)).unwrap();
    assert!(line.contains("production"), "{listed}");

    // The predictor picks it up and scores with it; /readyz turns ready.
    let serving = eventually(PATIENCE, "the predictor to serve v1", || {
        predicted_by(&cli, &up)
    })
    .await;
    assert_eq!(serving, v1);
    let (status, body) = up.readyz().await;
    assert_eq!(status, 200, "{body}");

    // A second run cannot beat it by the margin: registered, not promoted.
    let second: serde_json::Value =
        serde_json::from_str(&cli.ok(&["models", "train", "--json"]).await).unwrap();
    assert_eq!(second["outcome"], "not_promoted", "{second}");
    let v2 = ensemble_of(&second);
    assert_ne!(v2, v1);
    assert_eq!(predicted_by(&cli, &up).await, Ok(v1.clone()));

    // An operator promotes it by hand; the predictor follows.
    let promoted = cli.ok(&["models", "promote", &v2, "--production"]).await;
    assert!(
        promoted.contains(&format!("({v2}) is now production, replacing v1 ({v1})")),
        "{promoted}"
    );
    let serving = eventually(PATIENCE, "the predictor to serve v2", || async {
        match predicted_by(&cli, &up).await {
            Ok(id) if id == v2 => Ok(id),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(serving, v2);
    up.assert_running();
}
