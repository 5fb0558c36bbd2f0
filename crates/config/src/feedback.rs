//! The feedback service: when analysts' verdicts ask the trainer for a run, and how much
//! the review queue looks at.

use serde::{Deserialize, Serialize};

/// When labelled feedback asks the trainer for a run (on the trainer's request subject), and
/// how many workflows the review queue scores.
///
/// Either trigger fires once per crossing: after a request, both count only verdicts accepted
/// since it, and no new request is made while an earlier one has not reached a trainer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackSettings {
    /// Labelled verdicts since the last run (or the last request) that ask for a run; 0 turns
    /// this trigger off.
    pub retrain_after_labels: u64,
    /// A run is asked for when vigil's verdict agreed with the analysts' in fewer than this
    /// share (0-1) of the last `accuracy_window` verdicts; 0 turns this trigger off.
    pub accuracy_floor: f64,
    /// How many of the latest verdicts the accuracy is measured over.
    pub accuracy_window: u64,
    /// How often (seconds) a request that found no trainer listening is sent again.
    pub retry_secs: u64,
    /// How long (seconds) the service waits for the trainer's run report, to record it.
    pub run_report_timeout_secs: u64,
    /// How many of the newest unjudged workflows the review queue scores (the rest wait).
    pub review_window: u64,
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        Self {
            retrain_after_labels: 200,
            accuracy_floor: 0.7,
            accuracy_window: 50,
            retry_secs: 30,
            run_report_timeout_secs: 3_600,
            review_window: 5_000,
        }
    }
}

impl FeedbackSettings {
    /// Checks values that parse but make no sense; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.accuracy_floor.is_finite() || !(0.0..=1.0).contains(&self.accuracy_floor) {
            return Err(format!(
                "feedback.accuracy_floor must be within 0..=1, got {}",
                self.accuracy_floor
            ));
        }
        if self.accuracy_floor > 0.0 && self.accuracy_window == 0 {
            return Err(
                "feedback.accuracy_window must be at least 1 when feedback.accuracy_floor is set"
                    .into(),
            );
        }
        if self.retry_secs == 0 {
            return Err("feedback.retry_secs must be at least 1".into());
        }
        if self.run_report_timeout_secs == 0 {
            return Err("feedback.run_report_timeout_secs must be at least 1".into());
        }
        if self.review_window == 0 {
            return Err("feedback.review_window must be at least 1".into());
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
            env: vec![("VIGIL_FEEDBACK__RETRAIN_AFTER_LABELS".into(), "25".into())],
            overrides: overrides.iter().map(|o| (*o).to_owned()).collect(),
        })
    }

    #[test]
    fn the_section_layers_like_the_others_and_is_validated() {
        let config = load(&["feedback.accuracy_window=10"]).expect("valid");
        assert_eq!(config.feedback.retrain_after_labels, 25);
        assert_eq!(config.feedback.accuracy_window, 10);

        for (bad, key) in [
            ("feedback.accuracy_floor=1.5", "feedback.accuracy_floor"),
            ("feedback.accuracy_floor=nan", "feedback.accuracy_floor"),
            ("feedback.accuracy_window=0", "feedback.accuracy_window"),
            ("feedback.retry_secs=0", "feedback.retry_secs"),
            ("feedback.review_window=0", "feedback.review_window"),
        ] {
            let error = load(&[bad]).expect_err(bad).to_string();
            assert!(error.contains(key), "{bad}: {error}");
        }
        let error = load(&["feedback.retrain_after=3"]).expect_err("unknown key");
        assert!(error.to_string().contains("retrain_after"), "{error}");
    }
}
