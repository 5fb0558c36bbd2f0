//! The broker against the real NATS server: validation, dedup, prioritisation, backpressure.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_nats::HeaderMap;
use prost::Message;
use vigil_bus::{Bus, ConsumerKind, StreamKind, WorkPriority};
use vigil_proto::v1;
use vigil_testkit::{Sandbox, Service, eventually};

/// A sandbox whose broker holds a signal 200 ms when the work queue is full, and the broker.
async fn start(overrides: &[&str]) -> (Sandbox, Service) {
    let mut all = vec!["broker.backpressure_delay_ms=200"];
    all.extend_from_slice(overrides);
    let sandbox = Sandbox::with(&all).await;
    let broker = sandbox.spawn("broker", vigil_broker::run_in);
    (sandbox, broker)
}

fn json_signal(id: &str, confidence: f64, severity: &str) -> String {
    format!(
        r#"{{"id":"{id}","threatType":"port_scan","sourceIp":"203.0.113.7","destinationPort":22,
            "protocol":"tcp","confidence":{confidence},"severity":"{severity}","sensor":"test"}}"#
    )
}

async fn publish_json(bus: &Bus, body: String) {
    let subject = bus.topology().ingest_subject("ids").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    bus.jetstream()
        .publish_with_headers(subject, headers, body.into())
        .await
        .expect("publishes")
        .await
        .expect("stored");
}

async fn drain(bus: &Bus, priority: WorkPriority, want: usize) -> Vec<v1::ThreatSignal> {
    let consumer = bus
        .consumer::<v1::ThreatSignal>(ConsumerKind::Orchestrator(priority))
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while got.len() < want && tokio::time::Instant::now() < deadline {
        for d in consumer
            .next_batch(100, Duration::from_millis(300))
            .await
            .unwrap()
        {
            got.push(d.payload().clone());
            d.ack().await.unwrap();
        }
    }
    // Anything more that arrives shortly after is a bug (e.g. a duplicate).
    for d in consumer
        .next_batch(100, Duration::from_millis(500))
        .await
        .unwrap()
    {
        got.push(d.payload().clone());
        d.ack().await.unwrap();
    }
    got
}

#[tokio::test]
async fn signals_are_validated_deduplicated_and_prioritised() {
    let (sandbox, broker) = start(&[]).await;
    let bus = sandbox.bus();

    publish_json(bus, json_signal("s-critical", 0.5, "SEVERITY_CRITICAL")).await;
    publish_json(bus, json_signal("s-high", 0.75, "SEVERITY_UNSPECIFIED")).await;
    publish_json(bus, json_signal("s-high", 0.75, "SEVERITY_UNSPECIFIED")).await; // duplicate
    publish_json(bus, json_signal("s-bad", 3.0, "SEVERITY_LOW")).await; // confidence > 1
    publish_json(bus, "{not json".into()).await; // undecodable

    let critical = drain(bus, WorkPriority::Critical, 1).await;
    assert_eq!(
        critical.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["s-critical"]
    );
    let high = drain(bus, WorkPriority::High, 1).await;
    assert_eq!(
        high.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["s-high"],
        "duplicate queued once"
    );
    assert!(high[0].timestamp.is_some(), "receive time filled in");

    // The invalid and the undecodable signals are dead letters with a reason.
    let dlq = bus
        .jetstream()
        .get_stream(bus.topology().stream_name(StreamKind::DeadLetter))
        .await
        .unwrap();
    let mut reasons = Vec::new();
    for seq in 1..=2 {
        let msg = eventually(
            Duration::from_secs(30),
            &format!("dead letter {seq}"),
            || async { dlq.get_raw_message(seq).await.map_err(|e| e.to_string()) },
        )
        .await;
        let reason = msg
            .headers
            .get("Vigil-Dlq-Reason")
            .map(|v| v.to_string())
            .unwrap_or_default();
        reasons.push(reason);
    }
    assert!(
        reasons.iter().any(|r| r.contains("confidence")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| !r.contains("confidence") && !r.is_empty()),
        "{reasons:?}"
    );

    // THREAT_DETECTED went out once per queued signal.
    assert_eq!(sandbox.stream_messages(StreamKind::Events).await, 2);
    broker.stop().await;
}

#[tokio::test]
async fn a_full_work_queue_delays_input_and_loses_nothing() {
    let (sandbox, broker) = start(&["streams.work_max_messages=5"]).await;
    let bus = sandbox.bus();

    for i in 0..12 {
        let signal = v1::ThreatSignal {
            id: format!("burst-{i}"),
            threat_type: "dos".into(),
            confidence: 0.5,
            ..Default::default()
        };
        let subject = bus.topology().ingest_subject("ids").unwrap();
        bus.jetstream()
            .publish(subject, signal.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Only 5 fit; the broker holds the next one and the rest wait on the ingest stream until
    // the queue drains.
    eventually(
        Duration::from_secs(30),
        "a full work queue (5) holding back the other 7 signals",
        || async {
            let held = broker.counter("vigil_broker_backpressure");
            let work = sandbox.stream_messages(StreamKind::Work).await;
            let ingest = sandbox.stream_messages(StreamKind::Ingest).await;
            if held >= 1 && work == 5 && ingest == 7 {
                Ok(())
            } else {
                Err(format!("held {held} times, work {work}, ingest {ingest}"))
            }
        },
    )
    .await;
    assert_eq!(sandbox.stream_messages(StreamKind::Work).await, 5);
    let got = drain(bus, WorkPriority::Medium, 12).await;
    let mut ids: Vec<String> = got.into_iter().map(|s| s.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "every signal of the burst arrives: {ids:?}");
    broker.stop().await;
}
