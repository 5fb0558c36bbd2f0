//! The event path end to end, as a user runs it: `vigil up` (the binary under test, see
//! `harness`) with its predictor serving a production model trained on KDDTrain+, every cap at
//! its default, high and critical alerts delivered to a webhook receiver on loopback. A client
//! publishes threat signals to `vigil.ingest.bench` and times each until its WORKFLOW_COMPLETED
//! event. `make bench-events`; `bench/events/compare.sh BASE` runs it against two commits.
//!
//! Environment: `BENCH_EVENTS` (signals of the throughput run, default 20000), `BENCH_RATE`
//! (the fixed rate of the latency run, default 1000/s), `BENCH_SECONDS` (its length, default
//! 10), `BENCH_VIGIL` (the binary), `BENCH_MODEL` (a model file instead of training one),
//! `BENCH_JSON` (a file to append the results to as one JSON line), `BENCH_ONLY` (a subset of
//! the services, as `vigil up --only` takes it), `BENCH_KEEP_DB` (keep the database to look
//! into: each workflow's steps with their durations).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use harness::{Completions, Deployment, Sensor, env, percentile, signal};

/// Publishes signals `0..n` of `run` as fast as the stream takes them (512 in flight).
async fn flood(sensor: &Sensor, run: &str, n: u64) {
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        if pending.len() >= 512 {
            pending.next().await;
        }
        let s = signal(i, run);
        pending.push(async move { sensor.send(&s).await });
    }
    while pending.next().await.is_some() {}
}

#[tokio::main]
async fn main() {
    let n = env("BENCH_EVENTS", 20_000);
    let rate = env("BENCH_RATE", 1_000);
    let seconds = env("BENCH_SECONDS", 10);
    let dir = tempfile::tempdir().unwrap();
    let model = harness::production_model(dir.path()).await;
    let vigil = harness::vigil();

    let mut deployment = Deployment::new(&model).await;
    // `BENCH_ONLY=broker,orchestrator,...` runs those services only (`vigil up --only`), to
    // find what costs what; by default every service runs, as `vigil up` gives a user.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let only: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    deployment.start("vigil up", &only, &[]).await;
    let done = Completions::watch(&deployment).await;
    // THREAT_DETECTED: the broker has queued the signal; splits the latency in two.
    let queued = Completions::watch_event(&deployment, "threat_detected").await;
    let sensor = Sensor::new(&deployment);

    // Warm-up: connections, prepared statements, consumer state, the model's first calls.
    flood(&sensor, "warm", 300).await;
    assert!(
        done.wait(300, Duration::from_secs(120)).await,
        "warm-up did not complete ({} of 300):\n{}",
        done.len(),
        deployment.processes[0].output()
    );
    done.clear();
    let cpu_before = deployment.processes[0].cpu_seconds();

    // Sustained throughput: publish n as fast as possible, time until all n completed.
    let started = Instant::now();
    flood(&sensor, "tput", n).await;
    let completed = done.wait(n as usize, Duration::from_secs(900)).await;
    let tput_elapsed = started.elapsed().as_secs_f64();
    let finished = done.len();
    let throughput = finished as f64 / tput_elapsed;
    let cpu_per_event_ms =
        (deployment.processes[0].cpu_seconds() - cpu_before) * 1000.0 / finished.max(1) as f64;
    done.clear();

    // Latency at a fixed rate: open loop, each signal due at i / rate.
    let total = rate * seconds;
    let mut sent: HashMap<String, Instant> = HashMap::with_capacity(total as usize);
    sensor
        .paced(
            "lat",
            total,
            rate,
            |s| {
                sent.insert(s.id.clone(), Instant::now());
            },
            || {},
        )
        .await;
    done.wait(total as usize, Duration::from_secs(300)).await;
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| {
            done.at(id)
                .map(|end| end.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let mut to_queue: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| {
            queued
                .at(id)
                .map(|q| q.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    to_queue.sort_by(f64::total_cmp);

    // Alerts counted where they land: one per high or critical signal, none twice.
    let alerts = deployment.alerts.applied_keys().len();
    let alert_repeats = deployment.alerts.repeats();
    deployment.stop().await;

    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    println!("binary: {}", vigil.display());
    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| end-to-end sustained ({finished}/{n} workflows{}) | {throughput:.0} events/s |",
        if completed { "" } else { ", TIMED OUT" }
    );
    println!("| CPU of vigil up per event (throughput run) | {cpu_per_event_ms:.3} ms |");
    println!(
        "| end-to-end latency at {rate}/s for {seconds} s ({} of {total} completed) | p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms |",
        latencies.len(),
    );
    println!(
        "| of which publish to queued by the broker (THREAT_DETECTED) | p50 {:.1} ms, p99 {:.1} ms |",
        percentile(&to_queue, 50.0),
        percentile(&to_queue, 99.0)
    );
    println!(
        "| alerts delivered to the webhook (distinct ids; repeats) | {alerts}; {alert_repeats} |"
    );

    if let Ok(path) = std::env::var("BENCH_JSON") {
        let line = serde_json::json!({
            "vigil": vigil.display().to_string(),
            "events": n,
            "completed": finished,
            "throughput": throughput,
            "cpu_ms_per_event": cpu_per_event_ms,
            "rate": rate,
            "latency_completed": latencies.len(),
            "latency_sent": total,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": max,
            "queued_p50_ms": percentile(&to_queue, 50.0),
            "queued_p99_ms": percentile(&to_queue, 99.0),
            "alerts": alerts,
            "alert_repeats": alert_repeats,
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    }
}
