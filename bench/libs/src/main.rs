//! The hand-written learners against maintained libraries, on the same data and the same
//! hyperparameters (docs/ml.md, "Libraries and hand-written code").
//!
//! Forests: vigil's `train_forest`, XGBoost in random-forest mode (one round of
//! `num_parallel_tree` trees, `eta` 1, row subsampling and per-node column sampling),
//! smartcore's `RandomForestClassifier` and linfa's `RandomForest` (linfa-ensemble over
//! linfa-trees). k-means: vigil's `Prototypes::fit` against linfa-clustering's `KMeans` on the
//! benign rows of the base space the novelty member uses, and the novelty member with either
//! set of centroids.
//!
//! `make bench-libs ARGS="..."`, or `cargo run --release --manifest-path bench/libs/Cargo.toml --
//! [DATA_FILE]
//! [--only vigil|xgb-rf|smartcore|linfa|kmeans|kmeans-vigil|kmeans-linfa|fit] [--threads N] [--csv FILE --label-column L]`
//!
//! `--threads 0` (the default) means every core; libraries that cannot use more than one
//! thread say so in their row. Run one learner at a time under `/usr/bin/time -v` for its peak
//! memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Instant;

use linfa::prelude::{Fit, Predict};
use linfa_clustering::{KMeans, KMeansInit};
use linfa_ensemble::RandomForestParams;
use linfa_trees::DecisionTree;
use ndarray_linfa::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;
use vigil_ml::{
    CsvOptions, DataPipeline, FeatureEngineer, LabeledExample, Matrix, NoProgress, NoveltyConfig,
    NoveltyDetector, Prototypes, TrainConfig, XgbModel, binary_metrics, oversample_indices,
    read_csv_with, read_nsl_kdd, roc_auc, sample_weights, train_forest,
};
use xgboost_rs::{Booster, DMatrix};

/// Rows scored one at a time for the single-row latency.
const LATENCY_ROWS: usize = 2000;

/// The forest's training and test matrices, prepared as the ML bench prepares them for the
/// forest member (features fitted on the training split, oversampled, imputed).
struct Prepared {
    x: Matrix,
    y: Vec<bool>,
    w: Vec<f32>,
    tx: Matrix,
    ty: Vec<bool>,
}

fn prepare(splits: &vigil_ml::Splits, config: &TrainConfig) -> anyhow::Result<Prepared> {
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
    let (tx, ty) = spec.transform_examples(&splits.test)?;
    Ok(Prepared {
        x: spec.impute_matrix(&x),
        y,
        w,
        tx: spec.impute_matrix(&tx),
        ty,
    })
}

/// One line of the table.
struct Row {
    name: String,
    threads: String,
    train_seconds: f64,
    probabilities: Vec<f64>,
    latency_us: (f64, f64),
    size_bytes: Option<usize>,
    /// Peak memory the fit added, MiB.
    fit_peak_mib: f64,
    note: String,
}

fn print_header() {
    println!(
        "{:<22} {:>7} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9}  note",
        "learner", "threads", "acc", "auc", "train_s", "p50_us", "p99_us", "size_kb", "fit_mib"
    );
}

fn print_row(row: &Row, labels: &[bool]) {
    let m = binary_metrics(&row.probabilities, labels, 0.5);
    let auc = roc_auc(&row.probabilities, labels);
    println!(
        "{:<22} {:>7} {:>8.4} {:>8.4} {:>9.2} {:>9.1} {:>9.1} {:>10} {:>9.0}  {}",
        row.name,
        row.threads,
        m.accuracy,
        auc,
        row.train_seconds,
        row.latency_us.0,
        row.latency_us.1,
        row.size_bytes
            .map_or("-".to_string(), |b| format!("{:.0}", b as f64 / 1024.0)),
        row.fit_peak_mib,
        row.note
    );
}

/// A field of /proc/self/status in KiB (`VmRSS`, `VmHWM`).
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// glibc keeps freed memory resident, so a fit that reuses what loading the data freed would
// show no growth at all; `malloc_trim` hands it back first.
#[allow(unsafe_code)]
mod trim {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }

    /// Returns the heap's free memory to the system (glibc).
    pub fn release_free_memory() {
        // SAFETY: malloc_trim only walks glibc's own free lists; no Rust memory is touched.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Runs `fit` and returns its result with the peak memory it added in MiB: the peak resident
/// set (reset just before, Linux's clear_refs 5) less the resident set before, free heap
/// memory returned to the system first.
fn with_peak<T>(fit: impl FnOnce() -> T) -> (T, f64) {
    trim::release_free_memory();
    let before = status_kb("VmRSS");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let out = fit();
    let peak = status_kb("VmHWM");
    (out, peak.saturating_sub(before) as f64 / 1024.0)
}

/// p50 and p99 in µs of `predict(i)` over the first test rows.
fn latency(rows: usize, mut predict: impl FnMut(usize) -> f64) -> (f64, f64) {
    let n = rows.min(LATENCY_ROWS);
    for i in 0..n.min(200) {
        std::hint::black_box(predict(i)); // warm caches
    }
    let mut times: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            std::hint::black_box(predict(i));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn threads_label(threads: usize) -> String {
    if threads == 0 {
        format!(
            "all({})",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        )
    } else {
        threads.to_string()
    }
}

fn vigil_forest(data: &Prepared, config: &TrainConfig, threads: usize) -> anyhow::Result<Row> {
    let forest_config = vigil_ml::ForestConfig {
        threads,
        ..config.forest
    };
    let t = Instant::now();
    let (forest, fit_peak_mib) =
        with_peak(|| train_forest(&data.x, &data.y, &data.w, &forest_config, &NoProgress));
    let forest = forest?;
    let train_seconds = t.elapsed().as_secs_f64();
    let probabilities = (0..data.tx.rows)
        .map(|r| forest.predict_proba(data.tx.row(r)))
        .collect();
    let latency_us = latency(data.tx.rows, |r| forest.predict_proba(data.tx.row(r)));
    let nodes: usize = forest.trees.iter().map(|t| t.len()).sum();
    Ok(Row {
        name: "vigil forest".into(),
        threads: threads_label(threads),
        train_seconds,
        probabilities,
        latency_us,
        size_bytes: Some(serde_json::to_vec(&forest)?.len()),
        fit_peak_mib,
        note: format!("{nodes} nodes; size = JSON as stored in the artifact"),
    })
}

/// XGBoost's random-forest mode with the forest's hyperparameters: one boosting round of
/// `n_trees` parallel trees, `eta` 1, rows subsampled (without replacement, XGBoost has no
/// bootstrap), features sampled per node, the leaf minimum as a hessian (0.25 per row of weight
/// 1 at the start margin).
fn xgboost_forest(data: &Prepared, config: &TrainConfig, threads: usize) -> anyhow::Result<Row> {
    let f = config.forest;
    let nthread = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let params: HashMap<String, String> = [
        ("objective", "binary:logistic".to_string()),
        ("tree_method", "hist".to_string()),
        ("max_bin", f.max_bins.to_string()),
        ("booster", "gbtree".to_string()),
        ("num_parallel_tree", f.n_trees.to_string()),
        ("eta", "1".to_string()),
        ("max_depth", f.max_depth.to_string()),
        ("subsample", f.sample_fraction.to_string()),
        ("colsample_bynode", f.feature_fraction.to_string()),
        (
            "min_child_weight",
            (0.25 * f.min_samples_leaf as f64).to_string(),
        ),
        ("seed", f.seed.to_string()),
        ("nthread", nthread.to_string()),
        ("verbosity", "0".to_string()),
        ("base_score", "0.5".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let t = Instant::now();
    let (booster, fit_peak_mib) = with_peak(|| -> anyhow::Result<Booster> {
        let mut dtrain = dmatrix(&data.x)?;
        dtrain.set_labels(
            &data
                .y
                .iter()
                .map(|&l| f32::from(u8::from(l)))
                .collect::<Vec<_>>(),
        )?;
        dtrain.set_weights(&data.w)?;
        let mut booster = Booster::new_with_json_config(&[&dtrain], params)?;
        booster.update(&dtrain, 0)?;
        Ok(booster)
    });
    let booster = booster?;
    let train_seconds = t.elapsed().as_secs_f64();
    let json = booster.save_to_buffer("json".to_string())?;
    let model = XgbModel::from_json(json, data.x.cols)?;
    // vigil serves boosters with its own evaluator; check it agrees with XGBoost here too.
    let native = model.predict_with_xgboost(&data.tx)?;
    let probabilities: Vec<f64> = (0..data.tx.rows)
        .map(|r| model.predict_proba(data.tx.row(r)))
        .collect();
    let max_diff = probabilities
        .iter()
        .zip(&native)
        .map(|(a, b)| (a - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    let latency_us = latency(data.tx.rows, |r| model.predict_proba(data.tx.row(r)));
    Ok(Row {
        name: "xgboost rf mode".into(),
        threads: threads_label(threads),
        train_seconds,
        probabilities,
        latency_us,
        size_bytes: Some(model.xgboost_json().len()),
        fit_peak_mib,
        note: format!(
            "{} trees; vigil's evaluator vs XGBoost max |diff| {max_diff:.1e}; size = XGBoost JSON",
            model.n_trees()
        ),
    })
}

fn dmatrix(x: &Matrix) -> anyhow::Result<DMatrix> {
    let mut indptr = vec![0];
    let mut indices = Vec::with_capacity(x.data.len());
    for _ in 0..x.rows {
        indices.extend(0..x.cols);
        indptr.push(indices.len());
    }
    Ok(DMatrix::from_csr(&indptr, &indices, &x.data, Some(x.cols))?)
}

/// smartcore's forest: hard votes only (no probabilities, no sample weights, a full-size
/// bootstrap), single-threaded.
fn smartcore_forest(data: &Prepared, config: &TrainConfig) -> anyhow::Result<Row> {
    let f = config.forest;
    let mtry = ((data.x.cols as f64 * f.feature_fraction).round() as usize).clamp(1, data.x.cols);
    let to_dense = |m: &Matrix| DenseMatrix::new(m.rows, m.cols, m.data.clone(), false);
    let x = to_dense(&data.x).map_err(|e| anyhow::anyhow!("{e}"))?;
    let y: Vec<u32> = data.y.iter().map(|&l| u32::from(l)).collect();
    let params = RandomForestClassifierParameters::default()
        .with_n_trees(f.n_trees as u16)
        .with_max_depth(f.max_depth as u16)
        .with_min_samples_leaf(f.min_samples_leaf)
        .with_m(mtry)
        .with_seed(f.seed);
    let t = Instant::now();
    let (forest, fit_peak_mib) = with_peak(|| RandomForestClassifier::fit(&x, &y, params));
    let forest = forest.map_err(|e| anyhow::anyhow!("{e}"))?;
    let train_seconds = t.elapsed().as_secs_f64();
    let tx = to_dense(&data.tx).map_err(|e| anyhow::anyhow!("{e}"))?;
    let votes: Vec<u32> = forest.predict(&tx).map_err(|e| anyhow::anyhow!("{e}"))?;
    let probabilities = votes.iter().map(|&v| f64::from(v)).collect();
    let singles: Vec<DenseMatrix<f32>> = (0..data.tx.rows.min(LATENCY_ROWS))
        .map(|r| DenseMatrix::new(1, data.tx.cols, data.tx.row(r).to_vec(), false))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let latency_us = latency(singles.len(), |r| {
        let v: Vec<u32> = forest
            .predict(&singles[r])
            .expect("a fitted forest predicts");
        f64::from(v[0])
    });
    Ok(Row {
        name: "smartcore rf".into(),
        threads: "1 (only)".into(),
        train_seconds,
        probabilities,
        latency_us,
        size_bytes: None,
        fit_peak_mib,
        note: "majority vote only: AUC of 0/1 labels; no weights; bootstrap of n rows".into(),
    })
}

/// linfa's forest: each tree sees one random feature subset (not one per split); scored here
/// by the share of trees voting "threat" (the library itself gives the majority vote only).
fn linfa_forest(data: &Prepared, config: &TrainConfig) -> anyhow::Result<Row> {
    let f = config.forest;
    let to_array = |m: &Matrix| Array2::from_shape_vec((m.rows, m.cols), m.data.clone());
    let x = to_array(&data.x)?;
    let y: Array1<usize> = data.y.iter().map(|&l| usize::from(l)).collect();
    let dataset = linfa::Dataset::new(x, y).with_weights(Array1::from(data.w.clone()));
    let tree = DecisionTree::<f32, usize>::params()
        .max_depth(Some(f.max_depth))
        .min_weight_leaf(f.min_samples_leaf as f32);
    let t = Instant::now();
    let (forest, fit_peak_mib) = with_peak(|| {
        RandomForestParams::new_fixed_rng(tree, ChaCha8Rng::seed_from_u64(f.seed))
            .ensemble_size(f.n_trees)
            .bootstrap_proportion(f.sample_fraction)
            .feature_proportion(f.feature_fraction)
            .fit(&dataset)
    });
    let forest = forest?;
    let train_seconds = t.elapsed().as_secs_f64();
    let tx = to_array(&data.tx)?;
    let mut threat_votes = vec![0usize; data.tx.rows];
    for (model, features) in forest.models.iter().zip(&forest.model_features) {
        let sub = tx.select(Axis(1), features);
        let votes: Array1<usize> = model.predict(&sub);
        threat_votes
            .iter_mut()
            .zip(votes.iter())
            .for_each(|(n, &v)| *n += v);
    }
    let probabilities = threat_votes
        .iter()
        .map(|&n| n as f64 / forest.models.len() as f64)
        .collect();
    let singles: Vec<Array2<f32>> = (0..data.tx.rows.min(LATENCY_ROWS))
        .map(|r| tx.select(Axis(0), &[r]))
        .collect();
    let latency_us = latency(singles.len(), |r| {
        let v: Array1<usize> = forest.predict(&singles[r]);
        v[0] as f64
    });
    Ok(Row {
        name: "linfa rf".into(),
        threads: "1 (only)".into(),
        train_seconds,
        probabilities,
        latency_us,
        size_bytes: None,
        fit_peak_mib,
        note: "one feature subset per tree; AUC from vote shares; latency = library predict".into(),
    })
}

/// k-means on the benign base-space rows the novelty member fits its prototypes on, and the
/// novelty member's test metrics with either set of centroids.
fn kmeans(
    splits: &vigil_ml::Splits,
    config: &TrainConfig,
    only: Option<&str>,
) -> anyhow::Result<()> {
    let spec = FeatureEngineer::new(config.features).fit(&splits.train)?;
    let novelty = config.novelty;
    let benign: Vec<_> = splits
        .train
        .iter()
        .filter(|e| !e.label)
        .map(|e| &e.signal)
        .collect();
    let step = benign.len().div_ceil(novelty.prototype_rows.max(1)).max(1);
    let mut sample = spec.base_space_all(benign.iter().step_by(step).copied())?;
    sample.fill_missing(&spec.base_space_impute());
    println!(
        "\nk-means: {} benign rows x {} base columns, k = {}, {} Lloyd iterations",
        sample.rows, sample.cols, novelty.prototypes, novelty.prototype_iterations
    );
    let inertia = |p: &Prototypes| -> f64 {
        (0..sample.rows)
            .map(|r| p.distance(sample.row(r)).powi(2))
            .sum()
    };
    let mut fitted: Vec<(&str, Prototypes)> = Vec::new();
    if only.is_none_or(|o| o == "kmeans" || o == "kmeans-vigil") {
        let t = Instant::now();
        let (p, peak) = with_peak(|| {
            Prototypes::fit(
                &sample,
                novelty.prototypes,
                novelty.prototype_iterations,
                0x5eed,
            )
        });
        let p = p?;
        let seconds = t.elapsed().as_secs_f64();
        println!(
            "  vigil Prototypes::fit     {seconds:>8.2} s  inertia {:.1}  centroids {}  fit peak +{peak:.0} MiB",
            inertia(&p),
            p.len()
        );
        fitted.push(("vigil", p));
    }
    if only.is_none_or(|o| o == "kmeans" || o == "kmeans-linfa") {
        let records = Array2::from_shape_vec((sample.rows, sample.cols), sample.data.clone())?;
        let dataset = linfa::DatasetBase::from(records);
        // k-means++ as vigil seeds, and k-means|| (linfa's scalable seeding).
        for (name, init) in [
            ("linfa++", KMeansInit::KMeansPlusPlus),
            ("linfa||", KMeansInit::KMeansPara),
        ] {
            let t = Instant::now();
            let (model, peak) = with_peak(|| {
                KMeans::params_with_rng(novelty.prototypes, ChaCha8Rng::seed_from_u64(0x5eed))
                    .n_runs(1)
                    .init_method(init)
                    .max_n_iterations(novelty.prototype_iterations as u64)
                    .tolerance(1e-12)
                    .fit(&dataset)
            });
            let model = model?;
            let seconds = t.elapsed().as_secs_f64();
            let p = Prototypes {
                dim: sample.cols,
                centroids: model.centroids().iter().copied().collect(),
            };
            println!(
                "  linfa KMeans {name} (n_runs 1) {seconds:>8.2} s  inertia {:.1}  centroids {}  fit peak +{peak:.0} MiB",
                inertia(&p),
                p.len(),
            );
            fitted.push((name, p));
        }
    }
    // The novelty member: tails fitted without prototypes, then each set of centroids put in
    // the way NoveltyDetector::fit puts its own (distance scaled so the budget's share of
    // validation benign rows is flagged, then one cutoff on the larger of the two scores).
    let tails_only = NoveltyDetector::fit(
        &spec,
        &splits.train,
        &splits.validation,
        NoveltyConfig {
            prototypes: 0,
            ..novelty
        },
    )?;
    let tail_cutoff = tails_only.cutoff;
    let validation_benign: Vec<_> = splits
        .validation
        .iter()
        .filter(|e| !e.label)
        .map(|e| &e.signal)
        .collect();
    let vx = spec.base_space_all(validation_benign.iter().copied())?;
    let v_tails: Vec<f64> = validation_benign
        .iter()
        .map(|s| tails_only.tail_score(s))
        .collect();
    let labels: Vec<bool> = splits.test.iter().map(|e| e.label).collect();
    for (name, p) in fitted {
        let distances: Vec<f64> = (0..vx.rows).map(|r| p.distance(vx.row(r))).collect();
        let distance_cutoff =
            cutoff_for(&mut distances.clone(), novelty.false_positive_budget, 1.0);
        let mut detector = tails_only.clone();
        detector.distance_scale = tail_cutoff / distance_cutoff;
        let mut combined: Vec<f64> = v_tails
            .iter()
            .zip(&distances)
            .map(|(&t, &d)| t.max(detector.distance_scale * d))
            .collect();
        detector.cutoff = cutoff_for(
            &mut combined,
            novelty.false_positive_budget,
            novelty.min_cutoff,
        );
        detector.prototypes = Some(p);
        let scores: Vec<f64> = splits
            .test
            .iter()
            .map(|e| detector.score(&spec, &e.signal))
            .collect::<Result<_, _>>()?;
        let flagged = |label: bool| {
            let (hit, n) = scores
                .iter()
                .zip(&labels)
                .filter(|(_, l)| **l == label)
                .fold((0, 0), |(h, n), (s, _)| {
                    (h + usize::from(*s >= detector.cutoff), n + 1)
                });
            hit as f64 / n.max(1) as f64
        };
        let latency_us = latency(splits.test.len(), |r| {
            detector
                .score(&spec, &splits.test[r].signal)
                .expect("test rows are valid")
        });
        println!(
            "  novelty member with {name:<7} centroids: test AUC {:.4}  attacks flagged {:.4}  benign flagged {:.4}  score p50 {:.1} us",
            roc_auc(&scores, &labels),
            flagged(true),
            flagged(false),
            latency_us.0
        );
    }
    Ok(())
}

/// The novelty member's cutoff rule (crates/ml/src/novelty.rs `cutoff_for`).
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

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut data, mut csv, mut only) = (None, None, None);
    let mut threads: Option<usize> = None;
    let mut csv_options = CsvOptions::new("Label");
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match arg.as_str() {
            "--only" => only = Some(value("--only")?),
            "--threads" => threads = Some(value("--threads")?.parse()?),
            "--csv" => csv = Some(PathBuf::from(value("--csv")?)),
            "--label-column" => csv_options.label_column = value("--label-column")?,
            "--positive" => csv_options.positive.push(value("--positive")?),
            other => data = Some(PathBuf::from(other)),
        }
    }
    let config = TrainConfig::default();
    let examples: Vec<LabeledExample> = if let Some(csv) = &csv {
        let outcome = read_csv_with(
            BufReader::new(File::open(csv)?),
            &csv_options,
            &csv.display().to_string(),
        )?;
        anyhow::ensure!(
            outcome.errors.is_empty(),
            "malformed rows in {}",
            csv.display()
        );
        outcome.examples
    } else {
        let data = data.unwrap_or_else(|| {
            std::env::var("VIGIL_DATA_DIR")
                .map_or_else(
                    |_| {
                        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                            .join("../../../shared/data/nsl-kdd")
                    },
                    PathBuf::from,
                )
                .join("KDDTrain+.txt")
        });
        let outcome = read_nsl_kdd(BufReader::new(File::open(&data)?));
        anyhow::ensure!(
            outcome.errors.is_empty(),
            "malformed rows in {}",
            data.display()
        );
        outcome.examples
    };
    let splits = DataPipeline::from_examples(examples).split(&config.split)?;
    let only = only.as_deref();
    println!(
        "{} train / {} test rows; forest: {} trees, depth {}, min leaf {}, {} of the features per split, {} of the rows per tree; load {}",
        splits.train.len(),
        splits.test.len(),
        config.forest.n_trees,
        config.forest.max_depth,
        config.forest.min_samples_leaf,
        config.forest.feature_fraction,
        config.forest.sample_fraction,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let wants = |name: &str| only.is_none_or(|o| o == name);
    if ["vigil", "xgb-rf", "smartcore", "linfa"]
        .iter()
        .any(|n| wants(n))
    {
        let data = prepare(&splits, &config)?;
        println!(
            "forest matrices: {} x {} train (oversampled), {} test",
            data.x.rows, data.x.cols, data.tx.rows
        );
        print_header();
        let thread_counts: Vec<usize> = match threads {
            Some(t) => vec![t],
            None => vec![1, 0],
        };
        if wants("vigil") {
            for &t in &thread_counts {
                print_row(&vigil_forest(&data, &config, t)?, &data.ty);
            }
        }
        if wants("xgb-rf") {
            for &t in &thread_counts {
                print_row(&xgboost_forest(&data, &config, t)?, &data.ty);
            }
        }
        if wants("smartcore") {
            print_row(&smartcore_forest(&data, &config)?, &data.ty);
        }
        if wants("linfa") {
            print_row(&linfa_forest(&data, &config)?, &data.ty);
        }
    }
    if only.is_none_or(|o| o.starts_with("kmeans")) {
        kmeans(&splits, &config, only)?;
    }
    if only == Some("fit") {
        // The whole fit as training runs it: the forest and k-means share the cores with
        // XGBoost's thread, so a change of thread pool shows here first.
        let t = Instant::now();
        let mut seconds = std::collections::BTreeMap::new();
        vigil_ml::fit_ensemble(
            &splits.train,
            &splits.validation,
            &config,
            &NoProgress,
            &mut seconds,
        )?;
        println!(
            "fit_ensemble {:.2} s; steps {seconds:.2?}",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
