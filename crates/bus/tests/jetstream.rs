//! Integration tests against the real NATS server at `NATS_URL` (default
//! `nats://127.0.0.1:4222`). Every test declares its own topology in a sandbox of its own (a
//! random prefix, deleted with it), so tests run in parallel without colliding.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy};
use futures::StreamExt;
use vigil_bus::headers::{self, header_value};
use vigil_bus::{
    Bus, ConfigOperation, ConsumerKind, ConsumerPolicy, ContentType, Delivery, Error,
    PublishOptions, RetryOutcome, StreamKind, TopologyConfig, TraceParent, TypedConsumer,
    WorkPriority,
};
use vigil_config::NatsSettings;
use vigil_testkit::{Sandbox, stream_messages};

/// A stand-in for the real ThreatSignal until the proto crate exists.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
struct TestSignal {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    kind: String,
    #[prost(double, tag = "3")]
    confidence: f64,
    #[prost(uint32, tag = "4")]
    port: u32,
    #[prost(string, repeated, tag = "5")]
    tags: Vec<String>,
}

fn signal(id: &str) -> TestSignal {
    TestSignal {
        id: id.to_owned(),
        kind: "port_scan".to_owned(),
        confidence: 0.875,
        port: 22,
        tags: vec!["ssh".to_owned(), "external".to_owned()],
    }
}

/// Long enough never to fire on a slow machine, short enough that a broken test ends.
const PATIENCE: Duration = Duration::from_secs(30);

/// One test's sandbox (its own prefix, deleted with it) and a bus with the topology under test.
struct Harness {
    bus: Bus,
    _sandbox: Sandbox,
}

impl Harness {
    async fn start(config: TopologyConfig) -> Result<Self> {
        let sandbox = Sandbox::start().await;
        let bus = sandbox.bus_with(config).await;
        Ok(Self {
            bus,
            _sandbox: sandbox,
        })
    }

    async fn consumer(&self, kind: ConsumerKind) -> Result<TypedConsumer<TestSignal>> {
        Ok(self.bus.consumer::<TestSignal>(kind).await?)
    }

    fn ingest_subject(&self) -> String {
        self.bus
            .topology()
            .ingest_subject("ids")
            .expect("valid ingest kind")
    }

    async fn stream_messages(&self, kind: StreamKind) -> Result<u64> {
        Ok(stream_messages(&self.bus, kind).await)
    }

    /// The last dead letter stored for `from`.
    async fn last_dead_letter(
        &self,
        from: StreamKind,
    ) -> Result<async_nats::jetstream::message::StreamMessage> {
        let topology = self.bus.topology();
        let stream = self
            .bus
            .jetstream()
            .get_stream(topology.stream_name(StreamKind::DeadLetter))
            .await?;
        Ok(stream
            .get_last_raw_message_by_subject(&topology.dlq_subject(from))
            .await?)
    }
}

/// Pulls until `count` deliveries arrived or `PATIENCE` ran out.
async fn receive(
    consumer: &TypedConsumer<TestSignal>,
    count: usize,
) -> Result<Vec<Delivery<TestSignal>>> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            bail!("received {} of {count} messages in {PATIENCE:?}", out.len());
        }
        let batch = consumer
            .next_batch(count - out.len(), left.min(Duration::from_secs(5)))
            .await?;
        out.extend(batch);
    }
    Ok(out)
}

fn header(message: &async_nats::jetstream::message::StreamMessage, name: &str) -> Option<String> {
    header_value(Some(&message.headers), name).map(str::to_owned)
}

#[tokio::test]
async fn declaring_the_topology_twice_changes_nothing() -> Result<()> {
    let h = Harness::start(TopologyConfig::default()).await?;
    let js = h.bus.jetstream();
    let topology = h.bus.topology();

    let mut streams = Vec::new();
    for kind in StreamKind::ALL {
        let info = js
            .get_stream(topology.stream_name(kind))
            .await?
            .get_info()
            .await?;
        streams.push(info);
    }
    let kv_stream = format!("KV_{}", topology.config_bucket_name());
    let kv_before = js.get_stream(&kv_stream).await?.get_info().await?;
    let mut consumers = Vec::new();
    for kind in ConsumerKind::ALL {
        let stream = topology.stream_name(kind.stream());
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream(kind.durable_name(), &stream)
            .await?;
        consumers.push(consumer.info().await?.clone());
    }

    // What the issue asks of the work queue and the consumers.
    let work = &streams[1].config;
    assert_eq!(work.name, topology.stream_name(StreamKind::Work));
    assert_eq!(
        work.subjects,
        vec![format!("{}.vigil.work.>", topology.prefix())]
    );
    assert_eq!(work.retention, RetentionPolicy::WorkQueue);
    assert_eq!(work.discard, DiscardPolicy::New);
    assert_eq!(work.max_messages, 10_000);
    assert_eq!(work.duplicate_window, Duration::from_secs(300));
    assert_eq!(streams[0].config.retention, RetentionPolicy::WorkQueue);
    assert_eq!(streams[2].config.retention, RetentionPolicy::Limits);
    assert_eq!(
        streams[2].config.max_age,
        Duration::from_secs(7 * 24 * 3600)
    );
    let broker = &consumers[0].config;
    assert_eq!(broker.durable_name.as_deref(), Some("broker"));
    assert_eq!(broker.ack_policy, AckPolicy::Explicit);
    assert_eq!(broker.max_deliver, 5);
    assert_eq!(broker.backoff.len(), 4);
    let critical = &consumers[1].config;
    assert_eq!(
        critical.durable_name.as_deref(),
        Some("orchestrator-critical")
    );
    assert_eq!(
        critical.filter_subject,
        format!("{}.vigil.work.critical", topology.prefix())
    );

    // A second declaration, from a fresh connection as a restarted service would do.
    let again = Bus::from_client(
        async_nats::connect(vigil_testkit::nats_url()).await?,
        topology.clone(),
    );
    again.declare().await?;
    h.bus.declare().await?;

    for (kind, before) in StreamKind::ALL.into_iter().zip(&streams) {
        let after = js
            .get_stream(topology.stream_name(kind))
            .await?
            .get_info()
            .await?;
        assert_eq!(after.config, before.config, "{kind} config changed");
        assert_eq!(after.created, before.created, "{kind} was recreated");
        assert_eq!(after.state, before.state, "{kind} state changed");
    }
    let kv_after = js.get_stream(&kv_stream).await?.get_info().await?;
    assert_eq!(kv_after.config, kv_before.config);
    assert_eq!(kv_after.created, kv_before.created);
    for (kind, before) in ConsumerKind::ALL.into_iter().zip(&consumers) {
        let stream = topology.stream_name(kind.stream());
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_consumer_from_stream(kind.durable_name(), &stream)
            .await?;
        let after = consumer.info().await?;
        assert_eq!(after.config, before.config, "{kind:?} config changed");
        assert_eq!(after.created, before.created, "{kind:?} was recreated");
    }
    Ok(())
}

#[tokio::test]
async fn a_repeated_msg_id_is_stored_once() -> Result<()> {
    let h = Harness::start(TopologyConfig::default()).await?;
    let publisher = h.bus.publisher();
    let subject = h.ingest_subject();

    let first = publisher
        .publish(&subject, &signal("a"), PublishOptions::new("fp-1"))
        .await?;
    let second = publisher
        .publish(&subject, &signal("a"), PublishOptions::new("fp-1"))
        .await?;
    let other = publisher
        .publish(&subject, &signal("b"), PublishOptions::new("fp-2"))
        .await?;

    assert!(!first.duplicate);
    assert!(
        second.duplicate,
        "second publish with the same id must be a duplicate"
    );
    assert_eq!(second.sequence, first.sequence);
    assert!(!other.duplicate);
    assert_eq!(
        first.stream,
        h.bus.topology().stream_name(StreamKind::Ingest)
    );
    assert_eq!(h.stream_messages(StreamKind::Ingest).await?, 2);
    Ok(())
}

#[tokio::test]
async fn trace_context_and_msg_id_travel_with_the_message() -> Result<()> {
    let h = Harness::start(TopologyConfig::default()).await?;
    let publisher = h.bus.publisher();
    let subject = h.ingest_subject();
    let given = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?;

    let with_trace = publisher
        .publish(
            &subject,
            &signal("a"),
            PublishOptions::new("id-a").traceparent(given.clone()),
        )
        .await?;
    let without = publisher
        .publish(&subject, &signal("b"), PublishOptions::new("id-b"))
        .await?;
    assert_eq!(with_trace.traceparent, given);
    assert_ne!(without.traceparent.trace_id(), given.trace_id());

    let consumer = h.consumer(ConsumerKind::Broker).await?;
    let got = receive(&consumer, 2).await?;
    assert_eq!(got[0].payload(), &signal("a"));
    assert_eq!(got[0].msg_id(), Some("id-a"));
    assert_eq!(got[0].traceparent(), Some(given));
    assert_eq!(got[0].content_type(), ContentType::Protobuf);
    assert_eq!(got[0].delivery_count(), 1);
    assert_eq!(got[0].subject(), subject);
    assert_eq!(got[1].msg_id(), Some("id-b"));
    assert_eq!(got[1].traceparent(), Some(without.traceparent));
    for delivery in &got {
        delivery.double_ack().await?;
    }
    assert_eq!(h.stream_messages(StreamKind::Ingest).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_nakd_message_comes_back_after_its_delay_not_before() -> Result<()> {
    let h = Harness::start(TopologyConfig::default()).await?;
    let consumer = h.consumer(ConsumerKind::Broker).await?;
    h.bus
        .publisher()
        .publish(
            &h.ingest_subject(),
            &signal("n"),
            PublishOptions::new("nak-1"),
        )
        .await?;

    let first = receive(&consumer, 1).await?.remove(0);
    assert_eq!(first.delivery_count(), 1);
    let delay = Duration::from_secs(3);
    let nakd_at = tokio::time::Instant::now();
    first.nak_with_delay(delay).await?;

    let early = consumer.next_batch(1, delay / 2).await?;
    assert!(
        early.is_empty(),
        "redelivered after {:?}, before the {delay:?} delay",
        nakd_at.elapsed()
    );

    let again = receive(&consumer, 1).await?.remove(0);
    let waited = nakd_at.elapsed();
    assert!(
        waited >= delay,
        "redelivered after {waited:?}, delay was {delay:?}"
    );
    assert_eq!(again.payload(), &signal("n"));
    assert_eq!(again.delivery_count(), 2);
    assert_eq!(again.stream_sequence(), first.stream_sequence());
    again.double_ack().await?;
    Ok(())
}

#[tokio::test]
async fn undecodable_messages_are_dead_lettered_and_consumption_goes_on() -> Result<()> {
    let h = Harness::start(TopologyConfig::default()).await?;
    let js = h.bus.jetstream();
    let subject = h.ingest_subject();
    let garbage = bytes::Bytes::from_static(&[0xff, 0xff, 0xff, 0x01]);
    let trace = TraceParent::generate();

    let mut bad_headers = HeaderMap::new();
    bad_headers.insert("Nats-Msg-Id", "bad-1");
    bad_headers.insert(headers::TRACEPARENT, trace.to_string());
    bad_headers.insert("X-Sensor", "suricata-7");
    js.publish_with_headers(subject.clone(), bad_headers, garbage.clone())
        .await?
        .await?;
    let mut bad_json = HeaderMap::new();
    bad_json.insert(headers::CONTENT_TYPE, "application/json");
    js.publish_with_headers(subject.clone(), bad_json, "{\"id\": ".into())
        .await?
        .await?;
    h.bus
        .publisher()
        .publish(&subject, &signal("good"), PublishOptions::new("good-1"))
        .await?;

    let consumer = h.consumer(ConsumerKind::Broker).await?;
    let got = receive(&consumer, 1).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload(), &signal("good"));
    got[0].double_ack().await?;
    let stats = consumer.stats();
    assert_eq!(stats.undecodable, 2);
    assert_eq!(stats.dead_lettered, 2);
    assert_eq!(stats.delivered, 1);
    assert!(consumer.fetch_available(10).await?.is_empty());

    // Both bad messages are in the DLQ; the last one is the JSON one.
    let topology = h.bus.topology();
    let ingest = topology.stream_name(StreamKind::Ingest);
    assert_eq!(h.stream_messages(StreamKind::DeadLetter).await?, 2);
    let last = h.last_dead_letter(StreamKind::Ingest).await?;
    let reason = header(&last, headers::DLQ_REASON).context("reason header")?;
    assert!(reason.contains("JSON"), "{reason}");
    let dlq = h
        .bus
        .jetstream()
        .get_stream(topology.stream_name(StreamKind::DeadLetter))
        .await?;
    let first = dlq.get_raw_message(1).await?;
    assert_eq!(
        first.subject.as_str(),
        topology.dlq_subject(StreamKind::Ingest)
    );
    assert_eq!(first.payload, garbage);
    let reason = header(&first, headers::DLQ_REASON).context("reason header")?;
    assert!(reason.contains("protobuf"), "{reason}");
    assert_eq!(header(&first, headers::DLQ_STREAM), Some(ingest));
    assert_eq!(header(&first, headers::DLQ_SUBJECT), Some(subject));
    assert_eq!(
        header(&first, headers::DLQ_CONSUMER).as_deref(),
        Some("broker")
    );
    assert_eq!(header(&first, headers::DLQ_SEQUENCE).as_deref(), Some("1"));
    assert_eq!(
        header(&first, headers::DLQ_DELIVERIES).as_deref(),
        Some("1")
    );
    assert_eq!(
        header(&first, headers::DLQ_ORIGINAL_MSG_ID).as_deref(),
        Some("bad-1")
    );
    assert_eq!(
        header(&first, headers::TRACEPARENT),
        Some(trace.to_string())
    );
    assert_eq!(header(&first, "X-Sensor").as_deref(), Some("suricata-7"));

    // Terminated messages leave the work queue.
    assert_eq!(h.stream_messages(StreamKind::Ingest).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_message_that_exhausts_max_deliver_is_dead_lettered() -> Result<()> {
    let config = TopologyConfig {
        broker: ConsumerPolicy {
            ack_wait: Duration::from_secs(30),
            max_deliver: 2,
            backoff: Vec::new(),
            max_ack_pending: 100,
        },
        ..TopologyConfig::default()
    };
    let h = Harness::start(config).await?;
    let consumer = h.consumer(ConsumerKind::Broker).await?;
    assert_eq!(consumer.max_deliver(), 2);
    h.bus
        .publisher()
        .publish(
            &h.ingest_subject(),
            &signal("x"),
            PublishOptions::new("md-1"),
        )
        .await?;

    let retry = Duration::from_millis(200);
    let first = receive(&consumer, 1).await?.remove(0);
    assert!(!first.is_last_attempt());
    let outcome = first
        .retry_or_dead_letter("predictor unavailable", retry)
        .await?;
    assert_eq!(
        outcome,
        RetryOutcome::Retrying {
            attempt: 1,
            delay: retry
        }
    );

    let second = receive(&consumer, 1).await?.remove(0);
    assert_eq!(second.delivery_count(), 2);
    assert!(second.is_last_attempt());
    let outcome = second
        .retry_or_dead_letter("predictor unavailable", retry)
        .await?;
    assert_eq!(outcome, RetryOutcome::DeadLettered);

    let dead = h.last_dead_letter(StreamKind::Ingest).await?;
    assert_eq!(
        header(&dead, headers::DLQ_REASON).as_deref(),
        Some("predictor unavailable")
    );
    assert_eq!(header(&dead, headers::DLQ_DELIVERIES).as_deref(), Some("2"));
    assert_eq!(
        header(&dead, headers::DLQ_ORIGINAL_MSG_ID).as_deref(),
        Some("md-1")
    );
    let copy: TestSignal = prost::Message::decode(dead.payload.clone())?;
    assert_eq!(copy, signal("x"));

    // Nothing comes back once it is dead-lettered.
    assert!(consumer.next_batch(1, retry * 3).await?.is_empty());
    assert_eq!(h.stream_messages(StreamKind::Ingest).await?, 0);
    assert_eq!(consumer.stats().dead_lettered, 1);
    Ok(())
}

#[tokio::test]
async fn a_message_nobody_answers_is_rescued_to_the_dead_letter_stream() -> Result<()> {
    let config = TopologyConfig {
        broker: ConsumerPolicy {
            ack_wait: Duration::from_secs(1),
            max_deliver: 2,
            backoff: Vec::new(),
            max_ack_pending: 100,
        },
        ..TopologyConfig::default()
    };
    let h = Harness::start(config).await?;
    let _rescuer = h.bus.rescue_exhausted(StreamKind::Ingest).await?;
    let consumer = h.consumer(ConsumerKind::Broker).await?;
    h.bus
        .publisher()
        .publish(
            &h.ingest_subject(),
            &signal("crash"),
            PublishOptions::new("crash-1"),
        )
        .await?;

    // A handler that dies on every delivery: it takes the message and never answers.
    let first = receive(&consumer, 1).await?.remove(0);
    drop(first);
    let second = receive(&consumer, 1).await?.remove(0);
    assert!(second.is_last_attempt());
    drop(second);

    // The consumer goes on pulling, as a live service does; after the last ack wait the server
    // gives up on the message (it never comes back) and the rescuer moves it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while h.stream_messages(StreamKind::Ingest).await? > 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the exhausted message was never rescued"
        );
        let again = consumer.next_batch(1, Duration::from_millis(200)).await?;
        ensure!(again.is_empty(), "delivered a third time");
    }
    let dead = h.last_dead_letter(StreamKind::Ingest).await?;
    let reason = header(&dead, headers::DLQ_REASON).unwrap_or_default();
    assert!(reason.contains("without an answer"), "{reason}");
    assert_eq!(header(&dead, headers::DLQ_DELIVERIES).as_deref(), Some("2"));
    assert_eq!(
        header(&dead, headers::DLQ_ORIGINAL_MSG_ID).as_deref(),
        Some("crash-1")
    );
    let copy: TestSignal = prost::Message::decode(dead.payload.clone())?;
    assert_eq!(copy, signal("crash"));
    assert!(
        consumer
            .next_batch(1, Duration::from_millis(300))
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_message_is_dead_lettered_at_once() -> Result<()> {
    let h = Harness::start(TopologyConfig::default()).await?;
    let consumer = h.consumer(ConsumerKind::Broker).await?;
    h.bus
        .publisher()
        .publish(
            &h.ingest_subject(),
            &signal("bad"),
            PublishOptions::new("v-1"),
        )
        .await?;
    let delivery = receive(&consumer, 1).await?.remove(0);
    delivery
        .dead_letter("validation failed: confidence out of range")
        .await?;

    let dead = h.last_dead_letter(StreamKind::Ingest).await?;
    assert_eq!(
        header(&dead, headers::DLQ_REASON).as_deref(),
        Some("validation failed: confidence out of range")
    );
    assert_eq!(header(&dead, headers::DLQ_DELIVERIES).as_deref(), Some("1"));
    assert!(
        consumer
            .next_batch(1, Duration::from_millis(500))
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn json_and_protobuf_twins_decode_to_the_same_value() -> Result<()> {
    let h = Harness::start(TopologyConfig::default()).await?;
    let subject = h.ingest_subject();
    let original = signal("twin");

    h.bus
        .publisher()
        .publish(&subject, &original, PublishOptions::new("twin-pb"))
        .await?;
    // A sensor publishing JSON with plain NATS, no JetStream client.
    let mut json_headers = HeaderMap::new();
    json_headers.insert(headers::CONTENT_TYPE, "application/json");
    json_headers.insert("Nats-Msg-Id", "twin-json");
    let client = h.bus.client();
    client
        .publish_with_headers(
            subject.clone(),
            json_headers,
            serde_json::to_vec(&original)?.into(),
        )
        .await?;
    client.flush().await?;

    let consumer = h.consumer(ConsumerKind::Broker).await?;
    let mut deliveries = Box::pin(consumer.deliveries(10, Duration::from_secs(5)));
    let mut got = Vec::new();
    while got.len() < 2 {
        let next = tokio::time::timeout(PATIENCE, deliveries.next())
            .await
            .context("waiting for the twins")?
            .ok_or_else(|| anyhow!("delivery stream ended"))??;
        got.push(next);
    }
    let protobuf = got
        .iter()
        .find(|d| d.content_type() == ContentType::Protobuf)
        .context("protobuf twin")?;
    let json = got
        .iter()
        .find(|d| d.content_type() == ContentType::Json)
        .context("JSON twin")?;
    assert_eq!(protobuf.payload(), &original);
    assert_eq!(json.payload(), protobuf.payload());
    assert_eq!(json.msg_id(), Some("twin-json"));
    for d in &got {
        d.ack().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_full_work_queue_refuses_publishes_with_a_distinct_error() -> Result<()> {
    let config = TopologyConfig {
        work_max_messages: 3,
        ..TopologyConfig::default()
    };
    let h = Harness::start(config).await?;
    let publisher = h.bus.publisher();
    let subject = h.bus.topology().work_subject("high")?;
    for i in 0..3 {
        publisher
            .publish(
                &subject,
                &signal("w"),
                PublishOptions::new(format!("w-{i}")),
            )
            .await?;
    }
    let err = publisher
        .publish(&subject, &signal("w"), PublishOptions::new("w-3"))
        .await
        .expect_err("the fourth message must be refused");
    assert!(err.is_stream_full(), "expected stream full, got {err:?}");
    assert!(matches!(err, Error::StreamFull { .. }));
    assert_eq!(h.stream_messages(StreamKind::Work).await?, 3);

    // Draining one message makes room again.
    let consumer = h
        .consumer(ConsumerKind::Orchestrator(WorkPriority::High))
        .await?;
    receive(&consumer, 1).await?.remove(0).double_ack().await?;
    publisher
        .publish(&subject, &signal("w"), PublishOptions::new("w-3"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn orchestrator_consumers_each_see_only_their_priority() -> Result<()> {
    let h = Harness::start(TopologyConfig::default()).await?;
    let publisher = h.bus.publisher();
    let topology = h.bus.topology();
    publisher
        .publish(
            &topology.work_subject("low")?,
            &signal("l"),
            PublishOptions::new("l"),
        )
        .await?;
    publisher
        .publish(
            &topology.work_subject("critical")?,
            &signal("c"),
            PublishOptions::new("c"),
        )
        .await?;

    let critical = h
        .consumer(ConsumerKind::Orchestrator(WorkPriority::Critical))
        .await?;
    let low = h
        .consumer(ConsumerKind::Orchestrator(WorkPriority::Low))
        .await?;
    let high = h
        .consumer(ConsumerKind::Orchestrator(WorkPriority::High))
        .await?;
    let got = receive(&critical, 1).await?;
    assert_eq!(got[0].payload().id, "c");
    got[0].ack().await?;
    assert!(critical.fetch_available(10).await?.is_empty());
    assert!(high.fetch_available(10).await?.is_empty());
    let got = receive(&low, 1).await?;
    assert_eq!(got[0].payload().id, "l");
    got[0].ack().await?;
    Ok(())
}

#[tokio::test]
async fn a_config_change_is_seen_by_a_watcher() -> Result<()> {
    let h = Harness::start(TopologyConfig::default()).await?;
    let bucket = h.bus.config_bucket().await?;
    let mut watch = bucket.watch().await?;

    let revision = bucket.put("thresholds.critical", "9.5").await?;
    let seen = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .context("waiting for the change")?
        .ok_or_else(|| anyhow!("watch ended"))??;
    assert_eq!(seen.key, "thresholds.critical");
    assert_eq!(seen.value, "9.5");
    assert_eq!(seen.revision, revision);
    assert_eq!(seen.operation, ConfigOperation::Put);

    let current = bucket
        .get("thresholds.critical")
        .await?
        .context("value is set")?;
    assert_eq!(current.revision, revision);
    assert_eq!(bucket.keys().await?, vec!["thresholds.critical".to_owned()]);

    // A late watcher gets the current value first.
    let mut late = bucket.watch_with_current().await?;
    let first = tokio::time::timeout(PATIENCE, late.next())
        .await
        .context("waiting for the current value")?
        .ok_or_else(|| anyhow!("watch ended"))??;
    assert_eq!(
        (first.key.as_str(), first.revision),
        ("thresholds.critical", revision)
    );

    bucket.delete("thresholds.critical").await?;
    let deleted = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .context("waiting for the delete")?
        .ok_or_else(|| anyhow!("watch ended"))??;
    assert_eq!(deleted.operation, ConfigOperation::Delete);
    ensure!(bucket.get("thresholds.critical").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn an_unreachable_server_is_named_in_the_error() -> Result<()> {
    let settings = NatsSettings {
        url: "nats://127.0.0.1:1".to_owned(),
        connect_timeout_ms: 2_000,
        ..NatsSettings::default()
    };
    let err = Bus::connect(&settings, TopologyConfig::default())
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("nats://127.0.0.1:1"), "{err}");
    Ok(())
}
