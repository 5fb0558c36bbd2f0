//! Binary classification metrics.

use vigil_domain::ModelMetrics;

/// Accuracy, precision, recall, F1 at `threshold`, and ROC AUC, of probabilities against
/// labels. Empty input gives all-zero metrics.
pub fn binary_metrics(probabilities: &[f64], labels: &[bool], threshold: f64) -> ModelMetrics {
    let n = probabilities.len().min(labels.len());
    if n == 0 {
        return ModelMetrics::default();
    }
    let (mut tp, mut fp, mut tn, mut fn_) = (0usize, 0usize, 0usize, 0usize);
    for (&p, &y) in probabilities.iter().zip(labels) {
        match (p >= threshold, y) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    ModelMetrics {
        accuracy: ratio(tp + tn, n),
        precision,
        recall,
        f1,
        auc_roc: roc_auc(&probabilities[..n], &labels[..n]),
        cross_val_score: None,
    }
}

/// Area under the ROC curve (the probability that a random threat scores above a random benign
/// example, ties counting half). 0.5 when one class is absent.
pub fn roc_auc(probabilities: &[f64], labels: &[bool]) -> f64 {
    let mut pairs: Vec<(f64, bool)> = probabilities
        .iter()
        .copied()
        .zip(labels.iter().copied())
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n_pos = pairs.iter().filter(|p| p.1).count() as f64;
    let n_neg = pairs.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return 0.5;
    }
    // Mann-Whitney U with average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// Mean log loss, probabilities clamped away from 0 and 1.
pub fn log_loss(probabilities: &[f64], labels: &[bool]) -> f64 {
    let n = probabilities.len().min(labels.len()).max(1) as f64;
    probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(1e-7, 1.0 - 1e-7);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / n
}

/// Mean squared error of probabilities (Brier score).
pub fn brier(probabilities: &[f64], labels: &[bool]) -> f64 {
    let n = probabilities.len().min(labels.len()).max(1) as f64;
    probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum::<f64>()
        / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_a_known_confusion_matrix() {
        // tp = 2, fp = 1, tn = 3, fn = 1
        let p = [0.9, 0.8, 0.7, 0.2, 0.1, 0.3, 0.4];
        let y = [true, true, false, true, false, false, false];
        let m = binary_metrics(&p, &y, 0.5);
        assert!((m.accuracy - 5.0 / 7.0).abs() < 1e-12);
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
        // Of the 3 * 4 (threat, benign) pairs, 0.9 and 0.8 beat all 4 benign, 0.2 beats only 0.1.
        assert!((m.auc_roc - 9.0 / 12.0).abs() < 1e-12, "{}", m.auc_roc);
    }

    #[test]
    fn auc_handles_ties_and_single_class() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), 0.5);
        assert_eq!(roc_auc(&[0.1, 0.9], &[true, true]), 0.5);
        assert_eq!(roc_auc(&[0.1, 0.9], &[false, true]), 1.0);
        assert_eq!(binary_metrics(&[], &[], 0.5), ModelMetrics::default());
    }
}
