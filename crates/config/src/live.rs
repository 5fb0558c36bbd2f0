//! Keys that change while vigil runs, and how a change is applied to a loaded [`Config`].
//!
//! Live values live in the `vigil_config` key-value bucket under the key's TOML dotted path
//! (`thresholds.high`), written as a TOML value (`6.5`, `true`, `["slack"]`), the same way
//! `--set thresholds.high=6.5` is. One validation serves the file, the environment, the flags
//! and the bucket: a bucket entry is layered over the start-up configuration and the result
//! must pass [`Config::validate`].

use crate::loader::{Config, Error, Result, parse_scalar, set_path};

/// A key (or a whole section) that running services apply without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveKey {
    /// The dotted path; a section covers every key under it.
    pub key: &'static str,
    /// Which service applies it, and when.
    pub applied_by: &'static str,
    /// A valid value other than the default, as `vigil config set` takes it.
    pub example: &'static str,
}

/// Every key that can change while vigil runs. Any other key is refused by
/// `vigil config set` with a message saying it needs a restart.
pub const LIVE_KEYS: &[LiveKey] = &[
    LiveKey {
        key: "thresholds.critical",
        applied_by: "orchestrator, next workflow",
        example: "9.5",
    },
    LiveKey {
        key: "thresholds.high",
        applied_by: "orchestrator, next workflow",
        example: "6.5",
    },
    LiveKey {
        key: "thresholds.medium",
        applied_by: "orchestrator, next workflow",
        example: "3.5",
    },
    LiveKey {
        key: "soar.assessment",
        applied_by: "orchestrator, next workflow (rule weights, indicators, ML blend weight)",
        example: "",
    },
    LiveKey {
        key: "soar.assessment.ml_weight",
        applied_by: "orchestrator, next workflow",
        example: "0.25",
    },
    LiveKey {
        key: "soar.routing.rules.critical",
        applied_by: "orchestrator, next alert",
        example: "[\"slack\"]",
    },
    LiveKey {
        key: "soar.routing.rules.high",
        applied_by: "orchestrator, next alert",
        example: "[\"slack\"]",
    },
    LiveKey {
        key: "soar.routing.rules.medium",
        applied_by: "orchestrator, next alert",
        example: "[\"email\"]",
    },
    LiveKey {
        key: "soar.routing.rules.low",
        applied_by: "orchestrator, next alert",
        example: "[\"slack\"]",
    },
    LiveKey {
        key: "soar.routing.group_window_seconds",
        applied_by: "orchestrator, next alert",
        example: "60",
    },
    LiveKey {
        key: "soar.remediation.enabled",
        applied_by: "orchestrator, next workflow",
        example: "false",
    },
    LiveKey {
        key: "soar.remediation.threshold",
        applied_by: "orchestrator, next workflow",
        example: "8.5",
    },
    LiveKey {
        key: "soar.remediation.allow_list",
        applied_by: "orchestrator, next workflow",
        example: "[\"127.0.0.0/8\", \"10.0.0.0/8\"]",
    },
    LiveKey {
        key: "soar.remediation.internal_targets",
        applied_by: "orchestrator, next workflow",
        example: "[\"10.20.0.0/16\"]",
    },
    LiveKey {
        key: "soar.remediation.protected_names",
        applied_by: "orchestrator, next workflow",
        example: "[\"dc01\"]",
    },
    LiveKey {
        key: "soar.remediation.max_actions_per_minute",
        applied_by: "orchestrator, next workflow",
        example: "3",
    },
    LiveKey {
        key: "soar.incidents.window_seconds",
        applied_by: "orchestrator, next workflow",
        example: "600",
    },
    LiveKey {
        key: "soar.incidents.min_severity",
        applied_by: "orchestrator, next workflow",
        example: "\"high\"",
    },
    LiveKey {
        key: "streams.dedup_window_secs",
        applied_by: "broker, at once (the ingest and work streams' duplicate window)",
        example: "120",
    },
    LiveKey {
        key: "orchestrator.predict_timeout_ms",
        applied_by: "orchestrator, next prediction",
        example: "120",
    },
    LiveKey {
        key: "orchestrator.max_workflows",
        applied_by: "orchestrator, next pull",
        example: "64",
    },
    LiveKey {
        key: "trainer.schedule",
        applied_by: "trainer, at once (the next firing is recomputed)",
        example: "\"0 30 2 * * *\"",
    },
    LiveKey {
        key: "trainer.min_new_examples",
        applied_by: "trainer, next check",
        example: "500",
    },
    LiveKey {
        key: "trainer.check_interval_secs",
        applied_by: "trainer, at once",
        example: "60",
    },
    LiveKey {
        key: "trainer.max_requested_runs_per_hour",
        applied_by: "trainer, next run request",
        example: "2",
    },
    LiveKey {
        key: "feedback.retrain_after_labels",
        applied_by: "feedback, next verdict",
        example: "50",
    },
    LiveKey {
        key: "feedback.accuracy_floor",
        applied_by: "feedback, next verdict",
        example: "0.8",
    },
    LiveKey {
        key: "feedback.accuracy_window",
        applied_by: "feedback, next verdict",
        example: "100",
    },
];

/// The live key (or section) that covers `key`, if any.
pub fn live_key(key: &str) -> Option<&'static LiveKey> {
    LIVE_KEYS.iter().find(|live| {
        key == live.key
            || key
                .strip_prefix(live.key)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

impl Config {
    /// This configuration with live `entries` (`(dotted key, TOML value text)`, applied in
    /// order) layered over it, validated as a whole. Only live keys change; every other setting,
    /// secrets included, is this configuration's own.
    pub fn with_live<K: AsRef<str>, V: AsRef<str>>(&self, entries: &[(K, V)]) -> Result<Config> {
        if entries.is_empty() {
            return Ok(self.clone());
        }
        // Secrets serialize redacted; they never come back from this table (only live keys do).
        let mut table = match toml::Value::try_from(self) {
            Ok(toml::Value::Table(table)) => table,
            Ok(_) => return Err(Error::Invalid("the configuration is not a table".into())),
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "cannot render the configuration: {e}"
                )));
            }
        };
        for (key, value) in entries {
            let key = key.as_ref().trim();
            if live_key(key).is_none() {
                return Err(Error::NotLive {
                    key: key.to_owned(),
                });
            }
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            set_path(&mut table, &path, parse_scalar(value.as_ref())).map_err(|reason| {
                Error::BadKey {
                    origin: "the live configuration".into(),
                    key: key.to_owned(),
                    reason,
                }
            })?;
        }
        let candidate: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let reason = e.inner().message().to_owned();
                if reason.starts_with("unknown field") {
                    Error::BadKey {
                        origin: "the live configuration".into(),
                        key,
                        reason,
                    }
                } else {
                    Error::BadValue {
                        origin: "the live configuration".into(),
                        key,
                        reason,
                    }
                }
            })?;
        let mut merged = self.clone();
        copy_live(&candidate, &mut merged);
        merged.validate()?;
        Ok(merged)
    }
}

/// Copies every live setting of `from` into `to`; one line per entry of [`LIVE_KEYS`] (a test
/// sets each key's example and checks it arrives).
fn copy_live(from: &Config, to: &mut Config) {
    to.thresholds = from.thresholds;
    to.soar.assessment = from.soar.assessment.clone();
    to.soar.routing.rules = from.soar.routing.rules.clone();
    to.soar.routing.group_window_seconds = from.soar.routing.group_window_seconds;
    let (remedy, source) = (&mut to.soar.remediation, &from.soar.remediation);
    remedy.enabled = source.enabled;
    remedy.threshold = source.threshold;
    remedy.allow_list = source.allow_list.clone();
    remedy.protected_names = source.protected_names.clone();
    remedy.internal_targets = source.internal_targets.clone();
    remedy.max_actions_per_minute = source.max_actions_per_minute;
    to.soar.incidents.min_severity = from.soar.incidents.min_severity;
    to.soar.incidents.window_seconds = from.soar.incidents.window_seconds;
    to.streams.dedup_window_secs = from.streams.dedup_window_secs;
    to.orchestrator.predict_timeout_ms = from.orchestrator.predict_timeout_ms;
    to.orchestrator.max_workflows = from.orchestrator.max_workflows;
    to.trainer.schedule = from.trainer.schedule.clone();
    to.trainer.min_new_examples = from.trainer.min_new_examples;
    to.trainer.check_interval_secs = from.trainer.check_interval_secs;
    to.trainer.max_requested_runs_per_hour = from.trainer.max_requested_runs_per_hour;
    to.feedback.retrain_after_labels = from.feedback.retrain_after_labels;
    to.feedback.accuracy_floor = from.feedback.accuracy_floor;
    to.feedback.accuracy_window = from.feedback.accuracy_window;
}

/// The value at a dotted `key` of `config`, as TOML text (secrets redacted); `None` when there
/// is no such key (or it is unset).
pub fn value_at(config: &Config, key: &str) -> Option<toml::Value> {
    let mut value = &toml::Value::try_from(config).ok()?;
    for part in key.split('.') {
        value = value.as_table()?.get(part)?;
    }
    Some(value.clone())
}

/// How a value prints in `vigil config get` and in the bucket: inline TOML (`6.5`, `"high"`,
/// `["slack"]`).
pub fn render_value(value: &toml::Value) -> String {
    value.to_string()
}

/// A value as `--set` and the bucket read it: TOML (`6.5`, `true`, `["a"]`, `"x"`), or else a
/// plain string (`high`).
pub fn parse_value(raw: &str) -> toml::Value {
    parse_scalar(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sources;

    fn defaults() -> Config {
        Config::load(&Sources::default()).expect("defaults are valid")
    }

    #[test]
    fn every_live_key_with_an_example_arrives_in_the_merged_config() {
        let base = defaults();
        for live in LIVE_KEYS.iter().filter(|k| !k.example.is_empty()) {
            let merged = base
                .with_live(&[(live.key, live.example)])
                .unwrap_or_else(|e| panic!("{} = {}: {e}", live.key, live.example));
            let before = value_at(&base, live.key).expect("the key exists");
            let after = value_at(&merged, live.key).expect("the key exists");
            assert_ne!(
                before, after,
                "{} did not change: copy_live misses it",
                live.key
            );
            assert_eq!(after, parse_scalar(live.example), "{}", live.key);
        }
    }

    #[test]
    fn keys_that_need_a_restart_are_refused_by_name() {
        let err = defaults()
            .with_live(&[("database.url", "\"postgres://elsewhere/vigil\"")])
            .expect_err("not live")
            .to_string();
        assert!(
            err.contains("database.url") && err.contains("restart"),
            "{err}"
        );
        // A prefix of a live key is not live (it would replace keys that are not).
        assert!(live_key("soar.remediation").is_none());
        assert!(live_key("soar.assessment.volume.packets_high").is_some());
    }

    #[test]
    fn a_critical_threshold_below_the_high_one_is_refused_with_both_values() {
        let err = defaults()
            .with_live(&[("thresholds.critical", "6.5")])
            .expect_err("below high")
            .to_string();
        assert!(err.contains("6.5") && err.contains('7'), "{err}");
        // The same value is fine once high is lowered first, in one change set.
        let merged = defaults()
            .with_live(&[("thresholds.high", "6"), ("thresholds.critical", "6.5")])
            .expect("ordered change");
        assert_eq!(merged.thresholds.critical, 6.5);
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_key() {
        let err = defaults()
            .with_live(&[("thresholds.high", "\"very\"")])
            .expect_err("a string")
            .to_string();
        assert!(err.contains("thresholds.high"), "{err}");
    }

    #[test]
    fn secrets_survive_a_live_change() {
        let mut base = defaults();
        base.nats.user = Some("vigil".into());
        base.nats.password = Some(crate::Secret::new("s3cret"));
        let merged = base
            .with_live(&[("thresholds.high", "6.5")])
            .expect("valid");
        assert_eq!(
            merged.nats.password.as_ref().map(crate::Secret::expose),
            Some("s3cret")
        );
    }
}
