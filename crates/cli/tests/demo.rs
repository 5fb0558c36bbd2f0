//! `vigil demo` as a newcomer runs it: against a sandbox of its own (NATS prefix, fresh
//! database), its JSON report must agree with what it left behind; without data it says where
//! NSL-KDD is published, without needing any server.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use serde_json::Value;
use vigil_testkit::{Sandbox, nsl_kdd, vigil_bin};

const ROWS: u64 = 120;
const HOLDOUT: u64 = 300;
const FEEDBACK_SAMPLE: u64 = 12;

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

#[tokio::test(flavor = "multi_thread")]
async fn the_report_agrees_with_what_the_demo_did() {
    let sandbox = Sandbox::start().await;
    let config = sandbox.config();
    let args: Vec<String> = [
        "--json".to_owned(),
        format!("--rows={ROWS}"),
        "--train-rows=1500".to_owned(),
        format!("--holdout={HOLDOUT}"),
        format!("--feedback-sample={FEEDBACK_SAMPLE}"),
        "--set".to_owned(),
        format!("nats.url=\"{}\"", config.nats.url),
        "--set".to_owned(),
        format!("nats.prefix=\"{}\"", sandbox.prefix()),
        "--set".to_owned(),
        format!("database.url=\"{}\"", sandbox.database().url()),
        "--set".to_owned(),
        "predictor.grpc_addr=\"127.0.0.1:0\"".to_owned(),
        "--set".to_owned(),
        "telemetry.http_addr=\"127.0.0.1:0\"".to_owned(),
    ]
    .into();
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
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON report ({e}):\n{}",
            text(&out.stdout)
        )
    });

    // Every replayed record went through a workflow, and the database holds exactly those.
    assert_eq!(count(&report, "/data/replayed_rows"), ROWS);
    assert_eq!(count(&report, "/data/holdout_rows"), HOLDOUT);
    assert_eq!(count(&report, "/events/published"), ROWS);
    assert_eq!(count(&report, "/events/detected"), ROWS);
    assert_eq!(count(&report, "/events/workflows"), ROWS);
    assert_eq!(
        count(&report, "/events/succeeded") + count(&report, "/events/failed"),
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
    let scored = count(&report, "/verdicts/scored_by_model");
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
        count(&report, "/remediations/total")
    );
    assert_eq!(
        count(&report, "/remediations/total"),
        count(&report, "/remediations/dry_run"),
        "remediation is dry-run by default"
    );
    assert_eq!(
        sandbox.count("SELECT count(*) FROM incidents").await as u64,
        count(&report, "/incidents/opened")
    );

    // The first model was trained on the imported rows and promoted; its accuracy on the
    // held-out rows is measured.
    assert_eq!(count(&report, "/data/training_rows"), 1500);
    assert_eq!(count(&report, "/created/training_examples"), 1500);
    assert_eq!(report["models"]["first_run"]["outcome"], "promoted");
    let production: String = sandbox
        .store()
        .models()
        .production(vigil_domain::ModelType::Ensemble)
        .await
        .unwrap()
        .expect("an ensemble in production")
        .version
        .id;
    assert_eq!(count(&report, "/accuracy/before/rows"), HOLDOUT);
    fraction(&report, "/accuracy/before/accuracy");
    fraction(&report, "/accuracy/before/f1");

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

    // Feedback: a service answers on the feedback subject, or the report says it does not.
    let feedback = &report["feedback"];
    match feedback["status"].as_str() {
        Some("not available") => {
            assert_eq!(count(&report, "/feedback/accepted"), 0);
            assert!(report["models"]["retrain"].is_null());
            assert!(report["accuracy"]["after"].is_null());
            assert_eq!(report["models"]["production_before"]["id"], production);
        }
        Some("submitted") => {
            assert_eq!(count(&report, "/feedback/submitted"), FEEDBACK_SAMPLE);
            assert_eq!(count(&report, "/feedback/accepted"), FEEDBACK_SAMPLE);
            assert_eq!(
                sandbox
                    .count("SELECT count(*) FROM training_examples WHERE source = 'feedback'")
                    .await as u64,
                FEEDBACK_SAMPLE
            );
            assert!(!report["models"]["retrain"].is_null());
            assert_eq!(report["models"]["production_after"]["id"], production);
            fraction(&report, "/accuracy/after/accuracy");
        }
        other => panic!("unexpected feedback status {other:?}: {feedback:#}"),
    }
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
