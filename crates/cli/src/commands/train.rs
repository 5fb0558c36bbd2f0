//! `vigil train`: read a labelled data file, train the ensemble, write a model artifact.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use vigil_domain::ModelType;
use vigil_ml::{
    CsvOptions, LabeledExample, ModelEvaluator, TrainConfig, read_csv_with, read_nsl_kdd,
};

/// Input formats the offline commands understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormat {
    /// Headerless NSL-KDD rows (41 features, label, difficulty).
    NslKdd,
    /// Any CSV with a header row and a label column.
    Csv,
}

/// The labelled data file `vigil train` and `vigil evaluate` read.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Labelled data file.
    #[arg(long)]
    pub data: PathBuf,
    /// Format of the data file.
    #[arg(long, value_enum, default_value = "nsl-kdd")]
    pub format: DataFormat,
    /// Label column of a CSV file (`normal`, `benign`, `0`, `false` are benign).
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// CSV classes that are threats (repeat or comma-separate); every other class is then
    /// benign. Default: every class but `normal`, `benign`, `0` and `false`.
    #[arg(long, value_name = "CLASS", value_delimiter = ',')]
    pub positive: Vec<String>,
    /// CSV columns never read as inputs (repeat or comma-separate).
    #[arg(long = "drop-column", value_name = "COLUMN", value_delimiter = ',')]
    pub drop_columns: Vec<String>,
    /// CSV columns read as inputs even when they look like identifiers, times or addresses.
    #[arg(long = "keep-column", value_name = "COLUMN", value_delimiter = ',')]
    pub keep_columns: Vec<String>,
    /// Refuse the file if any row is malformed, instead of skipping such rows.
    #[arg(long)]
    pub strict: bool,
}

impl DataArgs {
    /// Reads the examples; see [`load_examples`].
    pub fn load(&self) -> anyhow::Result<Vec<LabeledExample>> {
        let csv = CsvOptions {
            label_column: self.label_column.clone(),
            positive: self.positive.clone(),
            drop: self.drop_columns.clone(),
            keep: self.keep_columns.clone(),
        };
        load_examples(&self.data, self.format, &csv, self.strict)
    }
}

/// Arguments of `vigil train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub input: DataArgs,
    /// Where to write the model artifact.
    #[arg(long)]
    pub out: PathBuf,
    /// Training configuration as JSON (see vigil_ml::TrainConfig); defaults otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seed for the split and every model.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How the decision threshold is chosen on the validation split: `balanced` (the best
    /// balanced accuracy), `accuracy` (the best accuracy), `fpr:B` (the most detection with at
    /// most a B false-positive rate) or `fixed:T`. Default: the configuration's, else balanced.
    #[arg(long, value_name = "RULE")]
    pub operating_point: Option<vigil_ml::OperatingPoint>,
    /// Shorthand for `--operating-point fixed:T`.
    #[arg(long, conflicts_with = "operating_point")]
    pub threshold: Option<f64>,
    /// Also run stratified k-fold cross-validation with this many folds (slow: k trainings).
    #[arg(long)]
    pub cv_folds: Option<usize>,
}

/// Progress bars on stderr for the library's long steps, one per concurrent step.
#[derive(Default)]
pub(crate) struct BarProgress {
    bars: MultiProgress,
    active: Mutex<HashMap<String, ProgressBar>>,
}

impl BarProgress {
    fn with_bar(&self, name: &str, f: impl FnOnce(&ProgressBar)) {
        if let Ok(active) = self.active.lock()
            && let Some(bar) = active.get(name)
        {
            f(bar);
        }
    }
}

impl vigil_ml::Progress for BarProgress {
    fn stage(&self, name: &str, total: u64) {
        let bar = self.bars.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(name.to_string());
        if let Ok(mut active) = self.active.lock() {
            active.insert(name.to_string(), bar);
        }
    }

    fn advance(&self, name: &str, delta: u64) {
        self.with_bar(name, |bar| bar.inc(delta));
    }

    fn finish_stage(&self, name: &str) {
        self.with_bar(name, ProgressBar::finish);
        if let Ok(mut active) = self.active.lock() {
            active.remove(name);
        }
    }
}

/// Reads labelled examples; malformed rows are reported with their line numbers and skipped,
/// or refused with `strict`.
pub(crate) fn load_examples(
    path: &Path,
    format: DataFormat,
    csv: &CsvOptions,
    strict: bool,
) -> anyhow::Result<Vec<LabeledExample>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("reading {}", path.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let source = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let outcome = match format {
        DataFormat::NslKdd => read_nsl_kdd(BufReader::new(file)),
        DataFormat::Csv => read_csv_with(BufReader::new(file), csv, &source)
            .with_context(|| format!("cannot read {}", path.display()))?,
    };
    spinner.finish_and_clear();
    for (column, reason) in &outcome.dropped_columns {
        if csv.drop.iter().any(|d| d.eq_ignore_ascii_case(column)) {
            eprintln!("column {column:?} is not an input: {reason}");
        } else {
            eprintln!("column {column:?} is not an input: {reason} (--keep-column to read it)");
        }
    }
    if !outcome.errors.is_empty() {
        for err in outcome.errors.iter().take(10) {
            eprintln!("{}: {err}", path.display());
        }
        if outcome.errors.len() > 10 {
            eprintln!("... and {} more malformed rows", outcome.errors.len() - 10);
        }
        if strict {
            bail!(
                "{}: {} malformed rows (first at line {}); fix them or drop --strict to skip them",
                path.display(),
                outcome.errors.len(),
                outcome.errors[0].line
            );
        }
        eprintln!("skipped {} malformed rows", outcome.errors.len());
    }
    if outcome.examples.is_empty() {
        bail!("{}: no usable rows", path.display());
    }
    Ok(outcome.examples)
}

/// Runs `vigil train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            TrainConfig::from_json(&text)
                .with_context(|| format!("invalid training configuration in {}", path.display()))?
        }
        None => TrainConfig::default(),
    };
    if let Some(seed) = args.seed {
        config = config.with_seed(seed);
    }
    if let Some(point) = args.operating_point {
        config.operating_point = point;
    }
    if let Some(threshold) = args.threshold {
        let point = vigil_ml::OperatingPoint::Fixed(threshold);
        point.validate()?;
        config.operating_point = point;
    }
    let examples = args.input.load()?;
    let threats = examples.iter().filter(|e| e.label).count();
    eprintln!(
        "read {} rows ({} threats, {} benign)",
        examples.len(),
        threats,
        examples.len() - threats
    );
    let progress = BarProgress::default();
    if let Some(k) = args.cv_folds {
        let cv = ModelEvaluator::cross_validate(&examples, &config, k, &progress)?;
        println!("{k}-fold cross-validation (mean):");
        for (model, m) in &cv.mean {
            println!(
                "  {:<15} accuracy {:.4}  precision {:.4}  recall {:.4}  f1 {:.4}  auc {:.4}",
                model.as_str(),
                m.accuracy,
                m.precision,
                m.recall,
                m.f1,
                m.auc_roc
            );
        }
        println!("  best: {}", cv.best);
    }
    let source = args.input.data.display().to_string();
    let (artifact, report) = vigil_ml::train_ensemble(examples, &config, &source, &progress)?;
    for issue in report.clean.refused.iter().take(10) {
        eprintln!(
            "refused example {} ({}): {}",
            issue.index, issue.id, issue.reason
        );
    }
    let bytes = artifact.to_bytes()?;
    std::fs::write(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "split: {} train / {} validation / {} test",
        report.train_rows, report.validation_rows, report.test_rows
    );
    let seconds = |k: &str| report.seconds.get(k).copied().unwrap_or_default();
    println!(
        "training time: features {:.1}s, random forest {:.1}s, xgboost {:.1}s, neural network {:.1}s, novelty {:.1}s (beside xgboost), total {:.1}s",
        seconds("features"),
        seconds("random_forest"),
        seconds("xgboost"),
        seconds("neural_network"),
        seconds("novelty"),
        seconds("total")
    );
    if let Some(choice) = &report.operating_point {
        println!("operating point: {choice}");
    }
    println!(
        "test split metrics at threshold {:.4} (the test split chose nothing):",
        artifact.ensemble.decision_threshold
    );
    for model in ModelType::ALL {
        if let Some(m) = artifact.metrics.get(&model) {
            println!(
                "  {:<15} accuracy {:.4}  precision {:.4}  recall {:.4}  f1 {:.4}  auc {:.4}",
                model.as_str(),
                m.accuracy,
                m.precision,
                m.recall,
                m.f1,
                m.auc_roc
            );
        }
    }
    println!(
        "wrote {} ({} bytes, model {}, {} features, weights rf/xgb/nn {:.2}/{:.2}/{:.2})",
        args.out.display(),
        bytes.len(),
        artifact.metadata.model_version_id,
        artifact.ensemble.spec.len(),
        artifact.ensemble.weights[0],
        artifact.ensemble.weights[1],
        artifact.ensemble.weights[2]
    );
    Ok(())
}
