//! Heartbeats (every service) and the rules of the health service (docs/health.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How often every service says it is alive, and how the health service judges what it hears.
///
/// A component is a service name (`broker`, `orchestrator`, ...); its replicas are its
/// instances. The rules are in docs/health.md; every number they use is here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// How often (milliseconds) every service instance sends a heartbeat.
    pub heartbeat_interval_ms: u64,
    /// Intervals without a heartbeat after which an instance counts as missing.
    pub missing_after_beats: u32,
    /// How long (seconds) a missing instance is remembered (and keeps its component degraded)
    /// unless a new instance of its service starts after it went missing (a replacement).
    pub forget_after_secs: u64,
    /// Components the event path cannot do without: with no live instance they are critical;
    /// any other component with no live instance is degraded.
    pub required: Vec<String>,
    /// Components that should be running: one never heard from is reported as missing
    /// (critical when it is also required).
    pub expected: Vec<String>,
    /// Window (seconds) over which the operations and errors of the heartbeats are summed.
    pub window_secs: u64,
    /// Operations in the window below which the error rate is not judged.
    pub min_operations: u64,
    /// Share of failed operations (0-1) in the window from which a component is degraded.
    pub error_rate_degraded: f64,
    /// Share of failed operations (0-1) in the window from which a component is critical.
    pub error_rate_critical: f64,
    /// p99 latency (milliseconds) of a component's main operation above which it is degraded,
    /// per component; a component not listed has no latency rule.
    pub p99_latency_ms: BTreeMap<String, f64>,
    /// Messages waiting in the ingest (broker) or work (orchestrator) stream from which the
    /// consumer is degraded.
    pub queue_depth_degraded: u64,
    /// ... and from which it is critical.
    pub queue_depth_critical: u64,
    /// Age (seconds) of the oldest waiting message from which the consumer is degraded.
    pub oldest_message_degraded_secs: u64,
    /// ... and from which it is critical.
    pub oldest_message_critical_secs: u64,
    /// Window (seconds) over which dead letters are counted (also "the last hour" of the
    /// status's alerts and remediations).
    pub dead_letter_window_secs: u64,
    /// Dead letters from a component's stream in the window from which it is degraded; 0
    /// turns the rule off.
    pub dead_letters_degraded: u64,
    /// ... and from which it is critical; 0 turns this step off.
    pub dead_letters_critical: u64,
    /// Whether a registry without a production ensemble degrades the predictor.
    pub require_production_model: bool,
    /// How long (milliseconds) `vigil status` waits for the health service's answer.
    pub status_timeout_ms: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        let components = [
            "broker",
            "orchestrator",
            "predictor",
            "trainer",
            "feedback",
            "health",
        ];
        Self {
            heartbeat_interval_ms: 5_000,
            missing_after_beats: 3,
            forget_after_secs: 300,
            required: vec!["broker".into(), "orchestrator".into()],
            expected: components.iter().map(|c| (*c).to_owned()).collect(),
            window_secs: 60,
            min_operations: 20,
            error_rate_degraded: 0.05,
            error_rate_critical: 0.5,
            p99_latency_ms: BTreeMap::from([
                ("broker".to_owned(), 1_000.0),
                ("orchestrator".to_owned(), 5_000.0),
                ("predictor".to_owned(), 100.0),
                ("feedback".to_owned(), 2_000.0),
            ]),
            queue_depth_degraded: 5_000,
            queue_depth_critical: 9_500,
            oldest_message_degraded_secs: 60,
            oldest_message_critical_secs: 600,
            dead_letter_window_secs: 3_600,
            dead_letters_degraded: 10,
            dead_letters_critical: 100,
            require_production_model: true,
            status_timeout_ms: 5_000,
        }
    }
}

impl HealthSettings {
    /// Checks values that parse but make no sense; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval_ms == 0 {
            return Err("health.heartbeat_interval_ms must be at least 1".into());
        }
        if self.missing_after_beats == 0 {
            return Err("health.missing_after_beats must be at least 1".into());
        }
        if self.window_secs == 0 || self.dead_letter_window_secs == 0 {
            return Err(
                "health.window_secs and health.dead_letter_window_secs must be at least 1".into(),
            );
        }
        for (key, value) in [
            ("error_rate_degraded", self.error_rate_degraded),
            ("error_rate_critical", self.error_rate_critical),
        ] {
            if !value.is_finite() || !(0.0..=1.0).contains(&value) {
                return Err(format!("health.{key} must be within 0..=1, got {value}"));
            }
        }
        if self.error_rate_critical < self.error_rate_degraded {
            return Err(format!(
                "health.error_rate_critical ({}) must not be below health.error_rate_degraded ({})",
                self.error_rate_critical, self.error_rate_degraded
            ));
        }
        if self.queue_depth_critical < self.queue_depth_degraded {
            return Err(format!(
                "health.queue_depth_critical ({}) must not be below health.queue_depth_degraded ({})",
                self.queue_depth_critical, self.queue_depth_degraded
            ));
        }
        if self.oldest_message_critical_secs < self.oldest_message_degraded_secs {
            return Err(format!(
                "health.oldest_message_critical_secs ({}) must not be below \
                 health.oldest_message_degraded_secs ({})",
                self.oldest_message_critical_secs, self.oldest_message_degraded_secs
            ));
        }
        if self.dead_letters_critical != 0
            && self.dead_letters_critical < self.dead_letters_degraded
        {
            return Err(format!(
                "health.dead_letters_critical ({}) must not be below health.dead_letters_degraded ({})",
                self.dead_letters_critical, self.dead_letters_degraded
            ));
        }
        if let Some((component, ms)) = self
            .p99_latency_ms
            .iter()
            .find(|(_, ms)| !ms.is_finite() || **ms <= 0.0)
        {
            return Err(format!(
                "health.p99_latency_ms.{component} must be a positive number of milliseconds, got {ms}"
            ));
        }
        if self.status_timeout_ms == 0 {
            return Err("health.status_timeout_ms must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Sources};

    fn load(overrides: &[&str]) -> crate::Result<Config> {
        Config::load(&Sources {
            file: None,
            env: vec![("VIGIL_HEALTH__HEARTBEAT_INTERVAL_MS".into(), "250".into())],
            overrides: overrides.iter().map(|o| (*o).to_owned()).collect(),
        })
    }

    #[test]
    fn the_section_layers_like_the_others_and_is_validated() {
        let config = load(&["health.required=[\"broker\"]"]).expect("valid");
        assert_eq!(config.health.heartbeat_interval_ms, 250);
        assert_eq!(config.health.required, ["broker"]);
        assert_eq!(config.health.missing_after_beats, 3);

        for (bad, key) in [
            (
                "health.heartbeat_interval_ms=0",
                "health.heartbeat_interval_ms",
            ),
            ("health.missing_after_beats=0", "health.missing_after_beats"),
            (
                "health.error_rate_degraded=1.5",
                "health.error_rate_degraded",
            ),
            (
                "health.error_rate_critical=0.01",
                "health.error_rate_critical",
            ),
            (
                "health.queue_depth_critical=10",
                "health.queue_depth_critical",
            ),
            (
                "health.p99_latency_ms.broker=-1",
                "health.p99_latency_ms.broker",
            ),
        ] {
            let error = load(&[bad]).expect_err(bad).to_string();
            assert!(error.contains(key), "{bad}: {error}");
        }
        let error = load(&["health.interval=3"]).expect_err("unknown key");
        assert!(error.to_string().contains("interval"), "{error}");
    }
}
