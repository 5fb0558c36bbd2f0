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

/// What the predictor says about one threat signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionResult {
    pub threat_id: String,
    /// 0-10.
    pub risk_score: f64,
    pub risk_level: Severity,
    /// 0-1.
    pub confidence: f64,
    pub model_version_id: String,
    /// The features that mattered most, with their values.
    pub features_used: BTreeMap<String, f64>,
    pub prediction_time_ms: f64,
    pub created_at: DateTime<Utc>,
}

impl PredictionResult {
    /// Score in 0-10, confidence in 0-1, a model version id.
    pub fn validate(&self) -> Result<()> {
        require_in_range("risk_score", self.risk_score, 0.0, 10.0)?;
        require_in_range("confidence", self.confidence, 0.0, 1.0)?;
        require_non_empty("model_version_id", &self.model_version_id)?;
        Ok(())
    }
}
