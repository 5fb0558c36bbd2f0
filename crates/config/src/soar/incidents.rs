//! `[soar.incidents]`: when events open or join incidents.

use serde::{Deserialize, Serialize};
use vigil_domain::Severity;

use super::{Result, invalid};

/// When events open or join incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentSettings {
    /// An event joins the open incident of its threat key when that incident was updated within
    /// this many seconds; after that the old one is resolved and a new one opened.
    pub window_seconds: u64,
    /// Events below this level do not open an incident (they still join an open one).
    pub min_severity: Severity,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            window_seconds: 3_600,
            min_severity: Severity::Medium,
        }
    }
}

impl IncidentSettings {
    /// A positive window.
    pub fn validate(&self) -> Result<()> {
        if self.window_seconds == 0 {
            return Err(invalid("soar.incidents.window_seconds", "must be positive"));
        }
        Ok(())
    }
}
