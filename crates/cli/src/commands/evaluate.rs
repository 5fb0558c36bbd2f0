//! `vigil evaluate`: score a labelled data file with a model artifact.

use std::path::PathBuf;

use anyhow::Context;
use vigil_domain::ModelType;
use vigil_ml::{ModelArtifact, ModelEvaluator};

use super::train::DataArgs;

/// Arguments of `vigil evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Model artifact written by `vigil train`.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub input: DataArgs,
    /// Print one JSON object (ensemble metrics at top level, members under "models").
    #[arg(long)]
    pub json: bool,
}

/// Runs `vigil evaluate`.
pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let artifact = ModelArtifact::from_bytes(&bytes)
        .with_context(|| format!("cannot load model {}", args.model.display()))?;
    let examples = args.input.load()?;
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
        args.input.data.display(),
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
