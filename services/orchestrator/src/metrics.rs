use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use vigil_telemetry::Metrics;

/// What the orchestrator counts in `/metrics`.
#[derive(Clone)]
pub struct OrchestratorMetrics {
    pub completed: Counter,
    pub failed: Counter,
    pub replayed: Counter,
    /// Signals dead-lettered because their event id was already used by another signal.
    pub id_reused: Counter,
    pub predictions_skipped: Counter,
    pub alerts_delivered: Counter,
    pub alerts_failed: Counter,
    /// Alerts an interrupted attempt recorded but never sent, sent by a later one.
    pub alerts_resent: Counter,
    pub remediations: Counter,
    /// Remediations an interrupted attempt left pending, executed again with the same key.
    pub remediations_resumed: Counter,
    pub duration_seconds: Histogram,
    pub commit_batch_size: Histogram,
}

impl OrchestratorMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            completed: metrics.register(
                "workflows_completed",
                "Workflows that ended SUCCESS",
                Counter::default(),
            ),
            failed: metrics.register(
                "workflows_failed",
                "Workflows that ended FAILED",
                Counter::default(),
            ),
            replayed: metrics.register(
                "workflows_replayed",
                "Redelivered signals whose workflow was already complete",
                Counter::default(),
            ),
            id_reused: metrics.register(
                "event_ids_reused",
                "Signals dead-lettered because another signal already used their event id",
                Counter::default(),
            ),
            predictions_skipped: metrics.register(
                "predictions_skipped",
                "Predict steps skipped (predictor down, slow or absent)",
                Counter::default(),
            ),
            alerts_delivered: metrics.register(
                "alerts_delivered",
                "Alerts delivered to a channel",
                Counter::default(),
            ),
            alerts_failed: metrics.register(
                "alerts_failed",
                "Alerts that could not be delivered",
                Counter::default(),
            ),
            alerts_resent: metrics.register(
                "alerts_resent",
                "Alerts an interrupted attempt left pending, sent by a later attempt or the sweeper",
                Counter::default(),
            ),
            remediations_resumed: metrics.register(
                "remediations_resumed",
                "Remediations an interrupted attempt left pending, executed again with the same key",
                Counter::default(),
            ),
            remediations: metrics.register(
                "remediations_recorded",
                "Remediation actions recorded",
                Counter::default(),
            ),
            duration_seconds: metrics.register(
                "workflow_duration_seconds",
                "Time from pulling a signal to publishing its workflow's events",
                Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            ),
            commit_batch_size: metrics.register(
                "commit_batch_workflows",
                "Workflows committed per PostgreSQL transaction (group commit)",
                Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            ),
        }
    }
}
