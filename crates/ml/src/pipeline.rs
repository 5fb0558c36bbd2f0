//! Labelled examples and the data pipeline: clean, split, balance, weigh.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use vigil_domain::ThreatSignal;

use crate::error::{Error, Result};

/// One training example: a threat signal, whether it was a real threat, where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabeledExample {
    /// The observation; only this is turned into features.
    pub signal: ThreatSignal,
    /// `true` when the signal was a real threat.
    pub label: bool,
    /// Where the label came from (`nsl-kdd`, `analyst-feedback`, a file name).
    pub source: String,
    /// The original class name (`normal`, `neptune`, ...); never a feature, used to hold out
    /// whole attack families when measuring generalisation.
    pub class_name: Option<String>,
    /// Relative importance of the example (1.0 unless feedback says otherwise).
    pub weight: f64,
}

impl LabeledExample {
    /// An example with weight 1 and no class name.
    pub fn new(signal: ThreatSignal, label: bool, source: impl Into<String>) -> Self {
        Self {
            signal,
            label,
            source: source.into(),
            class_name: None,
            weight: 1.0,
        }
    }
}

/// Why an example was changed or dropped by [`DataPipeline::clean`].
#[derive(Debug, Clone, PartialEq)]
pub struct CleanIssue {
    /// Position of the example in the input.
    pub index: usize,
    /// The signal id, when it has one.
    pub id: String,
    /// What was wrong.
    pub reason: String,
}

/// What [`DataPipeline::clean`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanReport {
    /// Examples repaired in place (e.g. confidence clamped into 0-1).
    pub fixed: Vec<CleanIssue>,
    /// Examples dropped, with the reason.
    pub refused: Vec<CleanIssue>,
}

/// How to even out the classes of the training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Leave the classes as they are.
    None,
    /// Duplicate random minority examples until both classes are the same size.
    Oversample,
}

/// Train / validation / test fractions and the seed that makes them reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            train: 0.70,
            validation: 0.15,
            test: 0.15,
            seed: 42,
        }
    }
}

impl SplitConfig {
    /// Fractions must be non-negative, the training share positive, and the sum 1.
    pub fn validate(&self) -> Result<()> {
        let parts = [self.train, self.validation, self.test];
        if parts.iter().any(|p| !p.is_finite() || *p < 0.0) || self.train <= 0.0 {
            return Err(Error::InvalidConfig(format!(
                "split fractions must be finite and non-negative with train > 0, got {parts:?}"
            )));
        }
        let sum: f64 = parts.iter().sum();
        if (sum - 1.0).abs() > 1e-9 {
            return Err(Error::InvalidConfig(format!(
                "split fractions must add up to 1, got {sum}"
            )));
        }
        Ok(())
    }
}

/// The three splits of a data set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Splits {
    pub train: Vec<LabeledExample>,
    pub validation: Vec<LabeledExample>,
    pub test: Vec<LabeledExample>,
}

/// Collects labelled examples and prepares them for training.
#[derive(Debug, Clone, Default)]
pub struct DataPipeline {
    examples: Vec<LabeledExample>,
}

impl DataPipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pipeline holding `examples`.
    pub fn from_examples(examples: Vec<LabeledExample>) -> Self {
        Self { examples }
    }

    /// Adds one example.
    pub fn push(&mut self, example: LabeledExample) {
        self.examples.push(example);
    }

    /// The examples collected so far.
    pub fn examples(&self) -> &[LabeledExample] {
        &self.examples
    }

    /// Gives the examples back.
    pub fn into_examples(self) -> Vec<LabeledExample> {
        self.examples
    }

    /// Repairs what can be repaired and drops what cannot, so no NaN, infinity or out-of-range
    /// value reaches a learner. Confidence is clamped into 0-1 and a negative or non-finite
    /// weight refused; non-finite attributes, negative or non-finite durations and empty
    /// attribute names are refused, because guessing a value would invent data.
    pub fn clean(&mut self) -> CleanReport {
        let mut report = CleanReport::default();
        let examples = std::mem::take(&mut self.examples);
        for (index, mut example) in examples.into_iter().enumerate() {
            let issue = |reason: String| CleanIssue {
                index,
                id: example.signal.id.clone(),
                reason,
            };
            if let Some(reason) = refusal_reason(&example) {
                report.refused.push(issue(reason));
                continue;
            }
            let confidence = example.signal.confidence;
            if !(0.0..=1.0).contains(&confidence) {
                let fixed = if confidence.is_nan() {
                    0.5
                } else {
                    confidence.clamp(0.0, 1.0)
                };
                report.fixed.push(issue(format!(
                    "confidence {confidence} outside 0-1, set to {fixed}"
                )));
                example.signal.confidence = fixed;
            }
            self.examples.push(example);
        }
        report
    }

    /// Splits the examples into train / validation / test, stratified by label so each split
    /// keeps the class mix, and shuffled with `config.seed` so the same seed gives the same
    /// split.
    pub fn split(&self, config: &SplitConfig) -> Result<Splits> {
        config.validate()?;
        let (train, validation, test) = self.split_assignment(config);
        let pick = |indices: &[usize]| indices.iter().map(|&i| self.examples[i].clone()).collect();
        Ok(Splits {
            train: pick(&train),
            validation: pick(&validation),
            test: pick(&test),
        })
    }

    /// Indices of the train, validation and test examples.
    fn split_assignment(&self, config: &SplitConfig) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let (mut train, mut validation, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for class in [false, true] {
            let mut indices: Vec<usize> = (0..self.examples.len())
                .filter(|&i| self.examples[i].label == class)
                .collect();
            indices.shuffle(&mut rng);
            let n = indices.len();
            let n_train = (n as f64 * config.train).round() as usize;
            let n_val = ((n as f64 * config.validation).round() as usize).min(n - n_train);
            train.extend_from_slice(&indices[..n_train]);
            validation.extend_from_slice(&indices[n_train..n_train + n_val]);
            test.extend_from_slice(&indices[n_train + n_val..]);
        }
        // Interleave the classes again so consumers that take a prefix see both.
        for part in [&mut train, &mut validation, &mut test] {
            part.shuffle(&mut rng);
        }
        (train, validation, test)
    }

    /// Like [`DataPipeline::split`], moving the examples instead of copying them.
    pub fn into_splits(self, config: &SplitConfig) -> Result<Splits> {
        config.validate()?;
        let assignment = self.split_assignment(config);
        let mut splits = Splits::default();
        let mut slots: Vec<Option<LabeledExample>> = self.examples.into_iter().map(Some).collect();
        for (part, indices) in [
            (&mut splits.train, &assignment.0),
            (&mut splits.validation, &assignment.1),
            (&mut splits.test, &assignment.2),
        ] {
            part.extend(indices.iter().filter_map(|&i| slots[i].take()));
        }
        Ok(splits)
    }

    /// Assigns examples to `k` stratified folds; returns the fold index of every example.
    pub fn stratified_folds(&self, k: usize, seed: u64) -> Result<Vec<usize>> {
        stratified_folds(&self.examples, k, seed)
    }
}

/// Assigns examples to `k` stratified folds; returns the fold index of every example.
pub fn stratified_folds(examples: &[LabeledExample], k: usize, seed: u64) -> Result<Vec<usize>> {
    if k < 2 {
        return Err(Error::InvalidConfig(format!(
            "cross-validation needs at least 2 folds, got {k}"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut folds = vec![0; examples.len()];
    for class in [false, true] {
        let mut indices: Vec<usize> = (0..examples.len())
            .filter(|&i| examples[i].label == class)
            .collect();
        if indices.len() < k {
            return Err(Error::InvalidData(format!(
                "{} examples of class {} cannot fill {k} folds",
                indices.len(),
                if class { "threat" } else { "benign" }
            )));
        }
        indices.shuffle(&mut rng);
        for (pos, i) in indices.into_iter().enumerate() {
            folds[i] = pos % k;
        }
    }
    Ok(folds)
}

/// Duplicates random minority-class examples until both classes are equally large.
pub fn oversample(examples: &[LabeledExample], seed: u64) -> Vec<LabeledExample> {
    oversample_indices(examples, seed)
        .into_iter()
        .map(|i| examples[i].clone())
        .collect()
}

/// Like [`oversample`], as indices into `examples` (no copies of the examples).
pub fn oversample_indices(examples: &[LabeledExample], seed: u64) -> Vec<usize> {
    let positives: Vec<usize> = (0..examples.len()).filter(|&i| examples[i].label).collect();
    let negatives: Vec<usize> = (0..examples.len())
        .filter(|&i| !examples[i].label)
        .collect();
    let (minority, majority_len) = if positives.len() < negatives.len() {
        (positives, negatives.len())
    } else {
        (negatives, positives.len())
    };
    let mut out: Vec<usize> = (0..examples.len()).collect();
    if minority.is_empty() {
        return out;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let missing = majority_len - minority.len();
    out.reserve(missing);
    for _ in 0..missing {
        let pick = minority
            .choose(&mut rng)
            .expect("minority is not empty, checked above");
        out.push(*pick);
    }
    out.shuffle(&mut rng);
    out
}

/// Partial copies of rows: sensors send only some of what a model reads (a DNS sensor knows
/// no connection counts), so training also shows the models rows with inputs removed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartialConfig {
    /// Share of the rows that get one partial copy each (0 turns the copies off).
    pub rate: f64,
    /// Seed of which rows are copied and what each copy loses.
    pub seed: u64,
}

impl Default for PartialConfig {
    fn default() -> Self {
        Self {
            rate: 0.25,
            seed: 0x9a27_1a15,
        }
    }
}

impl PartialConfig {
    /// The rate must be a share.
    pub fn validate(&self) -> Result<()> {
        if (0.0..=1.0).contains(&self.rate) {
            Ok(())
        } else {
            Err(Error::InvalidConfig(format!(
                "partial.rate must be within 0..=1, got {}",
                self.rate
            )))
        }
    }
}

/// `examples`, then a partial copy of each of a `config.rate` share of them (drawn with
/// `config.seed`). A copy keeps each of its inputs with a probability drawn uniformly from
/// 0-1 for that copy, so copies of every coverage appear: numeric and categorical attributes,
/// the protocol, ports and addresses one by one, and the flow measurement (bytes, packets and
/// duration) as one. Label, weight and class stay those of the row.
pub fn with_partial_copies(
    examples: &[LabeledExample],
    config: &PartialConfig,
) -> Vec<LabeledExample> {
    let mut out = examples.to_vec();
    if config.rate <= 0.0 {
        return out;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    for example in examples {
        if !rng.gen_bool(config.rate.min(1.0)) {
            continue;
        }
        let keep: f64 = rng.r#gen();
        let mut copy = example.clone();
        let s = &mut copy.signal;
        let mut kept = || rng.r#gen::<f64>() < keep;
        s.numeric.retain(|_, _| kept());
        s.categorical.retain(|_, _| kept());
        if !kept() {
            s.protocol = None;
        }
        if !kept() {
            s.source_port = None;
        }
        if !kept() {
            s.destination_port = None;
        }
        if !kept() {
            s.source_ip = None;
        }
        if !kept() {
            s.destination_ip = None;
        }
        if !kept() {
            s.bytes = 0;
            s.packets = 0;
            s.duration_seconds = 0.0;
        }
        out.push(copy);
    }
    out
}

/// Sample weights: the example's own weight times a class weight `n / (2 * n_class)`, so both
/// classes carry the same total weight even without oversampling.
pub fn sample_weights(examples: &[LabeledExample]) -> Vec<f32> {
    let n = examples.len() as f64;
    let n_pos = examples.iter().filter(|e| e.label).count() as f64;
    let n_neg = n - n_pos;
    let class_weight = |label: bool| {
        let count = if label { n_pos } else { n_neg };
        if count == 0.0 { 1.0 } else { n / (2.0 * count) }
    };
    examples
        .iter()
        .map(|e| (e.weight * class_weight(e.label)) as f32)
        .collect()
}

fn refusal_reason(example: &LabeledExample) -> Option<String> {
    let signal = &example.signal;
    if !example.weight.is_finite() || example.weight <= 0.0 {
        return Some(format!(
            "weight must be a positive finite number, got {}",
            example.weight
        ));
    }
    if !signal.duration_seconds.is_finite() || signal.duration_seconds < 0.0 {
        return Some(format!(
            "duration_seconds must be finite and non-negative, got {}",
            signal.duration_seconds
        ));
    }
    for (name, value) in &signal.numeric {
        if name.trim().is_empty() {
            return Some("numeric attribute with an empty name".to_string());
        }
        if !value.is_finite() {
            return Some(format!("numeric attribute {name:?} is {value}"));
        }
    }
    if signal.categorical.keys().any(|k| k.trim().is_empty()) {
        return Some("categorical attribute with an empty name".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn example(i: usize, label: bool) -> LabeledExample {
        let mut signal = ThreatSignal::new("test", 0.5, DateTime::<Utc>::UNIX_EPOCH);
        signal.id = format!("row-{i}");
        signal.numeric.insert("x".into(), i as f64);
        LabeledExample::new(signal, label, "test")
    }

    fn dataset(n: usize, positive_every: usize) -> Vec<LabeledExample> {
        (0..n)
            .map(|i| example(i, i % positive_every == 0))
            .collect()
    }

    fn ids(examples: &[LabeledExample]) -> Vec<String> {
        examples.iter().map(|e| e.signal.id.clone()).collect()
    }

    /// A row carrying ten numeric attributes, two categorical ones, protocol, ports,
    /// addresses and a flow.
    fn full(i: usize) -> LabeledExample {
        let mut e = example(i, i.is_multiple_of(2));
        let s = &mut e.signal;
        for k in 0..10 {
            s.numeric.insert(format!("n{k}"), (i + k) as f64);
        }
        s.categorical.insert("service".into(), "http".into());
        s.categorical.insert("flag".into(), "SF".into());
        s.protocol = Some("tcp".into());
        s.source_port = Some(50_000);
        s.destination_port = Some(80);
        s.source_ip = Some("10.0.0.1".parse().unwrap());
        s.destination_ip = Some("10.0.0.2".parse().unwrap());
        s.bytes = 1200;
        s.packets = 9;
        s.duration_seconds = 0.4;
        e.class_name = Some(if e.label { "neptune" } else { "normal" }.into());
        e
    }

    #[test]
    fn partial_copies_add_rows_of_every_coverage_and_keep_the_originals() {
        let rows: Vec<LabeledExample> = (0..4000).map(full).collect();
        let config = PartialConfig::default();
        let out = with_partial_copies(&rows, &config);
        assert_eq!(
            &out[..rows.len()],
            &rows[..],
            "the originals come first, untouched"
        );
        let copies = &out[rows.len()..];
        let expected = rows.len() as f64 * config.rate;
        assert!(
            (copies.len() as f64 - expected).abs() < expected * 0.1,
            "{} copies, about {expected} expected",
            copies.len()
        );
        // What each copy kept, of the 10 numeric attributes; copies of every coverage appear.
        let kept: Vec<usize> = copies.iter().map(|c| c.signal.numeric.len()).collect();
        assert!(kept.contains(&0) && kept.contains(&10), "{kept:?}");
        assert!((1..10).all(|n| kept.contains(&n)), "{kept:?}");
        assert!(copies.iter().any(|c| c.signal.protocol.is_none()));
        assert!(copies.iter().any(|c| c.signal.categorical.is_empty()));
        let no_flow = copies
            .iter()
            .filter(|c| c.signal.bytes == 0)
            .collect::<Vec<_>>();
        assert!(!no_flow.is_empty());
        assert!(
            no_flow
                .iter()
                .all(|c| c.signal.packets == 0 && c.signal.duration_seconds == 0.0),
            "the flow is dropped as one measurement"
        );
        // A copy is its row with inputs removed: same label, class and weight, nothing added.
        for c in copies {
            let row = rows.iter().find(|r| r.signal.id == c.signal.id).unwrap();
            assert_eq!(
                (c.label, &c.class_name, c.weight),
                (row.label, &row.class_name, row.weight)
            );
            assert!(
                c.signal
                    .numeric
                    .iter()
                    .all(|(k, v)| row.signal.numeric[k] == *v)
            );
        }
        // Reproducible for a seed, different for another; none at rate 0.
        assert_eq!(with_partial_copies(&rows, &config), out);
        let other = PartialConfig {
            seed: config.seed + 1,
            ..config
        };
        assert_ne!(with_partial_copies(&rows, &other), out);
        let off = PartialConfig {
            rate: 0.0,
            ..config
        };
        assert_eq!(with_partial_copies(&rows, &off), rows);
        assert!(
            PartialConfig {
                rate: 1.5,
                ..config
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn split_is_deterministic_for_a_seed_and_differs_for_another() {
        let pipeline = DataPipeline::from_examples(dataset(1000, 3));
        let a = pipeline.split(&SplitConfig::default()).unwrap();
        let b = pipeline.split(&SplitConfig::default()).unwrap();
        assert_eq!(ids(&a.train), ids(&b.train));
        assert_eq!(ids(&a.validation), ids(&b.validation));
        assert_eq!(ids(&a.test), ids(&b.test));
        let c = pipeline
            .split(&SplitConfig {
                seed: 7,
                ..SplitConfig::default()
            })
            .unwrap();
        assert_ne!(ids(&a.train), ids(&c.train));
    }

    #[test]
    fn moving_split_equals_copying_split() {
        let pipeline = DataPipeline::from_examples(dataset(500, 3));
        let copied = pipeline.split(&SplitConfig::default()).unwrap();
        let moved = pipeline.into_splits(&SplitConfig::default()).unwrap();
        assert_eq!(copied, moved);
    }

    #[test]
    fn split_keeps_proportions_class_mix_and_loses_nothing() {
        let examples = dataset(2000, 4); // 25 % positives
        let pipeline = DataPipeline::from_examples(examples);
        let s = pipeline.split(&SplitConfig::default()).unwrap();
        assert_eq!(s.train.len() + s.validation.len() + s.test.len(), 2000);
        assert!(
            (s.train.len() as i64 - 1400).abs() <= 2,
            "{}",
            s.train.len()
        );
        assert!((s.validation.len() as i64 - 300).abs() <= 2);
        assert!((s.test.len() as i64 - 300).abs() <= 2);
        for part in [&s.train, &s.validation, &s.test] {
            let rate = part.iter().filter(|e| e.label).count() as f64 / part.len() as f64;
            assert!((rate - 0.25).abs() < 0.01, "positive rate {rate}");
        }
        let mut all = ids(&s.train);
        all.extend(ids(&s.validation));
        all.extend(ids(&s.test));
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 2000, "every example lands in exactly one split");
    }

    #[test]
    fn bad_split_fractions_are_refused() {
        let pipeline = DataPipeline::from_examples(dataset(10, 2));
        let err = pipeline
            .split(&SplitConfig {
                train: 0.8,
                validation: 0.3,
                test: 0.0,
                seed: 1,
            })
            .unwrap_err();
        assert!(err.to_string().contains("add up to 1"), "{err}");
    }

    #[test]
    fn oversampling_balances_classes_deterministically() {
        let examples = dataset(1000, 10); // 100 positives
        let a = oversample(&examples, 3);
        let b = oversample(&examples, 3);
        assert_eq!(ids(&a), ids(&b));
        let pos = a.iter().filter(|e| e.label).count();
        assert_eq!(pos, 900);
        assert_eq!(a.len() - pos, 900);
    }

    #[test]
    fn sample_weights_give_each_class_equal_mass() {
        let examples = dataset(1000, 10);
        let w = sample_weights(&examples);
        let pos: f32 = w
            .iter()
            .zip(&examples)
            .filter(|(_, e)| e.label)
            .map(|(w, _)| w)
            .sum();
        let neg: f32 = w
            .iter()
            .zip(&examples)
            .filter(|(_, e)| !e.label)
            .map(|(w, _)| w)
            .sum();
        assert!((pos - neg).abs() < 1e-2, "{pos} vs {neg}");
        assert!((pos + neg - 1000.0).abs() < 1e-2);
    }

    #[test]
    fn clean_refuses_non_finite_values_and_clamps_confidence() {
        let mut bad_nan = example(1, true);
        bad_nan.signal.numeric.insert("rate".into(), f64::NAN);
        let mut bad_inf = example(2, true);
        bad_inf.signal.duration_seconds = f64::INFINITY;
        let mut fixable = example(3, false);
        fixable.signal.confidence = 1.7;
        let mut bad_weight = example(4, false);
        bad_weight.weight = -1.0;
        let mut pipeline = DataPipeline::from_examples(vec![
            example(0, false),
            bad_nan,
            bad_inf,
            fixable,
            bad_weight,
        ]);
        let report = pipeline.clean();
        assert_eq!(pipeline.examples().len(), 2);
        assert_eq!(report.refused.len(), 3);
        assert!(
            report.refused[0].reason.contains("rate"),
            "{:?}",
            report.refused
        );
        assert!(report.refused[1].reason.contains("duration"));
        assert!(report.refused[2].reason.contains("weight"));
        assert_eq!(report.fixed.len(), 1);
        assert_eq!(pipeline.examples()[1].signal.confidence, 1.0);
    }

    #[test]
    fn folds_are_stratified_and_cover_everything() {
        let examples = dataset(1000, 5);
        let folds = stratified_folds(&examples, 5, 9).unwrap();
        for f in 0..5 {
            let members: Vec<_> = (0..1000).filter(|&i| folds[i] == f).collect();
            assert_eq!(members.len(), 200);
            let pos = members.iter().filter(|&&i| examples[i].label).count();
            assert_eq!(pos, 40);
        }
        assert!(stratified_folds(&examples, 1, 0).is_err());
    }
}
