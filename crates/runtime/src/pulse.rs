//! Heartbeats: every service registers a [`Beat`] with its context's [`Pulse`] and records each
//! finished unit of work on it; one task per process ([`spawn_heartbeats`]) sends, every
//! `health.heartbeat_interval_ms`, one heartbeat per registered service on
//! `vigil.health.heartbeat.<service>.<instance>` (protobuf `vigil.v1.Heartbeat`, docs/health.md).
//!
//! A service stops beating when its last [`Beat`] handle is dropped (its `run_in` returned, or
//! its task was aborted), so a stopped service goes quiet without deregistering.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prost::Message as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_domain::{DependencyStatus, Heartbeat, LatencyPercentiles};

use crate::ServiceContext;

/// How long one dependency check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A dependency check: `Ok(detail)` when the dependency is usable, `Err(why)` when not.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// The services of one process that send heartbeats; cheap to clone, shared by a context.
#[derive(Clone)]
pub struct Pulse {
    beats: Arc<Mutex<Vec<Weak<Recorder>>>>,
    started: Instant,
}

impl Default for Pulse {
    fn default() -> Self {
        Self {
            beats: Arc::default(),
            started: Instant::now(),
        }
    }
}

impl std::fmt::Debug for Pulse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pulse")
            .field("services", &self.services())
            .finish()
    }
}

impl Pulse {
    /// Registers `service` (a subject token: `broker`, `orchestrator`, ...): heartbeats are sent
    /// for it while the returned handle, or a clone of it, is alive.
    pub fn register(&self, service: &str) -> Beat {
        let recorder = Arc::new(Recorder::new(service));
        let mut beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        beats.retain(|b| b.strong_count() > 0);
        beats.push(Arc::downgrade(&recorder));
        Beat(recorder)
    }

    /// The services registered now.
    pub fn services(&self) -> Vec<String> {
        self.live().iter().map(|r| r.service.clone()).collect()
    }

    /// How long since this pulse (its process, or its context) started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn live(&self) -> Vec<Arc<Recorder>> {
        let mut beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        beats.retain(|b| b.strong_count() > 0);
        beats.iter().filter_map(Weak::upgrade).collect()
    }
}

/// One service's handle for recording its main operations and naming its dependencies.
#[derive(Clone)]
pub struct Beat(Arc<Recorder>);

impl std::fmt::Debug for Beat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Beat").field(&self.0.service).finish()
    }
}

impl Beat {
    /// A handle that belongs to no pulse: it records, and nothing reads it (for code that runs
    /// outside a service, e.g. a benchmark).
    pub fn detached(service: &str) -> Self {
        Self(Arc::new(Recorder::new(service)))
    }

    /// The service this handle records for.
    pub fn service(&self) -> &str {
        &self.0.service
    }

    /// One main operation finished: whether it succeeded and how long it took.
    pub fn record(&self, ok: bool, latency: Duration) {
        self.0.operations.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.0.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.0.latency.record(latency);
    }

    /// Adds a dependency checked before every heartbeat (e.g. `postgres`: a ping). A check
    /// that takes longer than two seconds counts as failed. The check must not hold this
    /// handle (a cycle would keep the service beating after it stopped).
    pub fn check<F, Fut>(&self, dependency: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        let mut checks = self.0.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.insert(dependency.to_owned(), check);
    }

    /// Sets a dependency the service reports itself, as it changes (e.g. the predictor's
    /// `model`), instead of a check run before every heartbeat.
    pub fn set_dependency(&self, dependency: &str, ok: bool, detail: impl Into<String>) {
        let status = DependencyStatus {
            ok,
            detail: detail.into(),
        };
        let mut reported = self.0.reported.lock().unwrap_or_else(|p| p.into_inner());
        reported.insert(dependency.to_owned(), status);
    }

    /// Adds the `postgres` dependency: a round trip on `pool` before every heartbeat.
    pub fn check_postgres(&self, pool: sqlx::PgPool) {
        self.check("postgres", move || {
            let pool = pool.clone();
            async move {
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map(|_| String::new())
                    .map_err(|e| e.to_string())
            }
        });
    }

    /// What was recorded since the previous call, and resets it.
    pub fn take(&self) -> Interval {
        Interval {
            operations: self.0.operations.swap(0, Ordering::Relaxed),
            errors: self.0.errors.swap(0, Ordering::Relaxed),
            latency: self.0.latency.take(),
        }
    }
}

/// What one service did between two heartbeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub operations: u64,
    pub errors: u64,
    /// `None` when no operation finished.
    pub latency: Option<LatencyPercentiles>,
}

struct Recorder {
    service: String,
    operations: AtomicU64,
    errors: AtomicU64,
    latency: LatencyHistogram,
    checks: Mutex<BTreeMap<String, Check>>,
    reported: Mutex<BTreeMap<String, DependencyStatus>>,
}

impl Recorder {
    fn new(service: &str) -> Self {
        Self {
            service: vigil_bus::subject_token(service),
            operations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: LatencyHistogram::default(),
            checks: Mutex::default(),
            reported: Mutex::default(),
        }
    }
}

/// Sub-buckets per power of two: a percentile is off by at most one eighth of its value.
const SUB_BUCKETS: u64 = 8;
/// Covers 0 µs to ~2^40 µs (12 days); longer latencies land in the last bucket.
const BUCKETS: usize = 8 + 37 * 8;

/// A lock-free log-linear histogram of latencies in microseconds: recording is one atomic add,
/// so the hot path of a service pays nothing worth measuring for it.
struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The percentiles of what was recorded since the last call, and resets it.
    fn take(&self) -> Option<LatencyPercentiles> {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        percentiles(&counts)
    }
}

/// The bucket of a latency in microseconds: exact below 8 µs, then eight buckets per power of
/// two.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    let octave = 63 - u64::from(micros.leading_zeros()); // >= 3
    let sub = (micros >> (octave - 3)) & (SUB_BUCKETS - 1);
    let index = SUB_BUCKETS + (octave - 3) * SUB_BUCKETS + sub;
    usize::try_from(index).map_or(BUCKETS - 1, |i| i.min(BUCKETS - 1))
}

/// The middle of a bucket, in microseconds.
fn bucket_value(index: usize) -> f64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index as f64;
    }
    let octave = (index - SUB_BUCKETS) / SUB_BUCKETS + 3;
    let sub = (index - SUB_BUCKETS) % SUB_BUCKETS;
    let width = 1u64 << (octave - 3);
    let low = (SUB_BUCKETS + sub) * width;
    low as f64 + width as f64 / 2.0
}

fn percentiles(counts: &[u64]) -> Option<LatencyPercentiles> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let at = |q: f64| {
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_value(i) / 1_000.0;
            }
        }
        bucket_value(counts.len() - 1) / 1_000.0
    };
    Some(LatencyPercentiles {
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
    })
}

/// Starts the one task of this process that sends the heartbeats of every service registered
/// with `ctx.pulse`, until `token` is cancelled. It keeps its own NATS connection, so its
/// `nats` dependency is the process's own view; while NATS is unreachable it retries on every
/// tick.
pub fn spawn_heartbeats(ctx: &ServiceContext, token: &CancellationToken) -> JoinHandle<()> {
    let ctx = ctx.clone();
    let token = token.clone();
    tokio::spawn(async move {
        let interval = Duration::from_millis(ctx.config.health.heartbeat_interval_ms.max(1));
        let topology = match vigil_bus::Topology::new(
            ctx.config.nats.prefix.clone(),
            crate::topology(&ctx.config),
        ) {
            Ok(topology) => topology,
            Err(error) => {
                tracing::warn!(%error, "no heartbeats: invalid topology");
                return;
            }
        };
        let mut client: Option<vigil_bus::async_nats::Client> = None;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let beats = ctx.pulse.live();
            if beats.is_empty() {
                continue;
            }
            if client.is_none() {
                match vigil_bus::connect(&ctx.config.nats).await {
                    Ok(connected) => client = Some(connected),
                    Err(error) => {
                        tracing::warn!(%error, "cannot send heartbeats: NATS is not reachable");
                        continue;
                    }
                }
            }
            let Some(nats) = client.as_ref() else {
                continue;
            };
            for recorder in beats {
                let beat = Beat(recorder);
                let heartbeat = heartbeat_of(&ctx, &beat, nats, interval).await;
                send(&topology, nats, heartbeat).await;
            }
        }
        if let Some(nats) = client
            && let Err(error) = nats.flush().await
        {
            tracing::debug!(%error, "cannot flush the last heartbeats");
        }
    })
}

async fn heartbeat_of(
    ctx: &ServiceContext,
    beat: &Beat,
    nats: &vigil_bus::async_nats::Client,
    interval: Duration,
) -> Heartbeat {
    let checks: Vec<(String, Check)> = {
        let checks = beat.0.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks
            .iter()
            .map(|(name, check)| (name.clone(), check.clone()))
            .collect()
    };
    let mut dependencies = BTreeMap::new();
    let connected = nats.connection_state() == vigil_bus::async_nats::connection::State::Connected;
    dependencies.insert(
        "nats".to_owned(),
        DependencyStatus {
            ok: connected,
            detail: if connected {
                String::new()
            } else {
                "disconnected".to_owned()
            },
        },
    );
    let results = futures::future::join_all(checks.into_iter().map(|(name, check)| async move {
        let status = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
            Ok(Ok(detail)) => DependencyStatus { ok: true, detail },
            Ok(Err(detail)) => DependencyStatus { ok: false, detail },
            Err(_) => DependencyStatus {
                ok: false,
                detail: format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
            },
        };
        (name, status)
    }))
    .await;
    dependencies.extend(results);
    {
        let reported = beat.0.reported.lock().unwrap_or_else(|p| p.into_inner());
        dependencies.extend(reported.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let taken = beat.take();
    Heartbeat {
        service: beat.service().to_owned(),
        instance: ctx.instance.clone(),
        timestamp: chrono::Utc::now(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: ctx.readiness.is_ready(beat.service()).unwrap_or(false),
        uptime_ms: u64::try_from(ctx.pulse.uptime().as_millis()).unwrap_or(u64::MAX),
        interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        operations: taken.operations,
        errors: taken.errors,
        latency: taken.latency,
        dependencies,
    }
}

async fn send(
    topology: &vigil_bus::Topology,
    nats: &vigil_bus::async_nats::Client,
    heartbeat: Heartbeat,
) {
    let subject = match topology.heartbeat_subject(&heartbeat.service, &heartbeat.instance) {
        Ok(subject) => subject,
        Err(error) => {
            tracing::warn!(%error, "cannot name the heartbeat subject");
            return;
        }
    };
    let body = vigil_proto::v1::Heartbeat::from(heartbeat).encode_to_vec();
    if let Err(error) = nats.publish(subject.clone(), body.into()).await {
        tracing::debug!(%error, %subject, "cannot send a heartbeat");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_their_values_lie_inside_them() {
        let mut last = 0;
        for micros in [0, 1, 7, 8, 9, 15, 16, 100, 1_000, 12_345, 1 << 30, u64::MAX] {
            let bucket = bucket_of(micros);
            assert!(bucket >= last, "{micros} went to bucket {bucket} < {last}");
            last = bucket;
            if micros < 1 << 39 {
                let value = bucket_value(bucket);
                let error = (value - micros as f64).abs() / (micros as f64).max(1.0);
                assert!(error <= 0.125, "{micros} µs reads as {value} µs");
            }
        }
    }

    #[test]
    fn percentiles_follow_the_recorded_latencies() {
        let histogram = LatencyHistogram::default();
        assert_eq!(histogram.take(), None);
        // 98 fast operations (1 ms) and two slow ones (200 ms).
        for _ in 0..98 {
            histogram.record(Duration::from_millis(1));
        }
        histogram.record(Duration::from_millis(200));
        histogram.record(Duration::from_millis(200));
        let p = histogram.take().expect("operations were recorded");
        assert!((p.p50_ms - 1.0).abs() < 0.13, "{p:?}");
        assert!((p.p95_ms - 1.0).abs() < 0.13, "{p:?}");
        assert!((p.p99_ms - 200.0).abs() < 25.0, "{p:?}");
        assert_eq!(histogram.take(), None, "taking resets");
    }

    #[test]
    fn a_beat_counts_operations_and_errors_per_interval() {
        let pulse = Pulse::default();
        let beat = pulse.register("broker");
        beat.record(true, Duration::from_millis(2));
        beat.record(false, Duration::from_millis(3));
        let interval = beat.take();
        assert_eq!((interval.operations, interval.errors), (2, 1));
        assert!(interval.latency.is_some());
        let empty = beat.take();
        assert_eq!(
            (empty.operations, empty.errors, empty.latency),
            (0, 0, None)
        );
    }

    #[test]
    fn a_service_stops_beating_when_its_last_handle_is_dropped() {
        let pulse = Pulse::default();
        let broker = pulse.register("broker");
        let clone = broker.clone();
        let _trainer = pulse.register("trainer");
        assert_eq!(pulse.services(), ["broker", "trainer"]);
        drop(broker);
        assert_eq!(pulse.services(), ["broker", "trainer"], "a clone keeps it");
        drop(clone);
        assert_eq!(pulse.services(), ["trainer"]);
        assert_eq!(
            pulse.register("a.b").service(),
            "a_b",
            "names become subject tokens"
        );
    }
}
