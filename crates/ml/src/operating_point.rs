//! The operating point: the probability from which the ensemble calls a signal a threat, chosen
//! by a stated rule on the validation split, never on the data a model is reported on.
//!
//! - `balanced`: the threshold that maximises balanced accuracy (the mean of the detection rate
//!   and the benign pass rate) on the validation rows. The rows' scores leave a range of equally
//!   good thresholds; the middle of the widest such range is taken, so the choice does not sit
//!   on one validation row.
//! - `accuracy`: the threshold that maximises accuracy on the validation rows (the middle of the
//!   widest range of equally good thresholds, as for `balanced`). Right when the data the model
//!   will score has the class mix and families of its training data; `balanced` weighs a missed
//!   threat as much as a false alarm whatever the mix, which is the safer prior when it may not.
//! - `fpr:B`: the lowest threshold whose false-positive rate on the validation's benign rows is
//!   at most `B` (the most detection a false-positive budget buys), halfway to the next score.
//! - `fixed:T`: the operator's own threshold; nothing is chosen.
//!
//! Rows the novelty member flags are threats at any threshold, so they count as flagged in every
//! candidate: the threshold decides only what the supervised members alone must say.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Lowest and highest threshold a rule may choose: a threshold of 0 or 1 would call everything
/// or nothing a threat.
const MIN_THRESHOLD: f64 = 0.001;
const MAX_THRESHOLD: f64 = 0.999;

/// The rule that chooses the decision threshold (`ml.operating_point`, `TrainConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum OperatingPoint {
    /// Maximise balanced accuracy on the validation split.
    #[default]
    Balanced,
    /// Maximise accuracy on the validation split.
    Accuracy,
    /// The lowest threshold with at most this false-positive rate on validation benign rows.
    Fpr(f64),
    /// This threshold, chosen by the operator.
    Fixed(f64),
}

impl OperatingPoint {
    /// Checks the rule's number.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidConfig(what));
        match *self {
            Self::Balanced | Self::Accuracy => Ok(()),
            Self::Fpr(b) if !(b > 0.0 && b < 1.0) => bad(format!(
                "operating point fpr:{b}: the budget must be in (0, 1)"
            )),
            Self::Fixed(t) if !(t > 0.0 && t < 1.0) => bad(format!(
                "operating point fixed:{t}: the threshold must be in (0, 1)"
            )),
            _ => Ok(()),
        }
    }

    /// Chooses the threshold from validation rows: `scores` are the supervised members'
    /// combined probabilities, `labels` true for threats, `flagged` true where the novelty
    /// member calls the row a threat whatever the threshold.
    pub fn choose(&self, scores: &[f64], labels: &[bool], flagged: &[bool]) -> Result<Choice> {
        self.validate()?;
        if scores.len() != labels.len() || scores.len() != flagged.len() {
            return Err(Error::Training(
                "operating point: scores, labels and flags differ in length".to_string(),
            ));
        }
        let threshold = match *self {
            Self::Fixed(t) => t,
            Self::Balanced => best_gap(scores, labels, flagged, |tp, fp, p, n| {
                (tp / p + 1.0 - fp / n) / 2.0
            })?,
            Self::Accuracy => best_gap(scores, labels, flagged, |tp, fp, p, n| {
                (tp + n - fp) / (p + n)
            })?,
            Self::Fpr(budget) => within_budget(scores, labels, flagged, budget)?,
        }
        .clamp(MIN_THRESHOLD, MAX_THRESHOLD);
        let rates = Rates::at(threshold, scores, labels, flagged);
        Ok(Choice {
            rule: *self,
            threshold,
            rows: scores.len(),
            detection_rate: rates.tpr(),
            false_positive_rate: rates.fpr(),
            balanced_accuracy: rates.balanced_accuracy(),
            accuracy: rates.accuracy(),
        })
    }
}

impl fmt::Display for OperatingPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Balanced => f.write_str("balanced"),
            Self::Accuracy => f.write_str("accuracy"),
            Self::Fpr(b) => write!(f, "fpr:{b}"),
            Self::Fixed(t) => write!(f, "fixed:{t}"),
        }
    }
}

impl FromStr for OperatingPoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let expected = || {
            Error::InvalidConfig(format!(
                "operating point {s:?}: expected balanced, accuracy, fpr:B (a false-positive budget in \
                 (0, 1), e.g. fpr:0.01) or fixed:T (a threshold in (0, 1), e.g. fixed:0.3)"
            ))
        };
        let number = |v: &str| v.trim().parse::<f64>().map_err(|_| expected());
        let s_trim = s.trim();
        let point = match s_trim.split_once(':') {
            None if s_trim.eq_ignore_ascii_case("balanced") => Self::Balanced,
            None if s_trim.eq_ignore_ascii_case("accuracy") => Self::Accuracy,
            Some((rule, v)) if rule.trim().eq_ignore_ascii_case("fpr") => Self::Fpr(number(v)?),
            Some((rule, v)) if rule.trim().eq_ignore_ascii_case("fixed") => Self::Fixed(number(v)?),
            _ => return Err(expected()),
        };
        point.validate()?;
        Ok(point)
    }
}

impl Serialize for OperatingPoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OperatingPoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The threshold a rule chose, and what it gives on the rows it was chosen on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub rule: OperatingPoint,
    pub threshold: f64,
    /// Validation rows the choice was made on (partial copies included).
    pub rows: usize,
    /// On those rows, at the threshold.
    pub detection_rate: f64,
    pub false_positive_rate: f64,
    pub balanced_accuracy: f64,
    /// Accuracy on those rows at the threshold (absent from artifacts written before it was
    /// recorded: 0).
    #[serde(default)]
    pub accuracy: f64,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "threshold {:.4} by rule {} on {} validation rows (detection {:.4}, false positives \
             {:.4}, balanced accuracy {:.4}, accuracy {:.4})",
            self.threshold,
            self.rule,
            self.rows,
            self.detection_rate,
            self.false_positive_rate,
            self.balanced_accuracy,
            self.accuracy
        )
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Rates {
    tp: usize,
    fp: usize,
    positives: usize,
    negatives: usize,
}

impl Rates {
    fn at(t: f64, scores: &[f64], labels: &[bool], flagged: &[bool]) -> Self {
        let mut r = Self::default();
        for ((&s, &y), &n) in scores.iter().zip(labels).zip(flagged) {
            let hit = n || s >= t;
            if y {
                r.positives += 1;
                r.tp += usize::from(hit);
            } else {
                r.negatives += 1;
                r.fp += usize::from(hit);
            }
        }
        r
    }

    fn tpr(&self) -> f64 {
        ratio(self.tp, self.positives)
    }

    fn fpr(&self) -> f64 {
        ratio(self.fp, self.negatives)
    }

    fn balanced_accuracy(&self) -> f64 {
        (self.tpr() + 1.0 - self.fpr()) / 2.0
    }

    fn accuracy(&self) -> f64 {
        ratio(
            self.tp + self.negatives - self.fp,
            self.positives + self.negatives,
        )
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The distinct scores of the rows the threshold decides (those the novelty member does not
/// flag), ascending, each with how many threats and benign rows have it.
fn levels(scores: &[f64], labels: &[bool], flagged: &[bool]) -> Result<Vec<(f64, usize, usize)>> {
    let mut rows: Vec<(f64, bool)> = scores
        .iter()
        .zip(labels)
        .zip(flagged)
        .filter(|(_, n)| !**n)
        .map(|((&s, &y), _)| (s, y))
        .collect();
    if rows.iter().any(|(s, _)| !s.is_finite()) {
        return Err(Error::Training(
            "operating point: a validation score is not a number".to_string(),
        ));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut levels: Vec<(f64, usize, usize)> = Vec::new();
    for (s, y) in rows {
        match levels.last_mut() {
            Some(last) if last.0 == s => {
                if y {
                    last.1 += 1
                } else {
                    last.2 += 1
                }
            }
            _ => levels.push((s, usize::from(y), usize::from(!y))),
        }
    }
    Ok(levels)
}

/// Needs both classes among the validation rows.
fn both_classes(labels: &[bool]) -> Result<(usize, usize)> {
    let positives = labels.iter().filter(|&&y| y).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(Error::Training(format!(
            "the operating point needs both classes in the validation split, got {positives} \
             threats and {negatives} benign"
        )));
    }
    Ok((positives, negatives))
}

/// The middle of the widest range of thresholds with the best `objective(tp, fp, positives,
/// negatives)`.
fn best_gap(
    scores: &[f64],
    labels: &[bool],
    flagged: &[bool],
    objective: impl Fn(f64, f64, f64, f64) -> f64,
) -> Result<f64> {
    let (positives, negatives) = both_classes(labels)?;
    let levels = levels(scores, labels, flagged)?;
    // A threshold in the gap below level i (between level i-1 and level i) flags every level
    // from i up, plus the novelty rows; gap 0 lies below every score and flags every row.
    let (mut tp, mut fp) = (positives, negatives);
    // Walk the gaps from the lowest threshold up; `tp`/`fp` are what the current gap flags.
    let mut best: Option<(f64, f64, f64)> = None; // (objective, low, high)
    for i in 0..=levels.len() {
        let ba = objective(tp as f64, fp as f64, positives as f64, negatives as f64);
        let low = if i == 0 { 0.0 } else { levels[i - 1].0 };
        let high = levels.get(i).map_or(1.0, |l| l.0);
        let better = match best {
            None => true,
            Some((b, l, h)) => ba > b + 1e-12 || (ba > b - 1e-12 && high - low > h - l),
        };
        if better {
            best = Some((ba, low, high));
        }
        if let Some(&(_, p, n)) = levels.get(i) {
            tp -= p;
            fp -= n;
        }
    }
    let (_, low, high) = best.expect("at least one gap");
    Ok((low + high) / 2.0)
}

/// The lowest threshold with a false-positive rate within `budget`.
fn within_budget(scores: &[f64], labels: &[bool], flagged: &[bool], budget: f64) -> Result<f64> {
    let (_, negatives) = both_classes(labels)?;
    let allowed = (budget * negatives as f64).floor() as usize;
    let mut fp = labels
        .iter()
        .zip(flagged)
        .filter(|(y, n)| !**y && **n)
        .count();
    let levels = levels(scores, labels, flagged)?;
    // From the top down, take levels while the benign rows stay within the budget.
    let mut threshold = levels.last().map_or(0.5, |l| (l.0 + 1.0) / 2.0);
    for (i, &(s, _, n)) in levels.iter().enumerate().rev() {
        if fp + n > allowed {
            break;
        }
        fp += n;
        let below = if i == 0 { 0.0 } else { levels[i - 1].0 };
        threshold = (below + s) / 2.0;
    }
    Ok(threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Draws `n` scores of each class, benign from N(mu0, sd), threats from N(mu1, sd), squashed
    /// into (0, 1) by a logistic: the balanced optimum is at logistic((mu0 + mu1) / 2).
    fn two_normals(n: usize, mu0: f64, mu1: f64, sd: f64, seed: u64) -> (Vec<f64>, Vec<bool>) {
        mixed_normals(n, 1, mu0, mu1, sd, seed)
    }

    /// As [`two_normals`], with `benign_per_threat` benign rows for each threat.
    fn mixed_normals(
        n: usize,
        benign_per_threat: usize,
        mu0: f64,
        mu1: f64,
        sd: f64,
        seed: u64,
    ) -> (Vec<f64>, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut normal = |mu: f64| {
            // Box-Muller.
            let (u1, u2): (f64, f64) = (rng.r#gen::<f64>().max(1e-12), rng.r#gen());
            mu + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        let logistic = |z: f64| 1.0 / (1.0 + (-z).exp());
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            for _ in 0..benign_per_threat {
                scores.push(logistic(normal(mu0)));
                labels.push(false);
            }
            scores.push(logistic(normal(mu1)));
            labels.push(true);
        }
        (scores, labels)
    }

    #[test]
    fn balanced_lands_near_the_known_optimum() {
        // Overlapping classes: the optimum is a point, logistic(-1) = 0.2689.
        let (scores, labels) = two_normals(20_000, -2.0, 0.0, 1.0, 7);
        let flagged = vec![false; scores.len()];
        let choice = OperatingPoint::Balanced
            .choose(&scores, &labels, &flagged)
            .unwrap();
        let optimum = 1.0 / (1.0 + 1f64.exp());
        assert!(
            (choice.threshold - optimum).abs() < 0.03,
            "chose {} for an optimum at {optimum}",
            choice.threshold
        );
        // Balanced accuracy at the optimum is Phi(1) = 0.841.
        assert!((choice.balanced_accuracy - 0.841).abs() < 0.01, "{choice}");
    }

    #[test]
    fn accuracy_lands_near_the_known_optimum_of_an_uneven_mix() {
        // Four benign rows per threat: the accuracy optimum is where 4 f0(z) = f1(z), z =
        // (ln 4 - 2) / 2 = -0.307, logistic(z) = 0.4239; balanced stays at logistic(-1) = 0.2689.
        let (scores, labels) = mixed_normals(10_000, 4, -2.0, 0.0, 1.0, 13);
        let flagged = vec![false; scores.len()];
        let accuracy = OperatingPoint::Accuracy
            .choose(&scores, &labels, &flagged)
            .unwrap();
        let z: f64 = (4f64.ln() - 2.0) / 2.0;
        let optimum = 1.0 / (1.0 + (-z).exp());
        assert!(
            (accuracy.threshold - optimum).abs() < 0.03,
            "chose {} for an optimum at {optimum}",
            accuracy.threshold
        );
        let balanced = OperatingPoint::Balanced
            .choose(&scores, &labels, &flagged)
            .unwrap();
        assert!((balanced.threshold - 0.2689).abs() < 0.03, "{balanced}");
        // Each rule wins on its own measure.
        assert!(
            accuracy.accuracy > balanced.accuracy,
            "{accuracy} / {balanced}"
        );
        assert!(
            balanced.balanced_accuracy > accuracy.balanced_accuracy,
            "{accuracy} / {balanced}"
        );
    }

    #[test]
    fn balanced_takes_the_middle_of_a_clean_gap() {
        let scores = [0.01, 0.02, 0.05, 0.9, 0.95];
        let labels = [false, false, false, true, true];
        let choice = OperatingPoint::Balanced
            .choose(&scores, &labels, &[false; 5])
            .unwrap();
        assert!((choice.threshold - 0.475).abs() < 1e-9, "{choice}");
        assert_eq!(choice.balanced_accuracy, 1.0);
    }

    #[test]
    fn novelty_flags_count_at_every_threshold() {
        // The one threat the supervised score misses is flagged by novelty, so the threshold
        // only has to separate the rest.
        let scores = [0.1, 0.2, 0.3, 0.05, 0.8];
        let labels = [false, false, false, true, true];
        let flagged = [false, false, false, true, false];
        let choice = OperatingPoint::Balanced
            .choose(&scores, &labels, &flagged)
            .unwrap();
        assert!((choice.threshold - 0.55).abs() < 1e-9, "{choice}");
        assert_eq!(choice.detection_rate, 1.0);
    }

    #[test]
    fn a_false_positive_budget_is_met_on_validation() {
        let (scores, labels) = two_normals(10_000, -2.0, 0.0, 1.0, 11);
        let flagged = vec![false; scores.len()];
        let choice = OperatingPoint::Fpr(0.01)
            .choose(&scores, &labels, &flagged)
            .unwrap();
        assert!(choice.false_positive_rate <= 0.01, "{choice}");
        assert!(choice.false_positive_rate > 0.009, "{choice}");
        // The 99th percentile of N(-2, 1) is 0.326: logistic(0.326) = 0.581.
        assert!((choice.threshold - 0.581).abs() < 0.02, "{choice}");
    }

    #[test]
    fn a_fixed_point_is_kept() {
        let choice = OperatingPoint::Fixed(0.3)
            .choose(&[0.1, 0.9], &[false, true], &[false, false])
            .unwrap();
        assert_eq!(choice.threshold, 0.3);
    }

    #[test]
    fn parses_and_prints_each_rule() {
        for (text, point) in [
            ("balanced", OperatingPoint::Balanced),
            ("accuracy", OperatingPoint::Accuracy),
            ("fpr:0.01", OperatingPoint::Fpr(0.01)),
            ("fixed:0.3", OperatingPoint::Fixed(0.3)),
        ] {
            assert_eq!(text.parse::<OperatingPoint>().unwrap(), point);
            assert_eq!(point.to_string(), text);
            let json = serde_json::to_string(&point).unwrap();
            assert_eq!(
                serde_json::from_str::<OperatingPoint>(&json).unwrap(),
                point
            );
        }
        for bad in ["", "best", "fpr:", "fpr:1.5", "fixed:0", "fixed:x"] {
            let error = bad.parse::<OperatingPoint>().unwrap_err().to_string();
            assert!(error.contains("operating point"), "{bad}: {error}");
        }
    }

    #[test]
    fn one_class_is_refused_with_the_counts() {
        let error = OperatingPoint::Balanced
            .choose(&[0.1, 0.2], &[false, false], &[false, false])
            .unwrap_err()
            .to_string();
        assert!(error.contains("0 threats and 2 benign"), "{error}");
    }
}
