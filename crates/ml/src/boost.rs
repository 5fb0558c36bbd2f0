//! Gradient-boosted trees: trained by XGBoost (through xgboost-rs), served by a pure-Rust
//! evaluator of the dumped JSON model. The evaluator is `Send + Sync`, needs no C call per row
//! and gives the same probabilities as XGBoost (tested below).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use xgboost_rs::{Booster, DMatrix};

use crate::Progress;
use crate::error::{Error, Result};
use crate::features::Matrix;

/// XGBoost hyperparameters (names as in XGBoost's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BoostConfig {
    pub rounds: usize,
    pub max_depth: usize,
    pub eta: f64,
    pub subsample: f64,
    pub colsample_bytree: f64,
    pub min_child_weight: f64,
    pub lambda: f64,
    pub alpha: f64,
    pub gamma: f64,
    pub seed: u64,
    /// Worker threads; 0 means one per core. One by default: XGBoost 1.6's OpenMP threads
    /// spin at barriers, and on a small machine shared with other work two threads were
    /// measured both slower on average and far less predictable (2.5 s versus 1.4-24 s).
    pub threads: usize,
}

impl Default for BoostConfig {
    fn default() -> Self {
        Self {
            rounds: 100,
            max_depth: 6,
            eta: 0.15,
            subsample: 0.8,
            colsample_bytree: 0.6,
            min_child_weight: 2.0,
            lambda: 2.0,
            alpha: 0.0,
            gamma: 0.0,
            seed: 42,
            threads: 1,
        }
    }
}

impl BoostConfig {
    fn params(&self) -> Result<HashMap<String, String>> {
        let ok = self.rounds > 0
            && self.max_depth > 0
            && self.eta > 0.0
            && self.subsample > 0.0
            && self.subsample <= 1.0
            && self.colsample_bytree > 0.0
            && self.colsample_bytree <= 1.0
            && self.min_child_weight >= 0.0
            && self.lambda >= 0.0
            && self.alpha >= 0.0
            && self.gamma >= 0.0;
        if !ok {
            return Err(Error::InvalidConfig(format!("xgboost: {self:?}")));
        }
        let threads = if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        };
        let pairs = [
            ("objective", "binary:logistic".to_string()),
            ("tree_method", "hist".to_string()),
            ("max_depth", self.max_depth.to_string()),
            ("eta", self.eta.to_string()),
            ("subsample", self.subsample.to_string()),
            ("colsample_bytree", self.colsample_bytree.to_string()),
            ("min_child_weight", self.min_child_weight.to_string()),
            ("lambda", self.lambda.to_string()),
            ("alpha", self.alpha.to_string()),
            ("gamma", self.gamma.to_string()),
            ("seed", self.seed.to_string()),
            ("nthread", threads.to_string()),
            ("verbosity", "0".to_string()),
            // Pinned so the evaluator's margin start matches the model whatever the default.
            ("base_score", "0.5".to_string()),
        ];
        Ok(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
}

/// One regression tree of the booster, in XGBoost's own array layout.
#[derive(Debug, Clone, PartialEq)]
struct XgbTree {
    left: Vec<i32>,
    right: Vec<i32>,
    feature: Vec<u32>,
    /// Split threshold for inner nodes, leaf value for leaves.
    condition: Vec<f32>,
    default_left: Vec<bool>,
}

impl XgbTree {
    fn leaf_value(&self, x: &[f32]) -> f32 {
        let mut node = 0usize;
        loop {
            let left = self.left[node];
            if left < 0 {
                return self.condition[node];
            }
            let v = x[self.feature[node] as usize];
            // Same rule as XGBoost's RegTree::GetNext: NaN is missing, `<` goes left.
            let go_left = if v.is_nan() {
                self.default_left[node]
            } else {
                v < self.condition[node]
            };
            node = if go_left { left } else { self.right[node] } as usize;
        }
    }
}

/// A trained booster: XGBoost's JSON model plus the parsed trees that serve predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "XgbRepr", into = "XgbRepr")]
pub struct XgbModel {
    json: String,
    trees: Vec<XgbTree>,
    base_margin: f32,
    n_features: usize,
    /// Total split gain per feature, normalised to sum 1.
    importances: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct XgbRepr {
    n_features: usize,
    /// XGBoost's own JSON model, so it can be reloaded into XGBoost as well.
    xgboost_json: String,
}

impl From<XgbModel> for XgbRepr {
    fn from(m: XgbModel) -> Self {
        XgbRepr {
            n_features: m.n_features,
            xgboost_json: m.json,
        }
    }
}

impl TryFrom<XgbRepr> for XgbModel {
    type Error = Error;

    fn try_from(repr: XgbRepr) -> Result<Self> {
        XgbModel::from_json(repr.xgboost_json, repr.n_features)
    }
}

impl XgbModel {
    /// Parses XGBoost's JSON model (format of XGBoost 1.6).
    pub fn from_json(json: String, n_features: usize) -> Result<Self> {
        let corrupt = |what: &str| Error::CorruptArtifact(format!("xgboost model: {what}"));
        let root: Value = serde_json::from_str(&json).map_err(|e| corrupt(&e.to_string()))?;
        let learner = &root["learner"];
        let base_score: f32 = match &learner["learner_model_param"]["base_score"] {
            Value::String(s) => s.parse().map_err(|_| corrupt("base_score"))?,
            Value::Number(n) => n.as_f64().ok_or_else(|| corrupt("base_score"))? as f32,
            _ => return Err(corrupt("missing base_score")),
        };
        if !(base_score > 0.0 && base_score < 1.0) {
            return Err(corrupt("base_score outside 0-1"));
        }
        // XGBoost's ProbToMargin for binary:logistic, in f32 as XGBoost computes it.
        let base_margin = -(1.0f32 / base_score - 1.0).ln();
        let trees_json = learner["gradient_booster"]["model"]["trees"]
            .as_array()
            .ok_or_else(|| corrupt("no trees"))?;
        let mut trees = Vec::with_capacity(trees_json.len());
        let mut importances = vec![0.0; n_features];
        for t in trees_json {
            let ints = |key: &str| -> Result<Vec<i64>> {
                t[key]
                    .as_array()
                    .ok_or_else(|| corrupt(key))?
                    .iter()
                    .map(|v| {
                        v.as_i64()
                            .or_else(|| v.as_bool().map(i64::from))
                            .ok_or_else(|| corrupt(key))
                    })
                    .collect()
            };
            let floats = |key: &str| -> Result<Vec<f32>> {
                t[key]
                    .as_array()
                    .ok_or_else(|| corrupt(key))?
                    .iter()
                    .map(|v| v.as_f64().map(|f| f as f32).ok_or_else(|| corrupt(key)))
                    .collect()
            };
            let left = ints("left_children")?;
            let right = ints("right_children")?;
            let feature = ints("split_indices")?;
            let condition = floats("split_conditions")?;
            let default_left = ints("default_left")?;
            let gains = floats("loss_changes")?;
            let n = left.len();
            if n == 0
                || [
                    right.len(),
                    feature.len(),
                    condition.len(),
                    default_left.len(),
                    gains.len(),
                ]
                .iter()
                .any(|&l| l != n)
            {
                return Err(corrupt("tree arrays differ in length"));
            }
            for i in 0..n {
                if left[i] >= 0 {
                    let ok_child = |c: i64| c > i as i64 && (c as usize) < n;
                    let f = feature[i];
                    if !ok_child(left[i])
                        || !ok_child(right[i])
                        || f < 0
                        || f as usize >= n_features
                    {
                        return Err(corrupt("tree structure out of bounds"));
                    }
                    importances[f as usize] += f64::from(gains[i].max(0.0));
                }
            }
            trees.push(XgbTree {
                left: left.iter().map(|&v| v as i32).collect(),
                right: right.iter().map(|&v| v as i32).collect(),
                feature: feature.iter().map(|&v| v.max(0) as u32).collect(),
                condition,
                default_left: default_left.iter().map(|&v| v != 0).collect(),
            });
        }
        if trees.is_empty() {
            return Err(corrupt("no trees"));
        }
        let total: f64 = importances.iter().sum();
        if total > 0.0 {
            importances.iter_mut().for_each(|v| *v /= total);
        }
        Ok(Self {
            json,
            trees,
            base_margin,
            n_features,
            importances,
        })
    }

    /// Probability that `x` is a threat, computed like XGBoost does (f32 margin, sigmoid).
    pub fn predict_proba(&self, x: &[f32]) -> f64 {
        let mut margin = self.base_margin;
        for tree in &self.trees {
            margin += tree.leaf_value(x);
        }
        f64::from(1.0f32 / (1.0f32 + (-margin).exp()))
    }

    /// XGBoost's JSON model.
    pub fn xgboost_json(&self) -> &str {
        &self.json
    }

    /// Number of boosted trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Split-gain importance per feature.
    pub fn importances(&self) -> &[f64] {
        &self.importances
    }

    /// Predicts through XGBoost itself (reloading the JSON model); used to check the evaluator.
    pub fn predict_with_xgboost(&self, x: &Matrix) -> Result<Vec<f32>> {
        let booster = Booster::load_buffer(self.json.as_bytes()).map_err(xgb_error)?;
        let dmat = dense_dmatrix(x)?;
        booster.predict(&dmat).map_err(xgb_error)
    }
}

fn xgb_error(err: xgboost_rs::XGBError) -> Error {
    Error::Xgboost(err.to_string())
}

/// Builds a DMatrix with every present cell stored explicitly, so zeros are values rather than
/// "missing" (xgboost-rs's `from_dense` treats 0.0 as missing), and `NaN` cells left out: those
/// are XGBoost's missing values, which take each split's learned default branch.
fn dense_dmatrix(x: &Matrix) -> Result<DMatrix> {
    if x.rows == 0 || x.cols == 0 {
        return Err(Error::Training(
            "xgboost needs a non-empty matrix".to_string(),
        ));
    }
    let mut indptr = Vec::with_capacity(x.rows + 1);
    let mut indices = Vec::with_capacity(x.data.len());
    let mut values = Vec::with_capacity(x.data.len());
    indptr.push(0);
    for r in 0..x.rows {
        for (c, &v) in x.row(r).iter().enumerate() {
            if !v.is_nan() {
                indices.push(c);
                values.push(v);
            }
        }
        indptr.push(values.len());
    }
    DMatrix::from_csr(&indptr, &indices, &values, Some(x.cols)).map_err(xgb_error)
}

/// Trains a booster with XGBoost on rows `x`, labels `y` and sample weights `w`.
pub fn train_xgboost(
    x: &Matrix,
    y: &[bool],
    w: &[f32],
    config: &BoostConfig,
    progress: &dyn Progress,
) -> Result<XgbModel> {
    let params = config.params()?;
    if y.len() != x.rows || w.len() != x.rows {
        return Err(Error::Training(
            "xgboost needs one label and one weight per row".to_string(),
        ));
    }
    let mut dtrain = dense_dmatrix(x)?;
    let labels: Vec<f32> = y.iter().map(|&l| f32::from(u8::from(l))).collect();
    dtrain.set_labels(&labels).map_err(xgb_error)?;
    dtrain.set_weights(w).map_err(xgb_error)?;
    let mut booster = Booster::new_with_json_config(&[&dtrain], params).map_err(xgb_error)?;
    progress.stage("xgboost", config.rounds as u64);
    for round in 0..config.rounds {
        booster.update(&dtrain, round as i32).map_err(xgb_error)?;
        progress.advance("xgboost", 1);
    }
    progress.finish_stage("xgboost");
    let json = booster
        .save_to_buffer("json".to_string())
        .map_err(xgb_error)?;
    XgbModel::from_json(json, x.cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn data(n: usize, seed: u64) -> (Matrix, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut m = Matrix::zeros(n, 4);
        let mut y = Vec::new();
        for i in 0..n {
            for c in 0..4 {
                // Plenty of exact zeros, which XGBoost must see as values, not missing.
                m.data[i * 4 + c] = if rng.gen_bool(0.3) {
                    0.0
                } else {
                    rng.gen_range(-2.0..2.0)
                };
            }
            let r = m.row(i);
            y.push(r[0] * r[1] > 0.1 || r[2] > 1.5);
        }
        (m, y)
    }

    #[test]
    fn rust_evaluator_matches_xgboost_and_learns() {
        let (x, y) = data(3000, 1);
        let w = vec![1.0; x.rows];
        let config = BoostConfig {
            rounds: 40,
            threads: 1,
            ..BoostConfig::default()
        };
        let model = train_xgboost(&x, &y, &w, &config, &NoProgress).unwrap();
        assert_eq!(model.n_trees(), 40);
        let (tx, ty) = data(1000, 2);
        let native = model.predict_with_xgboost(&tx).unwrap();
        let mut max_diff = 0.0f64;
        let mut correct = 0;
        for i in 0..tx.rows {
            let ours = model.predict_proba(tx.row(i));
            max_diff = max_diff.max((ours - f64::from(native[i])).abs());
            if (ours >= 0.5) == ty[i] {
                correct += 1;
            }
        }
        assert!(
            max_diff < 1e-6,
            "evaluator differs from xgboost by {max_diff}"
        );
        assert!(correct > 900, "accuracy {correct}/1000");
    }

    #[test]
    fn missing_values_take_a_learned_branch_and_match_xgboost() {
        // Column 3 is missing in a third of the rows, and missing means "threat" here: only a
        // model that sees the missing values as such (not as zeros) can learn it.
        let (mut x, mut y) = data(3000, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (row, label) in x.data.chunks_exact_mut(4).zip(y.iter_mut()) {
            if rng.gen_bool(0.33) {
                row[3] = f32::NAN;
                *label = true;
            } else if row[3] == 0.0 {
                *label = false;
            }
        }
        let w = vec![1.0; x.rows];
        let config = BoostConfig {
            rounds: 30,
            ..BoostConfig::default()
        };
        let model = train_xgboost(&x, &y, &w, &config, &NoProgress).unwrap();
        let native = model.predict_with_xgboost(&x).unwrap();
        let mut max_diff = 0.0f64;
        let (mut missing, mut zero) = (Vec::new(), Vec::new());
        for (i, theirs) in native.iter().enumerate() {
            let ours = model.predict_proba(x.row(i));
            max_diff = max_diff.max((ours - f64::from(*theirs)).abs());
            if x.row(i)[3].is_nan() {
                missing.push(ours);
            } else if x.row(i)[3] == 0.0 {
                zero.push(ours);
            }
        }
        assert!(
            max_diff < 1e-6,
            "evaluator differs from xgboost by {max_diff}"
        );
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&missing) > 0.9, "missing rows {}", mean(&missing));
        assert!(mean(&zero) < 0.5, "zero rows {}", mean(&zero));
    }

    #[test]
    fn serde_round_trip_predicts_identically_and_bad_json_is_refused() {
        let (x, y) = data(500, 3);
        let w = vec![1.0; x.rows];
        let config = BoostConfig {
            rounds: 10,
            ..BoostConfig::default()
        };
        let model = train_xgboost(&x, &y, &w, &config, &NoProgress).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: XgbModel = serde_json::from_str(&json).unwrap();
        for i in 0..x.rows {
            assert_eq!(
                model.predict_proba(x.row(i)).to_bits(),
                back.predict_proba(x.row(i)).to_bits()
            );
        }
        assert!(XgbModel::from_json("{\"learner\":{}}".to_string(), 4).is_err());
        let too_few_features = XgbModel::from_json(model.xgboost_json().to_string(), 1);
        assert!(too_few_features.is_err());
    }
}
