use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Overall health, as the seed design names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Healthy,
    Degraded,
    Critical,
}

/// A liveness beat from one service instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub service: String,
    pub instance: String,
    pub timestamp: DateTime<Utc>,
    pub version: String,
    pub ready: bool,
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
