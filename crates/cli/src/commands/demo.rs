//! `vigil demo`: the whole loop in a few minutes on NSL-KDD, against the configured NATS and
//! PostgreSQL (the services are started in this process unless they already run): import a
//! labelled training set, train and promote the first model, replay records it never trained
//! on as threat signals, give analyst feedback with their true labels for a sample, retrain,
//! and report what happened.
//!
//! Every number in the report is observed: counts come from the domain events on
//! `vigil.events.>` and from the workflow rows, accuracy from scoring held-out rows with the
//! production model, latencies from the durations the workflow steps recorded.

mod data;
mod feedback;
mod live;
mod outcomes;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use vigil_bus::{Bus, ConsumerKind, StreamKind};
use vigil_config::Config;
use vigil_domain::ModelType;
use vigil_ml::{LabeledExample, ModelArtifact, ModelEvaluator};
use vigil_proto::v1;
use vigil_runtime::{ConfigArgs, ServiceContext};
use vigil_store::{ModelEventKind, Store};
use vigil_trainer::{RunOutcome, RunReport, RunRequest};

use self::data::{DataFiles, choose_rows, file_name};
use self::feedback::{feedback_round, feedback_sample};
use self::live::{replay, workflows_of};
use self::outcomes::Outcomes;
pub use self::report::Report;
use self::report::{
    Accuracy, AccuracyReport, Created, DataReport, EventsReport, ModelRef, ModelsReport,
    RunSummary, grouped,
};
use super::models::request_run;
use super::up::{SERVICE_NAMES, check_dependencies, spawn_services};

/// Who asked for the demo's training runs, in the registry history.
const ACTOR: &str = "vigil-demo";
/// How long the demo waits for a training run's report.
const TRAINING_PATIENCE: Duration = Duration::from_secs(30 * 60);
/// How long the demo waits for the predictor to serve a newly promoted model.
const PREDICTOR_PATIENCE: Duration = Duration::from_secs(60);

/// Arguments of `vigil demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory holding the NSL-KDD files; else `VIGIL_DATA_DIR`, else
    /// `../shared/data/nsl-kdd` from the current directory or from the workspace root.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Records to replay as threat signals (records vigil has not seen before). With the
    /// defaults the whole demo took 43 s on two busy cores (a dev build).
    #[arg(long, default_value_t = 10_000)]
    pub rows: usize,
    /// Labelled rows imported to train the first model.
    #[arg(long, default_value_t = 25_192)]
    pub train_rows: usize,
    /// Labelled rows, never replayed nor fed back, that both models are scored on.
    #[arg(long, default_value_t = 2_000)]
    pub holdout: usize,
    /// Replayed records whose true label is given back as analyst feedback.
    #[arg(long, default_value_t = 500)]
    pub feedback_sample: usize,
    /// Print the report as one JSON document (progress still goes to standard error).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs `vigil demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    // Before anything else: a missing data set needs no server to say so.
    let files = DataFiles::locate(args.data.as_deref())?;
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    if args.train_rows < 100 {
        bail!("--train-rows must be at least 100 (the trainer holds out part of it to validate)");
    }
    let config = args.config.load()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        install_quiet_logs();
        let _guard = vigil_telemetry::init(&config.telemetry, "vigil-demo")?;
        check_dependencies(&config).await?;
        demo(&config, &files, &args).await
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

/// Service logs go to standard error, errors only unless `RUST_LOG` says otherwise, so they
/// neither drown the progress line nor mix with the JSON report on standard output.
fn install_quiet_logs() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| "error".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn step(message: impl std::fmt::Display) {
    eprintln!("==> {message}");
}

async fn demo(config: &Config, files: &DataFiles, args: &DemoArgs) -> anyhow::Result<Report> {
    let store = Store::connect_and_migrate(&config.database).await?;
    let bus = Bus::connect(&config.nats, vigil_runtime::topology(config)).await?;
    bus.declare().await?;

    let token = CancellationToken::new();
    let mut services = None;
    let predictor_url;
    if broker_is_consuming(&bus).await? {
        step(format!(
            "vigil is already running for NATS prefix {:?}: using it",
            config.nats.prefix
        ));
        predictor_url = configured_predictor_url(config);
    } else {
        step(format!(
            "starting {} in this process",
            SERVICE_NAMES.join(", ")
        ));
        let ctx = ServiceContext::new(config.clone());
        let mut started = spawn_services(&ctx, &token).await.context(
            "cannot start the services in this process (is vigil already running with another \
             configuration, holding the predictor's port?)",
        )?;
        // The predictor is ready only once a model is promoted: that comes later.
        if let Err(error) = started
            .wait_ready(&ctx, &["predictor"], Duration::from_secs(120))
            .await
        {
            token.cancel();
            let _ = started.supervise(&token).await;
            return Err(error);
        }
        predictor_url = started
            .predictor_url()
            .context("the predictor did not start")?;
        services = Some(started);
    }
    let started_here = services.is_some();

    let steps = run_steps(config, &store, &bus, files, args, &predictor_url);
    let interrupted = async {
        vigil_runtime::shutdown_signal().await;
        anyhow::anyhow!("interrupted; what was done so far stays (see vigil models list)")
    };
    let outcome = match services.as_mut() {
        Some(running) => tokio::select! {
            outcome = steps => outcome,
            stopped = running.next_stopped() => Err(match stopped {
                Some(Err(error)) => error.context("a service failed during the demo"),
                Some(Ok(name)) => anyhow::anyhow!("the {name} stopped during the demo"),
                None => anyhow::anyhow!("the services stopped during the demo"),
            }),
            // The services drain below before the process exits.
            error = interrupted => Err(error),
        },
        None => tokio::select! {
            outcome = steps => outcome,
            error = interrupted => Err(error),
        },
    };
    if let Some(running) = services {
        token.cancel();
        if let Err(error) = running.supervise(&token).await {
            tracing::error!(%error, "a service failed while stopping");
        }
    }
    store.close().await;
    let mut report = outcome?;
    report.services = if started_here {
        "started in this process for the demo, stopped at the end".to_owned()
    } else {
        "already running (used as they are)".to_owned()
    };
    Ok(report)
}

/// Whether a broker pulls from this configuration's ingest stream: a running broker always has
/// a long poll (500 ms) waiting on its durable consumer, so a few looks a tenth of a second
/// apart see one.
async fn broker_is_consuming(bus: &Bus) -> anyhow::Result<bool> {
    let stream_name = bus.topology().stream_name(StreamKind::Ingest);
    let stream = bus
        .jetstream()
        .get_stream(&stream_name)
        .await
        .with_context(|| format!("cannot read the stream {stream_name}"))?;
    let consumer = ConsumerKind::Broker.durable_name();
    for _ in 0..12 {
        let info = stream
            .consumer_info(&consumer)
            .await
            .with_context(|| format!("cannot read the consumer {consumer} of {stream_name}"))?;
        if info.num_waiting > 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

/// Where the running predictor answers, as the orchestrator of `vigil up` would reach it.
fn configured_predictor_url(config: &Config) -> String {
    config
        .orchestrator
        .predictor_url
        .clone()
        .unwrap_or_else(|| {
            let addr = config.predictor.grpc_addr.replace("0.0.0.0", "127.0.0.1");
            format!("http://{addr}")
        })
}

async fn run_steps(
    config: &Config,
    store: &Store,
    bus: &Bus,
    files: &DataFiles,
    args: &DemoArgs,
    predictor_url: &str,
) -> anyhow::Result<Report> {
    let clock = Instant::now();
    // The database's clock, which stamps what the demo's runs register.
    let demo_started: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(store.pool())
        .await
        .context("cannot read the database's clock")?;
    let mut seconds = BTreeMap::new();

    // 1. The rows.
    let t = Instant::now();
    let rows = choose_rows(store, files, args).await?;
    if rows.replay.is_empty() {
        bail!(
            "no record of {} is new to vigil ({} already seen): every row was replayed or \
             imported before; point --data at other NSL-KDD files",
            files.replay.display(),
            rows.already_known
        );
    }
    step(format!(
        "data: {} training rows from {}, {} records to replay and {} held out from {}",
        grouped(rows.training.len()),
        file_name(&files.training),
        grouped(rows.replay.len()),
        grouped(rows.holdout.len()),
        file_name(&files.replay)
    ));
    seconds.insert("read_data".to_owned(), t.elapsed().as_secs_f64());

    // 2. Import the training set.
    let t = Instant::now();
    let imported = vigil_trainer::import_examples(store, &rows.training).await?;
    step(format!(
        "imported {} labelled examples ({} new, {} already there)",
        grouped(imported.read),
        grouped(imported.inserted as usize),
        grouped(imported.read.saturating_sub(imported.inserted as usize))
    ));
    seconds.insert("import".to_owned(), t.elapsed().as_secs_f64());

    // 3. Train and promote the first model.
    let t = Instant::now();
    step("training the first model (random forest, XGBoost, neural network, ensemble)");
    let first = train(bus, config).await?;
    seconds.insert("first_training".to_owned(), t.elapsed().as_secs_f64());
    step(format!(
        "training run {}: {:?} after {:.1} s: {}",
        first.run_id, first.outcome, first.duration_seconds, first.reason
    ));
    let production = store
        .models()
        .production(ModelType::Ensemble)
        .await?
        .with_context(|| {
            format!(
                "no ensemble is in production after training ({})",
                first.reason
            )
        })?;
    let production_before = ModelRef::of(&production.version);
    let serving = wait_for_predictor(predictor_url, &production_before.id).await;
    match &serving {
        Ok(()) => step(format!(
            "the predictor serves ensemble v{}",
            production_before.version
        )),
        Err(why) => step(format!(
            "the predictor does not serve ensemble v{} ({why}): workflows score with rules only",
            production_before.version
        )),
    }
    let holdout = Arc::new(rows.holdout);
    let accuracy_before = evaluate(store, &production_before, &holdout).await?;

    // 4. Replay.
    let t = Instant::now();
    step(format!(
        "replaying {} records as threat signals",
        grouped(rows.replay.len())
    ));
    let replayed = replay(bus, store, &rows.replay).await?;
    seconds.insert("replay".to_owned(), t.elapsed().as_secs_f64());
    let ids: Vec<&str> = rows.replay.iter().map(|e| e.signal.id.as_str()).collect();
    let workflows = workflows_of(store, &ids).await?;
    let outcomes = Outcomes::of(&workflows, &rows.replay);

    // 5. Analyst feedback for a sample, then retrain.
    let t = Instant::now();
    let subject = bus.topology().feedback_submit_subject();
    let sample = feedback_sample(&rows.replay, &workflows, args.feedback_sample);
    let feedback = feedback_round(bus.client(), &subject, &sample).await;
    match &feedback.detail {
        Some(detail) if feedback.accepted == 0 => step(format!("feedback: {detail}")),
        _ => step(format!(
            "feedback: {} verdicts accepted, {} refused",
            feedback.accepted, feedback.refused
        )),
    }
    seconds.insert("feedback".to_owned(), t.elapsed().as_secs_f64());
    let mut retrain = None;
    let mut production_after = None;
    let mut accuracy_after = None;
    let mut accuracy_retrained = None;
    if feedback.accepted > 0 {
        let t = Instant::now();
        step("retraining with the analyst verdicts");
        let report = train(bus, config).await?;
        seconds.insert("retraining".to_owned(), t.elapsed().as_secs_f64());
        step(format!(
            "training run {}: {:?} after {:.1} s: {}",
            report.run_id, report.outcome, report.duration_seconds, report.reason
        ));
        let now = store
            .models()
            .production(ModelType::Ensemble)
            .await?
            .context("no ensemble is in production after retraining")?;
        let now = ModelRef::of(&now.version);
        accuracy_after = evaluate(store, &now, &holdout).await?;
        if let Some(new) = report.ensemble().filter(|new| new.id != now.id) {
            let new = ModelRef {
                id: new.id.clone(),
                model_type: new.model_type.as_str().to_owned(),
                version: new.version,
            };
            accuracy_retrained = evaluate(store, &new, &holdout).await?;
        }
        production_after = Some(now);
        retrain = Some(report);
    }

    // Every version registered while the demo ran: its own runs, and any the feedback service
    // asked for when the verdicts crossed its retraining threshold.
    let mut registered: Vec<(chrono::DateTime<chrono::Utc>, ModelRef)> = store
        .models()
        .list(None)
        .await?
        .into_iter()
        .filter(|record| record.created_at >= demo_started)
        .map(|record| (record.created_at, ModelRef::of(&record.version)))
        .collect();
    registered.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.version.cmp(&b.1.version)));
    let registered: Vec<ModelRef> = registered.into_iter().map(|(_, model)| model).collect();
    let own: Vec<&str> = std::iter::once(&first)
        .chain(retrain.as_ref())
        .filter_map(|run| run.ensemble().map(|m| m.id.as_str()))
        .collect();
    let others = other_runs(store, &registered, &own).await?;
    seconds.insert("total".to_owned(), clock.elapsed().as_secs_f64());
    Ok(Report {
        data: DataReport {
            dir: files.dir.display().to_string(),
            training_file: file_name(&files.training),
            replay_file: file_name(&files.replay),
            training_rows: rows.training.len(),
            replayed_rows: rows.replay.len(),
            holdout_rows: holdout.len(),
            already_known_rows: rows.already_known,
            malformed_rows: rows.malformed,
        },
        services: String::new(),
        nats_prefix: config.nats.prefix.clone(),
        database: vigil_config::redact_url_password(&config.database.url),
        events: EventsReport {
            published: replayed.published,
            duplicates: replayed.duplicates,
            detected: replayed.detected,
            workflows: outcomes.workflows,
            succeeded: outcomes.succeeded,
            failed: outcomes.failed,
            seconds: replayed.seconds,
            per_second: if replayed.seconds > 0.0 {
                outcomes.workflows as f64 / replayed.seconds
            } else {
                0.0
            },
        },
        verdicts: outcomes.verdicts.clone(),
        alerts: outcomes.alerts.clone(),
        remediations: outcomes.remediations.clone(),
        incidents: outcomes.incidents.clone(),
        models: ModelsReport {
            first_run: RunSummary::of(&first),
            production_before,
            predictor_serving: serving.is_ok(),
            retrain: retrain.as_ref().map(RunSummary::of),
            production_after,
        },
        accuracy: AccuracyReport {
            holdout_rows: holdout.len(),
            before: accuracy_before,
            after: accuracy_after,
            retrained: accuracy_retrained,
        },
        feedback,
        latency_ms: outcomes.latency(),
        created: Created {
            training_examples: imported.inserted,
            workflows: outcomes.workflows,
            alerts: outcomes.alerts.total,
            remediations: outcomes.remediations.total,
            incidents_opened: outcomes.incidents.opened,
            models_registered: registered,
            other_runs: others,
        },
        seconds,
    })
}

/// Asks the trainer for a run; a run that did not register a model is an error.
async fn train(bus: &Bus, config: &Config) -> anyhow::Result<RunReport> {
    let request = RunRequest {
        requested_by: ACTOR.to_owned(),
        ..RunRequest::default()
    };
    let report = request_run(
        bus.client(),
        &config.nats.prefix,
        &request,
        TRAINING_PATIENCE,
    )
    .await?;
    match report.outcome {
        RunOutcome::Promoted | RunOutcome::NotPromoted => Ok(report),
        outcome => bail!("the training run ended {outcome:?}: {}", report.reason),
    }
}

/// Waits until the predictor at `url` serves the model `id` (it loads a promoted model when the
/// promotion event reaches it).
async fn wait_for_predictor(url: &str, id: &str) -> Result<(), String> {
    use vigil_proto::v1::predictor_client::PredictorClient;
    let deadline = Instant::now() + PREDICTOR_PATIENCE;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("invalid predictor address {url:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2));
        match endpoint.connect().await {
            Ok(channel) => match PredictorClient::new(channel)
                .get_model(v1::GetModelRequest {})
                .await
            {
                Ok(answer) => {
                    let serving = answer.into_inner().model.map(|m| m.id).unwrap_or_default();
                    if serving == id {
                        return Ok(());
                    }
                    last = format!("it serves {serving:?}");
                }
                Err(status) => last = status.message().to_owned(),
            },
            Err(error) => last = format!("cannot reach {url}: {error}"),
        }
        // The predictor has no change notification for clients; ask again shortly.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("after {} s, {last}", PREDICTOR_PATIENCE.as_secs()))
}

/// Why each ensemble in `registered` that the demo's own runs (`own`) did not make was trained:
/// the registry history's reason, e.g. the feedback service's request after enough verdicts.
async fn other_runs(
    store: &Store,
    registered: &[ModelRef],
    own: &[&str],
) -> anyhow::Result<Vec<String>> {
    let others: Vec<&ModelRef> = registered
        .iter()
        .filter(|m| m.model_type == ModelType::Ensemble.as_str() && !own.contains(&m.id.as_str()))
        .collect();
    if others.is_empty() {
        return Ok(Vec::new());
    }
    let history = store.models().history(Some(ModelType::Ensemble)).await?;
    Ok(others
        .into_iter()
        .map(|model| {
            let reason = history
                .iter()
                .find(|e| e.model_version_id == model.id && e.event == ModelEventKind::Registered)
                .map_or("no reason recorded", |e| e.reason.as_str());
            format!("ensemble v{}: {reason}", model.version)
        })
        .collect())
}

/// Scores the held-out rows with a registered ensemble.
async fn evaluate(
    store: &Store,
    model: &ModelRef,
    holdout: &Arc<Vec<LabeledExample>>,
) -> anyhow::Result<Option<Accuracy>> {
    if holdout.is_empty() {
        return Ok(None);
    }
    let bytes = store.models().load_artifact(&model.id).await?;
    let rows = holdout.clone();
    let report = tokio::task::spawn_blocking(move || {
        let artifact = ModelArtifact::from_bytes(&bytes)?;
        anyhow::Ok(ModelEvaluator::evaluate(&artifact.ensemble, &rows)?)
    })
    .await?
    .with_context(|| format!("cannot score the held-out rows with ensemble {}", model.id))?;
    let m = report.ensemble;
    Ok(Some(Accuracy {
        model: model.clone(),
        rows: report.rows,
        accuracy: m.accuracy,
        precision: m.precision,
        recall: m.recall,
        f1: m.f1,
        auc_roc: m.auc_roc,
    }))
}
