//! Event ids: a redelivered or repeated signal is one workflow, and another signal that reuses
//! an id (another sensor, other content) is dead-lettered with the reason, never dropped unseen.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use prost::Message;
use vigil_bus::{StreamKind, headers};
use vigil_proto::v1;
use vigil_testkit::{EffectReceiver, Sandbox, eventually};

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

/// The first dead letter: its reason and the refused signal, whole.
async fn first_dead_letter(bus: &vigil_bus::Bus) -> (String, v1::ThreatSignal) {
    let dlq = bus.topology().stream_name(StreamKind::DeadLetter);
    let mut stream = bus.jetstream().get_stream(&dlq).await.unwrap();
    let first_sequence = stream.info().await.unwrap().state.first_sequence;
    let dead = stream.get_raw_message(first_sequence).await.unwrap();
    let reason = dead
        .headers
        .get(headers::DLQ_REASON)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    (reason, v1::ThreatSignal::decode(dead.payload).unwrap())
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
    let (reason, refused) = first_dead_letter(bus).await;
    assert!(
        reason.contains("reused-1") && reason.contains("ids-b") && reason.contains("already used"),
        "{reason}"
    );
    assert_eq!(refused.sensor, "ids-b", "the refused signal is kept whole");
    assert_eq!(
        orchestrator.counter("vigil_event_ids_reused"),
        1,
        "counted in /metrics"
    );

    orchestrator.stop().await;
    broker.stop().await;
}

/// Signal "reused-1" from `sensor`: critical, from a known-bad source, so it is remediated.
fn critical(sensor: &str, source_ip: &str) -> v1::ThreatSignal {
    v1::ThreatSignal {
        confidence: 0.95,
        severity: v1::Severity::Critical as i32,
        ..signal(sensor, source_ip, "port_scan")
    }
}

/// Two signals with one id at the same time: the first claims the id before any effect, the
/// other is dead-lettered with the reason and acts on nothing. Without the claim both ran: the
/// second blocked its own source under the reused id, and its commit (an upsert keyed by event
/// id) saved over the first's workflow; with the claim check removed this test finds no dead
/// letter.
#[tokio::test]
async fn an_id_reused_while_its_first_signal_is_in_flight_is_dead_lettered() {
    let firewall = EffectReceiver::remediation_api().await;
    let sandbox = Sandbox::with(&[
        "soar.remediation.executor=\"webhook\"".to_string(),
        format!(
            "soar.remediation.webhook.url=\"{}\"",
            firewall.url("/v1/actions")
        ),
        "soar.assessment.known_bad=[\"203.0.113.0/24\"]".to_string(),
    ])
    .await;
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    broker.ready(PATIENCE).await;
    // Both queued before any orchestrator runs, so they are pulled together.
    let (a, b) = (
        critical("ids-a", "203.0.113.62"),
        critical("ids-b", "203.0.113.63"),
    );
    sandbox.publish_signal("ids", &a).await;
    sandbox.publish_signal("ids", &b).await;
    eventually(PATIENCE, "both signals queued", || async {
        let work = sandbox.stream_messages(StreamKind::Work).await;
        if work == 2 { Ok(()) } else { Err(work) }
    })
    .await;
    let mut orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    orchestrator.ready(PATIENCE).await;

    eventually(PATIENCE, "one workflow and one dead letter", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        let dead = sandbox.stream_messages(StreamKind::DeadLetter).await;
        let work = sandbox.stream_messages(StreamKind::Work).await;
        if done == 1 && dead == 1 && work == 0 {
            Ok(())
        } else {
            Err(format!(
                "{done} workflows, {dead} dead letters, {work} waiting"
            ))
        }
    })
    .await;
    let bus = sandbox.bus();
    let (reason, refused) = first_dead_letter(bus).await;
    assert!(
        reason.contains("reused-1")
            && reason.contains(&refused.sensor)
            && reason.contains("already used"),
        "{reason}"
    );
    let kept = if refused.sensor == a.sensor { b } else { a };

    // Counted where effects land: one block, of the kept signal's source.
    let calls = firewall.calls();
    let targets: Vec<String> = calls
        .iter()
        .map(|c| c.body["target"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        targets,
        std::slice::from_ref(&kept.source_ip),
        "only the signal that kept the id acts"
    );
    // The workflow is the kept signal's, whole: its content digest is in its results.
    let digest = vigil_domain::ThreatSignal::try_from(kept)
        .unwrap()
        .content_digest();
    assert_eq!(
        sandbox
            .count(&format!(
                "SELECT count(*) FROM workflows WHERE results->>'signal_digest' = '{digest}'"
            ))
            .await,
        1,
        "the workflow belongs to the signal that was not refused"
    );
    assert_eq!(orchestrator.counter("vigil_event_ids_reused"), 1);
    orchestrator.stop().await;
    broker.stop().await;
}
