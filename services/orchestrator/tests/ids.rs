//! Event ids: a redelivered or repeated signal is one workflow, and another signal that reuses
//! an id (another sensor, other content) is dead-lettered with the reason, never dropped unseen.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use prost::Message;
use vigil_bus::{StreamKind, headers};
use vigil_proto::v1;
use vigil_testkit::{Sandbox, eventually};

const PATIENCE: Duration = Duration::from_secs(180);

fn signal(sensor: &str, source_ip: &str, threat_type: &str) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id: "reused-1".into(),
        threat_type: threat_type.into(),
        source_ip: source_ip.into(),
        destination_port: 22,
        confidence: 0.8,
        sensor: sensor.into(),
        timestamp: Some(
            chrono::DateTime::from_timestamp(1_764_900_000, 0)
                .unwrap()
                .into(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_id_reused_by_another_signal_is_dead_lettered_with_the_reason() {
    let sandbox = Sandbox::start().await;
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    let mut orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    broker.ready(PATIENCE).await;
    orchestrator.ready(PATIENCE).await;
    let bus = sandbox.bus();

    let first = signal("ids-a", "203.0.113.60", "port_scan");
    sandbox.publish_signal("ids", &first).await;
    eventually(PATIENCE, "the first workflow", || async {
        sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await
            == 1
    })
    .await;
    // The same signal again (a sensor's retry), and another sensor's signal with the same id.
    sandbox.publish_signal("ids", &first).await;
    sandbox
        .publish_signal("ids", &signal("ids-b", "198.51.100.61", "malware"))
        .await;

    eventually(
        PATIENCE,
        "the reuse dead-lettered and the queues empty",
        || async {
            let dead = sandbox.stream_messages(StreamKind::DeadLetter).await;
            let ingest = sandbox.stream_messages(StreamKind::Ingest).await;
            let work = sandbox.stream_messages(StreamKind::Work).await;
            if dead == 1 && ingest == 0 && work == 0 {
                Ok(())
            } else {
                Err(format!("{dead} dead letters, {ingest} + {work} waiting"))
            }
        },
    )
    .await;
    assert_eq!(
        sandbox.count("SELECT count(*) FROM workflows").await,
        1,
        "the retry is a duplicate and the reuse makes no workflow"
    );
    let dlq = bus.topology().stream_name(StreamKind::DeadLetter);
    let mut stream = bus.jetstream().get_stream(&dlq).await.unwrap();
    let first_sequence = stream.info().await.unwrap().state.first_sequence;
    let dead = stream.get_raw_message(first_sequence).await.unwrap();
    let reason = dead
        .headers
        .get(headers::DLQ_REASON)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert!(
        reason.contains("reused-1") && reason.contains("ids-b") && reason.contains("already used"),
        "{reason}"
    );
    let refused = v1::ThreatSignal::decode(dead.payload).unwrap();
    assert_eq!(refused.sensor, "ids-b", "the refused signal is kept whole");
    assert_eq!(
        orchestrator.counter("vigil_event_ids_reused"),
        1,
        "counted in /metrics"
    );

    orchestrator.stop().await;
    broker.stop().await;
}
