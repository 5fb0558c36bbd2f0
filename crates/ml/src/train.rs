//! Training the whole ensemble: clean, split, balance, fit features, train the three members,
//! calibrate and weigh them, measure on the test split, package an artifact.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use vigil_domain::ModelType;

use crate::Progress;
use crate::artifact::{ArtifactMetadata, ModelArtifact};
use crate::boost::{BoostConfig, train_xgboost};
use crate::ensemble::{Calibration, Ensemble, weights_from_validation};
use crate::error::{Error, Result};
use crate::evaluate::ModelEvaluator;
use crate::features::{FeatureConfig, FeatureEngineer};
use crate::forest::{ForestConfig, train_forest};
use crate::holdout::{Holdout, HoldoutRule};
use crate::in_domain::{DomainConfig, TrainingDomain};
use crate::mlp::{MlpConfig, train_mlp};
use crate::novelty::{NoveltyConfig, NoveltyDetector};
use crate::operating_point::{Choice, OperatingPoint};
use crate::pipeline::{
    Balance, CleanReport, DataPipeline, LabeledExample, PartialConfig, SplitConfig,
    oversample_indices, sample_weights, with_partial_copies,
};

/// Everything that decides how a model is trained; stored in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub split: SplitConfig,
    pub balance: Balance,
    pub features: FeatureConfig,
    pub forest: ForestConfig,
    pub xgboost: BoostConfig,
    pub mlp: MlpConfig,
    /// The novelty member fitted on benign training rows (docs/ml.md).
    pub novelty: NoveltyConfig,
    /// Partial copies of training and validation rows, so the models learn what a signal
    /// without some inputs means (docs/ml.md).
    pub partial: PartialConfig,
    /// The measure of how close a signal lies to the training data.
    pub domain: DomainConfig,
    /// The rule that chooses the probability from which a signal counts as a threat, on the
    /// validation split (`balanced`, `accuracy`, `fpr:B` or `fixed:T`; docs/ml.md).
    pub operating_point: OperatingPoint,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            split: SplitConfig::default(),
            balance: Balance::Oversample,
            features: FeatureConfig::default(),
            forest: ForestConfig::default(),
            xgboost: BoostConfig::default(),
            mlp: MlpConfig::default(),
            novelty: NoveltyConfig::default(),
            partial: PartialConfig::default(),
            domain: DomainConfig::default(),
            operating_point: OperatingPoint::default(),
        }
    }
}

impl TrainConfig {
    /// Reads a training configuration a person wrote (`vigil train --config`,
    /// `trainer.train_config`): keys left out keep their defaults, and a key the configuration
    /// does not have is refused with its path (a misspelt key would otherwise be ignored
    /// without a word). `decision_threshold`, replaced by `operating_point`, is refused with
    /// what to write instead. (Artifacts are read leniently; this is for files people edit.)
    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::InvalidConfig(format!("not JSON: {e}")))?;
        if let Some(t) = value.get("decision_threshold") {
            return Err(Error::InvalidConfig(format!(
                "decision_threshold was replaced by operating_point: write \
                 \"operating_point\": \"fixed:{t}\" to keep this threshold, or a rule such as \
                 \"balanced\" (docs/ml.md)"
            )));
        }
        let known = serde_json::to_value(Self::default())
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        unknown_keys(&value, &known, "")?;
        serde_json::from_value(value).map_err(|e| Error::InvalidConfig(e.to_string()))
    }

    /// The same configuration with every seed set to `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.split.seed = seed;
        self.forest.seed = seed;
        self.xgboost.seed = seed;
        self.mlp.seed = seed;
        self
    }
}

/// Refuses the first key of `value` that `known` (the defaults, as JSON) does not have, looking
/// into nested objects; an empty object in `known` (a map) takes any key.
fn unknown_keys(value: &serde_json::Value, known: &serde_json::Value, path: &str) -> Result<()> {
    let (Some(value), Some(known)) = (value.as_object(), known.as_object()) else {
        return Ok(());
    };
    if known.is_empty() {
        return Ok(());
    }
    for (key, inner) in value {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match known.get(key) {
            Some(default) => unknown_keys(inner, default, &here)?,
            None => {
                let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
                names.sort_unstable();
                return Err(Error::InvalidConfig(format!(
                    "unknown key {here} (known here: {})",
                    names.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// What happened during training, for the CLI and the trainer's logs.
#[derive(Debug, Clone, Default)]
pub struct TrainReport {
    pub clean: CleanReport,
    pub train_rows: usize,
    pub validation_rows: usize,
    pub test_rows: usize,
    /// Wall-clock seconds per step (`features`, `random_forest`, `xgboost`, `neural_network`,
    /// `novelty`, `ensemble`).
    pub seconds: BTreeMap<String, f64>,
    /// The decision threshold, the rule that chose it and what it gave on validation.
    pub operating_point: Option<Choice>,
}

/// Trains the ensemble on `examples` and packages it with its test metrics.
pub fn train_ensemble(
    examples: Vec<LabeledExample>,
    config: &TrainConfig,
    data_source: &str,
    progress: &dyn Progress,
) -> Result<(ModelArtifact, TrainReport)> {
    let mut pipeline = DataPipeline::from_examples(examples);
    let clean = pipeline.clean();
    let splits = pipeline.into_splits(&config.split)?;
    if splits.test.is_empty() {
        return Err(Error::InvalidConfig(
            "the test split is empty; give it a share of the data".to_string(),
        ));
    }
    let mut report = TrainReport {
        clean,
        train_rows: splits.train.len(),
        validation_rows: splits.validation.len(),
        test_rows: splits.test.len(),
        seconds: BTreeMap::new(),
        operating_point: None,
    };
    let ensemble = fit_ensemble(
        &splits.train,
        &splits.validation,
        config,
        progress,
        &mut report.seconds,
    )?;
    report.operating_point = ensemble.operating_point;
    let evaluation = ModelEvaluator::evaluate(&ensemble, &splits.test)?;
    let mut metrics = evaluation.models.clone();
    metrics.insert(ModelType::Ensemble, evaluation.ensemble);
    let metadata = ArtifactMetadata {
        model_version_id: ModelArtifact::version_id_of(&ensemble)?,
        trained_at: Utc::now(),
        training_samples: splits.train.len() as u64,
        feature_names: ensemble.spec.feature_names(),
        hyperparameters: serde_json::to_value(config)?,
        library_version: env!("CARGO_PKG_VERSION").to_string(),
        data_source: data_source.to_string(),
        holdout: Some(Holdout {
            rule: HoldoutRule::Random {
                share: config.split.test,
                seed: config.split.seed,
            },
            rows: splits.test.len() as u64,
        }),
    };
    Ok((
        ModelArtifact {
            metadata,
            ensemble,
            metrics,
        },
        report,
    ))
}

/// Fits features and members on `train`, early-stops, calibrates and weighs on `validation`.
pub fn fit_ensemble(
    train: &[LabeledExample],
    validation: &[LabeledExample],
    config: &TrainConfig,
    progress: &dyn Progress,
    seconds: &mut BTreeMap<String, f64>,
) -> Result<Ensemble> {
    let classes = |set: &[LabeledExample]| {
        let pos = set.iter().filter(|e| e.label).count();
        (pos, set.len() - pos)
    };
    let (pos, neg) = classes(train);
    if pos == 0 || neg == 0 {
        return Err(Error::Training(format!(
            "the training split needs both classes, got {pos} threats and {neg} benign"
        )));
    }
    if validation.is_empty() {
        return Err(Error::Training(
            "the validation split is empty; it is needed for early stopping and calibration"
                .to_string(),
        ));
    }
    config.operating_point.validate()?;
    config.partial.validate()?;
    let started = Instant::now();
    // The spec is fitted on the real training rows. The members learn from those and from
    // partial copies of them (what sensors that send less look like), and are stopped early
    // and calibrated on validation rows with partial copies of the same kind. Oversampling (of
    // the training split only, which keeps duplicates out of validation and test) then repeats
    // rows of the matrix.
    let spec = FeatureEngineer::new(config.features).fit(train)?;
    let partial_train = with_partial_copies(train, &config.partial);
    let partial_validation = with_partial_copies(
        validation,
        &PartialConfig {
            seed: config.partial.seed.wrapping_add(1),
            ..config.partial
        },
    );
    let (x, y) = spec.transform_examples(&partial_train)?;
    let (x, y, w) = match config.balance {
        Balance::Oversample => {
            let rows = oversample_indices(&partial_train, config.split.seed);
            let balanced_y: Vec<bool> = rows.iter().map(|&r| y[r]).collect();
            let w = weights_for(&partial_train, &rows);
            (x.select_rows(&rows), balanced_y, w)
        }
        Balance::None => (x, y, sample_weights(&partial_train)),
    };
    drop(partial_train);
    let (vx, vy) = spec.transform_examples(&partial_validation)?;
    // XGBoost reads missing values as such; the forest and the network read them imputed.
    let xi = spec.impute_matrix(&x);
    let vxi = spec.impute_matrix(&vx);
    seconds.insert("features".into(), started.elapsed().as_secs_f64());

    // XGBoost runs on its own thread (one OpenMP thread by default) while the forest and then
    // the network use the rest: on a small machine this hides most of the boosting time. The
    // novelty member and the domain measure, which need none of the three and only the real
    // rows, are fitted on that thread afterwards.
    let (forest, xgboost, mlp, novelty, domain) = std::thread::scope(|scope| -> Result<_> {
        let boosting = scope.spawn(|| {
            let t = Instant::now();
            let model = train_xgboost(&x, &y, &w, &config.xgboost, progress);
            let boost_seconds = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let novelty = config
                .novelty
                .enabled
                .then(|| NoveltyDetector::fit(&spec, train, validation, config.novelty));
            let novelty_seconds = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let domain = config
                .domain
                .enabled
                .then(|| TrainingDomain::fit(&spec, train, validation, config.domain));
            let domain_seconds = t.elapsed().as_secs_f64();
            (
                model,
                boost_seconds,
                (novelty, novelty_seconds),
                (domain, domain_seconds),
            )
        });
        let t = Instant::now();
        let forest = train_forest(&xi, &y, &w, &config.forest, progress);
        let forest_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mlp = match forest {
            Ok(_) => Some(train_mlp(&xi, &y, &w, &vxi, &vy, &config.mlp, progress)),
            Err(_) => None,
        };
        let mlp_seconds = t.elapsed().as_secs_f64();
        let (xgboost, xgboost_seconds, (novelty, novelty_seconds), (domain, domain_seconds)) =
            boosting
                .join()
                .map_err(|_| Error::Training("the xgboost training thread panicked".to_string()))?;
        seconds.insert("random_forest".into(), forest_seconds);
        seconds.insert("xgboost".into(), xgboost_seconds);
        seconds.insert("neural_network".into(), mlp_seconds);
        if novelty.is_some() {
            seconds.insert("novelty".into(), novelty_seconds);
        }
        if domain.is_some() {
            seconds.insert("domain".into(), domain_seconds);
        }
        let forest = forest?;
        let mlp = mlp.expect("trained whenever the forest succeeded, checked above")?;
        Ok((
            forest,
            xgboost?,
            mlp,
            novelty.transpose()?,
            domain.transpose()?,
        ))
    })?;

    let t = Instant::now();
    let mut raw: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..vx.rows {
        raw[0].push(forest.predict_proba(vxi.row(i)));
        raw[1].push(xgboost.predict_proba(vx.row(i)));
        raw[2].push(mlp.predict_proba(vxi.row(i)));
    }
    let calibration = [0, 1, 2].map(|m| Calibration::fit(&raw[m], &vy));
    let calibrated: [Vec<f64>; 3] =
        [0, 1, 2].map(|m| raw[m].iter().map(|&p| calibration[m].apply(p)).collect());
    let weights = weights_from_validation(&calibrated, &vy);
    let choice = choose_operating_point(
        config.operating_point,
        &calibrated,
        &weights,
        &vy,
        novelty
            .as_ref()
            .map(|n| (n, &spec, partial_validation.as_slice())),
    )?;
    drop(partial_validation);
    let importances = forest
        .importances
        .iter()
        .zip(xgboost.importances())
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    let ensemble = Ensemble {
        spec,
        forest,
        xgboost,
        mlp,
        calibration,
        weights,
        decision_threshold: choice.threshold,
        operating_point: Some(choice),
        importances,
        novelty,
        domain,
    };
    seconds.insert("ensemble".into(), t.elapsed().as_secs_f64());
    seconds.insert("total".into(), started.elapsed().as_secs_f64());
    Ok(ensemble)
}

/// The decision threshold by `rule`, from the validation rows' weighted mean of calibrated
/// member probabilities and the novelty member's verdict on each row.
fn choose_operating_point(
    rule: OperatingPoint,
    calibrated: &[Vec<f64>; 3],
    weights: &[f64; 3],
    labels: &[bool],
    novelty: Option<(
        &NoveltyDetector,
        &crate::features::FeatureSpec,
        &[LabeledExample],
    )>,
) -> Result<Choice> {
    let total: f64 = weights.iter().sum();
    let scores: Vec<f64> = (0..labels.len())
        .map(|i| (0..3).map(|m| calibrated[m][i] * weights[m]).sum::<f64>() / total)
        .collect();
    let flagged = match novelty {
        Some((detector, spec, rows)) => rows
            .iter()
            .map(|e| Ok(detector.score(spec, &e.signal)? >= detector.cutoff))
            .collect::<Result<Vec<bool>>>()?,
        None => vec![false; labels.len()],
    };
    rule.choose(&scores, labels, &flagged)
}

/// Sample weights of the rows `rows` of `examples` (repeats allowed), balanced by class.
fn weights_for(examples: &[LabeledExample], rows: &[usize]) -> Vec<f32> {
    let n = rows.len() as f64;
    let n_pos = rows.iter().filter(|&&r| examples[r].label).count() as f64;
    let n_neg = n - n_pos;
    rows.iter()
        .map(|&r| {
            let e = &examples[r];
            let count = if e.label { n_pos } else { n_neg };
            let class_weight = if count == 0.0 { 1.0 } else { n / (2.0 * count) };
            (e.weight * class_weight) as f32
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_written_configuration_keeps_defaults_and_refuses_unknown_keys() {
        let config = TrainConfig::from_json(
            r#"{"novelty": {"enabled": false}, "operating_point": "accuracy"}"#,
        )
        .unwrap();
        assert!(!config.novelty.enabled);
        assert_eq!(config.operating_point, OperatingPoint::Accuracy);
        assert_eq!(config.forest, ForestConfig::default());

        let error = TrainConfig::from_json(r#"{"novelty": {"enabeld": false}}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown key novelty.enabeld"), "{error}");
        assert!(error.contains("enabled"), "{error}");
        let error = TrainConfig::from_json(r#"{"operatng_point": "balanced"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown key operatng_point"), "{error}");

        let error = TrainConfig::from_json(r#"{"decision_threshold": 0.1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(r#""operating_point": "fixed:0.1""#),
            "{error}"
        );
        let error = TrainConfig::from_json("{").unwrap_err().to_string();
        assert!(error.contains("not JSON"), "{error}");
    }
}
