//! The system status the health service serves on `/status` and `vigil.health.status`: the
//! seed design's `get_system_status`, as JSON (shape documented in docs/health.md).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vigil_domain::{DependencyStatus, HealthState, LatencyPercentiles};

/// Everything `vigil status --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The worst state of any component.
    pub state: HealthState,
    /// Why, in one line: the components that are not healthy and their first reason.
    pub reason: String,
    /// When the health service made this report.
    pub timestamp: DateTime<Utc>,
    /// The instance of the health service that answered.
    pub reported_by: String,
    /// One entry per component (service name), judged by the rules of docs/health.md.
    pub components: BTreeMap<String, ComponentReport>,
    /// Threat signals processed: workflows recorded, whatever their outcome.
    pub events_processed: Option<u64>,
    /// Workflows by status (`SUCCESS`, `FAILED`, ...).
    pub workflows: BTreeMap<String, u64>,
    /// Alerts, remediations and workflows within the last `window_secs`.
    pub recent: RecentActivity,
    /// How often vigil's verdict agreed with the analysts' current verdicts.
    pub feedback: FeedbackSummary,
    /// The ensemble versions in staging (active) and in production.
    pub models: ModelSummary,
    /// Each stream's stored messages and the age of its oldest one.
    pub streams: BTreeMap<String, StreamReport>,
    /// Dead letters stored, and those that arrived within the window.
    pub dead_letters: DeadLetterSummary,
    /// The effective configuration of the health service, secrets redacted.
    pub config: serde_json::Value,
    /// Facts that could not be gathered (PostgreSQL down, a stream missing, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
}

/// One component: its state, why, and its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentReport {
    pub state: HealthState,
    /// Every rule that is not satisfied; empty when healthy.
    pub reasons: Vec<String>,
    /// Whether losing every instance of it is critical (`health.required`).
    pub required: bool,
    /// Instances sending heartbeats.
    pub alive: usize,
    /// Instances that stopped sending them and were not replaced or forgotten yet.
    pub missing: usize,
    /// Operations and errors of every instance within `health.window_secs`.
    pub operations: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    /// The worst p50/p95/p99 reported by an alive instance within the window.
    pub latency_ms: Option<LatencyPercentiles>,
    pub instances: Vec<InstanceReport>,
}

/// One instance of a component as its heartbeats describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub instance: String,
    /// `alive` or `missing`.
    pub status: InstanceStatus,
    pub version: String,
    pub ready: bool,
    pub uptime_secs: f64,
    pub last_seen: DateTime<Utc>,
    /// Seconds since its last heartbeat reached the health service.
    pub last_seen_secs_ago: f64,
    pub dependencies: BTreeMap<String, DependencyStatus>,
}

/// Whether an instance still sends heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    Alive,
    Missing,
}

/// Activity within the last window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentActivity {
    pub window_secs: u64,
    pub alerts: Option<u64>,
    pub remediations: Option<u64>,
    pub workflows: Option<u64>,
}

/// Analysts' verdicts against vigil's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedbackSummary {
    /// Current verdicts (not superseded) that carry both labels.
    pub judged: Option<u64>,
    /// Share of those where vigil's label was the analysts'; `None` with none judged.
    pub accuracy: Option<f64>,
}

/// The registry's ensemble versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub active: Option<ModelRef>,
    pub production: Option<ModelRef>,
}

/// One registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub id: String,
    pub model_type: String,
    pub version: i32,
    pub trained_at: DateTime<Utc>,
}

/// One stream's backlog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    pub messages: u64,
    /// Age of the oldest stored message; `None` when the stream is empty.
    pub oldest_age_secs: Option<f64>,
}

/// Dead letters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterSummary {
    /// Stored in the dead-letter stream.
    pub stored: Option<u64>,
    pub window_secs: u64,
    /// Arrived within the window, by the stream they came from (`VIGIL_INGEST`, ...).
    pub recent: BTreeMap<String, u64>,
}
