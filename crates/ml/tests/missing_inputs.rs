//! Missing inputs on real data: an ensemble trained on NSL-KDD (the 20 % training file) tells a
//! signal that lacks the data set's counters from one whose counters are 0, says how much of
//! its inputs a signal carried and how close it lies to its training data, and judges rows
//! with inputs removed from what they still carry.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vigil_domain::{PredictionResult, RiskThresholds, ThreatSignal};
use vigil_ml::{
    ARTIFACT_FORMAT_VERSION, BoostConfig, DataPipeline, Error, ForestConfig, LabeledExample,
    MlpConfig, ModelArtifact, NoProgress, PartialConfig, SplitConfig, TrainConfig, log_loss,
    read_nsl_kdd, roc_auc, train_ensemble,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn examples() -> &'static Vec<LabeledExample> {
    static EXAMPLES: OnceLock<Vec<LabeledExample>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let dir = std::env::var("VIGIL_DATA_DIR")
            .map_or_else(|_| root().join("../shared/data/nsl-kdd"), PathBuf::from);
        let path = dir.join("KDDTrain+_20Percent.txt");
        let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = read_nsl_kdd(BufReader::new(file));
        assert!(outcome.errors.is_empty(), "{:?}", &outcome.errors[..1]);
        outcome.examples
    })
}

/// Smaller than the defaults so the suite stays quick; still real models.
fn config(partial: PartialConfig) -> TrainConfig {
    TrainConfig {
        forest: ForestConfig {
            n_trees: 30,
            ..ForestConfig::default()
        },
        xgboost: BoostConfig {
            rounds: 40,
            ..BoostConfig::default()
        },
        mlp: MlpConfig {
            max_epochs: 8,
            ..MlpConfig::default()
        },
        partial,
        ..TrainConfig::default()
    }
}

fn train(partial: PartialConfig) -> ModelArtifact {
    train_ensemble(examples().clone(), &config(partial), "test", &NoProgress)
        .expect("training on the 20 % file succeeds")
        .0
}

/// Trained with partial copies, as by default.
fn trained() -> &'static ModelArtifact {
    static ARTIFACT: OnceLock<ModelArtifact> = OnceLock::new();
    ARTIFACT.get_or_init(|| train(PartialConfig::default()))
}

/// The held-out test split of the same seed: rows the models never saw.
fn test_rows() -> Vec<LabeledExample> {
    DataPipeline::from_examples(examples().clone())
        .split(&SplitConfig::default())
        .unwrap()
        .test
}

/// The hand-written benign sensor signals of the ML benchmark.
fn sensor_signals() -> Vec<ThreatSignal> {
    let path = root().join("bench/ml/benign_signals.json");
    serde_json::from_reader(BufReader::new(File::open(&path).unwrap())).unwrap()
}

#[test]
fn data_set_rows_carry_nearly_every_input_and_sensor_signals_few() {
    let artifact = trained();
    let thresholds = RiskThresholds::default();
    let inputs = artifact.ensemble.spec.inputs.len();
    assert!(inputs >= 30, "the model reads {inputs} inputs");
    for e in test_rows().iter().step_by(13) {
        let result = artifact.predict(&e.signal, &thresholds).unwrap();
        assert!(result.coverage >= 0.9, "{}: {result:?}", e.signal.id);
        let result = result.abstain_below(PredictionResult::DEFAULT_MIN_COVERAGE);
        assert_eq!(result.abstention, None);
        assert_eq!(result.member_probabilities.len(), 3);
    }
    for signal in sensor_signals() {
        let result = artifact.predict(&signal, &thresholds).unwrap();
        assert!(result.coverage < 0.5, "{}: {}", signal.id, result.coverage);
        assert!(
            result.missing_inputs.iter().any(|m| m == "count"),
            "{}: {:?}",
            signal.id,
            result.missing_inputs
        );
        assert!(
            result.features_used.values().all(|v| v.is_finite()),
            "a missing column is never shown as a value: {:?}",
            result.features_used
        );
        let result = result.abstain_below(PredictionResult::DEFAULT_MIN_COVERAGE);
        assert!(result.abstention.is_some(), "{}", signal.id);
        result.validate().unwrap();
    }
}

#[test]
fn absent_counters_are_not_read_as_the_zeros_of_a_syn_flood() {
    let artifact = trained();
    // A SYN flood (neptune) row, and the same connection with its counters taken away.
    let flood = examples()
        .iter()
        .find(|e| e.class_name.as_deref() == Some("neptune"))
        .unwrap();
    let mut bare = flood.signal.clone();
    bare.numeric.clear();
    bare.categorical.clear();
    let flooded = artifact.score(&flood.signal).unwrap();
    let stripped = artifact.score(&bare).unwrap();
    assert!(flooded.probability > 0.99, "{flooded:?}");
    assert!(
        stripped.probability < 0.6,
        "a connection that says nothing is not a flood: {stripped:?}"
    );
    assert!(stripped.coverage < 0.1, "{stripped:?}");
    // With zeros written out instead, the counters are there and say what zeros say.
    let mut zeros = bare.clone();
    for key in flood.signal.numeric.keys() {
        zeros.numeric.insert(key.clone(), 0.0);
    }
    let zeroed = artifact.score(&zeros).unwrap();
    eprintln!("flood {flooded:?}\nstripped {stripped:?}\nzeroed {zeroed:?}");
    assert!(zeroed.coverage > 0.8, "{zeroed:?}");
}

/// `rows` with each counter kept with probability `keep` (seeded).
fn partial(rows: &[LabeledExample], keep: f64, seed: u64) -> Vec<LabeledExample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rows.iter()
        .map(|e| {
            let mut e = e.clone();
            e.signal.numeric.retain(|_, _| rng.gen_bool(keep));
            e
        })
        .collect()
}

fn accuracy(artifact: &ModelArtifact, rows: &[LabeledExample]) -> f64 {
    let right = rows
        .iter()
        .filter(|e| artifact.score(&e.signal).unwrap().is_threat == e.label)
        .count();
    right as f64 / rows.len() as f64
}

#[test]
fn rows_with_counters_removed_are_judged_better_by_a_model_trained_on_partial_copies() {
    let with = trained();
    let without = train(PartialConfig {
        rate: 0.0,
        ..PartialConfig::default()
    });
    let test = test_rows();
    let half = partial(&test, 0.6, 7);
    let (with_full, with_half) = (accuracy(with, &test), accuracy(with, &half));
    let (without_full, without_half) = (accuracy(&without, &test), accuracy(&without, &half));
    // Accuracy also moves with each model's threshold, chosen on its own validation rows; the
    // log loss and the AUC of the probabilities do not depend on a threshold.
    let labels: Vec<bool> = half.iter().map(|e| e.label).collect();
    let probabilities = |a: &ModelArtifact| -> Vec<f64> {
        half.iter()
            .map(|e| a.score(&e.signal).unwrap().probability)
            .collect()
    };
    let (with_p, without_p) = (probabilities(with), probabilities(&without));
    let (with_loss, without_loss) = (log_loss(&with_p, &labels), log_loss(&without_p, &labels));
    let (with_auc, without_auc) = (roc_auc(&with_p, &labels), roc_auc(&without_p, &labels));
    eprintln!(
        "complete / partial rows: with partial copies accuracy {with_full:.4} / {with_half:.4}, \
         without {without_full:.4} / {without_half:.4}; on partial rows log loss {with_loss:.4} \
         vs {without_loss:.4}, AUC {with_auc:.4} vs {without_auc:.4}"
    );
    assert!(with_full > 0.97, "{with_full}");
    assert!(
        (with_full - without_full).abs() < 0.01,
        "complete rows: {with_full} with partial copies, {without_full} without"
    );
    assert!(
        with_loss < 0.5 * without_loss,
        "rows with 40 % of their counters removed: log loss {with_loss} with partial copies, \
         {without_loss} without"
    );
    assert!(
        with_auc > without_auc,
        "rows with 40 % of their counters removed: AUC {with_auc} with partial copies, \
         {without_auc} without"
    );
    assert!(with_half > 0.9, "{with_half}");
}

#[test]
fn rows_of_the_data_set_are_in_domain_and_an_alien_one_is_not() {
    let artifact = trained();
    let test = test_rows();
    let mut scores: Vec<f64> = test
        .iter()
        .step_by(7)
        .map(|e| artifact.score(&e.signal).unwrap().in_domain)
        .collect();
    scores.sort_by(f64::total_cmp);
    let median = scores[scores.len() / 2];
    eprintln!(
        "in-domain of held-out rows: median {median}, lowest {}",
        scores[0]
    );
    assert!(
        median > 0.3,
        "median in-domain score of held-out rows {median}"
    );
    let mut alien = test[0].signal.clone();
    for v in alien.numeric.values_mut() {
        *v = *v * 1000.0 + 1e6;
    }
    let score = artifact.score(&alien).unwrap();
    assert!(score.in_domain < 0.01, "{score:?}");
    assert!(
        score.coverage > 0.9,
        "it carries every input, all of them alien"
    );
}

#[test]
fn artifacts_that_read_absent_inputs_as_zeros_are_refused() {
    let mut bytes = trained().to_bytes().unwrap();
    assert_eq!(ARTIFACT_FORMAT_VERSION, 2);
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let err = ModelArtifact::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedFormatVersion {
                found: 1,
                expected: 2
            }
        ),
        "{err}"
    );
}
