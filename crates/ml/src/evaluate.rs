//! Model evaluation: metrics of every member and the ensemble side by side, stratified k-fold
//! cross-validation, and the choice of the best model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_domain::{ModelMetrics, ModelType};

use crate::Progress;
use crate::ensemble::{Ensemble, MEMBERS};
use crate::error::{Error, Result};
use crate::metrics::binary_metrics;
use crate::pipeline::{DataPipeline, LabeledExample, SplitConfig, stratified_folds};
use crate::train::{TrainConfig, fit_ensemble};

/// Metrics of the ensemble and of each member on one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub rows: usize,
    /// The decision threshold the metrics were computed at.
    pub threshold: f64,
    pub ensemble: ModelMetrics,
    /// Per member, on calibrated probabilities at the same threshold.
    pub models: BTreeMap<ModelType, ModelMetrics>,
}

impl EvaluationReport {
    /// The best model by F1, then ROC AUC (the ensemble included).
    pub fn best_model(&self) -> ModelType {
        best_of(
            self.models
                .iter()
                .map(|(t, m)| (*t, *m))
                .chain([(ModelType::Ensemble, self.ensemble)]),
        )
    }

    /// One JSON object: ensemble metrics at top level, members under `models`.
    pub fn to_json(&self) -> serde_json::Value {
        let metrics = |m: &ModelMetrics| {
            serde_json::json!({
                "accuracy": m.accuracy,
                "precision": m.precision,
                "recall": m.recall,
                "f1": m.f1,
                "auc_roc": m.auc_roc,
            })
        };
        let mut top = metrics(&self.ensemble);
        top["rows"] = serde_json::json!(self.rows);
        top["threshold"] = serde_json::json!(self.threshold);
        top["best_model"] = serde_json::json!(self.best_model().as_str());
        top["models"] = self
            .models
            .iter()
            .map(|(t, m)| (t.as_str().to_string(), metrics(m)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        top
    }
}

fn best_of(candidates: impl Iterator<Item = (ModelType, ModelMetrics)>) -> ModelType {
    candidates
        .max_by(|a, b| {
            a.1.f1
                .total_cmp(&b.1.f1)
                .then(a.1.auc_roc.total_cmp(&b.1.auc_roc))
        })
        .map_or(ModelType::Ensemble, |(t, _)| t)
}

/// Cross-validation results: every fold and the mean per model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidationReport {
    pub folds: Vec<EvaluationReport>,
    /// Mean metrics per model (ensemble included); `cross_val_score` is the mean F1.
    pub mean: BTreeMap<ModelType, ModelMetrics>,
    pub best: ModelType,
}

/// Evaluates models and compares them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelEvaluator;

impl ModelEvaluator {
    /// Metrics of the ensemble and its members on labelled examples.
    pub fn evaluate(ensemble: &Ensemble, examples: &[LabeledExample]) -> Result<EvaluationReport> {
        let mut members: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut combined = Vec::with_capacity(examples.len());
        let (mut scratch, mut x) = (Vec::new(), Vec::new());
        for e in examples {
            ensemble
                .spec
                .transform_into(&e.signal, &mut scratch, &mut x)?;
            let score = ensemble.score_features(&e.signal, &x);
            combined.push(score.probability);
            for (m, p) in score.members.iter().enumerate() {
                members[m].push(*p);
            }
        }
        let y: Vec<bool> = examples.iter().map(|e| e.label).collect();
        let y = &y[..];
        let t = ensemble.decision_threshold;
        Ok(EvaluationReport {
            rows: examples.len(),
            threshold: t,
            ensemble: binary_metrics(&combined, y, t),
            models: MEMBERS
                .iter()
                .zip(&members)
                .map(|(ty, p)| (*ty, binary_metrics(p, y, t)))
                .collect(),
        })
    }

    /// Stratified k-fold cross-validation of the whole training recipe: each fold trains on
    /// the others (with 15 % of them held back for early stopping and calibration) and is
    /// scored on itself.
    pub fn cross_validate(
        examples: &[LabeledExample],
        config: &TrainConfig,
        k: usize,
        progress: &dyn Progress,
    ) -> Result<CrossValidationReport> {
        let folds = stratified_folds(examples, k, config.split.seed)?;
        let mut reports = Vec::with_capacity(k);
        for fold in 0..k {
            let (held, rest): (Vec<_>, Vec<_>) =
                examples.iter().zip(&folds).partition(|(_, f)| **f == fold);
            let held: Vec<LabeledExample> = held.into_iter().map(|(e, _)| e.clone()).collect();
            let rest: Vec<LabeledExample> = rest.into_iter().map(|(e, _)| e.clone()).collect();
            let inner = DataPipeline::from_examples(rest).split(&SplitConfig {
                train: 0.85,
                validation: 0.15,
                test: 0.0,
                seed: config.split.seed.wrapping_add(fold as u64),
            })?;
            let mut seconds = BTreeMap::new();
            let ensemble = fit_ensemble(
                &inner.train,
                &inner.validation,
                config,
                progress,
                &mut seconds,
            )?;
            reports.push(Self::evaluate(&ensemble, &held)?);
        }
        if reports.is_empty() {
            return Err(Error::InvalidConfig("no folds were evaluated".to_string()));
        }
        let mut mean: BTreeMap<ModelType, ModelMetrics> = BTreeMap::new();
        for ty in ModelType::ALL {
            let per_fold: Vec<ModelMetrics> = reports
                .iter()
                .map(|r| {
                    if ty == ModelType::Ensemble {
                        r.ensemble
                    } else {
                        r.models.get(&ty).copied().unwrap_or_default()
                    }
                })
                .collect();
            let n = per_fold.len() as f64;
            let avg = |f: fn(&ModelMetrics) -> f64| per_fold.iter().map(f).sum::<f64>() / n;
            let f1 = avg(|m| m.f1);
            mean.insert(
                ty,
                ModelMetrics {
                    accuracy: avg(|m| m.accuracy),
                    precision: avg(|m| m.precision),
                    recall: avg(|m| m.recall),
                    f1,
                    auc_roc: avg(|m| m.auc_roc),
                    cross_val_score: Some(f1),
                },
            );
        }
        let best = best_of(mean.iter().map(|(t, m)| (*t, *m)));
        Ok(CrossValidationReport {
            folds: reports,
            mean,
            best,
        })
    }
}
