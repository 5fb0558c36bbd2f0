//! End-to-end on real data: NSL-KDD (the 20 % training file) through the whole pipeline.
//!
//! The data are found at `../../../shared/data/nsl-kdd/` from this crate (dev tree and CI
//! clone), or in `VIGIL_DATA_DIR`.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::OnceLock;

use vigil_domain::{RiskThresholds, ThreatSignal};
use vigil_ml::{
    ARTIFACT_FORMAT_VERSION, BoostConfig, DataPipeline, Error, ForestConfig, LabeledExample,
    MlpConfig, ModelArtifact, ModelEvaluator, NoProgress, SplitConfig, TrainConfig, read_nsl_kdd,
    train_ensemble,
};

fn data_dir() -> PathBuf {
    std::env::var("VIGIL_DATA_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nsl-kdd"),
        PathBuf::from,
    )
}

fn examples() -> &'static Vec<LabeledExample> {
    static EXAMPLES: OnceLock<Vec<LabeledExample>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let path = data_dir().join("KDDTrain+_20Percent.txt");
        let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = read_nsl_kdd(BufReader::new(file));
        assert!(outcome.errors.is_empty(), "{:?}", &outcome.errors[..1]);
        outcome.examples
    })
}

/// Smaller than the defaults so the suite stays quick; still real models.
fn quick_config() -> TrainConfig {
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
        ..TrainConfig::default()
    }
}

fn trained() -> &'static ModelArtifact {
    static ARTIFACT: OnceLock<ModelArtifact> = OnceLock::new();
    ARTIFACT.get_or_init(|| {
        let (artifact, report) =
            train_ensemble(examples().clone(), &quick_config(), "test", &NoProgress)
                .expect("training on the 20 % file succeeds");
        assert_eq!(
            report.train_rows + report.validation_rows + report.test_rows,
            25_192
        );
        artifact
    })
}

#[test]
fn the_20_percent_file_reads_completely() {
    let examples = examples();
    assert_eq!(examples.len(), 25_192);
    assert_eq!(examples.iter().filter(|e| e.label).count(), 11_743);
}

#[test]
fn ensemble_beats_the_majority_baseline_by_a_wide_margin_on_held_out_data() {
    let artifact = trained();
    // The held-out split is re-derived from the same seed: rows the models never saw.
    let splits = DataPipeline::from_examples(examples().clone())
        .split(&SplitConfig::default())
        .unwrap();
    let test = &splits.test;
    let benign = test.iter().filter(|e| !e.label).count() as f64;
    let baseline = benign.max(test.len() as f64 - benign) / test.len() as f64;
    let report = ModelEvaluator::evaluate(&artifact.ensemble, test).unwrap();
    assert!(baseline < 0.6, "baseline {baseline}");
    assert!(
        report.ensemble.accuracy > 0.97 && report.ensemble.accuracy > baseline + 0.3,
        "ensemble accuracy {} vs baseline {baseline}",
        report.ensemble.accuracy
    );
    assert!(report.ensemble.auc_roc > 0.99, "{:?}", report.ensemble);
    for (model, m) in &report.models {
        assert!(m.accuracy > 0.95, "{model}: {m:?}");
    }
    // The metrics stored in the artifact are the same held-out measurement.
    let stored = artifact.metrics[&vigil_domain::ModelType::Ensemble];
    assert_eq!(stored.accuracy, report.ensemble.accuracy);
}

#[test]
fn artifact_written_and_read_back_predicts_identically() {
    let artifact = trained();
    let bytes = artifact.to_bytes().unwrap();
    let loaded = ModelArtifact::from_bytes(&bytes).unwrap();
    assert_eq!(&loaded, artifact);
    let thresholds = RiskThresholds::default();
    for example in examples().iter().step_by(97) {
        let a = artifact.predict(&example.signal, &thresholds).unwrap();
        let b = loaded.predict(&example.signal, &thresholds).unwrap();
        assert_eq!(a.risk_score.to_bits(), b.risk_score.to_bits());
        assert_eq!(a.confidence.to_bits(), b.confidence.to_bits());
        assert_eq!(a.risk_level, b.risk_level);
        assert_eq!(a.features_used, b.features_used);
        assert_eq!(a.threat_id, example.signal.id);
        a.validate().unwrap();
        assert_eq!(a.features_used.len(), 5);
    }
    let batch: Vec<ThreatSignal> = examples()
        .iter()
        .take(50)
        .map(|e| e.signal.clone())
        .collect();
    let results = loaded.predict_batch(&batch, &thresholds);
    for (signal, result) in batch.iter().zip(results) {
        let single = loaded.predict(signal, &thresholds).unwrap();
        assert_eq!(
            result.unwrap().risk_score.to_bits(),
            single.risk_score.to_bits()
        );
    }
}

#[test]
fn threats_score_higher_than_benign_signals() {
    let artifact = trained();
    let thresholds = RiskThresholds::default();
    let mean = |label: bool| {
        let scores: Vec<f64> = examples()
            .iter()
            .filter(|e| e.label == label)
            .step_by(50)
            .map(|e| artifact.predict(&e.signal, &thresholds).unwrap().risk_score)
            .collect();
        scores.iter().sum::<f64>() / scores.len() as f64
    };
    let (threat, benign) = (mean(true), mean(false));
    assert!(
        threat > 7.0 && benign < 3.0,
        "threat {threat}, benign {benign}"
    );
}

#[test]
fn corrupt_and_foreign_artifacts_fail_with_clear_errors() {
    let bytes = trained().to_bytes().unwrap();

    let mut flipped = bytes.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 0x20;
    let err = ModelArtifact::from_bytes(&flipped).unwrap_err();
    assert!(matches!(err, Error::CorruptArtifact(_)), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");

    let truncated = &bytes[..bytes.len() / 2];
    let err = ModelArtifact::from_bytes(truncated).unwrap_err();
    assert!(matches!(err, Error::CorruptArtifact(_)), "{err}");

    let mut other_version = bytes.clone();
    other_version[8..12].copy_from_slice(&(ARTIFACT_FORMAT_VERSION + 1).to_le_bytes());
    let err = ModelArtifact::from_bytes(&other_version).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedFormatVersion { found, .. } if found == ARTIFACT_FORMAT_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("format version"), "{err}");

    let err = ModelArtifact::from_bytes(b"{\"not\": \"a model\"}").unwrap_err();
    assert!(matches!(err, Error::NotAnArtifact), "{err}");
    assert!(ModelArtifact::from_bytes(&[]).is_err());
}

#[test]
fn invalid_signals_are_refused_not_scored() {
    let artifact = trained();
    let mut signal = examples()[0].signal.clone();
    signal.numeric.insert("count".into(), f64::NAN);
    let err = artifact
        .predict(&signal, &RiskThresholds::default())
        .unwrap_err();
    assert!(err.to_string().contains("count"), "{err}");
}

#[test]
fn model_versions_cover_every_member_and_the_ensemble() {
    let artifact = trained();
    let versions = artifact.model_versions(3);
    assert_eq!(versions.len(), 4);
    assert!(
        versions
            .iter()
            .all(|v| v.version == 3 && v.metrics.accuracy > 0.9)
    );
    assert_eq!(versions[3].id, artifact.metadata.model_version_id);
}

#[test]
fn novelty_member_flags_content_far_outside_benign_traffic() {
    let artifact = trained();
    let novelty = artifact
        .ensemble
        .novelty
        .as_ref()
        .expect("trained by default");
    let benign = examples()
        .iter()
        .filter(|e| !e.label)
        .find(|e| novelty.tail_score(&e.signal) == 0.0)
        .expect("most benign rows are unremarkable");
    let before = artifact.score(&benign.signal).unwrap();
    assert!(!before.is_threat, "{before:?}");

    let mut odd = benign.signal.clone();
    odd.numeric.insert("num_failed_logins".into(), 5.0);
    odd.numeric.insert("hot".into(), 500.0);
    odd.numeric.insert("num_compromised".into(), 50_000.0);
    let after = artifact.score(&odd).unwrap();
    assert!(
        after.novelty >= artifact.ensemble.decision_threshold,
        "{after:?}"
    );
    assert!(after.is_threat, "{after:?}");
}

#[test]
fn novelty_member_flags_password_guessing_that_no_single_attribute_gives_away() {
    // One failed telnet login, reset by the client: each value is ordinary in benign telnet
    // traffic, the combination is not. The member is fitted on benign rows only, so this
    // owes nothing to the guess_passwd rows among the training labels.
    let artifact = trained();
    let novelty = artifact.ensemble.novelty.as_ref().unwrap();
    assert!(novelty.prototypes.is_some(), "prototypes are on by default");
    let guesses: Vec<&LabeledExample> = examples()
        .iter()
        .filter(|e| e.class_name.as_deref() == Some("guess_passwd"))
        .collect();
    assert_eq!(guesses.len(), 10);
    let threshold = artifact.ensemble.decision_threshold;
    let mut flagged = 0;
    let mut by_tails = 0;
    for e in &guesses {
        let score = artifact.score(&e.signal).unwrap();
        flagged += usize::from(score.novelty >= threshold);
        by_tails += usize::from(novelty.tail_score(&e.signal) >= novelty.cutoff);
    }
    assert!(flagged >= 8, "novelty flagged {flagged} of 10");
    assert!(
        by_tails < flagged,
        "tails alone flag {by_tails}, with prototypes {flagged}"
    );
}

#[test]
fn artifacts_without_a_novelty_member_still_load_and_score_as_before() {
    let artifact = trained();
    let mut payload = serde_json::to_value(artifact).unwrap();
    payload["ensemble"]
        .as_object_mut()
        .unwrap()
        .remove("novelty")
        .expect("written by this build");
    let older: ModelArtifact = serde_json::from_value(payload).unwrap();
    assert!(older.ensemble.novelty.is_none());
    let loaded = ModelArtifact::from_bytes(&older.to_bytes().unwrap()).unwrap();
    for example in examples().iter().step_by(211) {
        let with = artifact.score(&example.signal).unwrap();
        let without = loaded.score(&example.signal).unwrap();
        assert_eq!(without.novelty, 0.0);
        assert_eq!(with.members, without.members);
        assert!(with.probability >= without.probability);
    }
}
