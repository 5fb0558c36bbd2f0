//! Soak: a million signals at a steady rate through every service, each its own process
//! (`vigil up --only <service>`, as a deployment with one container per service runs them), with
//! the resident memory of each sampled as it goes. Memory that keeps growing after the warm-up
//! is a leak; flat memory is the pass. `make bench-soak`; results in docs/benchmarks.md.
//!
//! Environment: `SOAK_SIGNALS` (default 1000000), `SOAK_RATE` (signals per second, default
//! 1000), `SOAK_SAMPLE_SECS` (default 10), `BENCH_VIGIL` and `BENCH_MODEL` as in `events`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use harness::{Deployment, Sensor, env};

/// Every service, in start order.
const SERVICES: [&str; 6] = [
    "predictor",
    "broker",
    "orchestrator",
    "trainer",
    "feedback",
    "health",
];

/// One sample: when, how far the run was, and each service's resident memory (MiB).
struct Sample {
    at: Duration,
    published: u64,
    completed: u64,
    rss: Vec<f64>,
}

#[tokio::main]
async fn main() {
    let total = env("SOAK_SIGNALS", 1_000_000);
    let rate = env("SOAK_RATE", 1_000);
    let every = Duration::from_secs(env("SOAK_SAMPLE_SECS", 10));
    let dir = tempfile::tempdir().unwrap();
    let model = harness::production_model(dir.path()).await;

    let mut deployment = Deployment::new(&model).await;
    let grpc = vigil_testkit::free_port();
    let sets = vec![
        format!("predictor.grpc_addr=\"127.0.0.1:{grpc}\""),
        format!("orchestrator.predictor_url=\"http://127.0.0.1:{grpc}\""),
    ];
    for service in SERVICES {
        deployment.start(service, &[service], &sets).await;
    }

    let completed = Arc::new(AtomicU64::new(0));
    {
        let mut sub = deployment
            .nats
            .subscribe(deployment.subject("vigil.events.workflow_completed"))
            .await
            .unwrap();
        let completed = completed.clone();
        tokio::spawn(async move {
            while sub.next().await.is_some() {
                completed.fetch_add(1, Ordering::Relaxed);
            }
        });
        deployment.nats.flush().await.unwrap();
    }

    // The sensor: signal i is due at i / rate, open loop.
    let published = Arc::new(AtomicU64::new(0));
    let sensor = Arc::new(Sensor::new(&deployment));
    let publishing = {
        let published = published.clone();
        tokio::spawn(async move {
            sensor
                .paced(
                    "soak",
                    total,
                    rate,
                    |_| {},
                    move || {
                        published.fetch_add(1, Ordering::Relaxed);
                    },
                )
                .await;
        })
    };

    let started = Instant::now();
    let mut samples = Vec::new();
    let columns: Vec<String> = SERVICES.iter().map(|s| format!("{s} MiB")).collect();
    println!(
        "| elapsed | published | completed | {} |",
        columns.join(" | ")
    );
    loop {
        tokio::time::sleep(every).await;
        let sample = Sample {
            at: started.elapsed(),
            published: published.load(Ordering::Relaxed),
            completed: completed.load(Ordering::Relaxed),
            rss: deployment.processes.iter().map(|p| p.rss_mib()).collect(),
        };
        println!(
            "| {:.0} s | {} | {} | {} |",
            sample.at.as_secs_f64(),
            sample.published,
            sample.completed,
            sample
                .rss
                .iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let finished = sample.completed >= total;
        samples.push(sample);
        if finished {
            break;
        }
        // Behind by more than five minutes of signals once publishing is over: stuck.
        if publishing.is_finished()
            && samples.len() > 2
            && samples[samples.len() - 1].completed == samples[samples.len() - 3].completed
        {
            println!("no progress for two samples; stopping");
            break;
        }
    }
    publishing.await.unwrap();
    let elapsed = started.elapsed();

    // Memory after the warm-up (the first tenth of the signals) against the rest of the run.
    let warm = samples
        .iter()
        .position(|s| s.completed >= total / 10)
        .unwrap_or(0);
    println!();
    println!(
        "{} of {total} signals completed in {:.0} s at {rate}/s asked ({:.0}/s over the run)",
        samples.last().map_or(0, |s| s.completed),
        elapsed.as_secs_f64(),
        samples.last().map_or(0, |s| s.completed) as f64 / elapsed.as_secs_f64()
    );
    println!("| service | RSS after warm-up | max after | at the end | end vs warm-up |");
    println!("|---|---|---|---|---|");
    for (i, service) in SERVICES.iter().enumerate() {
        let after: Vec<f64> = samples[warm..].iter().map(|s| s.rss[i]).collect();
        let first = after.first().copied().unwrap_or(f64::NAN);
        let last = after.last().copied().unwrap_or(f64::NAN);
        let max = after.iter().copied().fold(f64::NAN, f64::max);
        println!(
            "| {service} | {first:.1} MiB | {max:.1} MiB | {last:.1} MiB | {:+.1} % |",
            (last - first) / first * 100.0
        );
    }
    let alerts = deployment.alerts.applied_keys().len();
    println!(
        "alerts delivered: {alerts} (repeats {})",
        deployment.alerts.repeats()
    );
    deployment.stop().await;
}
