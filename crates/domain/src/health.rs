use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Overall health, as the seed design names it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    #[default]
    Healthy,
    Degraded,
    Critical,
}

impl HealthState {
    /// `healthy`, `degraded` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Critical => "critical",
        }
    }
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A liveness beat from one service instance, with what it did since its previous beat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub service: String,
    pub instance: String,
    pub timestamp: DateTime<Utc>,
    pub version: String,
    pub ready: bool,
    /// Since the instance started.
    pub uptime_ms: u64,
    /// The sender's heartbeat interval.
    pub interval_ms: u64,
    /// Main operations finished since the previous beat.
    pub operations: u64,
    /// How many of those failed.
    pub errors: u64,
    /// Latency of those operations; `None` when there were none.
    pub latency: Option<LatencyPercentiles>,
    /// The sender's own view of its dependencies (`nats`, `postgres`, `model`, ...).
    pub dependencies: BTreeMap<String, DependencyStatus>,
}

/// Latency percentiles of a set of operations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencyPercentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// One dependency as a service sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DependencyStatus {
    pub ok: bool,
    /// What was seen: an error, or e.g. the loaded model's id.
    pub detail: String,
}

/// Latency and error rate of one component over the recent window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentHealth {
    pub component: String,
    pub state: HealthState,
    pub operations: u64,
    pub errors: u64,
    pub avg_latency_ms: f64,
    pub p99_latency_ms: f64,
    pub last_seen: Option<DateTime<Utc>>,
}

impl ComponentHealth {
    /// Errors over operations; 0 when nothing ran.
    pub fn error_rate(&self) -> f64 {
        if self.operations == 0 {
            0.0
        } else {
            self.errors as f64 / self.operations as f64
        }
    }
}

/// The whole system as the health service sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus {
    pub state: HealthState,
    pub components: BTreeMap<String, ComponentHealth>,
    pub events_processed: u64,
    pub feedback_accuracy: Option<f64>,
    pub timestamp: DateTime<Utc>,
}
