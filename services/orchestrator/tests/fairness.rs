//! Priority lanes are fair: a flood of critical signals keeps most of the capacity, but the low
//! lane is still served while the flood lasts instead of after it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use vigil_bus::StreamKind;
use vigil_proto::v1;
use vigil_testkit::{Sandbox, eventually};

const PATIENCE: Duration = Duration::from_secs(300);
const FLOOD: usize = 300;
const LOW: usize = 5;

fn signal(id: String, severity: v1::Severity) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id,
        threat_type: "port_scan".into(),
        source_ip: "203.0.113.80".into(),
        confidence: 0.5,
        severity: severity as i32,
        sensor: "fairness".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_critical_flood_does_not_starve_the_low_lane() {
    let sandbox = Sandbox::with(&["orchestrator.max_workflows=16"]).await;
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    broker.ready(PATIENCE).await;
    for i in 0..FLOOD {
        sandbox
            .publish_signal(
                "fairness",
                &signal(format!("flood-{i}"), v1::Severity::Critical),
            )
            .await;
    }
    for i in 0..LOW {
        sandbox
            .publish_signal("fairness", &signal(format!("low-{i}"), v1::Severity::Low))
            .await;
    }
    // Everything waits in the lanes before the orchestrator starts, so the order it takes
    // them in is its own choice, not the order they arrived in.
    let total = (FLOOD + LOW) as u64;
    eventually(PATIENCE, "every signal queued", || async {
        let queued = sandbox.stream_messages(StreamKind::Work).await;
        if queued == total { Ok(()) } else { Err(queued) }
    })
    .await;
    let mut orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    orchestrator.ready(PATIENCE).await;
    eventually(PATIENCE, "every workflow done", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        if done as u64 == total {
            Ok(())
        } else {
            Err(done)
        }
    })
    .await;

    // Strict priority would finish every critical workflow before the first low one.
    let after_last_low = sandbox
        .count(
            "SELECT count(*) FROM workflows WHERE event_id LIKE 'flood-%' AND completed_at > \
             (SELECT max(completed_at) FROM workflows WHERE event_id LIKE 'low-%')",
        )
        .await;
    println!("critical workflows completed after the last low one: {after_last_low} of {FLOOD}");
    assert!(
        after_last_low > (FLOOD / 3) as i64,
        "the low lane waited for the flood: only {after_last_low} of {FLOOD} critical \
         workflows finished after the last low one"
    );
    orchestrator.stop().await;
    broker.stop().await;
}
