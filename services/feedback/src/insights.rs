//! Learning insights: what the analysts' verdicts say about vigil's verdicts, and which high
//! threshold would have served them better.
//!
//! Read over every judged workflow once (the label of its newest current verdict, see
//! [`vigil_store::Feedback::judged_outcomes`]). Positive means attack: vigil said attack when
//! its risk level was high or critical ([`vigil_domain::TrueLabel::verdict_of`]). A false
//! positive is a benign signal vigil called an attack, a false negative an attack it called
//! benign; the false-positive rate is FP / (FP + TN), the false-negative rate FN / (FN + TP).
//!
//! The threshold sweep replays each judged workflow's recorded risk score against candidate
//! high thresholds (attack when score >= threshold): every multiple of 0.5 strictly between the
//! configured medium and critical thresholds, and the configured high one. The recommendation is
//! the candidate with the highest accuracy (ties: the higher balanced accuracy, then the one
//! nearest the current threshold); when that is the current one, the advice is to keep it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_domain::{RiskThresholds, Severity, TrueLabel};
use vigil_store::JudgedOutcome;

/// The step of the high thresholds the sweep tries.
pub const SWEEP_STEP: f64 = 0.5;
/// Error patterns listed, most frequent first.
pub const ERROR_PATTERNS: usize = 10;

/// Threat type shown for workflows recorded without their signal.
const UNKNOWN_TYPE: &str = "(unknown)";

/// vigil's verdicts against the analysts' labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub judged: u64,
    /// vigil's verdict equals the label.
    pub correct: u64,
    /// correct / judged; `None` with nothing judged.
    pub accuracy: Option<f64>,
    pub true_positives: u64,
    pub false_positives: u64,
    pub true_negatives: u64,
    pub false_negatives: u64,
    /// FP / (FP + TN): benign signals called attacks.
    pub false_positive_rate: Option<f64>,
    /// FN / (FN + TP): attacks called benign.
    pub false_negative_rate: Option<f64>,
}

impl Tally {
    fn add(&mut self, said: TrueLabel, truth: TrueLabel) {
        match (said, truth) {
            (TrueLabel::Attack, TrueLabel::Attack) => self.true_positives += 1,
            (TrueLabel::Attack, TrueLabel::Benign) => self.false_positives += 1,
            (TrueLabel::Benign, TrueLabel::Benign) => self.true_negatives += 1,
            (TrueLabel::Benign, TrueLabel::Attack) => self.false_negatives += 1,
        }
        self.judged += 1;
        self.correct = self.true_positives + self.true_negatives;
        self.accuracy = ratio(self.correct, self.judged);
        self.false_positive_rate = ratio(
            self.false_positives,
            self.false_positives + self.true_negatives,
        );
        self.false_negative_rate = ratio(
            self.false_negatives,
            self.false_negatives + self.true_positives,
        );
    }

    /// (true-positive rate + true-negative rate) / 2, or the one defined when only one class
    /// was judged.
    pub fn balanced_accuracy(&self) -> Option<f64> {
        let tpr = ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        );
        let tnr = ratio(
            self.true_negatives,
            self.true_negatives + self.false_positives,
        );
        match (tpr, tnr) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            (a, b) => a.or(b),
        }
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A tally of one group (a threat type, a risk level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// One kind of mistake and how often it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPattern {
    pub threat_type: String,
    pub risk_level: Severity,
    /// What the analysts said it was.
    pub label: TrueLabel,
    /// What vigil said.
    pub system_label: TrueLabel,
    pub count: u64,
}

/// The judged workflows replayed against one high threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdOutcome {
    pub high: f64,
    #[serde(flatten)]
    pub tally: Tally,
    pub balanced_accuracy: Option<f64>,
    /// False positives of the current threshold this one would not have raised (negative: it
    /// raises more).
    pub false_positives_avoided: i64,
    /// True threats this one would have missed that the current threshold caught (negative:
    /// it catches more).
    pub threats_missed: i64,
}

/// Advice on one setting, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The configuration key, e.g. `thresholds.high`.
    pub setting: String,
    pub current: f64,
    /// Equal to `current` when the advice is to keep it.
    pub proposed: f64,
    pub message: String,
}

/// Everything `vigil insights` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Insights {
    /// The thresholds the sweep compares against (the service's configuration).
    pub thresholds: Option<RiskThresholds>,
    pub overall: Tally,
    /// Most judged first.
    pub by_threat_type: Vec<Group>,
    /// Critical first.
    pub by_risk_level: Vec<Group>,
    /// Most frequent first, at most [`ERROR_PATTERNS`].
    pub error_patterns: Vec<ErrorPattern>,
    /// Lowest threshold first.
    pub threshold_sweep: Vec<ThresholdOutcome>,
    pub recommendations: Vec<Recommendation>,
}

/// The insights of a set of judged workflows under the configured `thresholds`.
pub fn compute(judged: &[JudgedOutcome], thresholds: &RiskThresholds) -> Insights {
    let mut overall = Tally::default();
    let mut by_type: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut by_level: BTreeMap<Severity, Tally> = BTreeMap::new();
    // Keyed by whether the true label is attack (TrueLabel has no order).
    let mut errors: BTreeMap<(&str, Severity, bool), u64> = BTreeMap::new();
    for outcome in judged {
        let said = outcome.system_label();
        let threat_type = outcome.threat_type.as_deref().unwrap_or(UNKNOWN_TYPE);
        overall.add(said, outcome.label);
        by_type
            .entry(threat_type)
            .or_default()
            .add(said, outcome.label);
        by_level
            .entry(outcome.risk_level)
            .or_default()
            .add(said, outcome.label);
        if said != outcome.label {
            *errors
                .entry((threat_type, outcome.risk_level, outcome.label.is_attack()))
                .or_default() += 1;
        }
    }
    let mut by_threat_type: Vec<Group> = by_type
        .into_iter()
        .map(|(key, tally)| Group {
            key: key.to_owned(),
            tally,
        })
        .collect();
    by_threat_type.sort_by(|a, b| b.tally.judged.cmp(&a.tally.judged).then(a.key.cmp(&b.key)));
    let by_risk_level = by_level
        .into_iter()
        .rev()
        .map(|(level, tally)| Group {
            key: level.as_str().to_owned(),
            tally,
        })
        .collect();
    let mut error_patterns: Vec<ErrorPattern> = errors
        .into_iter()
        .map(|((threat_type, risk_level, attack), count)| ErrorPattern {
            threat_type: threat_type.to_owned(),
            risk_level,
            label: if attack {
                TrueLabel::Attack
            } else {
                TrueLabel::Benign
            },
            system_label: TrueLabel::verdict_of(risk_level),
            count,
        })
        .collect();
    // Stable: equal counts keep the map's order (type, level, benign before attack).
    error_patterns.sort_by_key(|e| std::cmp::Reverse(e.count));
    error_patterns.truncate(ERROR_PATTERNS);

    let threshold_sweep = sweep_high(judged, thresholds);
    let recommendations = recommend_high(&threshold_sweep, thresholds.high, judged.len())
        .into_iter()
        .collect();
    Insights {
        thresholds: Some(*thresholds),
        overall,
        by_threat_type,
        by_risk_level,
        error_patterns,
        threshold_sweep,
        recommendations,
    }
}

/// The high thresholds the sweep tries: every multiple of [`SWEEP_STEP`] strictly between the
/// medium and critical thresholds, and the current high one; ascending.
pub fn high_grid(thresholds: &RiskThresholds) -> Vec<f64> {
    let mut grid: Vec<f64> = (0..)
        .map(|k| f64::from(k) * SWEEP_STEP)
        .skip_while(|t| *t <= thresholds.medium)
        .take_while(|t| *t < thresholds.critical)
        .collect();
    grid.push(thresholds.high);
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    grid
}

/// Replays the judged workflows' recorded risk scores against each high threshold of
/// [`high_grid`] (attack when score >= threshold), compared with the current one.
pub fn sweep_high(judged: &[JudgedOutcome], thresholds: &RiskThresholds) -> Vec<ThresholdOutcome> {
    let replay = |high: f64| {
        let mut tally = Tally::default();
        for outcome in judged {
            let said = if outcome.risk_score >= high {
                TrueLabel::Attack
            } else {
                TrueLabel::Benign
            };
            tally.add(said, outcome.label);
        }
        tally
    };
    let current = replay(thresholds.high);
    high_grid(thresholds)
        .into_iter()
        .map(|high| {
            let tally = replay(high);
            ThresholdOutcome {
                high,
                balanced_accuracy: tally.balanced_accuracy(),
                false_positives_avoided: signed(current.false_positives)
                    - signed(tally.false_positives),
                threats_missed: signed(tally.false_negatives) - signed(current.false_negatives),
                tally,
            }
        })
        .collect()
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The high threshold to use by the sweep: the highest accuracy, then the highest balanced
/// accuracy, then the nearest to `current`; `None` with nothing judged.
pub fn recommend_high(
    sweep: &[ThresholdOutcome],
    current: f64,
    judged: usize,
) -> Option<Recommendation> {
    let now = sweep.iter().find(|o| o.high == current)?;
    let now_accuracy = now.tally.accuracy?;
    let best = sweep.iter().max_by(|a, b| {
        let key = |o: &ThresholdOutcome| {
            (
                o.tally.accuracy.unwrap_or(0.0),
                o.balanced_accuracy.unwrap_or(0.0),
            )
        };
        let (accuracy_a, balanced_a) = key(a);
        let (accuracy_b, balanced_b) = key(b);
        accuracy_a
            .total_cmp(&accuracy_b)
            .then(balanced_a.total_cmp(&balanced_b))
            .then(
                (b.high - current)
                    .abs()
                    .total_cmp(&(a.high - current).abs()),
            )
    })?;
    let best_accuracy = best.tally.accuracy.unwrap_or(0.0);
    let percent = |a: f64| format!("{:.1} %", a * 100.0);
    let (current_shown, best_shown) = (threshold(current), threshold(best.high));
    let message = if best.high == current {
        format!(
            "keep the high threshold at {current_shown}: no threshold from the sweep would have \
             judged the {judged} judged workflows better (accuracy {})",
            percent(now_accuracy)
        )
    } else if best.high > current {
        format!(
            "raising the high threshold from {current_shown} to {best_shown} would have avoided \
             {} of {} false positives and missed {} more true threats (accuracy {} -> {} on \
             {judged} judged workflows)",
            best.false_positives_avoided,
            now.tally.false_positives,
            best.threats_missed,
            percent(now_accuracy),
            percent(best_accuracy)
        )
    } else {
        format!(
            "lowering the high threshold from {current_shown} to {best_shown} would have caught \
             {} of {} missed threats and raised {} more false positives (accuracy {} -> {} on \
             {judged} judged workflows)",
            -best.threats_missed,
            now.tally.false_negatives,
            -best.false_positives_avoided,
            percent(now_accuracy),
            percent(best_accuracy)
        )
    };
    Some(Recommendation {
        setting: "thresholds.high".to_owned(),
        current,
        proposed: best.high,
        message,
    })
}

/// A threshold as people write it: `7.0`, `7.5`, `6.75`.
fn threshold(value: f64) -> String {
    if (value * 10.0).fract() == 0.0 {
        format!("{value:.1}")
    } else {
        value.to_string()
    }
}

/// The request on the insights subject: an empty body or `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightsRequest {}

impl InsightsRequest {
    /// Checks a request body.
    pub fn decode(body: &[u8]) -> Result<(), String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        serde_json::from_slice::<InsightsRequest>(body)
            .map(|_| ())
            .map_err(|e| format!("not an insights request (send {{}} or nothing): {e}"))
    }
}

/// The reply on the insights subject, always JSON: `{"ok":true,"insights":{...}}` or
/// `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InsightsReply {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insights: Option<Insights>,
}

impl InsightsReply {
    /// A refusal, or a failure to answer.
    pub fn refused(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
            insights: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn judged(threat_type: &str, score: f64, label: TrueLabel) -> JudgedOutcome {
        JudgedOutcome {
            workflow_id: format!("{threat_type}-{score}"),
            threat_type: Some(threat_type.to_owned()),
            risk_score: score,
            risk_level: RiskThresholds::default().level(score),
            label,
        }
    }

    /// Ten verdicts, by hand (default thresholds: high 7, critical 9, medium 4):
    ///
    /// | type      | score | level    | vigil  | truth  |    |
    /// |-----------|-------|----------|--------|--------|----|
    /// | port_scan | 7.2   | high     | attack | benign | FP |
    /// | port_scan | 7.4   | high     | attack | benign | FP |
    /// | port_scan | 7.3   | high     | attack | benign | FP |
    /// | port_scan | 9.5   | critical | attack | attack | TP |
    /// | port_scan | 2.0   | low      | benign | benign | TN |
    /// | dos       | 8.0   | high     | attack | attack | TP |
    /// | dos       | 7.8   | high     | attack | attack | TP |
    /// | dos       | 6.8   | medium   | benign | attack | FN |
    /// | dos       | 5.0   | medium   | benign | benign | TN |
    /// | dos       | 3.0   | low      | benign | benign | TN |
    fn ten() -> Vec<JudgedOutcome> {
        use TrueLabel::{Attack, Benign};
        vec![
            judged("port_scan", 7.2, Benign),
            judged("port_scan", 7.4, Benign),
            judged("port_scan", 7.3, Benign),
            judged("port_scan", 9.5, Attack),
            judged("port_scan", 2.0, Benign),
            judged("dos", 8.0, Attack),
            judged("dos", 7.8, Attack),
            judged("dos", 6.8, Attack),
            judged("dos", 5.0, Benign),
            judged("dos", 3.0, Benign),
        ]
    }

    #[test]
    fn accuracy_and_error_rates_match_the_hand_count() {
        let insights = compute(&ten(), &RiskThresholds::default());
        let o = &insights.overall;
        assert_eq!((o.judged, o.correct), (10, 6));
        assert_eq!(
            (
                o.true_positives,
                o.false_positives,
                o.true_negatives,
                o.false_negatives
            ),
            (3, 3, 3, 1)
        );
        assert_eq!(o.accuracy, Some(0.6));
        assert_eq!(o.false_positive_rate, Some(0.5)); // 3 / (3 + 3)
        assert_eq!(o.false_negative_rate, Some(0.25)); // 1 / (1 + 3)

        let types: Vec<(&str, u64, Option<f64>)> = insights
            .by_threat_type
            .iter()
            .map(|g| (g.key.as_str(), g.tally.judged, g.tally.accuracy))
            .collect();
        assert_eq!(types, [("dos", 5, Some(0.8)), ("port_scan", 5, Some(0.4))]);
        let levels: Vec<(&str, u64, u64)> = insights
            .by_risk_level
            .iter()
            .map(|g| (g.key.as_str(), g.tally.judged, g.tally.correct))
            .collect();
        assert_eq!(
            levels,
            [
                ("critical", 1, 1),
                ("high", 5, 2),
                ("medium", 2, 1),
                ("low", 2, 2)
            ]
        );
        assert_eq!(
            insights.error_patterns,
            [
                ErrorPattern {
                    threat_type: "port_scan".into(),
                    risk_level: Severity::High,
                    label: TrueLabel::Benign,
                    system_label: TrueLabel::Attack,
                    count: 3,
                },
                ErrorPattern {
                    threat_type: "dos".into(),
                    risk_level: Severity::Medium,
                    label: TrueLabel::Attack,
                    system_label: TrueLabel::Benign,
                    count: 1,
                },
            ]
        );
    }

    #[test]
    fn the_sweep_replays_the_recorded_scores_and_recommends_the_best() {
        let thresholds = RiskThresholds::default();
        assert_eq!(
            high_grid(&thresholds),
            [4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5]
        );
        let sweep = sweep_high(&ten(), &thresholds);
        let at = |high: f64| sweep.iter().find(|o| o.high == high).unwrap();
        // 7.5: the three port scans at 7.2-7.4 become benign (3 FP avoided); dos 7.8, 8.0 and
        // 9.5 stay attacks; 6.8 is still missed. 9 of 10.
        let best = at(7.5);
        assert_eq!(best.tally.correct, 9);
        assert_eq!((best.false_positives_avoided, best.threats_missed), (3, 0));
        // 8.5: also misses the dos at 7.8 and 8.0.
        assert_eq!(at(8.5).tally.correct, 7);
        assert_eq!(at(8.5).threats_missed, 2);
        // 6.5 catches the 6.8 dos: one fewer missed, no new false positive.
        assert_eq!(
            (at(6.5).false_positives_avoided, at(6.5).threats_missed),
            (0, -1)
        );
        assert_eq!(at(6.5).tally.correct, 7);
        assert_eq!(at(7.0).tally, compute(&ten(), &thresholds).overall);

        let advice = recommend_high(&sweep, 7.0, 10).unwrap();
        assert_eq!(advice.proposed, 7.5);
        assert_eq!(
            advice.message,
            "raising the high threshold from 7.0 to 7.5 would have avoided 3 of 3 false \
             positives and missed 0 more true threats (accuracy 60.0 % -> 90.0 % on 10 judged \
             workflows)"
        );
    }

    #[test]
    fn lowering_and_keeping_are_advised_too() {
        use TrueLabel::{Attack, Benign};
        let thresholds = RiskThresholds::default();
        // Attacks scored 6.2 and 6.6 are missed at 7; nothing benign above 6.
        let missed = vec![
            judged("dos", 6.2, Attack),
            judged("dos", 6.6, Attack),
            judged("dos", 8.0, Attack),
            judged("dos", 3.0, Benign),
        ];
        let advice = recommend_high(&sweep_high(&missed, &thresholds), 7.0, 4).unwrap();
        // 4.5 to 6.0 all get 4 of 4; 6.0 is the nearest to 7.
        assert_eq!(advice.proposed, 6.0);
        assert_eq!(
            advice.message,
            "lowering the high threshold from 7.0 to 6.0 would have caught 2 of 2 missed threats \
             and raised 0 more false positives (accuracy 50.0 % -> 100.0 % on 4 judged \
             workflows)"
        );
        let right = vec![judged("dos", 8.0, Attack), judged("dos", 3.0, Benign)];
        let advice = recommend_high(&sweep_high(&right, &thresholds), 7.0, 2).unwrap();
        assert_eq!(advice.proposed, 7.0);
        assert!(
            advice
                .message
                .starts_with("keep the high threshold at 7.0:")
        );
        assert_eq!(recommend_high(&sweep_high(&[], &thresholds), 7.0, 0), None);
        assert!(compute(&[], &thresholds).recommendations.is_empty());
    }

    #[test]
    fn balanced_accuracy_uses_the_classes_present() {
        let mut t = Tally::default();
        assert_eq!(t.balanced_accuracy(), None);
        t.add(TrueLabel::Attack, TrueLabel::Attack);
        t.add(TrueLabel::Benign, TrueLabel::Attack);
        assert_eq!(t.balanced_accuracy(), Some(0.5));
        t.add(TrueLabel::Benign, TrueLabel::Benign);
        assert_eq!(t.balanced_accuracy(), Some(0.75));
    }
}
