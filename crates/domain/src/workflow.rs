use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError, require_non_empty};

/// Where a workflow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowStatus {
    Pending,
    Running,
    Success,
    Failed,
}

impl WorkflowStatus {
    /// The name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Pending => "PENDING",
            WorkflowStatus::Running => "RUNNING",
            WorkflowStatus::Success => "SUCCESS",
            WorkflowStatus::Failed => "FAILED",
        }
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkflowStatus {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PENDING" => Ok(WorkflowStatus::Pending),
            "RUNNING" => Ok(WorkflowStatus::Running),
            "SUCCESS" => Ok(WorkflowStatus::Success),
            "FAILED" => Ok(WorkflowStatus::Failed),
            other => Err(ValidationError::Invalid {
                field: "status",
                reason: format!("unknown workflow status {other:?}"),
            }),
        }
    }
}

/// How one workflow step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Succeeded,
    /// Not run on purpose (predictor down or slow, remediation below threshold or disabled).
    Skipped,
    Failed,
}

/// One step of a workflow, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowStep {
    /// `assess`, `predict`, `route_alerts`, `remediate`, `incident`.
    pub name: String,
    pub outcome: StepOutcome,
    /// Why it was skipped or failed.
    pub detail: Option<String>,
    pub duration_ms: f64,
}

/// The record of processing one threat signal end to end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowExecution {
    pub id: String,
    /// The triggering event (threat signal) id; one workflow per event id.
    pub event_id: String,
    pub workflow_type: String,
    pub status: WorkflowStatus,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub steps: Vec<WorkflowStep>,
    pub results: serde_json::Value,
    pub error_message: Option<String>,
    pub duration_seconds: f64,
}

impl WorkflowExecution {
    /// Ids present; a failed workflow says why; duration is finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        require_non_empty("id", &self.id)?;
        require_non_empty("event_id", &self.event_id)?;
        if self.status == WorkflowStatus::Failed && self.error_message.is_none() {
            return Err(ValidationError::Invalid {
                field: "error_message",
                reason: "a FAILED workflow must say why".into(),
            });
        }
        if !self.duration_seconds.is_finite() || self.duration_seconds < 0.0 {
            return Err(ValidationError::Invalid {
                field: "duration_seconds",
                reason: format!(
                    "must be finite and non-negative, got {}",
                    self.duration_seconds
                ),
            });
        }
        Ok(())
    }
}
