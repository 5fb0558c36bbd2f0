//! Benign prototypes: k-means centroids of benign feature vectors, and how far a vector lies
//! from the nearest one.
//!
//! The novelty member's tails look at one attribute at a time; a signal whose every value is
//! ordinary on its own but whose combination is not (one failed telnet login, reset by the
//! client, from a host that made forty such connections) is only seen by a distance in the
//! whole feature space. The distance to the nearest of a few hundred centroids is that
//! measure at a cost of microseconds per prediction (docs/ml.md has what it adds).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::Matrix;

/// Centroids of benign feature vectors (row-major, `dim` columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prototypes {
    pub dim: usize,
    pub centroids: Vec<f32>,
}

impl Prototypes {
    /// k-means (k-means++ seeding, then `iterations` Lloyd steps) on the rows of `x`;
    /// deterministic for a seed whatever the number of threads.
    pub fn fit(x: &Matrix, k: usize, iterations: usize, seed: u64) -> Result<Self> {
        if x.rows == 0 || x.cols == 0 {
            return Err(Error::Training(
                "benign prototypes need at least one benign row".to_string(),
            ));
        }
        let k = k.clamp(1, x.rows);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut centroids: Vec<f32> = Vec::with_capacity(k * x.cols);
        centroids.extend_from_slice(x.row(rng.gen_range(0..x.rows)));
        // k-means++: each next centroid is a row drawn with probability proportional to its
        // squared distance from the nearest centroid so far.
        let mut nearest: Vec<f64> = (0..x.rows)
            .map(|r| f64::from(squared_distance(x.row(r), &centroids[..x.cols])))
            .collect();
        while centroids.len() < k * x.cols {
            let total: f64 = nearest.iter().sum();
            if total <= 0.0 {
                break; // fewer distinct rows than k
            }
            let mut target = rng.r#gen::<f64>() * total;
            let mut pick = x.rows - 1;
            for (r, d) in nearest.iter().enumerate() {
                if target < *d {
                    pick = r;
                    break;
                }
                target -= d;
            }
            let start = centroids.len();
            centroids.extend_from_slice(x.row(pick));
            let added = &centroids[start..];
            par_rows(&mut nearest, |r, d| {
                *d = d.min(f64::from(squared_distance(x.row(r), added)));
            });
        }
        let mut prototypes = Self {
            dim: x.cols,
            centroids,
        };
        for _ in 0..iterations {
            let assignment = prototypes.assign(x);
            let k = prototypes.len();
            let mut sums = vec![0.0_f64; k * x.cols];
            let mut counts = vec![0_usize; k];
            for (r, &c) in assignment.iter().enumerate() {
                counts[c] += 1;
                for (s, v) in sums[c * x.cols..(c + 1) * x.cols].iter_mut().zip(x.row(r)) {
                    *s += f64::from(*v);
                }
            }
            for c in 0..k {
                if counts[c] == 0 {
                    continue; // an empty cluster keeps its centroid
                }
                let n = counts[c] as f64;
                for (target, s) in prototypes.centroids[c * x.cols..(c + 1) * x.cols]
                    .iter_mut()
                    .zip(&sums[c * x.cols..(c + 1) * x.cols])
                {
                    *target = (s / n) as f32;
                }
            }
        }
        // Largest clusters first: most signals are nearest to one of them, and
        // `distance` can then stop early on the others.
        let assignment = prototypes.assign(x);
        let mut sizes = vec![0_usize; prototypes.len()];
        assignment.iter().for_each(|&c| sizes[c] += 1);
        let mut order: Vec<usize> = (0..prototypes.len()).collect();
        order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
        let dim = prototypes.dim;
        prototypes.centroids = order
            .iter()
            .flat_map(|&c| prototypes.centroids[c * dim..(c + 1) * dim].to_vec())
            .collect();
        Ok(prototypes)
    }

    /// Number of centroids.
    pub fn len(&self) -> usize {
        self.centroids.len() / self.dim.max(1)
    }

    /// `true` when there are no centroids.
    pub fn is_empty(&self) -> bool {
        self.centroids.is_empty()
    }

    /// Euclidean distance from `x` to the nearest centroid, over the columns `x` carries
    /// (`NaN` columns are left out).
    pub fn distance(&self, x: &[f32]) -> f64 {
        let mut best = f32::INFINITY;
        for centroid in self.centroids.chunks_exact(self.dim) {
            best = best.min(squared_distance_below(x, centroid, best));
        }
        f64::from(best).sqrt()
    }

    /// Index of the nearest centroid of every row, on all cores.
    fn assign(&self, x: &Matrix) -> Vec<usize> {
        let mut out = vec![0; x.rows];
        par_rows(&mut out, |r, slot| {
            let row = x.row(r);
            let mut best = (f32::INFINITY, 0);
            for (c, centroid) in self.centroids.chunks_exact(self.dim).enumerate() {
                let d = squared_distance(row, centroid);
                if d < best.0 {
                    best = (d, c);
                }
            }
            *slot = best.1;
        });
        out
    }

    /// Checks the shape of loaded prototypes against the feature vector length.
    pub fn check(&self, dim: usize) -> Result<()> {
        let ok = self.dim == dim
            && !self.centroids.is_empty()
            && self.centroids.len().is_multiple_of(dim.max(1))
            && self.centroids.iter().all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err(Error::CorruptArtifact(format!(
                "benign prototypes do not match the {dim} features"
            )))
        }
    }
}

/// Calls `f(row, slot)` for every slot of `out`, on all cores.
fn par_rows<T: Send>(out: &mut [T], f: impl Fn(usize, &mut T) + Sync) {
    out.par_iter_mut()
        .enumerate()
        .for_each(|(row, slot)| f(row, slot));
}

/// [`squared_distance`], or any value not below `bound` as soon as the partial sum reaches
/// it (checked every 32 dimensions, so the lanes still vectorise).
fn squared_distance_below(a: &[f32], b: &[f32], bound: f32) -> f32 {
    const BLOCK: usize = 32;
    let mut total = 0.0;
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        total += squared_distance(x, y);
        if total >= bound {
            return total;
        }
    }
    total
}

/// Squared Euclidean distance over the columns where neither side is `NaN` (missing), summed
/// in eight independent lanes so that the compiler can vectorise it (a single running f32 sum
/// has to be added in order).
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let term = |x: f32, y: f32| {
        let d = x - y;
        if d.is_nan() { 0.0 } else { d * d }
    };
    let mut acc = [0.0_f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| term(*x, *y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += term(x[i], y[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs() -> Matrix {
        // Two tight blobs around (0, 0) and (10, 10).
        let mut data = Vec::new();
        for i in 0..200 {
            let jitter = (i % 7) as f32 * 0.01;
            let centre = if i % 2 == 0 { 0.0 } else { 10.0 };
            data.extend_from_slice(&[centre + jitter, centre - jitter]);
        }
        Matrix {
            rows: 200,
            cols: 2,
            data,
        }
    }

    #[test]
    fn centroids_find_the_blobs_and_distances_separate_outliers() {
        let p = Prototypes::fit(&blobs(), 2, 5, 7).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p.distance(&[0.02, -0.02]) < 0.1);
        assert!(p.distance(&[10.0, 10.0]) < 0.1);
        assert!(p.distance(&[5.0, 5.0]) > 6.0);
        p.check(2).unwrap();
        assert!(p.check(3).is_err());
        // A missing column is left out of the distance, not read as 0.
        assert!(p.distance(&[f32::NAN, 10.0]) < 0.1);
        assert!(p.distance(&[0.0, f32::NAN]) < 0.1);
        assert_eq!(p.distance(&[f32::NAN, f32::NAN]), 0.0);
    }

    #[test]
    fn deterministic_for_a_seed_and_more_centroids_than_distinct_rows_is_fine() {
        let a = Prototypes::fit(&blobs(), 16, 3, 1).unwrap();
        let b = Prototypes::fit(&blobs(), 16, 3, 1).unwrap();
        assert_eq!(a, b);
        // 14 distinct rows: seeding stops when every row is a centroid.
        assert!(a.len() <= 14, "{}", a.len());
        assert_eq!(a.distance(&[0.0, 0.0]), 0.0);
    }
}
