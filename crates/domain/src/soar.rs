//! Results of components 1-4 (assessment, alert routing, remediation, incidents); analyst
//! feedback on them is in [`crate::feedback`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError, require_in_range, require_non_empty};
use crate::severity::Severity;

/// One explainable contribution to a rule-based risk score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskFactor {
    /// `type_weight`, `port_risk`, `sensor_confidence`, `indicator_match`, `volume_anomaly`, ...
    pub name: String,
    /// Points this factor added to the score.
    pub contribution: f64,
    /// Human-readable reason, e.g. "destination port 22 (ssh) is high-risk".
    pub detail: String,
}

/// The verdict on one threat signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub threat_id: String,
    /// Final score 0-10 (rules blended with the ML prediction when there was one).
    pub risk_score: f64,
    pub risk_level: Severity,
    /// 0-1.
    pub confidence: f64,
    /// The rule-based score alone, 0-10.
    pub rule_score: f64,
    /// The ML ensemble's score, 0-10, when a prediction was available.
    pub ml_score: Option<f64>,
    pub factors: Vec<RiskFactor>,
    pub assessed_at: DateTime<Utc>,
}

impl Assessment {
    /// Scores in 0-10, confidence in 0-1, a threat id.
    pub fn validate(&self) -> Result<()> {
        require_non_empty("threat_id", &self.threat_id)?;
        require_in_range("risk_score", self.risk_score, 0.0, 10.0)?;
        require_in_range("rule_score", self.rule_score, 0.0, 10.0)?;
        if let Some(ml) = self.ml_score {
            require_in_range("ml_score", ml, 0.0, 10.0)?;
        }
        require_in_range("confidence", self.confidence, 0.0, 1.0)?;
        Ok(())
    }
}

/// Whether an alert reached its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Pending,
    Delivered,
    /// Folded into an earlier alert for the same threat within the grouping window.
    Grouped,
    /// Held back by the channel's rate limit.
    RateLimited,
    Failed,
}

/// One notification of one threat on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub event_id: String,
    /// Threat type + source: repeats of one threat share it.
    pub threat_key: String,
    /// `slack`, `pagerduty`, `opsgenie`, `teams`, `email`, `webhook`.
    pub channel: String,
    pub severity: Severity,
    pub title: String,
    pub body: String,
    pub status: AlertStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// What a remediation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    BlockAddress,
    IsolateHost,
    DisableAccount,
    RateLimit,
}

impl ActionKind {
    /// The name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::BlockAddress => "block_address",
            ActionKind::IsolateHost => "isolate_host",
            ActionKind::DisableAccount => "disable_account",
            ActionKind::RateLimit => "rate_limit",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionKind {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "block_address" => Ok(ActionKind::BlockAddress),
            "isolate_host" => Ok(ActionKind::IsolateHost),
            "disable_account" => Ok(ActionKind::DisableAccount),
            "rate_limit" => Ok(ActionKind::RateLimit),
            other => Err(ValidationError::Invalid {
                field: "action",
                reason: format!("unknown remediation action {other:?}"),
            }),
        }
    }
}

/// Where a remediation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Recorded before the executor is called, and until its answer is: the effect may or may
    /// not have happened. A later attempt calls the executor again with the same key.
    Pending,
    /// The dry-run executor recorded what it would do.
    Simulated,
    Applied,
    /// Refused by a safety rule (allow-list, rate cap).
    Refused,
    Failed,
    Undone,
    Expired,
}

/// One remediation, with what undoes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationAction {
    pub id: String,
    pub event_id: String,
    pub kind: ActionKind,
    /// Address, host or account acted upon.
    pub target: String,
    /// `dry-run`, `nftables`, `webhook`.
    pub executor: String,
    pub status: ActionStatus,
    /// What was (or would be) applied, e.g. the rendered nftables command.
    pub details: serde_json::Value,
    /// What reverses it.
    pub undo: serde_json::Value,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Lifecycle of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Acknowledged,
    Resolved,
}

impl IncidentStatus {
    /// The name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
        }
    }
}

impl FromStr for IncidentStatus {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "open" => Ok(IncidentStatus::Open),
            "acknowledged" => Ok(IncidentStatus::Acknowledged),
            "resolved" => Ok(IncidentStatus::Resolved),
            other => Err(ValidationError::Invalid {
                field: "status",
                reason: format!("unknown incident status {other:?}"),
            }),
        }
    }
}

/// A tracked case: one per threat key while it is not resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub threat_key: String,
    pub title: String,
    pub severity: Severity,
    pub status: IncidentStatus,
    /// Ids of the events attached to it, oldest first.
    pub event_ids: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
