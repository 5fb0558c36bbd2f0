use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Duration;
use serde_json::json;
use vigil_domain::{ActionKind, ActionStatus, RemediationAction};

use super::{Executor, PreparedAction, ensure_executor};
use crate::error::Result;

/// Changes nothing: records what it would do (the default executor).
#[derive(Debug, Default)]
pub struct DryRunExecutor {
    records: Mutex<Vec<String>>,
}

impl DryRunExecutor {
    /// An executor with an empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// What it would have done so far, oldest first.
    pub fn records(&self) -> Vec<String> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record(&self, line: String) {
        tracing::info!(what = %line, "dry-run remediation");
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }
}

fn describe(kind: ActionKind, target: &str, duration: Option<Duration>) -> (String, String) {
    let lasting = duration
        .map(|d| format!(" for {}s", d.num_seconds()))
        .unwrap_or_default();
    match kind {
        ActionKind::BlockAddress => (
            format!("block {target}{lasting}"),
            format!("unblock {target}"),
        ),
        ActionKind::RateLimit => (
            format!("rate-limit {target}{lasting}"),
            format!("lift the rate limit on {target}"),
        ),
        ActionKind::IsolateHost => (
            format!("isolate host {target}"),
            format!("reconnect host {target}"),
        ),
        ActionKind::DisableAccount => (
            format!("disable account {target}"),
            format!("re-enable account {target}"),
        ),
    }
}

#[async_trait]
impl Executor for DryRunExecutor {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn prepare(
        &self,
        kind: ActionKind,
        target: &str,
        duration: Option<Duration>,
    ) -> Result<PreparedAction> {
        let (would, undo) = describe(kind, target, duration);
        Ok(PreparedAction {
            details: json!({
                "would": would,
                "duration_seconds": duration.map(|d| d.num_seconds()),
            }),
            undo: json!({ "would": undo }),
        })
    }

    async fn execute(&self, action: &RemediationAction) -> Result<ActionStatus> {
        ensure_executor(action, self.name())?;
        let would = action.details["would"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{} {}", action.kind, action.target));
        self.record(format!("would {would}"));
        Ok(ActionStatus::Simulated)
    }

    async fn undo(&self, action: &RemediationAction) -> Result<()> {
        ensure_executor(action, self.name())?;
        let would = action.undo["would"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("undo {} {}", action.kind, action.target));
        self.record(format!("would {would}"));
        Ok(())
    }
}
