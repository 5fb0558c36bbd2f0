//! `vigil models`: the model registry (list, show, promote, roll back, history), training
//! examples imported from a data file, and a training run requested from the trainer service.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use vigil_bus::Bus;
use vigil_config::Config;
use vigil_domain::ModelType;
use vigil_runtime::ConfigArgs;
use vigil_store::{ModelEvent, ModelRecord, Promotion, Store};
use vigil_trainer::{DatasetFormat, RunOutcome, RunReport, RunRequest};

/// Arguments of `vigil models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// What `vigil models` does.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List registered model versions, newest first per type.
    List {
        /// Only this type (random_forest, xgboost, neural_network, ensemble).
        #[arg(long = "type", value_name = "TYPE")]
        model_type: Option<ModelType>,
        /// Print JSON (an array of what `show` prints, without the history).
        #[arg(long)]
        json: bool,
    },
    /// Show one version as JSON: metrics, hyperparameters, features, artifact, history.
    Show {
        /// The registry id (UUID) of the version.
        id: String,
    },
    /// Make a version the active (staging) one of its type, or with --production the one
    /// serving production.
    Promote {
        /// The registry id (UUID) of the version.
        id: String,
        /// Promote to production instead of active.
        #[arg(long)]
        production: bool,
        /// Why, for the registry history.
        #[arg(long, default_value = "promoted by hand with vigil models promote")]
        reason: String,
    },
    /// Put the previous production version of a type back into production.
    Rollback {
        /// The model type (random_forest, xgboost, neural_network, ensemble).
        model_type: ModelType,
        /// Why, for the registry history.
        #[arg(long, default_value = "rolled back by hand with vigil models rollback")]
        reason: String,
    },
    /// The promotion history of one type, or of all.
    History {
        /// The model type; all types when omitted.
        model_type: Option<ModelType>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running trainer service for a training run and print its report.
    Train {
        /// How long to wait for the run to finish, in seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record a labelled data file as training examples (idempotent: rows already recorded
    /// are skipped); the trainer learns from them on its next run.
    Import {
        /// Labelled data file.
        #[arg(long)]
        data: PathBuf,
        /// Format of the data file.
        #[arg(long, value_enum, default_value = "nsl-kdd")]
        format: ImportFormat,
        /// Label column of a CSV file (`normal`, `benign`, `0`, `false` are benign).
        #[arg(long, default_value = "label")]
        label_column: String,
    },
}

/// Data file formats `vigil models import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// Headerless NSL-KDD rows (41 features, label, difficulty).
    NslKdd,
    /// Any CSV with a header row and a label column.
    Csv,
}

/// Runs `vigil models ...`.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match args.command {
            ModelsCommand::Train { timeout_secs, json } => {
                train(&config, Duration::from_secs(timeout_secs), json).await
            }
            command => {
                let store = Store::connect_and_migrate(&config.database).await?;
                let result = registry_command(&config, &store, command).await;
                store.close().await;
                result
            }
        }
    })
}

pub(crate) fn actor() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{user}")
}

/// How long an announcement of a hand promotion may take before the CLI gives up on it (the
/// promotion itself is already stored; predictors then find it at their next refresh).
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Announces a change of production made by hand (MODEL_PROMOTED), so every predictor loads
/// it now instead of at its next refresh. A failure is a warning: the registry already holds
/// the change.
async fn announce(config: &Config, promotion: &Promotion, reason: &str) {
    if !promotion.changed {
        return;
    }
    let event = vigil_trainer::hand_promotion(promotion, &actor(), reason, chrono::Utc::now());
    let sent = tokio::time::timeout(ANNOUNCE_TIMEOUT, async {
        let bus = Bus::connect(&config.nats, vigil_runtime::topology(config)).await?;
        anyhow::Ok(vigil_trainer::publish_model_promoted(&bus, &event).await)
    })
    .await;
    let why = match sent {
        Ok(Ok(true)) => {
            println!("announced: predictors load it now (model_promoted)");
            return;
        }
        Ok(Ok(false)) => "the events stream did not take it (see the log)".to_owned(),
        Ok(Err(error)) => format!("{error:#}"),
        Err(_) => format!("no answer within {} s", ANNOUNCE_TIMEOUT.as_secs()),
    };
    eprintln!(
        "warning: could not announce the change on NATS ({why}); predictors load it at their \
         next refresh (predictor.refresh_secs)"
    );
}

async fn registry_command(
    config: &Config,
    store: &Store,
    command: ModelsCommand,
) -> anyhow::Result<()> {
    let registry = store.models();
    match command {
        ModelsCommand::List { model_type, json } => {
            let records = registry.list(model_type).await?;
            if json {
                let all: Vec<serde_json::Value> = records.iter().map(record_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            if records.is_empty() {
                println!("no model versions registered");
                return Ok(());
            }
            println!(
                "{:<36}  {:<14}  {:>4}  {:<20}  {:>6}  {:>6}  {:>8}  slots",
                "id", "type", "ver", "trained", "f1", "auc", "samples"
            );
            for record in &records {
                println!("{}", list_line(record));
            }
        }
        ModelsCommand::Show { id } => {
            let record = registry
                .get(&id)
                .await?
                .with_context(|| format!("no model version {id}"))?;
            let history: Vec<ModelEvent> = registry
                .history(Some(record.version.model_type))
                .await?
                .into_iter()
                .filter(|e| e.model_version_id == record.version.id)
                .collect();
            show(&record, &history)?;
        }
        ModelsCommand::Promote {
            id,
            production,
            reason,
        } => {
            let promotion = if production {
                registry
                    .promote_to_production(&id, &actor(), &reason)
                    .await?
            } else {
                registry.promote_to_active(&id, &actor(), &reason).await?
            };
            print_promotion(if production { "production" } else { "active" }, &promotion);
            if production {
                announce(config, &promotion, &reason).await;
            }
        }
        ModelsCommand::Rollback { model_type, reason } => {
            let promotion = registry
                .rollback_to_previous(model_type, &actor(), &reason)
                .await?;
            print_promotion("production", &promotion);
            announce(config, &promotion, &reason).await;
        }
        ModelsCommand::History { model_type, json } => {
            let events = registry.history(model_type).await?;
            if json {
                let all: Vec<serde_json::Value> = events.iter().map(event_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            if events.is_empty() {
                println!("no history");
            }
            for e in events {
                println!(
                    "{}  {:<14}  v{:<3}  {:<19}  {:<14}  {}  ({})",
                    e.at.format("%Y-%m-%d %H:%M:%S"),
                    e.model_type,
                    e.version,
                    e.event,
                    e.actor,
                    e.reason,
                    e.model_version_id
                );
            }
        }
        ModelsCommand::Import {
            data,
            format,
            label_column,
        } => {
            let format = match format {
                ImportFormat::NslKdd => DatasetFormat::NslKdd,
                ImportFormat::Csv => DatasetFormat::Csv { label_column },
            };
            let path = data.clone();
            let outcome =
                tokio::task::spawn_blocking(move || vigil_trainer::read_dataset(&path, format))
                    .await??;
            for error in outcome.errors.iter().take(5) {
                eprintln!("skipped {}: {error}", data.display());
            }
            if outcome.examples.is_empty() {
                bail!("{} holds no usable labelled rows", data.display());
            }
            let report = vigil_trainer::import_examples(store, &outcome.examples).await?;
            let threats = outcome.examples.iter().filter(|e| e.label).count();
            println!(
                "read {} examples ({threats} threats) from {}: {} recorded, {} already present, {} \
                 malformed rows skipped",
                report.read,
                data.display(),
                report.inserted,
                report.read as u64 - report.inserted,
                outcome.errors.len()
            );
        }
        ModelsCommand::Train { .. } => bail!("a training run is requested over NATS, not here"),
    }
    Ok(())
}

fn list_line(record: &ModelRecord) -> String {
    let v = &record.version;
    let mut slots = Vec::new();
    if v.is_production {
        slots.push("production");
    }
    if v.is_active {
        slots.push("active");
    }
    format!(
        "{:<36}  {:<14}  {:>4}  {:<20}  {:>6.4}  {:>6.4}  {:>8}  {}",
        v.id,
        v.model_type.as_str(),
        v.version,
        v.trained_at.format("%Y-%m-%d %H:%M:%S"),
        v.metrics.f1,
        v.metrics.auc_roc,
        v.training_samples,
        slots.join(",")
    )
}

/// One registered version as `models list --json` and `models show` print it.
fn record_json(record: &ModelRecord) -> serde_json::Value {
    let v = &record.version;
    serde_json::json!({
        "id": v.id,
        "model_type": v.model_type,
        "version": v.version,
        "trained_at": v.trained_at,
        "registered_at": record.created_at,
        "is_active": v.is_active,
        "is_production": v.is_production,
        "metrics": v.metrics,
        "training_samples": v.training_samples,
        "features_used": v.features_used.len(),
        "hyperparameters": v.hyperparameters,
        "artifact": { "sha256": record.artifact_sha256, "bytes": record.artifact_bytes },
    })
}

/// One registry history entry as `models history --json` (and `show`) print it.
fn event_json(e: &ModelEvent) -> serde_json::Value {
    serde_json::json!({
        "at": e.at,
        "model_type": e.model_type,
        "version": e.version,
        "event": e.event.as_str(),
        "actor": e.actor,
        "reason": e.reason,
        "model_version_id": e.model_version_id,
    })
}

fn show(record: &ModelRecord, history: &[ModelEvent]) -> anyhow::Result<()> {
    let mut json = record_json(record);
    json["history"] = history.iter().map(event_json).collect();
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

fn print_promotion(slot: &str, promotion: &Promotion) {
    let v = &promotion.promoted.version;
    if !promotion.changed {
        println!(
            "{} v{} ({}) already holds {slot}; nothing changed",
            v.model_type, v.version, v.id
        );
        return;
    }
    match &promotion.replaced {
        Some(old) => println!(
            "{} v{} ({}) is now {slot}, replacing v{} ({})",
            v.model_type, v.version, v.id, old.version.version, old.version.id
        ),
        None => println!("{} v{} ({}) is now {slot}", v.model_type, v.version, v.id),
    }
}

/// Requests a run from the trainer service over NATS and prints the report it answers with.
async fn train(config: &Config, timeout: Duration, json: bool) -> anyhow::Result<()> {
    let client = vigil_bus::connect(&config.nats).await?;
    let subject = vigil_trainer::run_subject(&config.nats.prefix);
    eprintln!("requested a training run on {subject}; waiting for the report");
    let request = RunRequest {
        requested_by: actor(),
        ..RunRequest::default()
    };
    let report = request_run(&client, &config.nats.prefix, &request, timeout).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    match report.outcome {
        RunOutcome::Promoted | RunOutcome::NotPromoted => Ok(()),
        RunOutcome::Failed => bail!("the training run failed: {}", report.reason),
        RunOutcome::Abandoned => bail!("the training run was abandoned: {}", report.reason),
        RunOutcome::Skipped => bail!("the training run was skipped: {}", report.reason),
        RunOutcome::RateLimited => bail!("the trainer refused the request: {}", report.reason),
    }
}

/// Asks the trainer answering under `prefix` for a training run and waits up to `timeout` for
/// its report (which may say the run failed).
pub async fn request_run(
    client: &async_nats::Client,
    prefix: &str,
    request: &RunRequest,
    timeout: Duration,
) -> anyhow::Result<RunReport> {
    let subject = vigil_trainer::run_subject(prefix);
    let request = async_nats::Request::new()
        .payload(serde_json::to_vec(request)?.into())
        .timeout(Some(timeout));
    let reply = client
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                anyhow::anyhow!("no trainer answers on {subject}; is the trainer service running?")
            }
            async_nats::RequestErrorKind::TimedOut => anyhow::anyhow!(
                "the trainer did not report within {} s (the run may still finish)",
                timeout.as_secs()
            ),
            _ => anyhow::anyhow!("requesting a training run on {subject}: {e}"),
        })?;
    serde_json::from_slice(&reply.payload)
        .context("the trainer answered with something that is not a run report")
}

fn print_report(report: &RunReport) {
    println!("run {} ({})", report.run_id, report.trigger);
    println!(
        "  examples: {} ({} threats, {} benign; train {}, validation {}, test {})",
        report.examples.total,
        report.examples.threats,
        report.examples.benign,
        report.examples.train,
        report.examples.validation,
        report.examples.test
    );
    let sources: Vec<String> = report
        .examples
        .by_source
        .iter()
        .map(|(source, n)| {
            let evicted = report.examples.evicted_by_source.get(source).unwrap_or(&0);
            format!("{source} {n} ({evicted} over the cap)")
        })
        .collect();
    println!(
        "  labels from: {} (cap {})",
        sources.join(", "),
        report.examples.cap
    );
    let f1 = |m: &Option<serde_json::Value>| {
        m.as_ref()
            .and_then(|m| m["f1"].as_f64())
            .map_or_else(|| "-".to_string(), |f| format!("{f:.4}"))
    };
    if let Some(holdout) = &report.holdout {
        println!(
            "  hold-out: {} rows ({} threats), {}",
            holdout.rows,
            holdout.threats,
            holdout.rule.describe()
        );
    }
    println!(
        "  F1 on the hold-out: new {}, production before {}",
        f1(&report.metrics),
        f1(&report.production_metrics)
    );
    if let Some(caveat) = report
        .holdout
        .as_ref()
        .and_then(|h| h.production_caveat.as_ref())
    {
        println!("  note: {caveat}");
    }
    if let Some(cv) = &report.cross_validation {
        match (&cv.error, cv.mean.get(&ModelType::Ensemble)) {
            (Some(error), _) => println!("  cross-validation: not run ({error})"),
            (None, Some(mean)) => println!(
                "  {}-fold cross-validation on {} training rows: ensemble F1 {:.4} ({:.1} s)",
                cv.folds, cv.rows, mean.f1, cv.seconds
            ),
            (None, None) => {}
        }
    }
    for model in &report.registered {
        println!(
            "  registered {} v{} ({})",
            model.model_type, model.version, model.id
        );
    }
    println!(
        "  outcome: {:?} after {:.1} s: {}",
        report.outcome, report.duration_seconds, report.reason
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        models: ModelsArgs,
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["models", "promote", "abc", "--production"]).unwrap();
        assert!(matches!(
            cli.models.command,
            ModelsCommand::Promote {
                production: true,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["models", "rollback", "xgb"]).unwrap();
        assert!(matches!(
            cli.models.command,
            ModelsCommand::Rollback {
                model_type: ModelType::Xgboost,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["models", "list", "--type", "ensemble"]).unwrap();
        assert!(matches!(
            cli.models.command,
            ModelsCommand::List {
                model_type: Some(ModelType::Ensemble),
                json: false
            }
        ));
        let cli =
            Cli::try_parse_from(["models", "import", "--data", "f.txt", "--format", "nsl-kdd"])
                .unwrap();
        assert!(matches!(cli.models.command, ModelsCommand::Import { .. }));
        assert!(Cli::try_parse_from(["models", "rollback", "svm"]).is_err());
    }
}
