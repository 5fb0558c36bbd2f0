use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError, require_in_range, require_non_empty};
use crate::severity::Severity;

/// Which learner a model version holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    RandomForest,
    Xgboost,
    NeuralNetwork,
    Ensemble,
}

impl ModelType {
    /// Every model type.
    pub const ALL: [ModelType; 4] = [
        ModelType::RandomForest,
        ModelType::Xgboost,
        ModelType::NeuralNetwork,
        ModelType::Ensemble,
    ];

    /// The stable name stored in PostgreSQL and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::RandomForest => "random_forest",
            ModelType::Xgboost => "xgboost",
            ModelType::NeuralNetwork => "neural_network",
            ModelType::Ensemble => "ensemble",
        }
    }
}

impl fmt::Display for ModelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelType {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        match s.as_str() {
            "random_forest" | "rf" => Ok(ModelType::RandomForest),
            "xgboost" | "xgb" => Ok(ModelType::Xgboost),
            "neural_network" | "nn" | "mlp" => Ok(ModelType::NeuralNetwork),
            "ensemble" => Ok(ModelType::Ensemble),
            other => Err(ValidationError::Invalid {
                field: "model_type",
                reason: format!(
                    "unknown model type {other:?}; expected random_forest, xgboost, neural_network or ensemble"
                ),
            }),
        }
    }
}

/// Binary-classification quality of a model on a held-out split.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelMetrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub auc_roc: f64,
    /// Mean score over the cross-validation folds, when cross-validation ran.
    pub cross_val_score: Option<f64>,
}

/// One trained, registered version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub id: String,
    pub model_type: ModelType,
    pub version: i32,
    pub trained_at: DateTime<Utc>,
    pub metrics: ModelMetrics,
    pub hyperparameters: serde_json::Value,
    pub training_samples: u64,
    pub features_used: Vec<String>,
    /// Active in staging.
    pub is_active: bool,
    /// Serving production traffic.
    pub is_production: bool,
}

/// Why a model gave no score a caller may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbstainReason {
    /// The signal carried less of the model's inputs than the configured minimum coverage.
    LowCoverage,
}

impl AbstainReason {
    /// The stable name shown in events and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            AbstainReason::LowCoverage => "low_coverage",
        }
    }
}

impl fmt::Display for AbstainReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model declining to score a signal, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abstention {
    pub reason: AbstainReason,
    /// For people: what was missing, against which minimum.
    pub detail: String,
}

/// What the predictor says about one threat signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionResult {
    pub threat_id: String,
    /// 0-10. When the model abstained, what it computed anyway: for review, never for use.
    pub risk_score: f64,
    pub risk_level: Severity,
    /// 0-1.
    pub confidence: f64,
    pub model_version_id: String,
    /// The features that mattered most, with their values.
    pub features_used: BTreeMap<String, f64>,
    pub prediction_time_ms: f64,
    pub created_at: DateTime<Utc>,
    /// Share of the model's inputs the signal carried, 0-1.
    #[serde(default)]
    pub coverage: f64,
    /// The model's inputs the signal did not carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_inputs: Vec<String>,
    /// 0-1: the share of the model's validation rows at least as far from its training data
    /// as this signal, over the inputs the signal carried.
    #[serde(default)]
    pub in_domain: f64,
    /// The ensemble's probability that the signal is a threat, 0-1.
    #[serde(default)]
    pub probability: f64,
    /// The probability from which the model calls a signal a threat.
    #[serde(default)]
    pub decision_threshold: f64,
    /// Each member's calibrated probability, 0-1.
    #[serde(default)]
    pub member_probabilities: BTreeMap<ModelType, f64>,
    /// The novelty member's probability, 0-1 (equal to the decision threshold at its cutoff).
    #[serde(default)]
    pub novelty: f64,
    /// Set when the model declined to score the signal: then no score of it may be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstention: Option<Abstention>,
}

impl PredictionResult {
    /// The coverage below which the model abstains unless configured otherwise
    /// (`predictor.min_coverage`): a model that saw less than half of what it reads is speaking
    /// about a signal unlike the ones it learned from.
    pub const DEFAULT_MIN_COVERAGE: f64 = 0.5;

    /// Scores in range, a model version id.
    pub fn validate(&self) -> Result<()> {
        require_in_range("risk_score", self.risk_score, 0.0, 10.0)?;
        require_in_range("confidence", self.confidence, 0.0, 1.0)?;
        require_non_empty("model_version_id", &self.model_version_id)?;
        require_in_range("coverage", self.coverage, 0.0, 1.0)?;
        require_in_range("in_domain", self.in_domain, 0.0, 1.0)?;
        require_in_range("probability", self.probability, 0.0, 1.0)?;
        require_in_range("decision_threshold", self.decision_threshold, 0.0, 1.0)?;
        require_in_range("novelty", self.novelty, 0.0, 1.0)?;
        for p in self.member_probabilities.values() {
            require_in_range("member_probabilities", *p, 0.0, 1.0)?;
        }
        Ok(())
    }

    /// The one rule for when the model abstains: the signal carried less than `min_coverage`
    /// of the model's inputs. Sets [`PredictionResult::abstention`] then, saying what was
    /// missing; leaves a result that already abstained as it is.
    pub fn abstain_below(mut self, min_coverage: f64) -> Self {
        if self.abstention.is_none() && self.coverage < min_coverage {
            const NAMED: usize = 8;
            let mut missing = self
                .missing_inputs
                .iter()
                .take(NAMED)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if self.missing_inputs.len() > NAMED {
                missing.push_str(&format!(" and {} more", self.missing_inputs.len() - NAMED));
            }
            self.abstention = Some(Abstention {
                reason: AbstainReason::LowCoverage,
                detail: format!(
                    "the signal carried {:.0}% of the model's inputs, below the minimum of {:.0}% \
                     (missing: {missing})",
                    self.coverage * 100.0,
                    min_coverage * 100.0
                ),
            });
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(coverage: f64, missing: &[&str]) -> PredictionResult {
        PredictionResult {
            threat_id: "t".into(),
            risk_score: 9.9,
            risk_level: Severity::Critical,
            confidence: 0.9,
            model_version_id: "ens-1".into(),
            features_used: BTreeMap::new(),
            prediction_time_ms: 0.1,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            coverage,
            missing_inputs: missing.iter().map(|m| m.to_string()).collect(),
            in_domain: 1.0,
            probability: 0.99,
            decision_threshold: 0.1,
            member_probabilities: BTreeMap::new(),
            novelty: 0.0,
            abstention: None,
        }
    }

    #[test]
    fn abstains_below_the_minimum_coverage_naming_what_was_missing() {
        let names: Vec<String> = (0..12).map(|i| format!("count{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let low = result(0.25, &names).abstain_below(0.5);
        let abstention = low.abstention.expect("abstains");
        assert_eq!(abstention.reason, AbstainReason::LowCoverage);
        assert!(abstention.detail.contains("25%"), "{}", abstention.detail);
        assert!(abstention.detail.contains("50%"), "{}", abstention.detail);
        assert!(
            abstention.detail.contains("count0"),
            "{}",
            abstention.detail
        );
        assert!(
            abstention.detail.contains("and 4 more"),
            "{}",
            abstention.detail
        );

        assert!(result(0.5, &[]).abstain_below(0.5).abstention.is_none());
        assert!(result(1.0, &[]).abstain_below(1.0).abstention.is_none());
        assert!(result(0.0, &[]).abstain_below(0.0).abstention.is_none());
    }

    #[test]
    fn results_stored_before_coverage_existed_still_read() {
        let json = r#"{"threat_id":"t","risk_score":2.0,"risk_level":"low","confidence":0.5,
            "model_version_id":"ens-1","features_used":{},"prediction_time_ms":0.1,
            "created_at":"2026-01-01T00:00:00Z"}"#;
        let old: PredictionResult = serde_json::from_str(json).expect("reads");
        assert_eq!(old.abstention, None);
        assert!(old.member_probabilities.is_empty());
        old.validate().expect("still valid");
        let mut fresh = result(0.9, &["flag"]);
        fresh.member_probabilities.insert(ModelType::Xgboost, 0.97);
        let back: PredictionResult =
            serde_json::from_value(serde_json::to_value(&fresh).expect("writes")).expect("reads");
        assert_eq!(back, fresh);
    }
}
