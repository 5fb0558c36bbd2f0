//! vigil through the clients people already have, run from a Python virtual environment made
//! by the test (`tests/clients/`): Triton's `tritonclient` against the predictor's Open
//! Inference Protocol endpoints, `grpcio-health-checking` against `grpc.health.v1`, and `nats-py`
//! publishing a JSON signal that becomes a workflow.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Events, Up, python};
use vigil_proto::v1;
use vigil_testkit::{Sandbox, eventually, nsl_kdd};

/// Rows of NSL-KDD the served model learns from: a real model, quick to fit.
const ROWS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_grpc_health_and_nats_py_work_against_vigil_up() {
    if python::skipped("clients") {
        return;
    }
    // Made first: on a machine without PyPI this fails before anything else is started.
    let python = tokio::task::spawn_blocking(python::client_python)
        .await
        .unwrap();

    let sandbox = Sandbox::start().await;
    let dir = tempfile::tempdir().unwrap();
    let model = common::small_model(&sandbox, dir.path(), ROWS).await;

    let mut events = Events::subscribe(&sandbox).await;
    let sets = vec![format!("predictor.model_file=\"{}\"", model.display())];
    let mut up = Up::start(&sandbox, &sets).await;
    // Served from the file, the predictor is ready too.
    eventually(common::PATIENCE, "/readyz 200 with a model served", || {
        let up = &up;
        async move {
            match up.readyz().await {
                (200, _) => Ok(()),
                other => Err(other),
            }
        }
    })
    .await;

    // Connection records the model was not trained on, scored by vigil's own client (`vigil
    // predict`, the typed `vigil.v1.Predictor` API): tritonclient must read the same numbers.
    let grpc = up.grpc.to_string();
    let rows: Vec<serde_json::Value> = nsl_kdd::examples()[20_000..]
        .iter()
        .step_by(101)
        .take(4)
        .map(|e| serde_json::to_value(v1::ThreatSignal::from(e.signal.clone())).unwrap())
        .collect();
    let (mut scores, mut confidences) = (Vec::new(), Vec::new());
    for row in &rows {
        let answer = up
            .cli
            .ok(&["predict", "--addr", &grpc, "--signal", &row.to_string()])
            .await;
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        scores.push(answer["risk_score"].as_f64().unwrap());
        confidences.push(answer["confidence"].as_f64().unwrap());
    }
    let expected = dir.path().join("expected.json");
    std::fs::write(
        &expected,
        serde_json::json!({"rows": rows, "risk_score": scores, "confidence": confidences})
            .to_string(),
    )
    .unwrap();

    let signal_id = format!("py-{}", sandbox.prefix());
    let script = python::clients_dir().join("clients.py");
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(&script)
        .args(["--grpc", &up.grpc.to_string()])
        .args(["--nats", &sandbox.config().nats.url])
        .args(["--subject", &sandbox.subject("vigil.ingest.python")])
        .args(["--signal-id", &signal_id])
        .arg("--expected")
        .arg(&expected);
    let out = command.output().await.expect("python runs");
    let printed = format!("{}{}", common::text(&out.stdout), common::text(&out.stderr));
    assert!(
        out.status.success(),
        "the Python clients failed ({}):\n{printed}\nvigil up:\n{}",
        out.status,
        up.output()
    );
    assert!(printed.contains("all checks passed"), "{printed}");
    eprintln!("{printed}");

    // The JSON signal nats-py published is decoded by the broker and becomes a workflow.
    let completed = events.wait_for("workflow_completed", &signal_id).await;
    assert_eq!(completed.data["status"], "SUCCESS", "{}", completed.data);
    up.assert_running();
}
