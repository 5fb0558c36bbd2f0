//! Data pipeline, feature engineering, models, ensemble and evaluation (no I/O).
//!
//! The learning half of vigil. Readers take `impl Read`; files are opened by the CLI.
//! The predictor service needs only [`ModelArtifact`]:
//!
//! ```no_run
//! # fn demo(bytes: &[u8], signal: &vigil_domain::ThreatSignal) -> vigil_ml::Result<()> {
//! let artifact = vigil_ml::ModelArtifact::from_bytes(bytes)?; // Send + Sync: share in an Arc
//! let result = artifact.predict(signal, &vigil_domain::RiskThresholds::default())?;
//! println!("{} {} {}", result.risk_score, result.risk_level, artifact.metadata.model_version_id);
//! # Ok(()) }
//! ```

mod artifact;
mod boost;
mod ensemble;
mod error;
mod evaluate;
mod features;
mod forest;
mod holdout;
mod in_domain;
mod ingest;
mod metrics;
mod mlp;
mod novelty;
mod operating_point;
mod pipeline;
mod prototypes;
mod train;

pub use artifact::{ARTIFACT_FORMAT_VERSION, ARTIFACT_MAGIC, ArtifactMetadata, ModelArtifact};
pub use boost::{BoostConfig, XgbModel, train_xgboost};
pub use ensemble::{Calibration, Ensemble, MEMBERS, Score};
pub use error::{Error, Result};
pub use evaluate::{CrossValidationReport, EvaluationReport, ModelEvaluator};
pub use features::{
    Coverage, FeatureConfig, FeatureEngineer, FeatureSpec, Field, Input, Matrix, ModelInput,
};
pub use forest::{ForestConfig, RandomForest, train_forest};
pub use holdout::{HashHoldout, Holdout, HoldoutRule};
pub use in_domain::{DomainConfig, TrainingDomain};
pub use ingest::{
    CsvOptions, MAX_NSL_KDD_LINE_BYTES, NSL_KDD_COLUMNS, ReadOutcome, RowError, is_benign_label,
    parse_nsl_kdd_line, read_csv, read_csv_with, read_nsl_kdd,
};
pub use metrics::{binary_metrics, log_loss, roc_auc};
pub use mlp::{Mlp, MlpConfig, train_mlp};
pub use novelty::{NoveltyConfig, NoveltyDetector};
pub use operating_point::{Choice, OperatingPoint};
pub use pipeline::{
    Balance, CleanIssue, CleanReport, DataPipeline, LabeledExample, PartialConfig, SplitConfig,
    Splits, oversample, oversample_indices, sample_weights, stratified_folds, with_partial_copies,
};
pub use prototypes::Prototypes;
pub use train::{TrainConfig, TrainReport, fit_ensemble, train_ensemble};

/// Receives progress of long steps (tree building, boosting rounds, epochs); the CLI draws
/// progress bars with it, services log or ignore it. Steps may run concurrently, so every call
/// names its step.
pub trait Progress: Sync {
    /// A step named `name` with `total` units of work begins.
    fn stage(&self, name: &str, total: u64);
    /// `delta` more units of step `name` are done.
    fn advance(&self, name: &str, delta: u64);
    /// Step `name` is finished.
    fn finish_stage(&self, name: &str);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total: u64) {}
    fn advance(&self, _name: &str, _delta: u64) {}
    fn finish_stage(&self, _name: &str) {}
}

#[cfg(test)]
mod send_sync {
    #[test]
    fn artifact_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<crate::ModelArtifact>();
        assert_send_sync::<crate::Ensemble>();
    }
}
