use prometheus_client::metrics::counter::Counter;
use vigil_telemetry::Metrics;

/// What the feedback service counts in `/metrics`.
#[derive(Clone)]
pub(crate) struct FeedbackMetrics {
    pub stored: Counter,
    pub duplicates: Counter,
    pub superseded: Counter,
    pub refused: Counter,
    pub events_published: Counter,
    pub retrain_requests: Counter,
}

impl FeedbackMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            stored: metrics.register(
                "feedback_verdicts_stored",
                "Verdicts stored (first verdicts and superseding ones)",
                Counter::default(),
            ),
            duplicates: metrics.register(
                "feedback_verdicts_duplicate",
                "Verdicts sent again unchanged; nothing was written",
                Counter::default(),
            ),
            superseded: metrics.register(
                "feedback_verdicts_superseding",
                "Verdicts that replaced the same analyst's earlier one",
                Counter::default(),
            ),
            refused: metrics.register(
                "feedback_submissions_refused",
                "Submissions refused (undecodable, invalid, unknown workflow or action)",
                Counter::default(),
            ),
            events_published: metrics.register(
                "feedback_events_published",
                "FEEDBACK_RECEIVED events stored in the events stream",
                Counter::default(),
            ),
            retrain_requests: metrics.register(
                "feedback_retrain_requests",
                "Training runs asked of the trainer by the retraining trigger",
                Counter::default(),
            ),
        }
    }
}
