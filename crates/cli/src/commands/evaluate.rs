//! `vigil evaluate`: score a labelled data file with a model artifact.

use std::path::PathBuf;

use anyhow::Context;
use vigil_domain::ModelType;
use vigil_ml::{ModelArtifact, ModelEvaluator};

use super::train::{DataFormat, load_examples};

/// Arguments of `vigil evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Model artifact written by `vigil train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled data file.
    #[arg(long)]
    pub data: PathBuf,
    /// Format of the data file.
    #[arg(long, value_enum, default_value = "nsl-kdd")]
    pub format: DataFormat,
    /// Label column of a CSV file.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Print one JSON object (ensemble metrics at top level, members under "models").
    #[arg(long)]
    pub json: bool,
    /// Refuse the file if any row is malformed, instead of skipping such rows.
    #[arg(long)]
    pub strict: bool,
}

/// Runs `vigil evaluate`.
pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let artifact = ModelArtifact::from_bytes(&bytes)
        .with_context(|| format!("cannot load model {}", args.model.display()))?;
    let examples = load_examples(&args.data, args.format, &args.label_column, args.strict)?;
    let report = ModelEvaluator::evaluate(&artifact.ensemble, &examples)?;
    if args.json {
        let mut json = report.to_json();
        json["model_version_id"] = serde_json::json!(artifact.metadata.model_version_id);
        println!("{json}");
        return Ok(());
    }
    println!(
        "model {} on {} ({} rows), threshold {}",
        artifact.metadata.model_version_id,
        args.data.display(),
        report.rows,
        report.threshold
    );
    let rows = report
        .models
        .iter()
        .map(|(t, m)| (*t, *m))
        .chain([(ModelType::Ensemble, report.ensemble)]);
    for (model, m) in rows {
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
    println!("  best: {}", report.best_model());
    Ok(())
}
