//! `vigil evaluate`: score a labelled data file with a model artifact, or with the ensemble the
//! registry serves in production.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use vigil_domain::ModelType;
use vigil_ml::{ModelArtifact, ModelEvaluator};
use vigil_runtime::ConfigArgs;
use vigil_store::Store;

use super::train::DataArgs;

/// Arguments of `vigil evaluate`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["model", "production"])))]
pub struct EvaluateArgs {
    /// Model artifact written by `vigil train`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The ensemble in production in the model registry (PostgreSQL, from the configuration).
    #[arg(long)]
    pub production: bool,
    #[command(flatten)]
    pub input: DataArgs,
    /// Print one JSON object (ensemble metrics at top level, members under "models").
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The model being evaluated and how to name it.
struct Evaluated {
    artifact: ModelArtifact,
    /// `model ens-...` or `production ensemble v3 (ID), model ens-...`.
    name: String,
    /// The registry version, for `--production`.
    registry: Option<serde_json::Value>,
}

/// Runs `vigil evaluate`.
pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let evaluated = match &args.model {
        Some(path) => from_file(path)?,
        None => from_registry(&args.config)?,
    };
    let examples = args.input.load()?;
    let artifact = &evaluated.artifact;
    let report = ModelEvaluator::evaluate(&artifact.ensemble, &examples)?;
    if args.json {
        let mut json = report.to_json();
        json["model_version_id"] = serde_json::json!(artifact.metadata.model_version_id);
        if let Some(registry) = evaluated.registry {
            json["registry"] = registry;
        }
        println!("{json}");
        return Ok(());
    }
    println!(
        "{} on {} ({} rows), threshold {}",
        evaluated.name,
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

fn from_file(path: &Path) -> anyhow::Result<Evaluated> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let artifact = ModelArtifact::from_bytes(&bytes)
        .with_context(|| format!("cannot load model {}", path.display()))?;
    Ok(Evaluated {
        name: format!("model {}", artifact.metadata.model_version_id),
        artifact,
        registry: None,
    })
}

/// The production ensemble's artifact, from the registry the configuration points at.
fn from_registry(config: &ConfigArgs) -> anyhow::Result<Evaluated> {
    let config = config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let store = Store::connect_and_migrate(&config.database).await?;
        let loaded = async {
            let registry = store.models();
            let Some(record) = registry.production(ModelType::Ensemble).await? else {
                bail!(
                    "no ensemble is in production in the model registry: train one (vigil \
                     models import, then vigil models train) or promote one (vigil models \
                     promote ID --production)"
                );
            };
            let id = record.version.id.clone();
            let bytes = registry.load_artifact(&id).await?;
            let artifact = ModelArtifact::from_bytes(&bytes).with_context(|| {
                format!(
                    "cannot load the production ensemble v{} ({id})",
                    record.version.version
                )
            })?;
            Ok(Evaluated {
                name: format!(
                    "production ensemble v{} ({id}), model {}",
                    record.version.version, artifact.metadata.model_version_id
                ),
                artifact,
                registry: Some(serde_json::json!({
                    "id": id,
                    "version": record.version.version,
                })),
            })
        }
        .await;
        store.close().await;
        loaded
    })
}
