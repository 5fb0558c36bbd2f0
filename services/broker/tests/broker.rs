//! The broker against the real NATS server: validation, dedup, prioritisation, backpressure.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use prost::Message;
use vigil_bus::{Bus, ConsumerKind, PublishOptions, StreamKind, WorkPriority};
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

/// A critical signal of `sensor`, numbered `i`.
fn critical(sensor: &str, i: usize) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id: format!("{sensor}-{i}"),
        threat_type: "port_scan".into(),
        confidence: 0.95,
        severity: v1::Severity::Critical as i32,
        sensor: sensor.into(),
        ..Default::default()
    }
}

/// Fairness between sensors: one sensor's backlog on the ingest stream is bounded
/// (`streams.ingest_max_per_subject`), so a flood on its subject is pushed back to it instead of
/// queueing ahead of every other sensor. Another sensor's signals then wait behind at most that
/// backlog, the work queue and one broker batch, however long the flood; the flooding sensor,
/// waiting out the refusals as a sensor should, still gets every signal through.
#[tokio::test]
async fn a_flood_from_one_sensor_does_not_starve_another() {
    const FLOOD: usize = 1_000;
    const QUIET: usize = 5;
    // The quiet sensor speaks once the flood has sent this many: without the bound they would
    // all be queued ahead of it.
    const QUIET_AFTER: usize = 300;
    const WORK: usize = 20;
    const BACKLOG: usize = 50;
    const BATCH: usize = 8;
    let (sandbox, broker) = start(&[
        &format!("streams.work_max_messages={WORK}"),
        &format!("streams.ingest_max_per_subject={BACKLOG}"),
        &format!("broker.batch_size={BATCH}"),
    ])
    .await;
    let bus = sandbox.bus().clone();

    // Nobody drains the work queue yet: it fills, the broker holds, and the flood's backlog
    // reaches its bound.
    let attempts = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let flooder = {
        let (bus, attempts, refused) = (bus.clone(), attempts.clone(), refused.clone());
        tokio::spawn(async move {
            let subject = bus.topology().ingest_subject("flood").unwrap();
            let publisher = bus.publisher();
            for i in 0..FLOOD {
                let signal = critical("flood", i);
                loop {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    match publisher
                        .publish(&subject, &signal, PublishOptions::new(signal.id.clone()))
                        .await
                    {
                        Ok(_) => break,
                        Err(error) if error.is_stream_full() => {
                            assert!(
                                error.to_string().contains("maximum messages per subject"),
                                "the refusal says why: {error}"
                            );
                            refused.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(error) => panic!("the flood's publish failed: {error}"),
                    }
                }
            }
        })
    };
    eventually(
        Duration::from_secs(60),
        "the flood to have sent its first signals",
        || {
            let sent = attempts.load(Ordering::SeqCst);
            std::future::ready((sent >= QUIET_AFTER).then_some(()).ok_or(sent))
        },
    )
    .await;

    // The quiet sensor is not refused: its subject has room.
    let quiet_subject = bus.topology().ingest_subject("quiet").unwrap();
    for i in 0..QUIET {
        let signal = critical("quiet", i);
        bus.publisher()
            .publish(
                &quiet_subject,
                &signal,
                PublishOptions::new(signal.id.clone()),
            )
            .await
            .expect("another sensor's signal is accepted during the flood");
    }

    // Now the orchestrator's side drains the queue, in order.
    let consumer = bus
        .consumer::<v1::ThreatSignal>(ConsumerKind::Orchestrator(WorkPriority::Critical))
        .await
        .unwrap();
    let mut order = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while order.len() < FLOOD + QUIET && tokio::time::Instant::now() < deadline {
        for d in consumer
            .next_batch(10, Duration::from_millis(300))
            .await
            .unwrap()
        {
            order.push(d.payload().id.clone());
            d.ack().await.unwrap();
        }
    }
    flooder
        .await
        .expect("the flood publishes every signal in the end");

    let last_quiet = order
        .iter()
        .rposition(|id| id.starts_with("quiet-"))
        .expect("the quiet sensor's signals arrive");
    let flood_before = order[..last_quiet]
        .iter()
        .filter(|id| id.starts_with("flood-"))
        .count();
    println!(
        "flood refused {} times; the quiet sensor's last signal came after {flood_before} of the \
         flood's {FLOOD}",
        refused.load(Ordering::SeqCst)
    );
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "the flood was pushed back once its backlog reached {BACKLOG}"
    );
    assert!(
        flood_before <= WORK + BACKLOG + BATCH,
        "the quiet sensor waited behind {flood_before} flood signals; at most the work queue \
         ({WORK}), the flood's backlog ({BACKLOG}) and one broker batch ({BATCH}) may be ahead"
    );
    let mut distinct = order.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        (order.len(), distinct.len()),
        (FLOOD + QUIET, FLOOD + QUIET),
        "every signal of both sensors arrives, once"
    );
    broker.stop().await;
}
