//! The ensemble: three calibrated models averaged with weights from validation performance.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_domain::{ModelType, ThreatSignal};

use crate::boost::XgbModel;
use crate::error::{Error, Result};
use crate::features::FeatureSpec;
use crate::forest::RandomForest;
use crate::in_domain::TrainingDomain;
use crate::metrics::brier;
use crate::mlp::Mlp;
use crate::novelty::NoveltyDetector;
use crate::operating_point::Choice;

/// The member models, in the order used by every per-model array.
pub const MEMBERS: [ModelType; 3] = [
    ModelType::RandomForest,
    ModelType::Xgboost,
    ModelType::NeuralNetwork,
];

/// Platt scaling: `p' = σ(a · logit(p) + b)`, fitted on the validation split so the members'
/// probabilities mean the same thing before they are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub a: f64,
    pub b: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Self { a: 1.0, b: 0.0 }
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Calibration {
    /// Fits `a` and `b` by Newton's method on the log loss, with Platt's smoothed targets
    /// (`(n+ + 1) / (n+ + 2)` and `1 / (n- + 2)`), which keeps a perfectly separated
    /// validation set from producing infinite confidence.
    pub fn fit(raw: &[f64], labels: &[bool]) -> Self {
        let n_pos = labels.iter().filter(|&&y| y).count() as f64;
        let n_neg = labels.len() as f64 - n_pos;
        if n_pos == 0.0 || n_neg == 0.0 {
            return Self::default();
        }
        let hi = (n_pos + 1.0) / (n_pos + 2.0);
        let lo = 1.0 / (n_neg + 2.0);
        let z: Vec<f64> = raw.iter().map(|&p| logit(p)).collect();
        let t: Vec<f64> = labels.iter().map(|&y| if y { hi } else { lo }).collect();
        let loss = |a: f64, b: f64| -> f64 {
            z.iter()
                .zip(&t)
                .map(|(&zi, &ti)| {
                    let m = a * zi + b;
                    // Stable -[t log σ(m) + (1 - t) log σ(-m)].
                    let softplus = |v: f64| v.max(0.0) + (-v.abs()).exp().ln_1p();
                    ti * softplus(-m) + (1.0 - ti) * softplus(m)
                })
                .sum()
        };
        let (mut a, mut b) = (1.0, 0.0);
        let mut current = loss(a, b);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
            for (&zi, &ti) in z.iter().zip(&t) {
                let p = sigmoid(a * zi + b);
                let d = p - ti;
                let s = (p * (1.0 - p)).max(1e-12);
                ga += d * zi;
                gb += d;
                haa += s * zi * zi;
                hab += s * zi;
                hbb += s;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-18 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            // Backtracking line search (as in Platt's method): Newton alone overshoots when
            // the data are nearly separable.
            let mut step = 1.0;
            let mut improved = false;
            while step > 1e-10 {
                let (na, nb) = (a - step * da, b - step * db);
                let next = loss(na, nb);
                if next < current {
                    a = na;
                    b = nb;
                    improved = current - next > 1e-12 * current.abs().max(1.0);
                    current = next;
                    break;
                }
                step /= 2.0;
            }
            if !improved {
                break;
            }
        }
        if a.is_finite() && b.is_finite() && a > 0.0 {
            Self { a, b }
        } else {
            Self::default()
        }
    }

    /// The calibrated probability.
    pub fn apply(&self, p: f64) -> f64 {
        sigmoid(self.a * logit(p) + self.b)
    }
}

/// Ensemble weights from validation Brier scores of the calibrated members: better members
/// count more, but the `+ 0.01` keeps one near-perfect member from silencing the others,
/// which matters on attack families none of them has seen.
pub fn weights_from_validation(calibrated: &[Vec<f64>; 3], labels: &[bool]) -> [f64; 3] {
    let mut w = [0.0; 3];
    for (wi, probs) in w.iter_mut().zip(calibrated) {
        *wi = 1.0 / (brier(probs, labels) + 0.01);
    }
    let total: f64 = w.iter().sum();
    w.map(|v| v / total)
}

/// One scored signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The larger of the weighted mean of the calibrated member probabilities and the novelty
    /// member's probability.
    pub probability: f64,
    /// Calibrated probability of each member, in [`MEMBERS`] order.
    pub members: [f64; 3],
    /// Probability from the novelty member (0 when the ensemble has none).
    pub novelty: f64,
    /// Share of the model's inputs the signal carried, 0-1.
    pub coverage: f64,
    /// 0-1: the share of validation rows at least as far from the training data as the
    /// signal, over the inputs it carried (1 when the ensemble has no domain measure).
    pub in_domain: f64,
    /// Probability at or above the decision threshold.
    pub is_threat: bool,
    /// 0-10; the decision threshold maps to 5.
    pub risk_score: f64,
    /// 0-1: distance from the decision threshold, discounted when the members disagree.
    pub confidence: f64,
}

/// Feature spec, the three trained members, their calibrations and weights, and the novelty
/// member fitted on benign traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    pub spec: FeatureSpec,
    pub forest: RandomForest,
    pub xgboost: XgbModel,
    pub mlp: Mlp,
    pub calibration: [Calibration; 3],
    pub weights: [f64; 3],
    /// Probability from which a signal counts as a threat.
    pub decision_threshold: f64,
    /// How the threshold was chosen on validation (absent in artifacts written before
    /// operating points, whose threshold was a fixed default).
    #[serde(default)]
    pub operating_point: Option<Choice>,
    /// Mean of the tree models' importances per feature, used to explain predictions.
    pub importances: Vec<f64>,
    /// Flags signals far outside benign traffic, whatever the supervised members say (absent
    /// in artifacts written before it existed, which then score as they always did).
    #[serde(default)]
    pub novelty: Option<NoveltyDetector>,
    /// How close a signal lies to the training data ([`Score::in_domain`]).
    #[serde(default)]
    pub domain: Option<TrainingDomain>,
}

impl Ensemble {
    /// Checks that every member fits the feature spec, so a tampered artifact fails at load
    /// time rather than at prediction.
    pub fn check(&self) -> Result<()> {
        let n = self.spec.len();
        let bad = |what: &str| Err(Error::CorruptArtifact(what.to_string()));
        if self.forest.n_features != n {
            return bad("random forest does not match the feature spec");
        }
        self.forest.check()?;
        self.mlp.check(n)?;
        if self.xgboost.importances().len() != n || self.importances.len() != n {
            return bad("xgboost does not match the feature spec");
        }
        self.spec.check()?;
        let w_ok = self.weights.iter().all(|w| w.is_finite() && *w >= 0.0)
            && self.weights.iter().sum::<f64>() > 0.0;
        let t_ok = self.decision_threshold > 0.0 && self.decision_threshold < 1.0;
        if !w_ok || !t_ok {
            return bad("ensemble weights or threshold out of range");
        }
        if let Some(novelty) = &self.novelty {
            novelty.check(&self.spec)?;
        }
        if let Some(domain) = &self.domain {
            domain.check(&self.spec)?;
        }
        Ok(())
    }

    /// Uncalibrated member probabilities for a feature vector (missing columns `NaN`):
    /// XGBoost reads the missing values as such, the forest and the network read them
    /// imputed.
    pub fn raw_probabilities(&self, x: &[f32]) -> [f64; 3] {
        let mut imputed = Vec::with_capacity(x.len());
        self.spec.impute_into(x, &mut imputed);
        [
            self.forest.predict_proba(&imputed),
            self.xgboost.predict_proba(x),
            self.mlp.predict_proba(&imputed),
        ]
    }

    /// Scores a signal given its feature vector `x`, computed from that signal by
    /// `self.spec` (the novelty member and the domain measure also read the signal itself).
    pub fn score_features(&self, signal: &ThreatSignal, x: &[f32]) -> Score {
        let raw = self.raw_probabilities(x);
        let members = [0, 1, 2].map(|i| self.calibration[i].apply(raw[i]));
        let total: f64 = self.weights.iter().sum();
        let supervised = members
            .iter()
            .zip(&self.weights)
            .map(|(p, w)| p * w)
            .sum::<f64>()
            / total;
        // The novelty member's prototypes and the domain measure read the same base columns.
        let needs_base = self.domain.is_some()
            || self
                .novelty
                .as_ref()
                .is_some_and(|n| n.prototypes.is_some());
        let base = if needs_base {
            self.spec.base_space_of_checked(signal)
        } else {
            Vec::new()
        };
        let novelty = self.novelty.as_ref().map_or(0.0, |n| {
            n.probability_with_base(signal, &base, self.decision_threshold)
        });
        let in_domain = self
            .domain
            .as_ref()
            .map_or(1.0, |d| d.in_domain_of_base(&base));
        let mut score = self.score_from(supervised.max(novelty), members, novelty);
        score.coverage = self.spec.coverage_share(x);
        score.in_domain = in_domain;
        score
    }

    fn score_from(&self, probability: f64, members: [f64; 3], novelty: f64) -> Score {
        let t = self.decision_threshold;
        let (risk_score, certainty) = if probability < t {
            (5.0 * probability / t, (t - probability) / t)
        } else {
            (
                5.0 + 5.0 * (probability - t) / (1.0 - t),
                (probability - t) / (1.0 - t),
            )
        };
        let spread = members.iter().copied().fold(f64::MIN, f64::max)
            - members.iter().copied().fold(f64::MAX, f64::min);
        let agreement = (1.0 - spread).clamp(0.0, 1.0);
        Score {
            probability,
            members,
            novelty,
            coverage: 1.0,
            in_domain: 1.0,
            is_threat: probability >= t,
            risk_score: risk_score.clamp(0.0, 10.0),
            confidence: (certainty * (0.5 + 0.5 * agreement)).clamp(0.0, 1.0),
        }
    }

    /// Scores a signal.
    pub fn score(&self, signal: &ThreatSignal) -> Result<Score> {
        let x = self.spec.transform(signal)?;
        Ok(self.score_features(signal, &x))
    }

    /// The `k` features that mattered most for this vector (importance times how far the value
    /// is from the training mean), with their engineered values. Missing columns are never
    /// listed (their indicators, `missing:<input>`, may be).
    pub fn explain(&self, x: &[f32], k: usize) -> BTreeMap<String, f64> {
        let mut ranked: Vec<(usize, f64)> = x
            .iter()
            .zip(&self.importances)
            .enumerate()
            .filter(|(_, (v, _))| !v.is_nan())
            .map(|(i, (v, imp))| (i, imp * (f64::from(v.abs()) + 0.1)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
            .into_iter()
            .take(k)
            .map(|(i, _)| (self.spec.feature_name(i), f64::from(x[i])))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_scaling_fixes_overconfident_probabilities() {
        // A member that says 0.99 / 0.01 but is right only 80 % of the time.
        let mut raw = Vec::new();
        let mut y = Vec::new();
        for i in 0..1000 {
            let says_threat = i % 2 == 0;
            let right = i % 10 >= 2;
            raw.push(if says_threat { 0.99 } else { 0.01 });
            y.push(if right { says_threat } else { !says_threat });
        }
        let c = Calibration::fit(&raw, &y);
        assert!((c.apply(0.99) - 0.8).abs() < 0.02, "{}", c.apply(0.99));
        assert!((c.apply(0.01) - 0.2).abs() < 0.02, "{}", c.apply(0.01));
        assert!(c.apply(0.99) > c.apply(0.5));
    }

    #[test]
    fn better_members_get_more_weight() {
        let y = vec![true, false, true, false];
        let good = vec![0.9, 0.1, 0.9, 0.1];
        let bad = vec![0.6, 0.4, 0.4, 0.6];
        let w = weights_from_validation(&[good.clone(), bad, good], &y);
        assert!(w[0] > w[1] && (w[0] - w[2]).abs() < 1e-12);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
