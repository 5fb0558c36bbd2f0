use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError, require_non_empty};
use crate::severity::Severity;

/// The kinds of domain event vigil publishes on `vigil.events.<type>`: the seed design's nine,
/// and HEALTH_CHANGED from the health service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    ThreatDetected,
    AssessmentComplete,
    PredictionComplete,
    AlertRouted,
    RemediationExecuted,
    IncidentCreated,
    WorkflowCompleted,
    FeedbackReceived,
    ModelPromoted,
    /// A component's health changed (healthy / degraded / critical), from the health service.
    HealthChanged,
}

impl EventType {
    /// Every event type, in flow order.
    pub const ALL: [EventType; 10] = [
        EventType::ThreatDetected,
        EventType::AssessmentComplete,
        EventType::PredictionComplete,
        EventType::AlertRouted,
        EventType::RemediationExecuted,
        EventType::IncidentCreated,
        EventType::WorkflowCompleted,
        EventType::FeedbackReceived,
        EventType::ModelPromoted,
        EventType::HealthChanged,
    ];

    /// The subject token: `vigil.events.<token>`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ThreatDetected => "threat_detected",
            EventType::AssessmentComplete => "assessment_complete",
            EventType::PredictionComplete => "prediction_complete",
            EventType::AlertRouted => "alert_routed",
            EventType::RemediationExecuted => "remediation_executed",
            EventType::IncidentCreated => "incident_created",
            EventType::WorkflowCompleted => "workflow_completed",
            EventType::FeedbackReceived => "feedback_received",
            EventType::ModelPromoted => "model_promoted",
            EventType::HealthChanged => "health_changed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ValidationError::Invalid {
                field: "event_type",
                reason: format!("unknown event type {s:?}"),
            })
    }
}

/// A domain event: something that happened in vigil, for any subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityEvent {
    pub id: String,
    pub event_type: EventType,
    pub timestamp: DateTime<Utc>,
    /// The component that produced it (`broker`, `orchestrator`, `trainer`).
    pub source: String,
    /// The event this one is about (the threat signal's id), when there is one.
    pub correlation_id: String,
    pub severity: Option<Severity>,
    /// Event-specific payload, as JSON.
    pub data: serde_json::Value,
}

impl SecurityEvent {
    /// Checks the id, source and that `data` is a JSON object (or null).
    pub fn validate(&self) -> Result<()> {
        require_non_empty("id", &self.id)?;
        require_non_empty("source", &self.source)?;
        if !(self.data.is_object() || self.data.is_null()) {
            return Err(ValidationError::Invalid {
                field: "data",
                reason: "must be a JSON object".into(),
            });
        }
        Ok(())
    }
}

/// One change of a live config key, as audited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub key: String,
    pub old_value: Option<serde_json::Value>,
    pub new_value: Option<serde_json::Value>,
    pub actor: String,
    pub timestamp: DateTime<Utc>,
}
