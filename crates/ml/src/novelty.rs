//! The novelty member: how far a signal lies beyond what benign training traffic shows.
//!
//! Fitted on benign training rows only, so it owes nothing to the attack families in the data:
//! an attack of a kind never seen in training is flagged when its values are rarer than almost
//! every benign row's. For every numeric attribute it keeps the extreme tails of the benign
//! distribution, overall and within each frequent categorical level (per protocol, service,
//! flag, ...). A value's rarity is how far its tail share falls below `tail`, in nats
//! (`ln(tail / share)`, 0 inside the bulk); the score adds, per attribute, the largest rarity
//! over the contexts that apply. A 54 kB request is ordinary overall but unheard of for http;
//! a failed login is ordinary for telnet but rare overall.
//!
//! The cutoff comes from the validation split's benign rows (a false-positive budget), and the
//! score is mapped to a probability that reaches the ensemble's decision threshold exactly at
//! the cutoff, so the ensemble can take the larger of its own probability and this one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vigil_domain::ThreatSignal;

use crate::error::{Error, Result};
use crate::features::{Attribute, Derived, FeatureSpec, Source, check_signal, derived_value};
use crate::pipeline::LabeledExample;
use crate::prototypes::Prototypes;

/// Knobs of the novelty member.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NoveltyConfig {
    /// Train the member at all.
    pub enabled: bool,
    /// Only values rarer than this share of benign rows (in either tail) count as novel.
    pub tail: f64,
    /// Share of the validation split's benign rows the member may flag on its own.
    pub false_positive_budget: f64,
    /// A categorical level gets its own profile from this many benign training rows; fewer
    /// rows could not show rarity beyond `tail` anyway.
    pub min_context_rows: usize,
    /// The cutoff is never below this score (nats), so a member calibrated on few benign rows
    /// does not flag every mildly unusual one.
    pub min_cutoff: f64,
    /// Number of benign prototypes (k-means centroids of benign rows' base columns) whose
    /// distance joins the tails' score; 0 leaves them out.
    pub prototypes: usize,
    /// Lloyd iterations when fitting the prototypes.
    pub prototype_iterations: usize,
    /// The prototypes are fitted on at most this many benign training rows (evenly spaced).
    pub prototype_rows: usize,
}

impl Default for NoveltyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tail: 0.002,
            false_positive_budget: 0.005,
            min_context_rows: 1000,
            min_cutoff: 1.0,
            prototypes: 512,
            prototype_iterations: 8,
            prototype_rows: 20_000,
        }
    }
}

impl NoveltyConfig {
    /// Checks that the knobs make sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::InvalidConfig(format!("novelty: {msg}")));
        if !(self.tail > 0.0 && self.tail < 0.5) {
            return bad("tail must be in (0, 0.5)");
        }
        if !(self.false_positive_budget > 0.0 && self.false_positive_budget < 1.0) {
            return bad("false_positive_budget must be in (0, 1)");
        }
        if !(self.min_cutoff.is_finite() && self.min_cutoff >= 0.0) {
            return bad("min_cutoff must be a finite, non-negative number");
        }
        Ok(())
    }
}

/// Where an input value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoveltyInput {
    Derived(Derived),
    Numeric(String),
}

impl NoveltyInput {
    /// The value, `None` when the signal does not carry it (nothing is rare about a value
    /// that is not there).
    fn value(&self, signal: &ThreatSignal) -> Option<f64> {
        match self {
            NoveltyInput::Derived(d) => derived_value(*d, signal),
            NoveltyInput::Numeric(key) => signal.numeric.get(key).copied(),
        }
    }
}

/// The extreme tails of one attribute's benign distribution.
///
/// `high` holds `(value, benign rows >= value)` and `low` holds `(value, benign rows <=
/// value)`, both ascending by value. Each stops at the first value, from the extreme inwards,
/// whose count is no longer rare (`high` starts with it, `low` ends with it): values between
/// those two are the bulk and never need a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tails {
    pub low: Vec<(f64, u32)>,
    pub high: Vec<(f64, u32)>,
}

impl Tails {
    /// Tails of `values` (sorted ascending) down to counts below `rare`.
    fn fit(sorted: &[f64], rare: f64) -> Self {
        let n = sorted.len();
        let mut high = Vec::new();
        let mut i = n;
        while i > 0 {
            let v = sorted[i - 1];
            let first = sorted[..i].partition_point(|&x| x < v);
            let count = (n - first) as u32;
            high.push((v, count));
            i = first;
            if f64::from(count) >= rare {
                break;
            }
        }
        high.reverse();
        let mut low = Vec::new();
        let mut i = 0;
        while i < n {
            let v = sorted[i];
            let end = i + sorted[i..].partition_point(|&x| x <= v);
            let count = end as u32;
            low.push((v, count));
            i = end;
            if f64::from(count) >= rare {
                break;
            }
        }
        Self { low, high }
    }

    /// Benign rows at least as extreme as `x` on its more extreme side (`None`: inside the
    /// bulk, nothing rare).
    fn extreme_count(&self, x: f64) -> Option<u32> {
        let high_start = self.high.first().map_or(f64::INFINITY, |e| e.0);
        let low_end = self.low.last().map_or(f64::NEG_INFINITY, |e| e.0);
        if x <= high_start && x >= low_end {
            return None;
        }
        let mut count = u32::MAX;
        if x > high_start {
            let i = self.high.partition_point(|e| e.0 < x);
            count = self.high.get(i).map_or(0, |e| e.1);
        }
        if x < low_end {
            let i = self.low.partition_point(|e| e.0 <= x);
            count = count.min(if i == 0 { 0 } else { self.low[i - 1].1 });
        }
        Some(count)
    }
}

/// Benign tails of every input within one context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Benign training rows in this context.
    pub rows: u32,
    /// One per input, in [`NoveltyDetector::inputs`] order.
    pub tails: Vec<Tails>,
    /// Per input, the benign rows in this context that carried it (absent in members made
    /// before missing values were told apart: then every row counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<u32>,
}

impl Profile {
    /// Tails of each input's values; `NaN` (missing) values are left out.
    fn fit(columns: &mut [Vec<f64>], tail: f64) -> Self {
        let rows = columns.first().map_or(0, Vec::len);
        let mut carried = Vec::with_capacity(columns.len());
        let tails = columns
            .iter_mut()
            .map(|values| {
                values.retain(|v| !v.is_nan());
                values.sort_unstable_by(f64::total_cmp);
                carried.push(values.len() as u32);
                let rare = tail * (values.len() as f64 + 1.0) - 1.0;
                Tails::fit(values, rare)
            })
            .collect();
        Self {
            rows: rows as u32,
            tails,
            carried,
        }
    }

    /// Rarity in nats of input `j` with value `x`: `ln(tail / share)` where `share` is the
    /// smoothed share of benign rows at least as extreme, 0 when that share is not below
    /// `tail`.
    fn rarity(&self, j: usize, x: f64, tail: f64) -> f64 {
        match self.tails[j].extreme_count(x) {
            None => 0.0,
            Some(count) => {
                let rows = self.carried.get(j).copied().unwrap_or(self.rows);
                let share = (f64::from(count) + 1.0) / (f64::from(rows) + 1.0);
                (tail / share).ln().max(0.0)
            }
        }
    }
}

/// Profiles of the frequent levels of one categorical attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextGroup {
    pub attribute: Attribute,
    /// Sorted levels, each with its profile in `profiles`.
    pub levels: Vec<String>,
    pub profiles: Vec<Profile>,
}

/// The fitted novelty member, saved in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoveltyDetector {
    pub config: NoveltyConfig,
    pub inputs: Vec<NoveltyInput>,
    /// Profile of all benign rows.
    pub global: Profile,
    pub groups: Vec<ContextGroup>,
    /// Score (nats) from which a signal is flagged: the member's probability equals the
    /// ensemble's decision threshold here.
    pub cutoff: f64,
    /// Benign prototypes in the spec's base columns (absent in artifacts made before they
    /// existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prototypes: Option<Prototypes>,
    /// Nats per unit of distance to the nearest prototype: the tails' own cutoff divided by
    /// the distance that flags the same share of validation benign rows.
    #[serde(default)]
    pub distance_scale: f64,
}

impl NoveltyDetector {
    /// Fits the tails on the benign rows of `train` (the inputs are the spec's numeric
    /// attributes and well-known numeric fields, the contexts its one-hot encoded attributes),
    /// then sets the cutoff on the benign rows of `validation`.
    pub fn fit(
        spec: &FeatureSpec,
        train: &[LabeledExample],
        validation: &[LabeledExample],
        config: NoveltyConfig,
    ) -> Result<Self> {
        config.validate()?;
        let benign: Vec<&ThreatSignal> = train
            .iter()
            .filter(|e| !e.label)
            .map(|e| &e.signal)
            .collect();
        if benign.is_empty() {
            return Err(Error::Training(
                "the novelty member needs benign training rows".to_string(),
            ));
        }
        let inputs: Vec<NoveltyInput> = spec
            .base
            .iter()
            .filter_map(|c| match &c.source {
                Source::Derived(d @ (Derived::Duration | Derived::Bytes | Derived::Packets)) => {
                    Some(NoveltyInput::Derived(*d))
                }
                Source::Numeric(key) => Some(NoveltyInput::Numeric(key.clone())),
                _ => None,
            })
            .collect();
        let attributes: Vec<&Attribute> = spec
            .encodings
            .iter()
            .filter(|e| e.hash_buckets.is_none())
            .map(|e| &e.attribute)
            .collect();

        let rows: Vec<Vec<f64>> = benign
            .iter()
            .map(|s| {
                inputs
                    .iter()
                    .map(|i| i.value(s).unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        let columns_of = |members: &[usize]| -> Vec<Vec<f64>> {
            (0..inputs.len())
                .map(|j| members.iter().map(|&r| rows[r][j]).collect())
                .collect()
        };
        let all: Vec<usize> = (0..rows.len()).collect();
        let global = Profile::fit(&mut columns_of(&all), config.tail);
        let mut groups = Vec::new();
        for attribute in attributes {
            let mut by_level: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (r, s) in benign.iter().enumerate() {
                if let Some(level) = attribute.value(s) {
                    by_level.entry(level).or_default().push(r);
                }
            }
            let frequent: BTreeSet<&str> = by_level
                .iter()
                .filter(|(_, members)| members.len() >= config.min_context_rows.max(1))
                .map(|(level, _)| *level)
                .collect();
            if frequent.is_empty() {
                continue;
            }
            let profiles = frequent
                .iter()
                .map(|level| Profile::fit(&mut columns_of(&by_level[level]), config.tail))
                .collect();
            groups.push(ContextGroup {
                attribute: attribute.clone(),
                levels: frequent.iter().map(|l| l.to_string()).collect(),
                profiles,
            });
        }
        let mut detector = Self {
            config,
            inputs,
            global,
            groups,
            cutoff: f64::INFINITY,
            prototypes: None,
            distance_scale: 0.0,
        };
        let validation_benign: Vec<&ThreatSignal> = validation
            .iter()
            .filter(|e| !e.label)
            .map(|e| &e.signal)
            .collect();
        let tail_scores: Vec<f64> = validation_benign
            .iter()
            .map(|s| detector.tail_score(s))
            .collect();
        let tail_cutoff = cutoff_for(
            &mut tail_scores.clone(),
            config.false_positive_budget,
            config.min_cutoff,
        );
        detector.cutoff = tail_cutoff;
        if config.prototypes == 0 || validation_benign.is_empty() {
            return Ok(detector);
        }

        // Prototypes of evenly spaced benign training rows; their distance is put in nats so
        // that the distance flagging the budget's share of validation benign rows counts as
        // much as the tails' cutoff, and one cutoff is then set on the larger of the two.
        let step = benign.len().div_ceil(config.prototype_rows.max(1)).max(1);
        let mut sample = spec.base_space_all(benign.iter().step_by(step).copied())?;
        sample.fill_missing(&spec.base_space_impute());
        let prototypes = Prototypes::fit(
            &sample,
            config.prototypes,
            config.prototype_iterations,
            0x5eed,
        )?;
        let vx = spec.base_space_all(validation_benign.iter().copied())?;
        let distances: Vec<f64> = (0..vx.rows)
            .map(|r| prototypes.distance(vx.row(r)))
            .collect();
        // At least one standard deviation: benign traffic so regular that every validation
        // row sits on a prototype would otherwise flag any value never seen exactly.
        let distance_cutoff = cutoff_for(&mut distances.clone(), config.false_positive_budget, 1.0);
        detector.distance_scale = tail_cutoff / distance_cutoff;
        detector.prototypes = Some(prototypes);
        // The member's score of each validation row, from the two parts already computed.
        let mut scores: Vec<f64> = tail_scores
            .iter()
            .zip(&distances)
            .map(|(&tails, &d)| detector.combined(tails, d))
            .collect();
        detector.cutoff = cutoff_for(&mut scores, config.false_positive_budget, config.min_cutoff);
        Ok(detector)
    }

    /// Novelty score in nats: the larger of the tails' score and the scaled distance from
    /// the signal's base columns ([`FeatureSpec::base_space`]) to the nearest benign
    /// prototype.
    pub fn score(&self, spec: &FeatureSpec, signal: &ThreatSignal) -> Result<f64> {
        check_signal(signal)?;
        Ok(self.score_of_checked(spec, signal))
    }

    /// [`NoveltyDetector::score`] of a signal that passed the spec's checks.
    fn score_of_checked(&self, spec: &FeatureSpec, signal: &ThreatSignal) -> f64 {
        let tails = self.tail_score(signal);
        match &self.prototypes {
            Some(p) => self.combined(tails, p.distance(&spec.base_space_of_checked(signal))),
            None => tails,
        }
    }

    /// The member's score from the tails' score and the distance to the nearest prototype.
    fn combined(&self, tails: f64, distance: f64) -> f64 {
        tails.max(self.distance_scale * distance)
    }

    /// [`NoveltyDetector::probability`] of a signal whose feature vector was computed (so it
    /// passed the spec's checks), given its [`FeatureSpec::base_space`] `base`: the ensemble's
    /// hot path, which shares `base` with the domain measure.
    pub(crate) fn probability_with_base(
        &self,
        signal: &ThreatSignal,
        base: &[f32],
        decision_threshold: f64,
    ) -> f64 {
        let tails = self.tail_score(signal);
        let score = match &self.prototypes {
            Some(p) => self.combined(tails, p.distance(base)),
            None => tails,
        };
        self.probability_of_score(score, decision_threshold)
    }

    fn probability_of_score(&self, score: f64, decision_threshold: f64) -> f64 {
        let t = decision_threshold.clamp(1e-6, 1.0 - 1e-6);
        let z = (t / (1.0 - t)).ln() + score - self.cutoff;
        1.0 / (1.0 + (-z).exp())
    }

    /// The tails' score in nats: per input, the largest rarity over the contexts that apply,
    /// summed. 0 for a signal whose every value lies inside the benign bulk.
    pub fn tail_score(&self, signal: &ThreatSignal) -> f64 {
        let tail = self.config.tail;
        let profiles: Vec<&Profile> = std::iter::once(&self.global)
            .chain(self.groups.iter().filter_map(|g| {
                let level = g.attribute.value(signal)?;
                let i = g.levels.binary_search_by(|l| l.as_str().cmp(level)).ok()?;
                g.profiles.get(i)
            }))
            .collect();
        self.inputs
            .iter()
            .enumerate()
            .filter_map(|(j, input)| Some((j, input.value(signal)?)))
            .map(|(j, x)| {
                profiles
                    .iter()
                    .map(|p| p.rarity(j, x, tail))
                    .fold(0.0, f64::max)
            })
            .sum()
    }

    /// The member's probability: the ensemble's decision threshold at the cutoff, one nat of
    /// score per unit of log-odds around it.
    pub fn probability(
        &self,
        spec: &FeatureSpec,
        signal: &ThreatSignal,
        decision_threshold: f64,
    ) -> Result<f64> {
        Ok(self.probability_of_score(self.score(spec, signal)?, decision_threshold))
    }

    /// Checks the shape of a loaded member against the spec's base columns.
    pub fn check(&self, spec: &FeatureSpec) -> Result<()> {
        if let Some(p) = &self.prototypes {
            p.check(spec.base.len())?;
            if !(self.distance_scale.is_finite() && self.distance_scale > 0.0) {
                return Err(Error::CorruptArtifact(
                    "novelty member: distance scale out of range".to_string(),
                ));
            }
        }
        let n = self.inputs.len();
        let fits =
            |p: &Profile| p.tails.len() == n && (p.carried.is_empty() || p.carried.len() == n);
        let groups_ok = self
            .groups
            .iter()
            .all(|g| g.levels.len() == g.profiles.len() && g.profiles.iter().all(fits));
        if !fits(&self.global) || !groups_ok || !self.cutoff.is_finite() {
            return Err(Error::CorruptArtifact(
                "novelty member does not match its inputs".to_string(),
            ));
        }
        Ok(())
    }
}

/// Halfway between the last benign score inside the budget and the first outside it, and not
/// below `min_cutoff`.
fn cutoff_for(scores: &mut [f64], budget: f64, min_cutoff: f64) -> f64 {
    scores.sort_unstable_by(|a, b| b.total_cmp(a));
    let allowed = (budget * scores.len() as f64).floor() as usize;
    let cutoff = match (
        allowed.checked_sub(1).map(|i| scores[i]),
        scores.get(allowed),
    ) {
        (Some(flagged), Some(&kept)) => (flagged + kept) / 2.0,
        (None, Some(&kept)) => kept + 1.0,
        (_, None) => min_cutoff,
    };
    cutoff.max(min_cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureEngineer;
    use chrono::{DateTime, Utc};

    /// Benign rows: byte counts that grow with the connection count, an occasional failed
    /// login, two services; attacks: huge connection counts.
    fn example(i: usize) -> LabeledExample {
        let attack = i.is_multiple_of(4);
        let mut s = ThreatSignal::new("x", 0.5, DateTime::<Utc>::UNIX_EPOCH);
        s.protocol = Some("tcp".into());
        let service = if i.is_multiple_of(3) { "http" } else { "ftp" };
        s.categorical.insert("service".into(), service.into());
        let count = i % 10;
        s.bytes = 200 + count as u64 * 80 + (i as u64 * 7919) % 20;
        s.numeric
            .insert("count".into(), if attack { 500.0 } else { count as f64 });
        let failed = if !attack && i % 500 == 1 { 1.0 } else { 0.0 };
        s.numeric.insert("failed_logins".into(), failed);
        LabeledExample::new(s, attack, "test")
    }

    fn fitted() -> (NoveltyDetector, FeatureSpec) {
        let train: Vec<LabeledExample> = (0..8000).map(example).collect();
        let validation: Vec<LabeledExample> = (8000..12000).map(example).collect();
        let spec = FeatureEngineer::default().fit(&train).unwrap();
        let detector =
            NoveltyDetector::fit(&spec, &train, &validation, NoveltyConfig::default()).unwrap();
        (detector, spec)
    }

    /// Score and probability at threshold 0.1 of a signal.
    fn judge(detector: &NoveltyDetector, spec: &FeatureSpec, s: &ThreatSignal) -> (f64, f64) {
        (
            detector.score(spec, s).unwrap(),
            detector.probability(spec, s, 0.1).unwrap(),
        )
    }

    #[test]
    fn tails_count_benign_rows_at_least_as_extreme() {
        let sorted = [0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 5.0, 9.0];
        let tails = Tails::fit(&sorted, 2.5);
        assert_eq!(tails.extreme_count(2.0), None, "inside the bulk");
        assert_eq!(tails.extreme_count(3.0), Some(2));
        assert_eq!(tails.extreme_count(5.0), Some(2));
        assert_eq!(tails.extreme_count(6.0), Some(1));
        assert_eq!(tails.extreme_count(9.5), Some(0));
        assert_eq!(tails.extreme_count(-1.0), Some(0));
        assert_eq!(tails.extreme_count(0.0), None, "three zeros are not rare");
    }

    #[test]
    fn flags_an_obviously_anomalous_row_and_not_a_typical_benign_one() {
        let (detector, spec) = fitted();
        assert!(detector.cutoff >= detector.config.min_cutoff);
        let typical = example(8001).signal;
        assert!(!example(8001).label);
        assert_eq!(detector.tail_score(&typical), 0.0);
        let (score, probability) = judge(&detector, &spec, &typical);
        assert!(score < detector.cutoff, "{score} >= {}", detector.cutoff);
        assert!(probability < 0.1);

        let mut odd = typical.clone();
        odd.bytes = 5_000_000;
        odd.numeric.insert("failed_logins".into(), 4.0);
        let (score, probability) = judge(&detector, &spec, &odd);
        assert!(score > detector.cutoff, "{score} <= {}", detector.cutoff);
        assert!(probability > 0.1);
    }

    #[test]
    fn an_input_the_signal_does_not_carry_is_not_rare() {
        let (detector, spec) = fitted();
        // A negative connection count is rare in this benign traffic; no count at all is
        // simply not there.
        let mut odd = example(8001).signal;
        odd.numeric.insert("count".into(), -50.0);
        assert!(detector.tail_score(&odd) > 0.0);
        let mut absent = example(8001).signal;
        absent.numeric.clear();
        absent.bytes = 0;
        assert_eq!(detector.tail_score(&absent), 0.0);
        let (score, probability) = judge(&detector, &spec, &absent);
        assert!(score < detector.cutoff, "{score} >= {}", detector.cutoff);
        assert!(probability < 0.1);
    }

    #[test]
    fn prototypes_flag_a_combination_no_single_value_gives_away() {
        let (detector, spec) = fitted();
        assert!(detector.prototypes.is_some());
        // Benign bytes grow with the connection count: 920 bytes on a first connection is
        // inside the benign range of both attributes, but no benign row looks like it.
        let mut odd = example(8001).signal;
        odd.numeric.insert("count".into(), 0.0);
        odd.bytes = 920;
        assert_eq!(
            detector.tail_score(&odd),
            0.0,
            "each value alone is ordinary"
        );
        let (score, probability) = judge(&detector, &spec, &odd);
        assert!(score > detector.cutoff, "{score} <= {}", detector.cutoff);
        assert!(probability > 0.1);

        let without = NoveltyConfig {
            prototypes: 0,
            ..NoveltyConfig::default()
        };
        let train: Vec<LabeledExample> = (0..8000).map(example).collect();
        let validation: Vec<LabeledExample> = (8000..12000).map(example).collect();
        let tails_only = NoveltyDetector::fit(&spec, &train, &validation, without).unwrap();
        let (score, _) = judge(&tails_only, &spec, &odd);
        assert!(score < tails_only.cutoff, "tails alone miss it");
    }

    #[test]
    fn deterministic_and_identical_after_save_and_load() {
        let (a, spec) = fitted();
        let (b, _) = fitted();
        assert_eq!(a, b);
        let json = serde_json::to_string(&a).unwrap();
        let loaded: NoveltyDetector = serde_json::from_str(&json).unwrap();
        assert_eq!(loaded, a);
        loaded.check(&spec).unwrap();
        let mut other = loaded.clone();
        other.prototypes.as_mut().unwrap().dim += 1;
        assert!(other.check(&spec).is_err());
        for i in 12000..12400 {
            let s = example(i).signal;
            let (a, b) = (
                a.score(&spec, &s).unwrap(),
                loaded.score(&spec, &s).unwrap(),
            );
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }

    #[test]
    fn a_member_saved_before_prototypes_existed_still_loads() {
        let (a, spec) = fitted();
        let mut json = serde_json::to_value(&a).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("prototypes");
        object.remove("distance_scale");
        let old: NoveltyDetector = serde_json::from_value(json).unwrap();
        assert!(old.prototypes.is_none());
        old.check(&spec).unwrap();
        let s = example(12001).signal;
        assert_eq!(old.score(&spec, &s).unwrap(), old.tail_score(&s));
    }

    #[test]
    fn cutoff_respects_the_false_positive_budget() {
        let mut scores: Vec<f64> = (0..1000).map(|i| f64::from(i) / 100.0).collect();
        let cutoff = cutoff_for(&mut scores, 0.01, 1.0);
        let flagged = scores.iter().filter(|&&s| s >= cutoff).count();
        assert_eq!(flagged, 10);
        let mut zeros = vec![0.0; 100];
        assert_eq!(cutoff_for(&mut zeros, 0.05, 1.0), 1.0);
    }
}
