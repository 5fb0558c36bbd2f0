//! How close a signal lies to the data the model was trained on, attacks and benign traffic
//! alike: the distance from its base columns to the nearest of a few hundred k-means
//! centroids of training rows, read as the share of validation rows that lie at least as far.
//!
//! The supervised members extrapolate outside that region without saying so; the novelty
//! member measures the distance to *benign* traffic only (an attack it has seen in training
//! is far from benign traffic but well inside the model's domain). Only the inputs the signal
//! carries are compared, so the score speaks of those alone: read it together with the
//! coverage.

use serde::{Deserialize, Serialize};
use vigil_domain::ThreatSignal;

use crate::error::{Error, Result};
use crate::features::{FeatureSpec, check_signal};
use crate::pipeline::LabeledExample;
use crate::prototypes::Prototypes;

/// How many validation distances are kept to read a signal's distance against.
const REFERENCE_POINTS: usize = 256;

/// Knobs of the domain measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainConfig {
    /// Fit the measure at all (without it every signal is in domain: 1).
    pub enabled: bool,
    /// Number of centroids of training rows.
    pub prototypes: usize,
    /// Lloyd iterations.
    pub iterations: usize,
    /// The centroids are fitted on at most this many training rows (evenly spaced).
    pub rows: usize,
}

impl Default for DomainConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            prototypes: 256,
            iterations: 5,
            rows: 20_000,
        }
    }
}

/// The fitted domain measure, saved in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingDomain {
    /// Centroids of training rows (both classes) in the spec's base columns.
    pub prototypes: Prototypes,
    /// Distances of validation rows to the nearest centroid: evenly spaced order statistics,
    /// ascending.
    pub reference: Vec<f64>,
}

impl TrainingDomain {
    /// Fits the centroids on rows of `train` and reads the distances of `validation` rows.
    pub fn fit(
        spec: &FeatureSpec,
        train: &[LabeledExample],
        validation: &[LabeledExample],
        config: DomainConfig,
    ) -> Result<Self> {
        if train.is_empty() || validation.is_empty() {
            return Err(Error::Training(
                "the domain measure needs training and validation rows".to_string(),
            ));
        }
        let step = train.len().div_ceil(config.rows.max(1)).max(1);
        let mut sample = spec.base_space_all(train.iter().step_by(step).map(|e| &e.signal))?;
        sample.fill_missing(&spec.base_space_impute());
        let prototypes = Prototypes::fit(&sample, config.prototypes, config.iterations, 0xd0a1)?;
        let vx = spec.base_space_all(validation.iter().map(|e| &e.signal))?;
        let mut distances: Vec<f64> = (0..vx.rows)
            .map(|r| prototypes.distance(vx.row(r)))
            .collect();
        distances.sort_unstable_by(f64::total_cmp);
        let reference = if distances.len() <= REFERENCE_POINTS {
            distances
        } else {
            let last = distances.len() - 1;
            (0..REFERENCE_POINTS)
                .map(|i| distances[i * last / (REFERENCE_POINTS - 1)])
                .collect()
        };
        Ok(Self {
            prototypes,
            reference,
        })
    }

    /// 0-1: the share of validation rows at least as far from the training data as `signal`
    /// (over the inputs it carries); 0 beyond every one of them.
    pub fn in_domain(&self, spec: &FeatureSpec, signal: &ThreatSignal) -> Result<f64> {
        check_signal(signal)?;
        Ok(self.in_domain_of_base(&spec.base_space_of_checked(signal)))
    }

    /// [`TrainingDomain::in_domain`] of a signal given its [`FeatureSpec::base_space`].
    pub(crate) fn in_domain_of_base(&self, base: &[f32]) -> f64 {
        let distance = self.prototypes.distance(base);
        let closer = self.reference.partition_point(|&r| r < distance);
        (self.reference.len() - closer) as f64 / self.reference.len().max(1) as f64
    }

    /// Checks the shape of a loaded measure against the spec.
    pub fn check(&self, spec: &FeatureSpec) -> Result<()> {
        self.prototypes.check(spec.base.len())?;
        let sorted = self.reference.windows(2).all(|w| w[0] <= w[1]);
        if self.reference.is_empty() || !sorted || self.reference.iter().any(|d| !d.is_finite()) {
            return Err(Error::CorruptArtifact(
                "domain measure: reference distances out of order".to_string(),
            ));
        }
        Ok(())
    }
}
