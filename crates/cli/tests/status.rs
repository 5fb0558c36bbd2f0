//! `vigil status` against a sandbox: the whole status as JSON and as a table while a health
//! service runs, one clear line and a non-zero exit while none does.

mod common;

use std::time::Duration;

use common::{text, vigil, vigil_with};
use vigil_testkit::{Sandbox, eventually};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn status_prints_the_health_services_report() {
    let sandbox = Sandbox::with(&["health.heartbeat_interval_ms=200"]).await;
    let broker = sandbox.spawn("broker", vigil_broker::run_in);
    let health = sandbox.spawn("health", vigil_health::run_in);
    // The CLI asks with the sandbox's environment only; its short interval is the services'.
    let report: serde_json::Value =
        eventually(PATIENCE, "a status past the start-up grace", || async {
            let out = vigil(&sandbox, &["status", "--json"]).await;
            if !out.status.success() {
                return Err(text(&out.stderr));
            }
            let report: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            // Components never heard from are judged once the health service has listened for
            // three intervals.
            if report["components"]["broker"]["alive"] == 1
                && report["components"]["health"]["alive"] == 1
                && report["components"]["orchestrator"]["state"] == "critical"
            {
                Ok(report)
            } else {
                Err(text(&out.stdout))
            }
        })
        .await;
    // The orchestrator, predictor, trainer and feedback service never ran: the orchestrator is
    // required, so the system is critical, and the report says why.
    assert_eq!(report["state"], "critical", "{report}");
    assert_eq!(
        report["components"]["broker"]["state"], "healthy",
        "{report}"
    );
    assert_eq!(report["components"]["orchestrator"]["state"], "critical");
    assert!(
        report["components"]["orchestrator"]["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("no instance has sent a heartbeat")),
        "{report}"
    );
    for key in [
        "events_processed",
        "workflows",
        "recent",
        "feedback",
        "models",
        "streams",
        "dead_letters",
        "config",
    ] {
        assert!(report.get(key).is_some(), "no {key} in {report}");
    }

    let out = vigil(&sandbox, &["status"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("vigil is CRITICAL: "), "{table}");
    assert!(table.contains("broker"), "{table}");
    assert!(
        !table.contains('\x1b'),
        "no colour when stdout is not a terminal: {table}"
    );

    health.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn status_without_a_health_service_fails_with_one_line() {
    let sandbox = Sandbox::start().await;
    let out = vigil_with(
        &sandbox,
        &["status"],
        &[("VIGIL_HEALTH__STATUS_TIMEOUT_MS", "2000")],
    )
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no health service answers"), "{stderr}");
}
