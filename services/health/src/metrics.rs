use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::gauge::Gauge;
use vigil_domain::HealthState;
use vigil_telemetry::Metrics;

/// What the health service counts in `/metrics`.
#[derive(Clone)]
pub(crate) struct HealthMetrics {
    pub heartbeats: Counter,
    pub changes: Counter,
    /// 0 healthy, 1 degraded, 2 critical, by component.
    pub states: Family<[(&'static str, String); 1], Gauge>,
    /// Messages waiting in each stream, by stream.
    pub stream_messages: Family<[(&'static str, String); 1], Gauge>,
    /// Age (seconds) of the oldest waiting message, by stream (0 when none waits).
    pub stream_oldest_age: Family<[(&'static str, String); 1], Gauge<f64, AtomicU64>>,
    /// Dead letters within the window, by the stream they came from.
    pub dead_letters: Family<[(&'static str, String); 1], Gauge>,
}

impl HealthMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            heartbeats: metrics.register(
                "health_heartbeats_received",
                "Heartbeats received from service instances",
                Counter::default(),
            ),
            changes: metrics.register(
                "health_state_changes",
                "Component health changes announced as health_changed",
                Counter::default(),
            ),
            states: metrics.register(
                "health_component_state",
                "Health of each component: 0 healthy, 1 degraded, 2 critical",
                Family::default(),
            ),
            stream_messages: metrics.register(
                "stream_messages",
                "Messages waiting in each stream, as the health service last read them",
                Family::default(),
            ),
            stream_oldest_age: metrics.register(
                "stream_oldest_message_age_seconds",
                "Age of the oldest message waiting in each stream (0 when none waits)",
                Family::default(),
            ),
            dead_letters: metrics.register(
                "dead_letters_in_window",
                "Messages dead-lettered within health.dead_letter_window_secs, by source stream",
                Family::default(),
            ),
        }
    }

    /// The streams' backlog and the recent dead letters, as last read.
    pub fn set_facts(
        &self,
        streams: &std::collections::BTreeMap<String, crate::report::StreamReport>,
        dead_letters: &std::collections::BTreeMap<String, u64>,
    ) {
        for (stream, report) in streams {
            let label = [("stream", stream.clone())];
            self.stream_messages
                .get_or_create(&label)
                .set(i64::try_from(report.messages).unwrap_or(i64::MAX));
            self.stream_oldest_age
                .get_or_create(&label)
                .set(report.oldest_age_secs.unwrap_or(0.0));
        }
        // A source with none left in the window disappears rather than keep an old count.
        self.dead_letters.clear();
        for (source, count) in dead_letters {
            self.dead_letters
                .get_or_create(&[("source", source.clone())])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }

    pub fn set_state(&self, component: &str, state: HealthState) {
        let value = match state {
            HealthState::Healthy => 0,
            HealthState::Degraded => 1,
            HealthState::Critical => 2,
        };
        self.states
            .get_or_create(&[("component", component.to_owned())])
            .set(value);
    }
}
