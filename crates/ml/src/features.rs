//! Feature engineering: a [`FeatureSpec`] fitted on training data turns any [`ThreatSignal`]
//! into a fixed-length vector. The spec is saved inside every model artifact and the same
//! [`FeatureSpec::transform`] serves training and prediction, so the two cannot drift.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vigil_domain::ThreatSignal;

use crate::error::{Error, Result};
use crate::pipeline::LabeledExample;

/// A dense row-major matrix of feature vectors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    /// The rows `fill` writes for each signal, `cols` values each.
    fn from_rows<'a>(
        cols: usize,
        signals: impl IntoIterator<Item = &'a ThreatSignal>,
        mut fill: impl FnMut(&'a ThreatSignal, &mut Vec<f32>) -> Result<()>,
    ) -> Result<Self> {
        let mut data = Vec::new();
        let mut row = Vec::new();
        let mut rows = 0;
        for signal in signals {
            fill(signal, &mut row)?;
            data.extend_from_slice(&row);
            rows += 1;
        }
        Ok(Self { rows, cols, data })
    }

    /// An all-zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows at `indices`, in that order.
    pub fn select_rows(&self, indices: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        Matrix {
            rows: indices.len(),
            cols: self.cols,
            data,
        }
    }
}

/// Knobs of [`FeatureEngineer::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureConfig {
    /// At most this many one-hot levels per categorical attribute (the most frequent).
    pub max_levels: usize,
    /// A level needs this share of the training rows to get its own column; rarer levels share
    /// an "other" column, which keeps models from memorising rare service/flag combinations.
    pub min_level_fraction: f64,
    /// Attributes with more distinct values than this are hashed instead of one-hot encoded.
    pub hash_above_levels: usize,
    /// Number of hash buckets for high-cardinality attributes.
    pub hash_buckets: usize,
    /// Non-negative columns whose 99th percentile exceeds this get `ln(1 + x)`.
    pub log_above: f64,
    /// The numeric features most correlated with the label that get squares and pairwise
    /// products.
    pub interaction_top_k: usize,
    /// Correlation-based selection keeps at most this many features.
    pub max_features: usize,
    /// Standardised values are clipped to +-clip, so an unseen extreme value cannot dominate.
    pub clip: f64,
    /// Statistics are estimated on at most this many rows (evenly spaced through the data):
    /// means, percentiles and correlations settle long before 100 000 rows, and fitting on
    /// all of them was the slowest part of feature engineering.
    pub fit_sample_rows: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            max_levels: 32,
            min_level_fraction: 0.002,
            hash_above_levels: 256,
            hash_buckets: 32,
            log_above: 100.0,
            interaction_top_k: 5,
            max_features: 96,
            clip: 10.0,
            fit_sample_rows: 30_000,
        }
    }
}

impl FeatureConfig {
    /// Checks that the knobs make sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::InvalidConfig(format!("features: {msg}")));
        if self.max_features == 0 {
            return bad("max_features must be at least 1");
        }
        if self.hash_buckets == 0 {
            return bad("hash_buckets must be at least 1");
        }
        if !(0.0..1.0).contains(&self.min_level_fraction) {
            return bad("min_level_fraction must be in 0..1");
        }
        if !(self.clip.is_finite() && self.clip > 0.0 && self.log_above.is_finite()) {
            return bad("clip must be positive and log_above finite");
        }
        Ok(())
    }
}

/// Well-known signal fields and domain features derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Derived {
    Duration,
    Bytes,
    Packets,
    Confidence,
    /// Destination port below 1024 (needs root to bind: a real service).
    DstPortPrivileged,
    /// Destination port is a well-known service port (ssh, http, smb, rdp, ...).
    DstPortWellKnown,
    /// Source port below 1024: unusual for a client.
    SrcPortPrivileged,
    /// Source port in the ephemeral range (>= 49152).
    SrcPortEphemeral,
    SrcIpPrivate,
    DstIpPrivate,
    /// Both ends public: traffic crossing the perimeter.
    BothIpsPublic,
    /// Source equals destination (a classic "land" attack).
    SameAddress,
}

impl Derived {
    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Derived::Duration => "duration",
            Derived::Bytes => "bytes",
            Derived::Packets => "packets",
            Derived::Confidence => "confidence",
            Derived::DstPortPrivileged => "dst_port_privileged",
            Derived::DstPortWellKnown => "dst_port_well_known",
            Derived::SrcPortPrivileged => "src_port_privileged",
            Derived::SrcPortEphemeral => "src_port_ephemeral",
            Derived::SrcIpPrivate => "src_ip_private",
            Derived::DstIpPrivate => "dst_ip_private",
            Derived::BothIpsPublic => "both_ips_public",
            Derived::SameAddress => "same_address",
        }
    }
}

const ALL_DERIVED: [Derived; 12] = [
    Derived::Duration,
    Derived::Bytes,
    Derived::Packets,
    Derived::Confidence,
    Derived::DstPortPrivileged,
    Derived::DstPortWellKnown,
    Derived::SrcPortPrivileged,
    Derived::SrcPortEphemeral,
    Derived::SrcIpPrivate,
    Derived::DstIpPrivate,
    Derived::BothIpsPublic,
    Derived::SameAddress,
];

const WELL_KNOWN_PORTS: [u16; 20] = [
    20, 21, 22, 23, 25, 53, 67, 69, 80, 110, 123, 135, 139, 143, 161, 389, 443, 445, 3306, 3389,
];

/// Which categorical attribute: the well-known protocol field or a key of the open map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    Protocol,
    Map(String),
}

impl Attribute {
    fn name(&self) -> &str {
        match self {
            Attribute::Protocol => "protocol",
            Attribute::Map(key) => key,
        }
    }

    pub(crate) fn value<'a>(&self, signal: &'a ThreatSignal) -> Option<&'a str> {
        match self {
            Attribute::Protocol => signal.protocol.as_deref(),
            Attribute::Map(key) => signal.categorical.get(key).map(String::as_str),
        }
    }
}

/// Where a base column's raw value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Derived(Derived),
    Numeric(String),
    /// 1 when the attribute equals `level`; `level: None` is the shared "other" column, which
    /// also catches values never seen in training.
    OneHot {
        attribute: Attribute,
        /// Index into [`FeatureSpec::encodings`].
        encoding: usize,
        level: Option<String>,
    },
    /// 1 when the attribute's value hashes into `bucket`.
    Hashed {
        attribute: Attribute,
        encoding: usize,
        bucket: u32,
    },
}

/// A fitted base column: source, optional log transform, standardisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseColumn {
    pub name: String,
    pub source: Source,
    pub log: bool,
    pub mean: f64,
    pub std: f64,
}

impl BaseColumn {
    /// A raw value as the models see it: `ln(1 + x)` for log columns, then standardised and
    /// clipped to `±clip` (0 for a constant column).
    fn scale(&self, v: f64, clip: f64) -> f64 {
        let x = if self.log { v.max(0.0).ln_1p() } else { v };
        standardise(x, self.mean, self.std, clip)
    }
}

/// A fitted product of two standardised base columns (a square when `a == b`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionColumn {
    pub name: String,
    pub a: usize,
    pub b: usize,
    pub mean: f64,
    pub std: f64,
}

/// How categorical attributes are encoded, fitted on the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalEncoding {
    pub attribute: Attribute,
    /// One-hot levels (empty when hashed).
    pub levels: Vec<String>,
    /// Hashed into this many buckets instead of one-hot.
    pub hash_buckets: Option<u32>,
}

/// The fitted recipe that turns a signal into a feature vector; saved with every model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub config: FeatureConfig,
    pub base: Vec<BaseColumn>,
    pub interactions: Vec<InteractionColumn>,
    pub encodings: Vec<CategoricalEncoding>,
    /// Indices into `base ++ interactions` of the columns that form the output vector.
    pub selected: Vec<usize>,
    /// |Pearson correlation| with the label of each selected column, on the training data.
    pub correlation: Vec<f64>,
}

/// Fits a [`FeatureSpec`] on labelled examples.
#[derive(Debug, Clone, Default)]
pub struct FeatureEngineer {
    config: FeatureConfig,
}

impl FeatureEngineer {
    /// An engineer with the given configuration.
    pub fn new(config: FeatureConfig) -> Self {
        Self { config }
    }

    /// Learns encodings, transforms, interactions and the feature selection from `examples`.
    pub fn fit(&self, examples: &[LabeledExample]) -> Result<FeatureSpec> {
        self.config.validate()?;
        let sampled: Vec<LabeledExample>;
        let examples = if examples.len() > self.config.fit_sample_rows.max(2) {
            let take = self.config.fit_sample_rows.max(2);
            let stride = examples.len() as f64 / take as f64;
            sampled = (0..take)
                .map(|i| examples[(i as f64 * stride) as usize].clone())
                .collect();
            &sampled[..]
        } else {
            examples
        };
        let n = examples.len();
        if n < 2 {
            return Err(Error::Training(format!(
                "need at least 2 examples to fit features, got {n}"
            )));
        }
        for (i, e) in examples.iter().enumerate() {
            check_signal(&e.signal).map_err(|err| match err {
                Error::InvalidSignal(msg) => Error::InvalidData(format!("example {i}: {msg}")),
                other => other,
            })?;
        }
        let config = self.config;
        let encodings = fit_encodings(examples, &config);

        let mut base: Vec<BaseColumn> = ALL_DERIVED
            .iter()
            .map(|d| base_column(d.name().to_string(), Source::Derived(*d)))
            .collect();
        // A hash set first: most rows repeat the same keys, and ordered inserts of millions of
        // strings dominated fitting time.
        let numeric_keys: HashSet<&str> = examples
            .iter()
            .flat_map(|e| e.signal.numeric.keys().map(String::as_str))
            .collect();
        let numeric_keys: BTreeSet<&str> = numeric_keys.into_iter().collect();
        for key in numeric_keys {
            base.push(base_column(
                key.to_string(),
                Source::Numeric(key.to_string()),
            ));
        }
        for (encoding, enc) in encodings.iter().enumerate() {
            let name = enc.attribute.name();
            if let Some(buckets) = enc.hash_buckets {
                for bucket in 0..buckets {
                    base.push(base_column(
                        format!("{name}#{bucket}"),
                        Source::Hashed {
                            attribute: enc.attribute.clone(),
                            encoding,
                            bucket,
                        },
                    ));
                }
            } else {
                for level in enc.levels.iter().map(Some).chain([None]) {
                    base.push(base_column(
                        format!("{name}={}", level.map_or("<other>", |l| l.as_str())),
                        Source::OneHot {
                            attribute: enc.attribute.clone(),
                            encoding,
                            level: level.cloned(),
                        },
                    ));
                }
            }
        }

        let labels: Vec<f64> = examples
            .iter()
            .map(|e| f64::from(u8::from(e.label)))
            .collect();
        let mut spec = FeatureSpec {
            config,
            base,
            interactions: Vec::new(),
            encodings,
            selected: Vec::new(),
            correlation: Vec::new(),
        };

        // Raw values column by column, then transform and standardisation statistics.
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(n); spec.base.len()];
        let mut scratch = Vec::new();
        for e in examples {
            spec.raw_base_values(&e.signal, &mut scratch);
            for (c, v) in scratch.iter().enumerate() {
                columns[c].push(*v);
            }
        }
        for (column, values) in spec.base.iter_mut().zip(columns.iter_mut()) {
            let indicator = matches!(column.source, Source::OneHot { .. } | Source::Hashed { .. });
            if !indicator {
                let min = values.iter().copied().fold(f64::INFINITY, f64::min);
                column.log = min >= 0.0 && percentile(values, 0.99) > config.log_above;
            }
            if column.log {
                values.iter_mut().for_each(|v| *v = v.max(0.0).ln_1p());
            }
            let (mean, std) = mean_std(values);
            column.mean = mean;
            column.std = std;
            values
                .iter_mut()
                .for_each(|v| *v = standardise(*v, mean, std, config.clip));
        }
        let base_corr: Vec<f64> = columns.iter().map(|c| correlation(c, &labels)).collect();

        // Interactions among the numeric columns that carry the most signal.
        let mut ranked: Vec<usize> = (0..spec.base.len())
            .filter(|&c| {
                matches!(spec.base[c].source, Source::Numeric(_) | Source::Derived(_))
                    && spec.base[c].std > 0.0
            })
            .collect();
        ranked.sort_by(|&a, &b| {
            base_corr[b]
                .abs()
                .total_cmp(&base_corr[a].abs())
                .then(a.cmp(&b))
        });
        ranked.truncate(config.interaction_top_k);
        ranked.sort_unstable();
        let mut inter_values: Vec<Vec<f64>> = Vec::new();
        for (i, &a) in ranked.iter().enumerate() {
            for &b in &ranked[i..] {
                let mut values: Vec<f64> = columns[a]
                    .iter()
                    .zip(&columns[b])
                    .map(|(x, y)| x * y)
                    .collect();
                let (mean, std) = mean_std(&values);
                values
                    .iter_mut()
                    .for_each(|v| *v = standardise(*v, mean, std, config.clip));
                let name = if a == b {
                    format!("{}^2", spec.base[a].name)
                } else {
                    format!("{}*{}", spec.base[a].name, spec.base[b].name)
                };
                spec.interactions.push(InteractionColumn {
                    name,
                    a,
                    b,
                    mean,
                    std,
                });
                inter_values.push(values);
            }
        }
        let inter_corr: Vec<f64> = inter_values
            .iter()
            .map(|c| correlation(c, &labels))
            .collect();

        // Correlation-based selection: drop constants, keep the strongest columns.
        let all_corr: Vec<f64> = base_corr.into_iter().chain(inter_corr).collect();
        let stds: Vec<f64> = spec
            .base
            .iter()
            .map(|c| c.std)
            .chain(spec.interactions.iter().map(|c| c.std))
            .collect();
        let mut candidates: Vec<usize> = (0..all_corr.len()).filter(|&c| stds[c] > 0.0).collect();
        if candidates.is_empty() {
            return Err(Error::Training(
                "every feature is constant on the training data".to_string(),
            ));
        }
        candidates.sort_by(|&a, &b| {
            all_corr[b]
                .abs()
                .total_cmp(&all_corr[a].abs())
                .then(a.cmp(&b))
        });
        candidates.truncate(config.max_features);
        candidates.sort_unstable();
        spec.correlation = candidates.iter().map(|&c| all_corr[c].abs()).collect();
        spec.selected = candidates;
        Ok(spec)
    }
}

impl FeatureSpec {
    /// Length of the output vector.
    pub fn len(&self) -> usize {
        self.selected.len()
    }

    /// True when no feature survived selection (never for a fitted spec).
    pub fn is_empty(&self) -> bool {
        self.selected.is_empty()
    }

    /// Names of the output features, in vector order.
    pub fn feature_names(&self) -> Vec<String> {
        self.selected
            .iter()
            .map(|&c| self.column_name(c).to_string())
            .collect()
    }

    fn column_name(&self, c: usize) -> &str {
        if c < self.base.len() {
            &self.base[c].name
        } else {
            &self.interactions[c - self.base.len()].name
        }
    }

    /// The feature vector of one signal. Refuses non-finite attributes rather than guessing.
    pub fn transform(&self, signal: &ThreatSignal) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.len());
        let mut scratch = Vec::with_capacity(self.base.len());
        self.transform_into(signal, &mut scratch, &mut out)?;
        Ok(out)
    }

    /// Like [`FeatureSpec::transform`], reusing caller-owned buffers (hot path).
    pub fn transform_into(
        &self,
        signal: &ThreatSignal,
        scratch: &mut Vec<f64>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        check_signal(signal)?;
        self.raw_base_values(signal, scratch);
        let clip = self.config.clip;
        for (v, column) in scratch.iter_mut().zip(&self.base) {
            *v = column.scale(*v, clip);
        }
        out.clear();
        let n_base = self.base.len();
        for &c in &self.selected {
            let value = if c < n_base {
                scratch[c]
            } else {
                let inter = &self.interactions[c - n_base];
                standardise(
                    scratch[inter.a] * scratch[inter.b],
                    inter.mean,
                    inter.std,
                    clip,
                )
            };
            out.push(value as f32);
        }
        Ok(())
    }

    /// The base columns of `signal` as the novelty member's benign prototypes see them:
    /// numeric columns log-transformed and standardised as in [`FeatureSpec::transform`],
    /// categorical indicators left at 0 / 1 (standardised, a rare level would weigh more than
    /// a common one), constant columns 0. No selection, no interactions.
    pub fn base_space(&self, signal: &ThreatSignal) -> Result<Vec<f32>> {
        check_signal(signal)?;
        Ok(self.base_space_of_checked(signal))
    }

    /// [`FeatureSpec::base_space`] of a signal that already passed the spec's checks (its
    /// feature vector was computed).
    pub(crate) fn base_space_of_checked(&self, signal: &ThreatSignal) -> Vec<f32> {
        let mut raw = Vec::with_capacity(self.base.len());
        self.raw_base_values(signal, &mut raw);
        let clip = self.config.clip;
        raw.iter()
            .zip(&self.base)
            .map(|(&v, column)| match column.source {
                Source::OneHot { .. } | Source::Hashed { .. } => v as f32,
                _ => column.scale(v, clip) as f32,
            })
            .collect()
    }

    /// [`FeatureSpec::base_space`] of many signals.
    pub fn base_space_all<'a>(
        &self,
        signals: impl IntoIterator<Item = &'a ThreatSignal>,
    ) -> Result<Matrix> {
        Matrix::from_rows(self.base.len(), signals, |signal, row| {
            *row = self.base_space(signal)?;
            Ok(())
        })
    }

    /// Feature vectors of many signals.
    pub fn transform_all<'a>(
        &self,
        signals: impl IntoIterator<Item = &'a ThreatSignal>,
    ) -> Result<Matrix> {
        let mut scratch = Vec::new();
        Matrix::from_rows(self.len(), signals, |signal, row| {
            self.transform_into(signal, &mut scratch, row)
        })
    }

    /// Feature vectors and labels of examples.
    pub fn transform_examples(&self, examples: &[LabeledExample]) -> Result<(Matrix, Vec<bool>)> {
        let matrix = self.transform_all(examples.iter().map(|e| &e.signal))?;
        Ok((matrix, examples.iter().map(|e| e.label).collect()))
    }

    fn raw_base_values(&self, signal: &ThreatSignal, out: &mut Vec<f64>) {
        out.clear();
        // Look each categorical attribute up once per signal, not once per one-hot column.
        let mut values: [Option<&str>; 8] = [None; 8];
        let cached = self.encodings.len() <= values.len();
        if cached {
            for (slot, enc) in values.iter_mut().zip(&self.encodings) {
                *slot = enc.attribute.value(signal);
            }
        }
        let value_of = |encoding: usize, attribute: &Attribute| {
            if cached {
                values.get(encoding).copied().flatten()
            } else {
                attribute.value(signal)
            }
        };
        // Numeric columns are sorted by key like the signal's map: walk both in step instead of
        // searching the map for every column.
        let mut numeric = signal.numeric.iter().peekable();
        for column in &self.base {
            let value = match &column.source {
                Source::Derived(d) => derived_value(*d, signal),
                Source::Numeric(key) => {
                    while numeric
                        .next_if(|(k, _)| k.as_str() < key.as_str())
                        .is_some()
                    {}
                    match numeric.peek() {
                        Some((k, v)) if *k == key => **v,
                        // Absent, or a spec whose columns are not in key order.
                        _ => signal.numeric.get(key).copied().unwrap_or(0.0),
                    }
                }
                Source::OneHot {
                    attribute,
                    encoding,
                    level,
                } => {
                    let value = value_of(*encoding, attribute);
                    let hit = match level {
                        Some(level) => value == Some(level.as_str()),
                        None => value.is_some_and(|v| {
                            self.encodings.get(*encoding).is_none_or(|e| {
                                e.levels.binary_search_by(|l| l.as_str().cmp(v)).is_err()
                            })
                        }),
                    };
                    f64::from(u8::from(hit))
                }
                Source::Hashed {
                    attribute,
                    encoding,
                    bucket,
                } => {
                    let buckets = self
                        .encodings
                        .get(*encoding)
                        .and_then(|e| e.hash_buckets)
                        .unwrap_or(1)
                        .max(1);
                    let hit = value_of(*encoding, attribute)
                        .is_some_and(|v| stable_hash(v) % buckets == *bucket);
                    f64::from(u8::from(hit))
                }
            };
            out.push(value);
        }
    }
}

fn base_column(name: String, source: Source) -> BaseColumn {
    BaseColumn {
        name,
        source,
        log: false,
        mean: 0.0,
        std: 0.0,
    }
}

fn fit_encodings(examples: &[LabeledExample], config: &FeatureConfig) -> Vec<CategoricalEncoding> {
    let mut protocol: HashMap<&str, usize> = HashMap::new();
    let mut by_key: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
    for e in examples {
        if let Some(p) = e.signal.protocol.as_deref() {
            *protocol.entry(p).or_default() += 1;
        }
        for (k, v) in &e.signal.categorical {
            *by_key.entry(k).or_default().entry(v).or_default() += 1;
        }
    }
    // Ordered from here on, so the encodings do not depend on hash order.
    let mut counts: BTreeMap<Attribute, BTreeMap<&str, usize>> = BTreeMap::new();
    if !protocol.is_empty() {
        counts.insert(Attribute::Protocol, protocol.into_iter().collect());
    }
    for (k, levels) in by_key {
        counts.insert(Attribute::Map(k.to_string()), levels.into_iter().collect());
    }
    let min_count = ((examples.len() as f64 * config.min_level_fraction).ceil() as usize).max(1);
    counts
        .into_iter()
        .map(|(attribute, levels)| {
            if levels.len() > config.hash_above_levels {
                return CategoricalEncoding {
                    attribute,
                    levels: Vec::new(),
                    hash_buckets: Some(config.hash_buckets as u32),
                };
            }
            let mut frequent: Vec<(&str, usize)> = levels
                .into_iter()
                .filter(|(_, c)| *c >= min_count)
                .collect();
            frequent.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            frequent.truncate(config.max_levels);
            let mut levels: Vec<String> =
                frequent.into_iter().map(|(l, _)| l.to_string()).collect();
            levels.sort();
            CategoricalEncoding {
                attribute,
                levels,
                hash_buckets: None,
            }
        })
        .collect()
}

pub(crate) fn check_signal(signal: &ThreatSignal) -> Result<()> {
    if !signal.duration_seconds.is_finite() {
        return Err(Error::InvalidSignal(format!(
            "duration_seconds is {}",
            signal.duration_seconds
        )));
    }
    if !signal.confidence.is_finite() {
        return Err(Error::InvalidSignal(format!(
            "confidence is {}",
            signal.confidence
        )));
    }
    if let Some((k, v)) = signal.numeric.iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::InvalidSignal(format!(
            "numeric attribute {k:?} is {v}"
        )));
    }
    Ok(())
}

pub(crate) fn derived_value(d: Derived, s: &ThreatSignal) -> f64 {
    let flag = |b: bool| f64::from(u8::from(b));
    match d {
        Derived::Duration => s.duration_seconds,
        Derived::Bytes => s.bytes as f64,
        Derived::Packets => s.packets as f64,
        Derived::Confidence => s.confidence.clamp(0.0, 1.0),
        Derived::DstPortPrivileged => flag(s.destination_port.is_some_and(|p| p < 1024)),
        Derived::DstPortWellKnown => flag(
            s.destination_port
                .is_some_and(|p| WELL_KNOWN_PORTS.contains(&p)),
        ),
        Derived::SrcPortPrivileged => flag(s.source_port.is_some_and(|p| p < 1024)),
        Derived::SrcPortEphemeral => flag(s.source_port.is_some_and(|p| p >= 49152)),
        Derived::SrcIpPrivate => flag(s.source_ip.is_some_and(is_private)),
        Derived::DstIpPrivate => flag(s.destination_ip.is_some_and(is_private)),
        Derived::BothIpsPublic => flag(matches!(
            (s.source_ip, s.destination_ip),
            (Some(a), Some(b)) if !is_private(a) && !is_private(b)
        )),
        Derived::SameAddress => flag(matches!(
            (s.source_ip, s.destination_ip),
            (Some(a), Some(b)) if a == b
        )),
    }
}

/// Private, loopback, link-local and unique-local addresses: traffic that stays inside.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn stable_hash(value: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in value.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

fn standardise(x: f64, mean: f64, std: f64, clip: f64) -> f64 {
    if std > 0.0 {
        ((x - mean) / std).clamp(-clip, clip)
    } else {
        0.0
    }
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    // Tiny variances are numerical noise on a constant column.
    let std = var.sqrt();
    (mean, if std > 1e-9 { std } else { 0.0 })
}

fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut copy = values.to_vec();
    let idx = ((copy.len() - 1) as f64 * q).round() as usize;
    *copy.select_nth_unstable_by(idx, f64::total_cmp).1
}

/// Pearson correlation; 0 for a constant column.
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let (mx, sx) = mean_std(x);
    let (my, sy) = mean_std(y);
    if sx == 0.0 || sy == 0.0 {
        return 0.0;
    }
    let cov = x
        .iter()
        .zip(y)
        .map(|(a, b)| (a - mx) * (b - my))
        .sum::<f64>()
        / x.len() as f64;
    cov / (sx * sy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn signal(i: usize) -> (ThreatSignal, bool) {
        let attack = i.is_multiple_of(3);
        let mut s = ThreatSignal::new("x", 0.5, DateTime::<Utc>::UNIX_EPOCH);
        s.protocol = Some(if i.is_multiple_of(5) { "udp" } else { "tcp" }.to_string());
        s.bytes = if attack {
            10 + (i as u64 % 7)
        } else {
            1000 + (i as u64 * 37) % 100_000
        };
        s.duration_seconds = (i % 11) as f64;
        s.destination_port = Some(if attack { 22 } else { 40000 + i as u16 % 100 });
        s.source_ip = Some(
            if i.is_multiple_of(2) {
                "10.0.0.1"
            } else {
                "8.8.8.8"
            }
            .parse()
            .unwrap(),
        );
        s.numeric
            .insert("count".into(), if attack { 200.0 } else { (i % 20) as f64 });
        s.numeric.insert("rate".into(), (i % 10) as f64 / 10.0);
        s.categorical.insert(
            "service".into(),
            ["http", "ftp", "smtp", "rare1"][i % 4].to_string(),
        );
        s.categorical.insert("user".into(), format!("user{i}"));
        (s, attack)
    }

    fn examples(n: usize) -> Vec<LabeledExample> {
        (0..n)
            .map(|i| {
                let (s, label) = signal(i);
                LabeledExample::new(s, label, "test")
            })
            .collect()
    }

    #[test]
    fn spec_saved_and_loaded_gives_bit_identical_vectors() {
        let train = examples(600);
        let spec = FeatureEngineer::default().fit(&train).unwrap();
        assert!(!spec.is_empty());
        let json = serde_json::to_string(&spec).unwrap();
        let loaded: FeatureSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(loaded, spec);
        for i in 600..700 {
            let (s, _) = signal(i);
            let a = spec.transform(&s).unwrap();
            let b = loaded.transform(&s).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b));
            assert_eq!(a.len(), spec.len());
        }
    }

    #[test]
    fn fit_uses_log_one_hot_hashing_domain_features_and_interactions() {
        let spec = FeatureEngineer::default().fit(&examples(600)).unwrap();
        let bytes = spec.base.iter().find(|c| c.name == "bytes").unwrap();
        assert!(bytes.log, "heavy-tailed byte counts are log-scaled");
        let rate = spec.base.iter().find(|c| c.name == "rate").unwrap();
        assert!(!rate.log, "rates in 0-1 are left alone");
        let user = spec
            .encodings
            .iter()
            .find(|e| e.attribute == Attribute::Map("user".into()))
            .unwrap();
        assert!(user.hash_buckets.is_some(), "600 distinct users are hashed");
        let service = spec
            .encodings
            .iter()
            .find(|e| e.attribute == Attribute::Map("service".into()))
            .unwrap();
        assert_eq!(service.levels, vec!["ftp", "http", "rare1", "smtp"]);
        assert!(!spec.interactions.is_empty());
        let names = spec.feature_names();
        assert!(
            names.iter().any(|n| n == "dst_port_well_known"),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n == "packets"),
            "constant columns are dropped: {names:?}"
        );
    }

    #[test]
    fn selection_keeps_the_most_correlated_features() {
        let config = FeatureConfig {
            max_features: 3,
            ..FeatureConfig::default()
        };
        let spec = FeatureEngineer::new(config).fit(&examples(600)).unwrap();
        assert_eq!(spec.len(), 3);
        let full = FeatureEngineer::default().fit(&examples(600)).unwrap();
        let min_kept = spec
            .correlation
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let dropped_max = full
            .selected
            .iter()
            .zip(&full.correlation)
            .filter(|(c, _)| !spec.selected.contains(c))
            .map(|(_, r)| *r)
            .fold(0.0, f64::max);
        assert!(min_kept >= dropped_max, "{min_kept} < {dropped_max}");
    }

    #[test]
    fn unseen_levels_and_missing_attributes_still_give_a_vector() {
        let spec = FeatureEngineer::default().fit(&examples(300)).unwrap();
        let mut s = ThreatSignal::new("x", 0.5, DateTime::<Utc>::UNIX_EPOCH);
        s.categorical.insert("service".into(), "never-seen".into());
        let v = spec.transform(&s).unwrap();
        assert_eq!(v.len(), spec.len());
        assert!(v.iter().all(|x| x.is_finite()));
        s.numeric.insert("count".into(), f64::INFINITY);
        assert!(matches!(spec.transform(&s), Err(Error::InvalidSignal(_))));
        s.numeric.insert("count".into(), 1e300);
        let v = spec.transform(&s).unwrap();
        assert!(v.iter().all(|x| x.abs() <= spec.config.clip as f32));
    }
}
