use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use vigil_telemetry::Metrics;

/// What the trainer counts in `/metrics`.
#[derive(Clone)]
pub struct TrainerMetrics {
    pub runs_started: Counter,
    pub runs_failed: Counter,
    pub runs_skipped: Counter,
    pub runs_rate_limited: Counter,
    pub run_requests_invalid: Counter,
    pub models_registered: Counter,
    pub promotions: Counter,
    pub promotions_refused: Counter,
    pub examples_imported: Counter,
    pub last_run_examples: Gauge,
    pub run_duration_seconds: Histogram,
}

impl TrainerMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            runs_started: metrics.register(
                "trainer_runs_started",
                "Training runs started (schedule, threshold or request)",
                Counter::default(),
            ),
            runs_failed: metrics.register(
                "trainer_runs_failed",
                "Training runs that ended in an error",
                Counter::default(),
            ),
            runs_skipped: metrics.register(
                "trainer_runs_skipped",
                "Scheduled or threshold runs skipped: another replica was training",
                Counter::default(),
            ),
            runs_rate_limited: metrics.register(
                "trainer_runs_rate_limited",
                "Run requests refused by trainer.max_requested_runs_per_hour (no run started)",
                Counter::default(),
            ),
            run_requests_invalid: metrics.register(
                "trainer_run_requests_invalid",
                "Messages on the run request subject that are not run requests (no run started)",
                Counter::default(),
            ),
            models_registered: metrics.register(
                "trainer_models_registered",
                "Model versions registered (members and ensembles)",
                Counter::default(),
            ),
            promotions: metrics.register(
                "trainer_promotions",
                "Ensembles promoted to production",
                Counter::default(),
            ),
            promotions_refused: metrics.register(
                "trainer_promotions_refused",
                "New ensembles kept out of production (not better by the margin)",
                Counter::default(),
            ),
            examples_imported: metrics.register(
                "trainer_examples_imported",
                "Data set examples recorded by the trainer's start-up import",
                Counter::default(),
            ),
            last_run_examples: metrics.register(
                "trainer_last_run_examples",
                "Labelled examples the last run trained and evaluated on",
                Gauge::default(),
            ),
            run_duration_seconds: metrics.register(
                "trainer_run_duration_seconds",
                "Time from loading the examples to the end of a run",
                Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            ),
        }
    }
}
