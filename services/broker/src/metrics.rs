use prometheus_client::metrics::counter::Counter;
use vigil_telemetry::Metrics;

/// What the broker counts in `/metrics`.
#[derive(Clone)]
pub struct BrokerMetrics {
    pub received: Counter,
    pub duplicate: Counter,
    pub invalid: Counter,
    pub queued: Counter,
    pub backpressure: Counter,
}

impl BrokerMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            received: metrics.register(
                "broker_signals_received",
                "Threat signals pulled from the ingest stream",
                Counter::default(),
            ),
            duplicate: metrics.register(
                "broker_signals_duplicate",
                "Signals dropped as duplicates within the dedup window",
                Counter::default(),
            ),
            invalid: metrics.register(
                "broker_signals_invalid",
                "Signals refused as invalid and dead-lettered",
                Counter::default(),
            ),
            queued: metrics.register(
                "broker_signals_queued",
                "Signals queued on the work stream",
                Counter::default(),
            ),
            backpressure: metrics.register(
                "broker_backpressure",
                "Times the work queue was full and input was delayed",
                Counter::default(),
            ),
        }
    }
}
