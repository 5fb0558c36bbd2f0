//! `vigil demo` as a newcomer runs it, against a sandbox of its own (NATS prefix, fresh
//! database): started alone it runs every service itself and its JSON report must agree with
//! what it left behind, feedback round included; beside services that already run it uses them,
//! and says so, and says when no feedback service answers; without data it says where NSL-KDD is
//! published, without needing any server.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use vigil_testkit::{Sandbox, nsl_kdd, vigil_bin};

const ROWS: u64 = 120;
const HOLDOUT: u64 = 300;
const FEEDBACK_SAMPLE: u64 = 12;
const PREDICT_TIMEOUT_MS: u64 = 5_000;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn demo(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(vigil_bin());
    cmd.arg("demo").args(args).env_remove("RUST_LOG");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("vigil runs")
}

fn count(report: &Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not a count in the report: {report:#}"))
}

fn fraction(report: &Value, pointer: &str) -> f64 {
    let value = report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in the report: {report:#}"));
    assert!((0.0..=1.0).contains(&value), "{pointer} = {value}");
    value
}

/// Runs `vigil demo --json` against the sandbox (with `extra` flags) and returns its report.
async fn run_demo(sandbox: &Sandbox, extra: &[String]) -> Value {
    let mut args: Vec<String> = [
        "--json".to_owned(),
        format!("--rows={ROWS}"),
        "--train-rows=1500".to_owned(),
        format!("--holdout={HOLDOUT}"),
        format!("--feedback-sample={FEEDBACK_SAMPLE}"),
        "--set".to_owned(),
        format!("nats.url=\"{}\"", sandbox.config().nats.url),
        "--set".to_owned(),
        format!("nats.prefix=\"{}\"", sandbox.prefix()),
        "--set".to_owned(),
        format!("database.url=\"{}\"", sandbox.database().url()),
        "--set".to_owned(),
        "predictor.grpc_addr=\"127.0.0.1:0\"".to_owned(),
        "--set".to_owned(),
        "telemetry.http_addr=\"127.0.0.1:0\"".to_owned(),
        // A debug build on a busy machine misses the 50 ms default often; the tests are not
        // about latency.
        "--set".to_owned(),
        format!("orchestrator.predict_timeout_ms={PREDICT_TIMEOUT_MS}"),
    ]
    .into();
    args.extend_from_slice(extra);
    let data_dir = nsl_kdd::data_dir();
    let out = tokio::task::spawn_blocking(move || {
        demo(&args, &[("VIGIL_DATA_DIR", data_dir.to_str().unwrap())])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "vigil demo failed:\n{}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON report ({e}):\n{}",
            text(&out.stdout)
        )
    })
}

/// Checks what every demo run must show: each replayed record went through one workflow, and
/// the counts are the rows the demo left in the sandbox's database.
async fn assert_consistent(sandbox: &Sandbox, report: &Value) {
    // Every replayed record went through a workflow, and the database holds exactly those.
    assert_eq!(count(report, "/data/replayed_rows"), ROWS);
    assert_eq!(count(report, "/data/holdout_rows"), HOLDOUT);
    assert_eq!(count(report, "/events/published"), ROWS);
    assert_eq!(count(report, "/events/detected"), ROWS);
    assert_eq!(count(report, "/events/workflows"), ROWS);
    assert_eq!(
        count(report, "/events/succeeded") + count(report, "/events/failed"),
        ROWS
    );
    assert_eq!(
        sandbox.count("SELECT count(*) FROM workflows").await as u64,
        ROWS
    );
    let levels: u64 = report["verdicts"]["by_level"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(levels, ROWS, "every workflow has one risk level");
    // The predictor served the first model; a prediction slower than the orchestrator's
    // deadline is skipped (the workflow goes on with rules alone) and said so.
    assert_eq!(report["models"]["predictor_serving"], true);
    let scored = count(report, "/verdicts/scored_by_model");
    let unscored: u64 = report["verdicts"]["not_scored"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(
        scored > 0,
        "no workflow was scored by the model: {report:#}"
    );
    assert_eq!(scored + unscored, ROWS);

    // Remediations and incidents are the rows the demo left behind.
    assert_eq!(
        sandbox.count("SELECT count(*) FROM remediations").await as u64,
        count(report, "/remediations/total")
    );
    assert_eq!(
        count(report, "/remediations/total"),
        count(report, "/remediations/dry_run"),
        "remediation is dry-run by default"
    );
    assert_eq!(
        sandbox.count("SELECT count(*) FROM incidents").await as u64,
        count(report, "/incidents/opened")
    );

    // The first model was trained on the imported rows and promoted; its accuracy on the
    // held-out rows is measured.
    assert_eq!(count(report, "/data/training_rows"), 1500);
    assert_eq!(count(report, "/created/training_examples"), 1500);
    assert_eq!(report["models"]["first_run"]["outcome"], "promoted");
    let first = report["models"]["production_before"]["id"]
        .as_str()
        .unwrap();
    assert_eq!(
        sandbox
            .count(&format!(
                "SELECT count(*) FROM model_versions WHERE id = '{first}' AND model_type = 'ensemble'"
            ))
            .await,
        1,
        "the production model named is a registered ensemble"
    );
    assert_eq!(
        report["accuracy"]["before"]["model"]["id"].as_str(),
        Some(first)
    );
    assert_eq!(count(report, "/accuracy/before/rows"), HOLDOUT);
    fraction(report, "/accuracy/before/accuracy");
    fraction(report, "/accuracy/before/f1");

    // Latency per step comes from the workflows' own records.
    for (stage, n) in [("assess", ROWS), ("predict", scored), ("workflow", ROWS)] {
        let p = &report["latency_ms"][stage];
        assert_eq!(p["count"].as_u64(), Some(n), "{stage}: {p}");
        let (p50, p99, max) = (
            p["p50"].as_f64().unwrap(),
            p["p99"].as_f64().unwrap(),
            p["max"].as_f64().unwrap(),
        );
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{stage}: {p}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alone_it_runs_every_service_and_its_report_agrees_with_what_it_did() {
    let sandbox = Sandbox::start().await;
    let report = run_demo(&sandbox, &[]).await;
    assert_consistent(&sandbox, &report).await;
    assert!(
        report["services"]
            .as_str()
            .unwrap()
            .starts_with("started in this process"),
        "{}",
        report["services"]
    );

    // The feedback service runs with the others: the sample's true labels became analyst-
    // labelled training examples, and the model was trained again with them.
    assert_eq!(report["feedback"]["status"], "submitted");
    assert_eq!(count(&report, "/feedback/submitted"), FEEDBACK_SAMPLE);
    assert_eq!(count(&report, "/feedback/accepted"), FEEDBACK_SAMPLE);
    assert_eq!(
        sandbox
            .count("SELECT count(*) FROM training_examples WHERE source = 'feedback'")
            .await as u64,
        FEEDBACK_SAMPLE
    );
    let retrain = &report["models"]["retrain"];
    assert!(
        matches!(
            retrain["outcome"].as_str(),
            Some("promoted" | "not_promoted")
        ),
        "{retrain:#}"
    );
    assert_eq!(
        count(&report, "/models/retrain/examples"),
        1500 + FEEDBACK_SAMPLE,
        "the retraining run used the imported rows and the verdicts"
    );
    assert_eq!(
        report["models"]["production_after"]["id"].as_str(),
        Some(production_id(&sandbox).await.as_str())
    );
    fraction(&report, "/accuracy/after/accuracy");
    assert_eq!(
        report["created"]["models_registered"]
            .as_array()
            .unwrap()
            .len() as i64,
        sandbox.count("SELECT count(*) FROM model_versions").await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn beside_running_services_it_uses_them_and_says_feedback_is_not_available() {
    let sandbox = Sandbox::start().await;
    // Every service but the feedback service, as `vigil up` ran them before it had one.
    let (bound, address) = tokio::sync::oneshot::channel();
    let predictor = sandbox.spawn("predictor", move |ctx, token| async move {
        let predictor = vigil_predictor::Predictor::start(ctx).await?;
        let _ = bound.send(predictor.local_addr());
        predictor.run(token).await
    });
    let predictor_url = format!("http://{}", address.await.expect("the predictor started"));
    let mut config = sandbox.config().clone();
    config.orchestrator.predictor_url = Some(predictor_url.clone());
    config.orchestrator.predict_timeout_ms = PREDICT_TIMEOUT_MS;
    let mut services = vec![
        sandbox.spawn("broker", vigil_broker::run_in),
        sandbox.spawn("trainer", vigil_trainer::run_in),
        sandbox.spawn_with_config("orchestrator", config, vigil_orchestrator::run_in),
    ];
    for service in &mut services {
        service.ready(Duration::from_secs(60)).await;
    }

    let report = run_demo(
        &sandbox,
        &[
            "--set".to_owned(),
            format!("orchestrator.predictor_url=\"{predictor_url}\""),
        ],
    )
    .await;
    assert_consistent(&sandbox, &report).await;
    assert!(
        report["services"]
            .as_str()
            .unwrap()
            .starts_with("already running"),
        "{}",
        report["services"]
    );
    assert_eq!(
        services[2].counter("vigil_workflows_completed"),
        ROWS,
        "the running orchestrator handled every record"
    );

    let feedback = &report["feedback"];
    assert_eq!(feedback["status"], "not available", "{feedback:#}");
    assert!(
        feedback["detail"]
            .as_str()
            .unwrap()
            .contains(&sandbox.subject("vigil.feedback.submit")),
        "{feedback:#}"
    );
    assert_eq!(count(&report, "/feedback/accepted"), 0);
    assert!(report["models"]["retrain"].is_null());
    assert!(report["accuracy"]["after"].is_null());
    assert_eq!(
        sandbox
            .count("SELECT count(*) FROM training_examples WHERE source = 'feedback'")
            .await,
        0
    );

    for service in services {
        service.stop().await;
    }
    predictor.stop().await;
}

async fn production_id(sandbox: &Sandbox) -> String {
    sandbox
        .store()
        .models()
        .production(vigil_domain::ModelType::Ensemble)
        .await
        .unwrap()
        .expect("an ensemble in production")
        .version
        .id
}

#[test]
fn without_data_it_says_where_nsl_kdd_is_published() {
    // Servers that do not exist: the message must come before any connection.
    let args: Vec<String> = [
        "--data",
        "/nonexistent/nsl-kdd",
        "--set",
        "nats.url=\"nats://127.0.0.1:1\"",
        "--set",
        "database.url=\"postgres://nobody@127.0.0.1:1/none\"",
    ]
    .map(str::to_owned)
    .into();
    let out = demo(&args, &[("VIGIL_DATA_DIR", "/nonexistent/either")]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let message = text(&out.stderr);
    for expected in [
        "/nonexistent/nsl-kdd",
        "https://www.unb.ca/cic/datasets/nsl.html",
        "KDDTrain+.txt",
        "KDDTrain+_20Percent.txt",
        "KDDTest+.txt",
    ] {
        assert!(message.contains(expected), "{expected} missing: {message}");
    }
    assert_eq!(
        message.matches("error:").count(),
        1,
        "one message: {message}"
    );
    assert!(
        !message.contains("NATS") && !message.contains("PostgreSQL"),
        "{message}"
    );
}
