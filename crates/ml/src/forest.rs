//! A random forest written for this crate: histogram splits on pre-binned features, trees
//! grown in parallel on rayon, flat node arrays for fast single-row prediction.
//! See docs/ml.md for why it is not taken from a crate.

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Progress;
use crate::error::{Error, Result};
use crate::features::Matrix;

/// Random forest hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForestConfig {
    pub n_trees: usize,
    pub max_depth: usize,
    pub min_samples_leaf: usize,
    /// Share of the features tried at each split (sqrt(n) / n is the classic choice).
    pub feature_fraction: f64,
    /// Each tree sees a bootstrap sample of this share of the rows.
    pub sample_fraction: f64,
    /// Histogram bins per feature (at most 255).
    pub max_bins: usize,
    pub seed: u64,
    /// Worker threads; 0 means rayon's global pool (one per core).
    pub threads: usize,
}

impl Default for ForestConfig {
    fn default() -> Self {
        Self {
            n_trees: 100,
            max_depth: 14,
            min_samples_leaf: 3,
            feature_fraction: 0.15,
            sample_fraction: 0.5,
            max_bins: 64,
            seed: 42,
            threads: 0,
        }
    }
}

impl ForestConfig {
    /// Checks the hyperparameters.
    pub fn validate(&self) -> Result<()> {
        let ok = self.n_trees > 0
            && self.max_depth > 0
            && self.min_samples_leaf > 0
            && self.feature_fraction > 0.0
            && self.feature_fraction <= 1.0
            && self.sample_fraction > 0.0
            && self.sample_fraction <= 1.0
            && (2..=255).contains(&self.max_bins);
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidConfig(format!("random forest: {self:?}")))
        }
    }
}

/// One tree as flat arrays; node 0 is the root, `feature == LEAF` marks a leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub feature: Vec<u32>,
    pub threshold: Vec<f32>,
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    /// Leaf: weighted share of threats among the training rows that reached it.
    pub value: Vec<f32>,
}

const LEAF: u32 = u32::MAX;

impl Tree {
    fn new() -> Self {
        Self {
            feature: Vec::new(),
            threshold: Vec::new(),
            left: Vec::new(),
            right: Vec::new(),
            value: Vec::new(),
        }
    }

    fn push(&mut self, value: f32) -> usize {
        self.feature.push(LEAF);
        self.threshold.push(0.0);
        self.left.push(0);
        self.right.push(0);
        self.value.push(value);
        self.feature.len() - 1
    }

    /// The leaf value reached by `x`.
    pub fn predict(&self, x: &[f32]) -> f32 {
        let mut node = 0;
        loop {
            let f = self.feature[node];
            if f == LEAF {
                return self.value[node];
            }
            node = if x[f as usize] <= self.threshold[node] {
                self.left[node]
            } else {
                self.right[node]
            } as usize;
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.feature.len()
    }

    /// True for a tree without nodes (never produced by training).
    pub fn is_empty(&self) -> bool {
        self.feature.is_empty()
    }

    fn is_valid(&self, n_features: usize) -> bool {
        let n = self.feature.len();
        n > 0
            && [
                self.threshold.len(),
                self.left.len(),
                self.right.len(),
                self.value.len(),
            ]
            .iter()
            .all(|&l| l == n)
            && (0..n).all(|i| {
                let f = self.feature[i];
                f == LEAF
                    || ((f as usize) < n_features
                        && (self.left[i] as usize) < n
                        && (self.right[i] as usize) < n
                        && self.left[i] as usize > i
                        && self.right[i] as usize > i)
            })
    }
}

/// A trained random forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomForest {
    pub n_features: usize,
    pub trees: Vec<Tree>,
    /// Mean impurity decrease per feature, normalised to sum 1.
    pub importances: Vec<f64>,
}

impl RandomForest {
    /// Probability that `x` is a threat: the mean of the trees' leaf values.
    pub fn predict_proba(&self, x: &[f32]) -> f64 {
        let sum: f32 = self.trees.iter().map(|t| t.predict(x)).sum();
        f64::from(sum) / self.trees.len().max(1) as f64
    }

    /// Checks that the node arrays are consistent, so prediction cannot index out of bounds
    /// on a tampered artifact.
    pub fn check(&self) -> Result<()> {
        if self.trees.is_empty() || !self.trees.iter().all(|t| t.is_valid(self.n_features)) {
            return Err(Error::CorruptArtifact(
                "random forest trees are inconsistent".to_string(),
            ));
        }
        Ok(())
    }
}

/// Trains a random forest on `x` (rows of features), labels `y` and sample weights `w`.
pub fn train_forest(
    x: &Matrix,
    y: &[bool],
    w: &[f32],
    config: &ForestConfig,
    progress: &dyn Progress,
) -> Result<RandomForest> {
    config.validate()?;
    if x.rows < 2 || y.len() != x.rows || w.len() != x.rows || x.cols == 0 {
        return Err(Error::Training(format!(
            "random forest needs matching rows, labels and weights (rows {}, labels {}, weights {})",
            x.rows,
            y.len(),
            w.len()
        )));
    }
    let binned = Binned::new(x, config.max_bins);
    let pos_w: Vec<f32> = y
        .iter()
        .zip(w)
        .map(|(&l, &w)| if l { w } else { 0.0 })
        .collect();
    let neg_w: Vec<f32> = y
        .iter()
        .zip(w)
        .map(|(&l, &w)| if l { 0.0 } else { w })
        .collect();
    progress.stage("random forest", config.n_trees as u64);
    // Each tree draws from its own seed and `collect` keeps the trees in order, so the forest
    // is the same whatever the number of threads.
    let grow = || -> Vec<(Tree, Vec<f64>)> {
        (0..config.n_trees)
            .into_par_iter()
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(t as u64 * 7919));
                let grown = grow_tree(&binned, &pos_w, &neg_w, config, &mut rng);
                progress.advance("random forest", 1);
                grown
            })
            .collect()
    };
    let results = if config.threads == 0 {
        grow()
    } else {
        rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .build()
            .map_err(|e| Error::Training(format!("random forest thread pool: {e}")))?
            .install(grow)
    };
    progress.finish_stage("random forest");
    let mut importances = vec![0.0; x.cols];
    let mut trees = Vec::with_capacity(results.len());
    for (tree, imp) in results {
        importances.iter_mut().zip(imp).for_each(|(a, b)| *a += b);
        trees.push(tree);
    }
    let total: f64 = importances.iter().sum();
    if total > 0.0 {
        importances.iter_mut().for_each(|v| *v /= total);
    }
    Ok(RandomForest {
        n_features: x.cols,
        trees,
        importances,
    })
}

/// Features quantised into at most `max_bins` bins, column-major for histogram building.
struct Binned {
    rows: usize,
    cols: usize,
    /// `bins[c * rows + r]`.
    bins: Vec<u8>,
    /// Upper edges: bin `b` of column `c` holds values `<= edges[c][b]`.
    edges: Vec<Vec<f32>>,
}

impl Binned {
    fn new(x: &Matrix, max_bins: usize) -> Self {
        let mut edges = Vec::with_capacity(x.cols);
        let mut bins = vec![0u8; x.rows * x.cols];
        let mut column = Vec::with_capacity(x.rows);
        for c in 0..x.cols {
            column.clear();
            column.extend((0..x.rows).map(|r| x.data[r * x.cols + c]));
            let mut sorted = column.clone();
            sorted.sort_by(f32::total_cmp);
            let mut e: Vec<f32> = Vec::new();
            for k in 1..max_bins {
                let v = sorted[(k * sorted.len() / max_bins).min(sorted.len() - 1)];
                if e.last().is_none_or(|last| v > *last) {
                    e.push(v);
                }
            }
            // Everything above the last edge lands in one more bin.
            for (r, v) in column.iter().enumerate() {
                bins[c * x.rows + r] = e.partition_point(|edge| edge < v) as u8;
            }
            edges.push(e);
        }
        Self {
            rows: x.rows,
            cols: x.cols,
            bins,
            edges,
        }
    }

    fn column(&self, c: usize) -> &[u8] {
        &self.bins[c * self.rows..(c + 1) * self.rows]
    }
}

struct Split {
    feature: usize,
    bin: usize,
    gain: f64,
}

fn grow_tree(
    data: &Binned,
    pos_w: &[f32],
    neg_w: &[f32],
    config: &ForestConfig,
    rng: &mut ChaCha8Rng,
) -> (Tree, Vec<f64>) {
    let n_sample = ((data.rows as f64 * config.sample_fraction).round() as usize).max(2);
    let mut rows: Vec<u32> = (0..n_sample)
        .map(|_| rng.gen_range(0..data.rows) as u32)
        .collect();
    let mtry = ((data.cols as f64 * config.feature_fraction).round() as usize).clamp(1, data.cols);
    let mut tree = Tree::new();
    let mut importances = vec![0.0; data.cols];
    // (node, start, end, depth) ranges of `rows` still to split.
    let mut stack: Vec<(usize, usize, usize, usize)> = Vec::new();
    let root = tree.push(0.0);
    stack.push((root, 0, rows.len(), 0));
    let mut hist = vec![(0.0f64, 0.0f64, 0u32); 256];
    // The node's row weights, gathered once so the per-feature histogram loop touches only the
    // feature's own bin column at random.
    let mut node_w: Vec<(f32, f32)> = Vec::with_capacity(rows.len());
    while let Some((node, start, end, depth)) = stack.pop() {
        let slice = &rows[start..end];
        node_w.clear();
        node_w.extend(
            slice
                .iter()
                .map(|&r| (pos_w[r as usize], neg_w[r as usize])),
        );
        let (pos, neg) = node_w.iter().fold((0.0f64, 0.0f64), |(p, n), &(wp, wn)| {
            (p + f64::from(wp), n + f64::from(wn))
        });
        let total = pos + neg;
        tree.value[node] = if total > 0.0 {
            (pos / total) as f32
        } else {
            0.0
        };
        let n = end - start;
        if depth >= config.max_depth || n < 2 * config.min_samples_leaf || pos == 0.0 || neg == 0.0
        {
            continue;
        }
        let parent_cost = 2.0 * pos * neg / total;
        let mut best: Option<Split> = None;
        for feature in sample(rng, data.cols, mtry).into_iter() {
            let n_bins = data.edges[feature].len() + 1;
            if n_bins < 2 {
                continue;
            }
            let col = data.column(feature);
            hist[..n_bins].iter_mut().for_each(|h| *h = (0.0, 0.0, 0));
            for (&r, &(wp, wn)) in slice.iter().zip(&node_w) {
                let h = &mut hist[col[r as usize] as usize];
                h.0 += f64::from(wp);
                h.1 += f64::from(wn);
                h.2 += 1;
            }
            let (mut lp, mut ln, mut lc) = (0.0, 0.0, 0usize);
            for (bin, h) in hist[..n_bins - 1].iter().enumerate() {
                lp += h.0;
                ln += h.1;
                lc += h.2 as usize;
                let rc = n - lc;
                if lc < config.min_samples_leaf || rc < config.min_samples_leaf {
                    continue;
                }
                let (rp, rn) = (pos - lp, neg - ln);
                let (lw, rw) = (lp + ln, rp + rn);
                if lw <= 0.0 || rw <= 0.0 {
                    continue;
                }
                let cost = 2.0 * lp * ln / lw + 2.0 * rp * rn / rw;
                let gain = parent_cost - cost;
                if gain > 1e-12 && best.as_ref().is_none_or(|b| gain > b.gain) {
                    best = Some(Split { feature, bin, gain });
                }
            }
        }
        let Some(split) = best else { continue };
        importances[split.feature] += split.gain;
        // Partition rows[start..end] so rows going left come first.
        let col = data.column(split.feature);
        let part = &mut rows[start..end];
        let mut i = 0;
        let mut j = part.len();
        while i < j {
            if usize::from(col[part[i] as usize]) <= split.bin {
                i += 1;
            } else {
                j -= 1;
                part.swap(i, j);
            }
        }
        let mid = start + i;
        let left = tree.push(0.0);
        let right = tree.push(0.0);
        tree.feature[node] = split.feature as u32;
        tree.threshold[node] = data.edges[split.feature][split.bin];
        tree.left[node] = left as u32;
        tree.right[node] = right as u32;
        stack.push((right, mid, end, depth + 1));
        stack.push((left, start, mid, depth + 1));
    }
    (tree, importances)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;

    /// Two noisy interleaved half-moons-like classes: not linearly separable.
    fn data(n: usize, seed: u64) -> (Matrix, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut m = Matrix::zeros(n, 3);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let a: f32 = rng.gen_range(-1.0..1.0);
            let b: f32 = rng.gen_range(-1.0..1.0);
            let noise: f32 = rng.gen_range(-1.0..1.0);
            m.data[i * 3] = a;
            m.data[i * 3 + 1] = b;
            m.data[i * 3 + 2] = noise;
            y.push(a * a + b * b < 0.5);
        }
        (m, y)
    }

    #[test]
    fn forest_learns_a_nonlinear_boundary_and_ignores_noise() {
        let (x, y) = data(4000, 1);
        let w = vec![1.0; x.rows];
        let config = ForestConfig {
            n_trees: 30,
            feature_fraction: 0.67,
            ..ForestConfig::default()
        };
        let forest = train_forest(&x, &y, &w, &config, &NoProgress).unwrap();
        forest.check().unwrap();
        let (tx, ty) = data(1000, 2);
        let correct = (0..tx.rows)
            .filter(|&i| (forest.predict_proba(tx.row(i)) >= 0.5) == ty[i])
            .count();
        assert!(correct > 930, "accuracy {correct}/1000");
        assert!(
            forest.importances[2] < forest.importances[0] / 3.0,
            "{:?}",
            forest.importances
        );
    }

    #[test]
    fn forest_is_deterministic_for_a_seed_whatever_the_thread_count() {
        let (x, y) = data(1000, 3);
        let w = vec![1.0; x.rows];
        let one = ForestConfig {
            n_trees: 8,
            threads: 1,
            ..ForestConfig::default()
        };
        let two = ForestConfig { threads: 2, ..one };
        let a = train_forest(&x, &y, &w, &one, &NoProgress).unwrap();
        let b = train_forest(&x, &y, &w, &two, &NoProgress).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn tampered_trees_are_detected() {
        let (x, y) = data(500, 4);
        let w = vec![1.0; x.rows];
        let mut forest = train_forest(&x, &y, &w, &ForestConfig::default(), &NoProgress).unwrap();
        forest.trees[0].left[0] = 1_000_000;
        assert!(forest.check().is_err());
    }
}
