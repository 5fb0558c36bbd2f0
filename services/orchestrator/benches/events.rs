//! End-to-end event path benchmark: publish -> broker -> orchestrator -> WORKFLOW_COMPLETED, with
//! NATS and PostgreSQL on this machine, next to raw JetStream publish/consume measured in the
//! same run. `cargo bench -p vigil-orchestrator --bench events` (or `make bench-events`).
//!
//! Environment: `BENCH_EVENTS` (signals for the throughput run, default 30000), `BENCH_RATE`
//! (fixed rate of the latency run, default 1000/s), `BENCH_SECONDS` (its length, default 10).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message;
use vigil_bus::{Bus, ConsumerKind, PublishOptions, StreamKind, WorkPriority};
use vigil_config::{Config, Sources};
use vigil_proto::v1;
use vigil_testkit::TestDatabase;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(db: &TestDatabase) -> Config {
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut overrides = vec![
        format!("nats.prefix=\"{prefix}\""),
        "telemetry.http_addr=\"127.0.0.1:0\"".to_string(),
        "telemetry.log_filter=\"warn\"".to_string(),
        "orchestrator.max_workflows=256".to_string(),
        "streams.work_max_messages=10000".to_string(),
        "soar.remediation.max_actions_per_minute=1000000".to_string(),
    ];
    if let Ok(url) = std::env::var("NATS_URL") {
        overrides.push(format!("nats.url=\"{url}\""));
    }
    let mut config = Config::load(&Sources {
        overrides,
        ..Default::default()
    })
    .unwrap();
    config.database = db.settings();
    config.database.max_connections = 32;
    config
}

fn signal(i: u64, run: &str) -> v1::ThreatSignal {
    let severities = [
        v1::Severity::Low,
        v1::Severity::Medium,
        v1::Severity::High,
        v1::Severity::Critical,
    ];
    v1::ThreatSignal {
        id: format!("{run}-{i}"),
        threat_type: ["port_scan", "brute_force", "suspicious_traffic"][(i % 3) as usize].into(),
        source_ip: format!("198.51.{}.{}", (i / 250) % 250, i % 250 + 1),
        destination_ip: "192.0.2.10".into(),
        destination_port: [22, 443, 3389, 8080][(i % 4) as usize],
        protocol: "tcp".into(),
        confidence: 0.3 + (i % 7) as f64 / 10.0,
        severity: severities[(i % 4) as usize] as i32,
        sensor: "bench".into(),
        timestamp: Some(chrono::Utc::now().into()),
        bytes: 1000 + i % 5000,
        packets: 10 + i % 50,
        ..Default::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Raw JetStream on the same server: pipelined publish, then pull-consume with acks.
async fn raw_jetstream(config: &Config, n: u64) -> (f64, f64) {
    let bus = Bus::connect(&config.nats, vigil_runtime::topology(config))
        .await
        .unwrap();
    bus.declare().await.unwrap();
    let subject = bus.topology().work_subject_for(WorkPriority::Low);
    let payload = signal(0, "raw").encode_to_vec();
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        if pending.len() >= 512 {
            let acked: Result<_, async_nats::jetstream::context::PublishError> =
                pending.next().await.unwrap();
            acked.unwrap();
        }
        let js = bus.jetstream().clone();
        let subject = subject.clone();
        let payload = payload.clone();
        pending.push(async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("raw-{i}").as_str());
            js.publish_with_headers(subject, headers, payload.into())
                .await?
                .await
        });
    }
    while let Some(r) = pending.next().await {
        r.unwrap();
    }
    let publish_rate = n as f64 / started.elapsed().as_secs_f64();

    let consumer = bus
        .consumer::<v1::ThreatSignal>(ConsumerKind::Orchestrator(WorkPriority::Low))
        .await
        .unwrap();
    let started = Instant::now();
    let mut got = 0;
    while got < n {
        let batch = consumer
            .next_batch(512, Duration::from_secs(2))
            .await
            .unwrap();
        got += batch.len() as u64;
        futures::future::join_all(batch.iter().map(|d| d.ack())).await;
    }
    let consume_rate = n as f64 / started.elapsed().as_secs_f64();
    bus.topology().delete(bus.jetstream()).await.ok();
    (publish_rate, consume_rate)
}

type Completions = Arc<Mutex<HashMap<String, Instant>>>;

async fn watch_completions(bus: &Bus) -> Completions {
    let done: Completions = Arc::default();
    let subject = bus.topology().event_subject("workflow_completed").unwrap();
    let mut sub = bus.client().subscribe(subject).await.unwrap();
    let sink = done.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Ok(event) = v1::SecurityEvent::decode(msg.payload) {
                sink.lock()
                    .unwrap()
                    .entry(event.correlation_id)
                    .or_insert_with(Instant::now);
            }
        }
    });
    bus.client().flush().await.unwrap();
    done
}

async fn wait_done(done: &Completions, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done.lock().unwrap().len() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::main]
async fn main() {
    let n = env("BENCH_EVENTS", 30_000);
    let rate = env("BENCH_RATE", 1_000);
    let seconds = env("BENCH_SECONDS", 10);
    let db = TestDatabase::new().await.expect("a benchmark database");
    let config = config(&db);
    let _ = vigil_telemetry::init(&config.telemetry, "bench");

    // The raw run fills one work lane, which holds at most `streams.work_max_messages`.
    let raw_n = n.min(u64::try_from(config.streams.work_max_messages).unwrap_or(u64::MAX));
    let (raw_pub, raw_con) = raw_jetstream(&config, raw_n).await;

    let bus = Bus::connect(&config.nats, vigil_runtime::topology(&config))
        .await
        .unwrap();
    bus.declare().await.unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let ctx = vigil_runtime::ServiceContext::new(config.clone());
    let broker = tokio::spawn(vigil_broker::run_in(ctx.clone(), token.clone()));
    let orchestrator = tokio::spawn(vigil_orchestrator::run_in(ctx.clone(), token.clone()));
    let done = watch_completions(&bus).await;
    let subject = bus.topology().ingest_subject("bench").unwrap();
    let publisher = bus.publisher();

    // Warm-up: connections, prepared statements, consumer state.
    for i in 0..200 {
        publisher
            .publish(
                &subject,
                &signal(i, "warm"),
                PublishOptions::new(format!("warm-{i}")),
            )
            .await
            .unwrap();
    }
    assert!(
        wait_done(&done, 200, Duration::from_secs(60)).await,
        "warm-up did not complete"
    );
    done.lock().unwrap().clear();

    // Sustained throughput: publish n as fast as possible, time until all n completed.
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        if pending.len() >= 512 {
            pending.next().await.unwrap();
        }
        let publisher = publisher.clone();
        let subject = subject.clone();
        pending.push(async move {
            publisher
                .publish(
                    &subject,
                    &signal(i, "tput"),
                    PublishOptions::new(format!("tput-{i}")),
                )
                .await
                .unwrap()
        });
    }
    while pending.next().await.is_some() {}
    let completed = wait_done(&done, n as usize, Duration::from_secs(600)).await;
    let tput_elapsed = started.elapsed().as_secs_f64();
    let finished = done.lock().unwrap().len();
    let throughput = finished as f64 / tput_elapsed;
    done.lock().unwrap().clear();

    // Latency at a fixed rate: open loop, each signal due at i / rate.
    let total = rate * seconds;
    let mut sent: HashMap<String, Instant> = HashMap::with_capacity(total as usize);
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        while let Some(Some(())) = futures::FutureExt::now_or_never(pending.next()) {}
        let s = signal(i, "lat");
        sent.insert(s.id.clone(), Instant::now());
        let publisher = publisher.clone();
        let subject = subject.clone();
        pending.push(async move {
            publisher
                .publish(&subject, &s, PublishOptions::new(s.id.clone()))
                .await
                .unwrap();
        });
    }
    while pending.next().await.is_some() {}
    wait_done(&done, total as usize, Duration::from_secs(120)).await;
    let mut latencies: Vec<f64> = {
        let done = done.lock().unwrap();
        sent.iter()
            .filter_map(|(id, at)| {
                done.get(id)
                    .map(|end| end.duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    latencies.sort_by(f64::total_cmp);

    token.cancel();
    let _ = broker.await;
    let _ = orchestrator.await;
    bus.topology().delete(bus.jetstream()).await.ok();
    let _ = StreamKind::Events;

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| raw JetStream publish (pipelined, 512 in flight, {raw_n} msgs) | {raw_pub:.0} msgs/s |"
    );
    println!("| raw JetStream pull consume + ack ({raw_n} msgs) | {raw_con:.0} msgs/s |");
    println!(
        "| end-to-end sustained ({finished}/{n} workflows{}) | {throughput:.0} events/s |",
        if completed { "" } else { ", TIMED OUT" }
    );
    println!(
        "| end-to-end latency at {rate}/s for {seconds} s ({} of {total} completed) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
}
