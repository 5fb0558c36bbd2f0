//! ML core benchmark on NSL-KDD (KDDTrain+.txt): training time of each model and of the whole
//! ensemble, single-row prediction latency (p50 / p99) and batch throughput, and the
//! false-alert rate on hand-written benign sensor signals (`bench/ml/benign_signals.json`): the
//! share the ensemble calls attacks by itself, and once it abstains below the default minimum
//! coverage. The JSON also carries the ensemble's test-split metrics and the operating point it
//! chose on the validation split.
//!
//! `cargo bench -p vigil-ml --bench ml -- [DATA_FILE] [--config train.json] [--json]`
//! (`VIGIL_DATA_DIR` overrides the data directory).
//!
//! Scoring a model written by `vigil train` on a labelled CSV (the second data set of
//! `make bench-ml`): metrics as `vigil evaluate` gives them, single-row latency over every row
//! and batch rows/s:
//! `cargo bench -p vigil-ml --bench ml -- --model model.vgl --csv test.csv
//! [--label-column Label] [--positive CLASS ...] [--json]`
//!
//! Timings are wall clock on this machine; run it with nothing else busy.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};
use vigil_domain::{ModelMetrics, PredictionResult, RiskThresholds, ThreatSignal};
use vigil_ml::{
    CsvOptions, DataPipeline, FeatureEngineer, ModelArtifact, ModelEvaluator, NoProgress,
    NoveltyDetector, TrainConfig, fit_ensemble, oversample_indices, read_csv_with, read_nsl_kdd,
    sample_weights, train_ensemble, train_forest, train_mlp, train_xgboost,
};

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn metrics_json(m: &ModelMetrics) -> Value {
    json!({
        "accuracy": m.accuracy,
        "precision": m.precision,
        "recall": m.recall,
        "f1": m.f1,
        "auc": m.auc_roc,
    })
}

/// Single-row latency (p50, p99, max in µs) over `signals` and batch rows/s.
fn time_predictions(
    artifact: &ModelArtifact,
    signals: &[ThreatSignal],
    results: &mut BTreeMap<&str, Value>,
) -> anyhow::Result<()> {
    let thresholds = RiskThresholds::default();
    for s in signals.iter().take(1000) {
        artifact.predict(s, &thresholds)?; // warm caches
    }
    let mut latencies = Vec::with_capacity(signals.len());
    for s in signals {
        let t = Instant::now();
        let result = artifact.predict(s, &thresholds)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(result);
    }
    latencies.sort_by(f64::total_cmp);
    results.insert("predict_single_p50_us", percentile(&latencies, 0.50).into());
    results.insert("predict_single_p99_us", percentile(&latencies, 0.99).into());
    results.insert("predict_single_max_us", percentile(&latencies, 1.0).into());

    let t = Instant::now();
    let batch = artifact.predict_batch(signals, &thresholds);
    let elapsed = t.elapsed().as_secs_f64();
    anyhow::ensure!(batch.iter().all(Result::is_ok), "batch prediction failed");
    results.insert(
        "predict_batch_rows_per_second",
        (signals.len() as f64 / elapsed).into(),
    );
    Ok(())
}

fn print(results: &BTreeMap<&str, Value>, json: bool, title: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(results)?);
    } else {
        println!("{title}");
        for (k, v) in results {
            match v.as_f64() {
                Some(v) => println!("  {k:<40} {v:>12.4}"),
                None => println!("  {k:<40} {v}"),
            }
        }
    }
    Ok(())
}

/// Scores a saved model on a labelled CSV: metrics, single-row latency, batch rows/s.
fn score_csv(
    model: &PathBuf,
    csv: &PathBuf,
    options: &CsvOptions,
    json: bool,
) -> anyhow::Result<()> {
    let mut results: BTreeMap<&str, Value> = BTreeMap::new();
    let artifact = ModelArtifact::from_bytes(&std::fs::read(model)?)?;
    let t = Instant::now();
    let outcome = read_csv_with(
        BufReader::new(File::open(csv)?),
        options,
        &csv.display().to_string(),
    )?;
    anyhow::ensure!(
        outcome.errors.is_empty(),
        "malformed rows in {}",
        csv.display()
    );
    results.insert("read_seconds", t.elapsed().as_secs_f64().into());
    results.insert("rows", outcome.examples.len().into());
    let report = ModelEvaluator::evaluate(&artifact.ensemble, &outcome.examples)?;
    results.insert("threshold", report.threshold.into());
    results.insert("ensemble", metrics_json(&report.ensemble));
    results.insert(
        "members",
        report
            .models
            .iter()
            .map(|(t, m)| (t.as_str().to_string(), metrics_json(m)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    if let Some(choice) = &artifact.ensemble.operating_point {
        results.insert("operating_point", choice.to_string().into());
    }
    let signals: Vec<_> = outcome.examples.iter().map(|e| e.signal.clone()).collect();
    time_predictions(&artifact, &signals, &mut results)?;
    results.insert(
        "threads_available",
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .into(),
    );
    print(
        &results,
        json,
        &format!("{} on {}", model.display(), csv.display()),
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut data: Option<PathBuf> = None;
    let mut config = TrainConfig::default();
    let mut json = false;
    let (mut model, mut csv) = (None, None);
    let mut csv_options = CsvOptions::new("Label");
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match arg.as_str() {
            "--config" => {
                config = serde_json::from_reader(File::open(value("--config")?)?)?;
            }
            "--model" => model = Some(PathBuf::from(value("--model")?)),
            "--csv" => csv = Some(PathBuf::from(value("--csv")?)),
            "--label-column" => csv_options.label_column = value("--label-column")?,
            "--positive" => csv_options.positive.push(value("--positive")?),
            "--json" => json = true,
            "--bench" => {} // passed by `cargo bench`
            other => data = Some(PathBuf::from(other)),
        }
    }
    match (&model, &csv) {
        (Some(model), Some(csv)) => return score_csv(model, csv, &csv_options, json),
        (None, None) => {}
        _ => anyhow::bail!("--model and --csv go together"),
    }
    let data = data.unwrap_or_else(|| {
        std::env::var("VIGIL_DATA_DIR")
            .map_or_else(
                |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nsl-kdd"),
                PathBuf::from,
            )
            .join("KDDTrain+.txt")
    });
    let mut results: BTreeMap<&str, Value> = BTreeMap::new();

    let t = Instant::now();
    let outcome = read_nsl_kdd(BufReader::new(File::open(&data)?));
    anyhow::ensure!(
        outcome.errors.is_empty(),
        "malformed rows in {}",
        data.display()
    );
    let examples = outcome.examples;
    results.insert("read_seconds", t.elapsed().as_secs_f64().into());
    results.insert("rows", (examples.len() as f64).into());

    // Each member alone, on the same prepared matrices the ensemble uses.
    let splits = DataPipeline::from_examples(examples.clone()).split(&config.split)?;
    let t = Instant::now();
    let spec = FeatureEngineer::new(config.features).fit(&splits.train)?;
    let (x, y) = spec.transform_examples(&splits.train)?;
    let rows = oversample_indices(&splits.train, config.split.seed);
    let x = x.select_rows(&rows);
    let y: Vec<bool> = rows.iter().map(|&r| y[r]).collect();
    let w = sample_weights(
        &rows
            .iter()
            .map(|&r| splits.train[r].clone())
            .collect::<Vec<_>>(),
    );
    let (vx, vy) = spec.transform_examples(&splits.validation)?;
    // XGBoost reads missing values as such, the forest and the network read them imputed.
    let (xi, vxi) = (spec.impute_matrix(&x), spec.impute_matrix(&vx));
    results.insert("train_features_seconds", t.elapsed().as_secs_f64().into());
    let t = Instant::now();
    train_forest(&xi, &y, &w, &config.forest, &NoProgress)?;
    results.insert(
        "train_random_forest_seconds",
        t.elapsed().as_secs_f64().into(),
    );
    let t = Instant::now();
    train_xgboost(&x, &y, &w, &config.xgboost, &NoProgress)?;
    results.insert("train_xgboost_seconds", t.elapsed().as_secs_f64().into());
    let t = Instant::now();
    train_mlp(&xi, &y, &w, &vxi, &vy, &config.mlp, &NoProgress)?;
    results.insert(
        "train_neural_network_seconds",
        t.elapsed().as_secs_f64().into(),
    );
    let t = Instant::now();
    NoveltyDetector::fit(&spec, &splits.train, &splits.validation, config.novelty)?;
    results.insert("train_novelty_seconds", t.elapsed().as_secs_f64().into());

    // Features, the three members and calibration: what the Python trio's time covers.
    // Median of three runs: the machine is shared and single runs vary.
    let mut fit_times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut seconds = BTreeMap::new();
        fit_ensemble(
            &splits.train,
            &splits.validation,
            &config,
            &NoProgress,
            &mut seconds,
        )?;
        fit_times.push(t.elapsed().as_secs_f64());
    }
    fit_times.sort_by(f64::total_cmp);
    results.insert("train_ensemble_fit_seconds", fit_times[1].into());

    // The whole ensemble end to end: clean, split, features, three members, calibration,
    // test metrics, packaging.
    let t = Instant::now();
    let (artifact, _) = train_ensemble(examples, &config, "bench", &NoProgress)?;
    results.insert("train_ensemble_seconds", t.elapsed().as_secs_f64().into());

    // The test split's metrics (the split nothing was chosen on) and the operating point chosen
    // on the validation split.
    results.insert(
        "test_metrics",
        artifact
            .metrics
            .iter()
            .map(|(t, m)| (t.as_str().to_string(), metrics_json(m)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    results.insert("threshold", artifact.ensemble.decision_threshold.into());
    if let Some(choice) = &artifact.ensemble.operating_point {
        results.insert("operating_point", choice.to_string().into());
    }
    results.insert(
        "threads_available",
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .into(),
    );

    // Single-row, in-process prediction through the public API the predictor uses.
    let thresholds = RiskThresholds::default();
    let signals: Vec<_> = splits.test.iter().map(|e| e.signal.clone()).collect();
    time_predictions(&artifact, &signals, &mut results)?;

    // Benign sensor signals: each carries only what such a sensor knows (no NSL-KDD counters).
    let benign: Vec<ThreatSignal> = serde_json::from_reader(BufReader::new(File::open(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/ml/benign_signals.json"),
    )?))?;
    let (mut alone, mut after_abstention) = (0usize, 0usize);
    for signal in &benign {
        let result = artifact.predict(signal, &thresholds)?;
        let attack = result.probability >= result.decision_threshold;
        let result = result.abstain_below(PredictionResult::DEFAULT_MIN_COVERAGE);
        alone += usize::from(attack);
        after_abstention += usize::from(attack && result.abstention.is_none());
    }
    results.insert("benign_signals", (benign.len() as f64).into());
    results.insert(
        "benign_false_alert_rate_model_alone",
        (alone as f64 / benign.len() as f64).into(),
    );
    results.insert(
        "benign_false_alert_rate_with_abstention",
        (after_abstention as f64 / benign.len() as f64).into(),
    );

    print(
        &results,
        json,
        &format!("vigil-ml on {} ({} rows)", data.display(), results["rows"]),
    )
}
