//! `vigil feedback` as an analyst runs it, against services started in a sandbox: refusals
//! exit non-zero with the service's message, verdicts are stored and listed, and an import
//! reports its bad lines by number and stores the rest.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::Output;
use std::time::Duration;

use prost::Message;
use vigil_proto::v1;
use vigil_testkit::{Sandbox, eventually};

mod common;
use common::text;

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(180);

/// `vigil ARGS` as the analyst `cli-analyst`.
async fn vigil(sandbox: &Sandbox, args: &[&str]) -> Output {
    common::vigil_with(sandbox, args, &[("USER", "cli-analyst")]).await
}

/// A sandbox with the feedback service running and one completed workflow, `evt-cli`, that
/// vigil rated as an attack.
async fn with_a_workflow() -> (Sandbox, vigil_testkit::Service) {
    let sandbox = Sandbox::with(&[
        "soar.assessment.known_bad=[\"203.0.113.0/24\"]",
        "feedback.retrain_after_labels=0",
        "feedback.accuracy_floor=0",
    ])
    .await;
    let broker = sandbox.spawn("broker", vigil_broker::run_in);
    let orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    let signal = v1::ThreatSignal {
        id: "evt-cli".into(),
        threat_type: "port_scan".into(),
        source_ip: "203.0.113.9".into(),
        destination_port: 22,
        confidence: 0.95,
        severity: v1::Severity::Critical as i32,
        timestamp: Some(chrono::Utc::now().into()),
        ..Default::default()
    };
    let subject = sandbox.bus().topology().ingest_subject("cli").unwrap();
    sandbox
        .bus()
        .jetstream()
        .publish(subject, signal.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually(PATIENCE, "the workflow completed", || async {
        sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await
            == 1
    })
    .await;
    broker.stop().await;
    orchestrator.stop().await;
    let mut feedback = sandbox.spawn("feedback", vigil_feedback::run_in);
    feedback.ready(PATIENCE).await;
    (sandbox, feedback)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_list_and_import_as_an_analyst_does() {
    let (sandbox, feedback) = with_a_workflow().await;

    // A refusal: the service's one message, a failing exit code, nothing stored.
    let out = vigil(&sandbox, &["feedback", "submit", "evt-cli", "incorrect"]).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("needs the true label"),
        "{stderr}"
    );
    assert_eq!(sandbox.count("SELECT count(*) FROM feedback").await, 0);

    let out = vigil(
        &sandbox,
        &[
            "feedback",
            "submit",
            "evt-cli",
            "incorrect",
            "--label",
            "benign",
            "--note",
            "our scanner",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("stored verdict") && stdout.contains("vigil said attack"),
        "{stdout}"
    );
    assert!(
        stdout.contains("training example labelled benign"),
        "{stdout}"
    );

    // Two good lines (one by another analyst, one replacing the first verdict) and two bad.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        r#"{{"workflow":"evt-cli","verdict":"correct","analyst":"bob"}}"#
    )
    .unwrap();
    writeln!(file, r#"{{"workflow":"evt-cli","verdict":"partial"}}"#).unwrap();
    writeln!(file).unwrap();
    writeln!(
        file,
        r#"{{"workflow":"evt-cli","verdict":"partial","label":"benign","confidence":0.5}}"#
    )
    .unwrap();
    writeln!(file, r#"{{"workflow":"no-such","verdict":"correct"}}"#).unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let out = vigil(&sandbox, &["feedback", "import", &path]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 2:") && stderr.contains("needs the true label"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5:") && stderr.contains("unknown workflow"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("stored 1, superseding 1, duplicates 0, refused 2"),
        "{}",
        text(&out.stdout)
    );

    let out = vigil(
        &sandbox,
        &["feedback", "list", "--workflow", "evt-cli", "--json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3, "{records:#?}");
    let current: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["superseded_by"].is_null())
        .collect();
    assert_eq!(current.len(), 2, "the replaced verdict stays, marked");
    assert!(
        records
            .iter()
            .any(|r| r["analyst"] == "cli-analyst" && r["feedback_type"] == "partial")
    );
    feedback.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_and_insights_as_an_analyst_runs_them() {
    let (sandbox, feedback) = with_a_workflow().await;

    // The workflow is unjudged: the queue offers it, and says why.
    let out = vigil(&sandbox, &["review", "--limit", "5", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let items: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 1, "{items:#?}");
    assert_eq!(items[0]["event_id"], "evt-cli");
    assert_eq!(items[0]["threat_type"], "port_scan");
    let reasons = items[0]["reasons"].to_string();
    assert!(reasons.contains("no model prediction"), "{reasons}");
    let out = vigil(&sandbox, &["review"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("port_scan") && table.contains("- no model prediction"),
        "{table}"
    );
    let out = vigil(&sandbox, &["review", "--limit", "0"]).await;
    assert!(!out.status.success(), "the limit is 1-1000");

    let out = vigil(&sandbox, &["insights"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no verdicts yet"),
        "{}",
        text(&out.stdout)
    );

    // vigil called it an attack; the analyst says benign: one false positive.
    let out = vigil(
        &sandbox,
        &[
            "feedback",
            "submit",
            "evt-cli",
            "incorrect",
            "--label",
            "benign",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = vigil(&sandbox, &["review", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "", "judged: off the queue");
    let out = vigil(&sandbox, &["review"]).await;
    assert!(text(&out.stdout).contains("nothing to review"));

    let out = vigil(&sandbox, &["insights", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let insights: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(insights["overall"]["judged"], 1);
    assert_eq!(insights["overall"]["false_positives"], 1);
    assert_eq!(insights["overall"]["accuracy"], 0.0);
    assert_eq!(insights["overall"]["false_positive_rate"], 1.0);
    let out = vigil(&sandbox, &["insights"]).await;
    let report = text(&out.stdout);
    assert!(
        report.contains("overall") && report.contains("recommendations"),
        "{report}"
    );
    feedback.stop().await;
}
