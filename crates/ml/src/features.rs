//! Feature engineering: a [`FeatureSpec`] fitted on training data turns any [`ThreatSignal`]
//! into a fixed-length vector. The spec is saved inside every model artifact and the same
//! [`FeatureSpec::transform`] serves training and prediction, so the two cannot drift.
//!
//! Missing is not zero: a value the signal does not carry is `NaN` in the feature vector (XGBoost
//! takes its learned default branch), the forest and the network see the column's training
//! median instead ([`FeatureSpec::impute_into`]), and one indicator per model [`Input`] at the
//! end of the vector says what was missing. [`FeatureSpec::coverage`] reads those indicators.

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

    /// Replaces every missing (`NaN`) value of column `c` by `with[c]`.
    pub fn fill_missing(&mut self, with: &[f32]) {
        if self.cols == 0 {
            return;
        }
        for row in self.data.chunks_exact_mut(self.cols) {
            for (v, w) in row.iter_mut().zip(with) {
                if v.is_nan() {
                    *v = *w;
                }
            }
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

impl Derived {
    /// The signal fields this column reads; it is missing when any of them is.
    fn fields(self) -> &'static [Field] {
        match self {
            Derived::Duration => &[Field::Duration],
            Derived::Bytes => &[Field::Bytes],
            Derived::Packets => &[Field::Packets],
            Derived::Confidence => &[Field::Confidence],
            Derived::DstPortPrivileged | Derived::DstPortWellKnown => &[Field::DestinationPort],
            Derived::SrcPortPrivileged | Derived::SrcPortEphemeral => &[Field::SourcePort],
            Derived::SrcIpPrivate => &[Field::SourceIp],
            Derived::DstIpPrivate => &[Field::DestinationIp],
            Derived::BothIpsPublic | Derived::SameAddress => {
                &[Field::SourceIp, Field::DestinationIp]
            }
        }
    }
}

/// A well-known field of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Duration,
    Bytes,
    Packets,
    Confidence,
    SourcePort,
    DestinationPort,
    SourceIp,
    DestinationIp,
}

impl Field {
    /// The field's name as signals spell it.
    pub fn name(self) -> &'static str {
        match self {
            Field::Duration => "duration",
            Field::Bytes => "bytes",
            Field::Packets => "packets",
            Field::Confidence => "confidence",
            Field::SourcePort => "source_port",
            Field::DestinationPort => "destination_port",
            Field::SourceIp => "source_ip",
            Field::DestinationIp => "destination_ip",
        }
    }

    /// Whether `signal` carries the field. Bytes, packets and duration are one measurement: a
    /// signal carries them unless all three are 0, because the signal format cannot tell an
    /// absent count from a zero, and a flow with no bytes, no packets and no duration is no
    /// measurement at all. The sensor's confidence is always there.
    pub fn carried_by(self, signal: &ThreatSignal) -> bool {
        match self {
            Field::Duration | Field::Bytes | Field::Packets => !flow_missing(signal),
            Field::Confidence => true,
            Field::SourcePort => signal.source_port.is_some(),
            Field::DestinationPort => signal.destination_port.is_some(),
            Field::SourceIp => signal.source_ip.is_some(),
            Field::DestinationIp => signal.destination_ip.is_some(),
        }
    }
}

/// One thing a signal may or may not carry: a well-known field, a numeric attribute or a
/// categorical attribute. A model's coverage of a signal is counted over its inputs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    Field(Field),
    Numeric(String),
    Categorical(Attribute),
}

impl Input {
    /// The input's name (`src_bytes`, `service`, `duration`).
    pub fn name(&self) -> &str {
        match self {
            Input::Field(f) => f.name(),
            Input::Numeric(key) => key,
            Input::Categorical(attribute) => attribute.name(),
        }
    }
}

/// An input the models read, with a base column that is missing exactly when the input is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInput {
    pub input: Input,
    /// Index into [`FeatureSpec::base`].
    pub probe: usize,
}

/// How much of a model's inputs a signal carried.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coverage {
    /// Inputs the signal carried.
    pub carried: usize,
    /// Inputs the model reads.
    pub inputs: usize,
    /// Names of the inputs the signal did not carry, in the spec's order.
    pub missing: Vec<String>,
}

impl Coverage {
    /// Share of the inputs carried, 0-1 (1 for a model without inputs).
    pub fn share(&self) -> f64 {
        if self.inputs == 0 {
            1.0
        } else {
            self.carried as f64 / self.inputs as f64
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
    /// Mean and standard deviation of the training rows that carried the column.
    pub mean: f64,
    pub std: f64,
    /// The raw value that stands in when the column is missing: the median of the training
    /// rows that carried it.
    #[serde(default)]
    pub impute: f64,
}

impl BaseColumn {
    /// A raw value as the models see it: `ln(1 + x)` for log columns, then standardised and
    /// clipped to `±clip` (0 for a constant column).
    fn scale(&self, v: f64, clip: f64) -> f64 {
        let x = if self.log { v.max(0.0).ln_1p() } else { v };
        standardise(x, self.mean, self.std, clip)
    }

    fn is_indicator(&self) -> bool {
        matches!(self.source, Source::OneHot { .. } | Source::Hashed { .. })
    }

    /// The column's value in [`FeatureSpec::base_space`]: indicators as they are, the rest
    /// scaled; `NaN` (missing) stays `NaN`.
    fn base_space_value(&self, v: f64, clip: f64) -> f32 {
        if self.is_indicator() || v.is_nan() {
            v as f32
        } else {
            self.scale(v, clip) as f32
        }
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
    /// The inputs the selected columns read, in a fixed order: the vector ends with one
    /// missing indicator per input, and coverage is counted over them.
    #[serde(default)]
    pub inputs: Vec<ModelInput>,
    /// Per selected column, what the forest and the network see when it is missing: the
    /// median of the training rows that carried it, as the column is scaled.
    #[serde(default)]
    pub impute: Vec<f32>,
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
            inputs: Vec::new(),
            impute: Vec::new(),
        };

        // Raw values column by column (NaN where a row does not carry the column), then
        // transform and standardisation statistics of the rows that carry it.
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(n); spec.base.len()];
        let mut scratch = Vec::new();
        for e in examples {
            spec.raw_base_values(&e.signal, &mut scratch);
            for (c, v) in scratch.iter().enumerate() {
                columns[c].push(*v);
            }
        }
        for (column, values) in spec.base.iter_mut().zip(columns.iter_mut()) {
            let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
            if !column.is_indicator() {
                let min = present.iter().copied().fold(f64::INFINITY, f64::min);
                column.log = min >= 0.0 && percentile(&present, 0.99) > config.log_above;
            }
            column.impute = percentile(&present, 0.5);
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
        // A missing column stands in as the median of the rows that carried it.
        spec.impute = candidates
            .iter()
            .map(|&c| {
                let values = if c < spec.base.len() {
                    &columns[c]
                } else {
                    &inter_values[c - spec.base.len()]
                };
                let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
                percentile(&present, 0.5) as f32
            })
            .collect();
        spec.selected = candidates;
        spec.inputs = spec.model_inputs();
        Ok(spec)
    }
}

impl FeatureSpec {
    /// Length of the output vector: the selected columns, then one missing indicator per
    /// input.
    pub fn len(&self) -> usize {
        self.selected.len() + self.inputs.len()
    }

    /// True when no feature survived selection (never for a fitted spec).
    pub fn is_empty(&self) -> bool {
        self.selected.is_empty()
    }

    /// Names of the output features, in vector order (`missing:<input>` for the indicators).
    pub fn feature_names(&self) -> Vec<String> {
        self.selected
            .iter()
            .map(|&c| self.column_name(c).to_string())
            .chain(
                self.inputs
                    .iter()
                    .map(|i| format!("missing:{}", i.input.name())),
            )
            .collect()
    }

    /// The name of output feature `i`.
    pub fn feature_name(&self, i: usize) -> String {
        match self.selected.get(i) {
            Some(&c) => self.column_name(c).to_string(),
            None => self
                .inputs
                .get(i - self.selected.len())
                .map_or_else(String::new, |m| format!("missing:{}", m.input.name())),
        }
    }

    fn column_name(&self, c: usize) -> &str {
        if c < self.base.len() {
            &self.base[c].name
        } else {
            &self.interactions[c - self.base.len()].name
        }
    }

    /// The inputs the selected columns read, each with a base column that is missing exactly
    /// when the input is.
    fn model_inputs(&self) -> Vec<ModelInput> {
        let n_base = self.base.len();
        let mut read: BTreeSet<Input> = BTreeSet::new();
        for &c in &self.selected {
            let bases = if c < n_base {
                vec![c]
            } else {
                let inter = &self.interactions[c - n_base];
                vec![inter.a, inter.b]
            };
            for b in bases {
                match &self.base[b].source {
                    Source::Derived(d) => read.extend(d.fields().iter().map(|f| Input::Field(*f))),
                    Source::Numeric(key) => {
                        read.insert(Input::Numeric(key.clone()));
                    }
                    Source::OneHot { attribute, .. } | Source::Hashed { attribute, .. } => {
                        read.insert(Input::Categorical(attribute.clone()));
                    }
                }
            }
        }
        read.into_iter()
            .filter_map(|input| {
                let probe = self
                    .base
                    .iter()
                    .position(|column| match (&input, &column.source) {
                        (Input::Field(f), Source::Derived(d)) => d.fields() == [*f],
                        (Input::Numeric(key), Source::Numeric(k)) => k == key,
                        (
                            Input::Categorical(a),
                            Source::OneHot { attribute, .. } | Source::Hashed { attribute, .. },
                        ) => a == attribute,
                        _ => false,
                    })?;
                Some(ModelInput { input, probe })
            })
            .collect()
    }

    /// The feature vector of one signal. Refuses non-finite attributes rather than guessing.
    pub fn transform(&self, signal: &ThreatSignal) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.len());
        let mut scratch = Vec::with_capacity(self.base.len());
        self.transform_into(signal, &mut scratch, &mut out)?;
        Ok(out)
    }

    /// Like [`FeatureSpec::transform`], reusing caller-owned buffers (hot path). A column the
    /// signal does not carry is `NaN`; the vector ends with one indicator per input (1 when
    /// the signal does not carry it).
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
            if !v.is_nan() {
                *v = column.scale(*v, clip);
            }
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
        for input in &self.inputs {
            let missing = scratch.get(input.probe).is_none_or(|v| v.is_nan());
            out.push(f32::from(u8::from(missing)));
        }
        Ok(())
    }

    /// `x` (a feature vector of this spec) with every missing column replaced by its training
    /// median: what the forest and the network read. The indicators stay as they are.
    pub fn impute_into(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(x.iter().enumerate().map(|(i, &v)| {
            if v.is_nan() {
                self.impute.get(i).copied().unwrap_or(0.0)
            } else {
                v
            }
        }));
    }

    /// [`FeatureSpec::impute_into`] of every row.
    pub fn impute_matrix(&self, x: &Matrix) -> Matrix {
        let mut out = Matrix {
            rows: x.rows,
            cols: x.cols,
            data: Vec::with_capacity(x.data.len()),
        };
        let mut row = Vec::with_capacity(x.cols);
        for r in 0..x.rows {
            self.impute_into(x.row(r), &mut row);
            out.data.extend_from_slice(&row);
        }
        out
    }

    /// [`Coverage::share`] of the signal behind `x`, without naming what was missing.
    pub fn coverage_share(&self, x: &[f32]) -> f64 {
        let indicators = x.get(self.selected.len()..).unwrap_or_default();
        let missing = indicators.iter().filter(|flag| **flag > 0.5).count();
        Coverage {
            carried: self.inputs.len().saturating_sub(missing),
            inputs: self.inputs.len(),
            missing: Vec::new(),
        }
        .share()
    }

    /// Which of the model's inputs the signal behind feature vector `x` carried, read from
    /// the vector's missing indicators.
    pub fn coverage(&self, x: &[f32]) -> Coverage {
        let indicators = x.get(self.selected.len()..).unwrap_or_default();
        let missing: Vec<String> = self
            .inputs
            .iter()
            .zip(indicators)
            .filter(|(_, flag)| **flag > 0.5)
            .map(|(m, _)| m.input.name().to_string())
            .collect();
        Coverage {
            carried: self.inputs.len().saturating_sub(missing.len()),
            inputs: self.inputs.len(),
            missing,
        }
    }

    /// The base columns of `signal` as the novelty member's benign prototypes see them:
    /// numeric columns log-transformed and standardised as in [`FeatureSpec::transform`],
    /// categorical indicators left at 0 / 1 (standardised, a rare level would weigh more than
    /// a common one), constant columns 0, columns the signal does not carry `NaN`. No
    /// selection, no interactions.
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
            .map(|(&v, column)| column.base_space_value(v, clip))
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

    /// Each base column's stand-in for a missing value in [`FeatureSpec::base_space`] (the
    /// training median), for fitting centroids on rows that lack some columns.
    pub fn base_space_impute(&self) -> Vec<f32> {
        let clip = self.config.clip;
        self.base
            .iter()
            .map(|column| column.base_space_value(column.impute, clip))
            .collect()
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

    /// Checks that the spec's parts refer to each other consistently (a loaded artifact).
    pub(crate) fn check(&self) -> Result<()> {
        let n_columns = self.base.len() + self.interactions.len();
        let ok = self.selected.iter().all(|&c| c < n_columns)
            && self
                .interactions
                .iter()
                .all(|i| i.a < self.base.len() && i.b < self.base.len())
            && self.inputs.iter().all(|i| i.probe < self.base.len())
            && self.impute.len() == self.selected.len()
            && self.impute.iter().all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err(Error::CorruptArtifact(
                "feature spec refers to missing columns".to_string(),
            ))
        }
    }

    /// Raw base values of `signal`, `NaN` for a column the signal does not carry.
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
                Source::Derived(d) => derived_value(*d, signal).unwrap_or(f64::NAN),
                Source::Numeric(key) => {
                    while numeric
                        .next_if(|(k, _)| k.as_str() < key.as_str())
                        .is_some()
                    {}
                    match numeric.peek() {
                        Some((k, v)) if *k == key => **v,
                        // Absent, or a spec whose columns are not in key order.
                        _ => signal.numeric.get(key).copied().unwrap_or(f64::NAN),
                    }
                }
                Source::OneHot {
                    attribute,
                    encoding,
                    level,
                } => match value_of(*encoding, attribute) {
                    None => f64::NAN,
                    Some(value) => {
                        let hit = match level {
                            Some(level) => value == level.as_str(),
                            None => self.encodings.get(*encoding).is_none_or(|e| {
                                e.levels
                                    .binary_search_by(|l| l.as_str().cmp(value))
                                    .is_err()
                            }),
                        };
                        f64::from(u8::from(hit))
                    }
                },
                Source::Hashed {
                    attribute,
                    encoding,
                    bucket,
                } => match value_of(*encoding, attribute) {
                    None => f64::NAN,
                    Some(value) => {
                        let buckets = self
                            .encodings
                            .get(*encoding)
                            .and_then(|e| e.hash_buckets)
                            .unwrap_or(1)
                            .max(1);
                        f64::from(u8::from(stable_hash(value) % buckets == *bucket))
                    }
                },
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
        impute: 0.0,
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

/// The value of a derived column; `None` when the signal does not carry what it reads.
pub(crate) fn derived_value(d: Derived, s: &ThreatSignal) -> Option<f64> {
    if !d.fields().iter().all(|f| f.carried_by(s)) {
        return None;
    }
    let flag = |b: bool| f64::from(u8::from(b));
    Some(match d {
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
    })
}

/// No bytes, no packets and no duration: the signal reports no flow measurement.
fn flow_missing(s: &ThreatSignal) -> bool {
    s.bytes == 0 && s.packets == 0 && s.duration_seconds == 0.0
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
    if x.is_nan() {
        x
    } else if std > 0.0 {
        ((x - mean) / std).clamp(-clip, clip)
    } else {
        0.0
    }
}

/// Mean and standard deviation of the values that are not `NaN` (missing).
fn mean_std(values: &[f64]) -> (f64, f64) {
    let present = || values.iter().filter(|v| !v.is_nan());
    let n = present().count().max(1) as f64;
    let mean = present().sum::<f64>() / n;
    let var = present().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
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

/// Pearson correlation over the rows where `x` is present, times the share of rows where it is
/// (a column most rows lack tells little about most rows); 0 for a constant column.
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let (xs, ys): (Vec<f64>, Vec<f64>) = x
        .iter()
        .zip(y)
        .filter(|(a, _)| !a.is_nan())
        .map(|(a, b)| (*a, *b))
        .unzip();
    if xs.is_empty() {
        return 0.0;
    }
    let (mx, sx) = mean_std(&xs);
    let (my, sy) = mean_std(&ys);
    if sx == 0.0 || sy == 0.0 {
        return 0.0;
    }
    let cov = xs
        .iter()
        .zip(&ys)
        .map(|(a, b)| (a - mx) * (b - my))
        .sum::<f64>()
        / xs.len() as f64;
    cov / (sx * sy) * (xs.len() as f64 / x.len() as f64)
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
        assert_eq!(spec.selected.len(), 3);
        assert_eq!(spec.len(), 3 + spec.inputs.len(), "one indicator per input");
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
        assert!(v.iter().all(|x| x.is_finite() || x.is_nan()));
        s.numeric.insert("count".into(), f64::INFINITY);
        assert!(matches!(spec.transform(&s), Err(Error::InvalidSignal(_))));
        s.numeric.insert("count".into(), 1e300);
        let v = spec.transform(&s).unwrap();
        assert!(
            v.iter()
                .filter(|x| !x.is_nan())
                .all(|x| x.abs() <= spec.config.clip as f32)
        );
    }

    /// The output position of the base column `name`.
    fn position(spec: &FeatureSpec, name: &str) -> usize {
        spec.feature_names()
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} not selected: {:?}", spec.feature_names()))
    }

    #[test]
    fn an_absent_attribute_is_missing_not_zero() {
        let spec = FeatureEngineer::default().fit(&examples(600)).unwrap();
        let (full, _) = signal(601);
        let mut zero = full.clone();
        zero.numeric.insert("count".into(), 0.0);
        let mut absent = full.clone();
        absent.numeric.remove("count");
        absent.categorical.remove("service");

        let count = position(&spec, "count");
        let count_missing = position(&spec, "missing:count");
        let service_missing = position(&spec, "missing:service");
        let z = spec.transform(&zero).unwrap();
        let a = spec.transform(&absent).unwrap();
        assert!(z[count].is_finite(), "a zero is a value");
        assert_eq!(z[count_missing], 0.0);
        assert!(a[count].is_nan(), "an absent attribute is missing");
        assert_eq!(a[count_missing], 1.0);
        assert_eq!(a[service_missing], 1.0);
        for name in spec.feature_names() {
            if let Some(level) = name.strip_prefix("service=") {
                assert!(a[position(&spec, &name)].is_nan(), "service={level}");
            }
        }

        // The forest and the network read the training median instead, the same for every
        // signal that lacks the column, and an ordinary value otherwise.
        let mut imputed = Vec::new();
        spec.impute_into(&a, &mut imputed);
        assert!(imputed.iter().all(|v| v.is_finite()));
        assert_eq!(imputed[count], spec.impute[count]);
        assert_ne!(
            imputed[count], z[count],
            "the median of count is not the value of a zero"
        );
        let mut again = Vec::new();
        spec.impute_into(&z, &mut again);
        assert_eq!(again, z, "nothing to impute in a complete vector");
    }

    #[test]
    fn a_signal_without_bytes_packets_or_duration_carries_no_flow() {
        let spec = FeatureEngineer::default().fit(&examples(600)).unwrap();
        let (mut s, _) = signal(602);
        s.bytes = 0;
        s.duration_seconds = 0.0;
        s.packets = 0;
        let v = spec.transform(&s).unwrap();
        assert!(v[position(&spec, "bytes")].is_nan());
        assert_eq!(v[position(&spec, "missing:bytes")], 1.0);
        s.duration_seconds = 0.5;
        let v = spec.transform(&s).unwrap();
        assert!(
            v[position(&spec, "bytes")].is_finite(),
            "0 bytes in a flow that lasted is a value"
        );
    }

    #[test]
    fn coverage_counts_the_inputs_a_signal_carried() {
        let spec = FeatureEngineer::default().fit(&examples(600)).unwrap();
        let names: Vec<&str> = spec.inputs.iter().map(|i| i.input.name()).collect();
        for expected in ["count", "rate", "service", "bytes", "protocol"] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
        let (full, _) = signal(603);
        let all = spec.coverage(&spec.transform(&full).unwrap());
        assert_eq!(all.share(), 1.0, "missing {:?}", all.missing);
        assert!(all.missing.is_empty());

        let bare = ThreatSignal::new("normal", 0.1, DateTime::<Utc>::UNIX_EPOCH);
        let x = spec.transform(&bare).unwrap();
        let none = spec.coverage(&x);
        assert_eq!(none.carried, 0, "carried {:?}", none);
        assert_eq!(none.missing.len(), spec.inputs.len());
        assert_eq!(spec.coverage_share(&x), 0.0);

        let mut half = full.clone();
        half.numeric.remove("count");
        half.categorical.remove("service");
        let c = spec.coverage(&spec.transform(&half).unwrap());
        assert_eq!(c.carried, c.inputs - 2);
        assert_eq!(c.missing, vec!["count".to_string(), "service".to_string()]);
    }
}
