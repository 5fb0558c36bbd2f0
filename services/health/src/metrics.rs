use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
