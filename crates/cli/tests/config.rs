//! `vigil config get|set|unset|list|history` against a running orchestrator: a live change
//! reaches the next workflow without a restart, a bad value or a lost race changes nothing,
//! and the audit trail shows every attempt.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{text, vigil};
use vigil_proto::v1;
use vigil_testkit::{Sandbox, eventually};

const PATIENCE: Duration = Duration::from_secs(60);

fn signal(id: &str) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id: id.into(),
        threat_type: "port_scan".into(),
        source_ip: "203.0.113.9".into(),
        destination_ip: "192.0.2.10".into(),
        destination_port: 22,
        protocol: "tcp".into(),
        confidence: 0.8,
        severity: v1::Severity::Medium as i32,
        sensor: "live-config".into(),
        timestamp: Some(chrono::Utc::now().into()),
        ..Default::default()
    }
}

/// The risk score and level of the workflow of `event_id`, once it is recorded.
async fn verdict(sandbox: &Sandbox, event_id: &str) -> (f64, String) {
    eventually(PATIENCE, &format!("the workflow of {event_id}"), || async {
        sqlx::query_as::<_, (f64, String)>(
            "SELECT (results->>'risk_score')::float8, results->>'risk_level' \
             FROM workflows WHERE event_id = $1 AND status = 'SUCCESS'",
        )
        .bind(event_id)
        .fetch_optional(sandbox.store().pool())
        .await
        .unwrap()
    })
    .await
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

#[tokio::test]
async fn a_threshold_set_live_changes_the_next_workflow_and_every_attempt_is_audited() {
    let sandbox = Sandbox::start().await;
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    let mut orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    broker.ready(PATIENCE).await;
    orchestrator.ready(PATIENCE).await;

    // Before: the default thresholds (medium 4, high 7, critical 9).
    sandbox
        .publish_signal("live-config", &signal("live-1"))
        .await;
    let (score, level) = verdict(&sandbox, "live-1").await;
    assert!(
        (4.5..7.0).contains(&score) && level == "medium",
        "the test signal should score medium with the defaults, got {score} ({level})"
    );

    // An operator lowers the high threshold below that score.
    let high = ((score - 0.25) * 100.0).round() / 100.0;
    let out = vigil(
        &sandbox,
        &["config", "set", "thresholds.high", &high.to_string()],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(was 7"),
        "{}",
        text(&out.stdout)
    );
    let live = orchestrator.ctx().live.clone();
    eventually(
        PATIENCE,
        "the orchestrator to apply thresholds.high",
        || {
            let live = live.clone();
            async move { live.get().thresholds.high == high }
        },
    )
    .await;
    sandbox
        .publish_signal("live-config", &signal("live-2"))
        .await;
    let (again, level) = verdict(&sandbox, "live-2").await;
    assert_eq!(again, score, "the same signal scores the same");
    assert_eq!(level, "high", "the next workflow follows the new threshold");

    let got = json(&vigil(&sandbox, &["config", "get", "thresholds.high", "--json"]).await);
    assert_eq!(got["value"], serde_json::json!(high));
    assert_eq!(got["live"], true);
    let read_revision = got["revision"].as_u64().expect("a revision");

    // A critical threshold below the high one is refused, naming both, and nothing changes.
    let out = vigil(&sandbox, &["config", "set", "thresholds.critical", "3"]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains('3') && err.contains(&high.to_string()),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    let critical = json(
        &vigil(
            &sandbox,
            &["config", "get", "thresholds.critical", "--json"],
        )
        .await,
    );
    assert_eq!(critical["value"], serde_json::json!(9.0));
    assert_eq!(critical["live"], false);

    // A key that needs a restart is refused with that reason.
    let out = vigil(
        &sandbox,
        &["config", "set", "database.max_connections", "3"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("restart"),
        "{}",
        text(&out.stderr)
    );

    // Two operators: B changes the key after A read it; A's write loses and says so.
    let out = vigil(&sandbox, &["config", "set", "thresholds.high", "6.9"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stale = read_revision.to_string();
    let out = vigil(
        &sandbox,
        &[
            "config",
            "set",
            "thresholds.high",
            "6.1",
            "--expect-revision",
            &stale,
        ],
    )
    .await;
    assert!(!out.status.success(), "a stale write must fail");
    assert!(
        text(&out.stderr).contains("changed since it was read"),
        "{}",
        text(&out.stderr)
    );
    let got = json(&vigil(&sandbox, &["config", "get", "thresholds.high", "--json"]).await);
    assert_eq!(got["value"], serde_json::json!(6.9), "B's value stands");
    eventually(PATIENCE, "the orchestrator to apply B's value", || {
        let live = live.clone();
        async move { live.get().thresholds.high == 6.9 }
    })
    .await;

    // The audit trail, newest first: the conflict, B, the restart-only key, the invalid
    // critical threshold, the first change.
    let history = json(&vigil(&sandbox, &["config", "history", "--json"]).await);
    let rows = history.as_array().expect("a list");
    let summary: Vec<(String, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["accepted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("thresholds.high".to_owned(), false),
            ("thresholds.high".to_owned(), true),
            ("database.max_connections".to_owned(), false),
            ("thresholds.critical".to_owned(), false),
            ("thresholds.high".to_owned(), true),
        ]
    );
    assert!(
        rows[0]["reason"]
            .as_str()
            .unwrap()
            .contains("changed since it was read")
    );
    assert_eq!(rows[4]["old_value"], serde_json::json!(7.0));
    assert_eq!(rows[4]["new_value"], serde_json::json!(high));
    assert!(rows[4]["actor"].as_str().unwrap().starts_with("cli:"));

    // Unset: back to the start-up value, in the services too.
    let out = vigil(&sandbox, &["config", "unset", "thresholds.high"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    eventually(PATIENCE, "the orchestrator to go back to 7", || {
        let live = live.clone();
        async move { live.get().thresholds.high == 7.0 }
    })
    .await;
    let list = json(&vigil(&sandbox, &["config", "list", "--json"]).await);
    let high_row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "thresholds.high")
        .expect("thresholds.high is listed");
    assert_eq!(high_row["live"], false);
    assert_eq!(high_row["value"], serde_json::json!(7.0));

    orchestrator.stop().await;
    broker.stop().await;
}

/// The duplicate window of the work stream, as the server has it.
async fn duplicate_window(sandbox: &Sandbox, kind: vigil_bus::StreamKind) -> Duration {
    let name = sandbox.bus().topology().stream_name(kind);
    let mut stream = sandbox.bus().jetstream().get_stream(&name).await.unwrap();
    stream.info().await.unwrap().config.duplicate_window
}

#[tokio::test]
async fn the_dedup_window_set_live_reaches_the_streams_and_survives_a_service_start() {
    use vigil_bus::StreamKind;
    let sandbox = Sandbox::start().await;
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    broker.ready(PATIENCE).await;
    assert_eq!(
        duplicate_window(&sandbox, StreamKind::Work).await,
        Duration::from_secs(300)
    );

    let out = vigil(
        &sandbox,
        &["config", "set", "streams.dedup_window_secs", "42"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    for kind in [StreamKind::Ingest, StreamKind::Work] {
        eventually(
            PATIENCE,
            "the broker to set the duplicate window",
            || async {
                let window = duplicate_window(&sandbox, kind).await;
                if window == Duration::from_secs(42) {
                    Ok(())
                } else {
                    Err(window)
                }
            },
        )
        .await;
    }
    // Another service declaring the topology with its start-up value (300 s) leaves it.
    let mut orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    orchestrator.ready(PATIENCE).await;
    assert_eq!(
        duplicate_window(&sandbox, StreamKind::Work).await,
        Duration::from_secs(42)
    );
    orchestrator.stop().await;
    broker.stop().await;
}
