//! `vigil demo`: the whole loop in a few minutes on NSL-KDD, against the configured NATS and
//! PostgreSQL (the services are started in this process unless they already run): import a
//! labelled training set, train and promote the first model, replay records it never trained
//! on as threat signals, give analyst feedback with their true labels for a sample, retrain,
//! and report what happened.
//!
//! Every number in the report is observed: counts come from the domain events on
//! `vigil.events.>` and from the workflow rows, accuracy from scoring held-out rows with the
//! production model, latencies from the durations the workflow steps recorded.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use vigil_bus::{Bus, ConsumerKind, StreamKind};
use vigil_config::Config;
use vigil_domain::{ModelType, Severity, StepOutcome, WorkflowExecution, WorkflowStatus};
use vigil_ml::{LabeledExample, ModelArtifact, ModelEvaluator};
use vigil_proto::v1;
use vigil_runtime::{ConfigArgs, ServiceContext};
use vigil_store::Store;
use vigil_trainer::{RunOutcome, RunReport, RunRequest};

use super::models::request_run;
use super::replay::publish_signals;
use super::up::{check_dependencies, spawn_services};

/// Where NSL-KDD is published.
pub const NSL_KDD_URL: &str = "https://www.unb.ca/cic/datasets/nsl.html";
/// The full training file.
pub const TRAIN_FULL: &str = "KDDTrain+.txt";
/// The 20 % subset of [`TRAIN_FULL`].
pub const TRAIN_20_PERCENT: &str = "KDDTrain+_20Percent.txt";
/// The official test file (records of attack families the training files lack).
pub const TEST: &str = "KDDTest+.txt";

/// The file the first model is trained on: the first of these that exists.
const TRAINING_PREFERENCE: [&str; 3] = [TRAIN_20_PERCENT, TRAIN_FULL, TEST];
/// The file records are replayed and held out from: the first of these that exists. When it is
/// the training file too, the demo replays rows after the ones it trained on.
const REPLAY_PREFERENCE: [&str; 3] = [TEST, TRAIN_FULL, TRAIN_20_PERCENT];

/// The subject kind replayed signals are published under (`vigil.ingest.nsl-kdd`).
const INGEST_KIND: &str = "nsl-kdd";
/// Who the demo's registry changes and verdicts are recorded as.
const ACTOR: &str = "vigil-demo";
/// How long the demo waits for a training run's report.
const TRAINING_PATIENCE: Duration = Duration::from_secs(30 * 60);
/// How long the replay may go without any progress before the demo gives up.
const STALL_PATIENCE: Duration = Duration::from_secs(120);
/// How long a feedback request waits for its answer.
const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the demo waits for the predictor to serve a newly promoted model.
const PREDICTOR_PATIENCE: Duration = Duration::from_secs(60);
/// Rows parsed and checked against the database at a time while choosing what to replay.
const CANDIDATE_CHUNK: usize = 5_000;

/// Arguments of `vigil demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory holding the NSL-KDD files; else `VIGIL_DATA_DIR`, else
    /// `../shared/data/nsl-kdd` from the current directory or from the workspace root.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Records to replay as threat signals (records vigil has not seen before).
    #[arg(long, default_value_t = 5_000)]
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

// ---------------------------------------------------------------------------------------------
// Data

/// The NSL-KDD files the demo uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFiles {
    pub dir: PathBuf,
    /// Where the training rows come from.
    pub training: PathBuf,
    /// Where replayed and held-out rows come from.
    pub replay: PathBuf,
}

impl DataFiles {
    /// Finds the data: `flag` when given, else `VIGIL_DATA_DIR` when set, else
    /// `../shared/data/nsl-kdd` from the current directory, then beside the workspace root.
    /// One error, saying where NSL-KDD is published and which files are expected, when none
    /// of those directories holds an NSL-KDD file.
    pub fn locate(flag: Option<&Path>) -> anyhow::Result<Self> {
        let env = std::env::var_os("VIGIL_DATA_DIR").filter(|dir| !dir.is_empty());
        Self::locate_in(&candidate_dirs(flag, env.map(PathBuf::from)))
    }

    fn locate_in(candidates: &[(PathBuf, &'static str)]) -> anyhow::Result<Self> {
        for (dir, _) in candidates {
            let present = |name: &&str| dir.join(name).is_file();
            let training = TRAINING_PREFERENCE.into_iter().find(present);
            let replay = REPLAY_PREFERENCE.into_iter().find(present);
            if let (Some(training), Some(replay)) = (training, replay) {
                return Ok(Self {
                    dir: dir.clone(),
                    training: dir.join(training),
                    replay: dir.join(replay),
                });
            }
        }
        let looked: Vec<String> = candidates
            .iter()
            .map(|(dir, why)| format!("{} ({why})", dir.display()))
            .collect();
        bail!(
            "no NSL-KDD data in {}.\nvigil demo replays the NSL-KDD intrusion-detection data set, \
             published by the Canadian Institute for Cybersecurity at {NSL_KDD_URL}: put \
             {TRAIN_FULL} and {TRAIN_20_PERCENT} (and {TEST}, when you have it) in one directory \
             and pass it with --data DIR or VIGIL_DATA_DIR=DIR.",
            looked.join(" or ")
        )
    }
}

/// The directories to look in, each with where it came from.
fn candidate_dirs(flag: Option<&Path>, env: Option<PathBuf>) -> Vec<(PathBuf, &'static str)> {
    if let Some(dir) = flag {
        return vec![(dir.to_path_buf(), "from --data")];
    }
    if let Some(dir) = env {
        return vec![(dir, "from VIGIL_DATA_DIR")];
    }
    let relative = Path::new("..").join("shared").join("data").join("nsl-kdd");
    let mut dirs = vec![(relative, "from the current directory")];
    // crates/cli -> the workspace root -> its sibling shared/ (`make demo`, `cargo run`).
    if let Some(beside) = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(3) {
        dirs.push((
            beside.join("shared").join("data").join("nsl-kdd"),
            "beside the workspace root",
        ));
    }
    dirs
}

/// The rows the demo works with, chosen so that none is used twice: training rows are
/// imported; replayed and held-out rows are ones vigil has never seen (no workflow, no
/// training example with their id).
#[derive(Debug, Default)]
struct DemoRows {
    training: Vec<LabeledExample>,
    replay: Vec<LabeledExample>,
    holdout: Vec<LabeledExample>,
    /// Rows skipped because vigil had seen them (an earlier demo, an import).
    already_known: usize,
    malformed: usize,
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    std::io::BufReader::new(file)
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Parses `lines`, counting the malformed ones.
fn parse_rows(lines: &[String], malformed: &mut usize) -> Vec<LabeledExample> {
    let mut rows = Vec::with_capacity(lines.len());
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        match vigil_ml::parse_nsl_kdd_line(line) {
            Ok(example) => rows.push(example),
            Err(_) => *malformed += 1,
        }
    }
    rows
}

async fn choose_rows(
    store: &Store,
    files: &DataFiles,
    args: &DemoArgs,
) -> anyhow::Result<DemoRows> {
    let same_file = files.training == files.replay;
    let (training_path, replay_path) = (files.training.clone(), files.replay.clone());
    let train_rows = args.train_rows;
    // Parsing is CPU work: off the async threads, which also run the services.
    let (mut rows, training_ids, replay_lines) = tokio::task::spawn_blocking(move || {
        let mut rows = DemoRows::default();
        let training_lines = read_lines(&training_path)?;
        let mut all_training = parse_rows(&training_lines, &mut rows.malformed);
        let mut seen = HashSet::new();
        all_training.retain(|e| seen.insert(e.signal.id.clone()));
        let replay_lines = if same_file {
            // Train on the first rows, replay from the ones after them.
            let taken = all_training.len().min(train_rows);
            all_training.truncate(taken);
            seen = all_training.iter().map(|e| e.signal.id.clone()).collect();
            training_lines
        } else {
            all_training.truncate(train_rows);
            read_lines(&replay_path)?
        };
        rows.training = all_training;
        anyhow::Ok((rows, seen, replay_lines))
    })
    .await??;

    let wanted = args.rows + args.holdout;
    let mut chosen = training_ids;
    for chunk in replay_lines.chunks(CANDIDATE_CHUNK) {
        if rows.replay.len() + rows.holdout.len() >= wanted {
            break;
        }
        let chunk = chunk.to_vec();
        let (parsed, malformed) = tokio::task::spawn_blocking(move || {
            let mut malformed = 0;
            (parse_rows(&chunk, &mut malformed), malformed)
        })
        .await?;
        if !same_file {
            rows.malformed += malformed;
        }
        let fresh: Vec<LabeledExample> = parsed
            .into_iter()
            .filter(|e| chosen.insert(e.signal.id.clone()))
            .collect();
        let ids: Vec<&str> = fresh.iter().map(|e| e.signal.id.as_str()).collect();
        let known = known_ids(store, &ids).await?;
        for example in fresh {
            if known.contains(&example.signal.id) {
                rows.already_known += 1;
            } else if rows.replay.len() < args.rows {
                rows.replay.push(example);
            } else if rows.holdout.len() < args.holdout {
                rows.holdout.push(example);
            }
        }
    }
    Ok(rows)
}

/// The ids among `ids` that vigil has seen: a workflow processed them, or a training example
/// (imported row, analyst verdict) carries them. Read-only; the demo's own bookkeeping.
async fn known_ids(store: &Store, ids: &[&str]) -> anyhow::Result<HashSet<String>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let known: Vec<String> = sqlx::query_scalar(
        "SELECT c.ref FROM unnest($1::text[]) AS c(ref) \
         WHERE EXISTS (SELECT 1 FROM workflows w WHERE w.event_id = c.ref) \
            OR EXISTS (SELECT 1 FROM training_examples t WHERE t.source_ref = c.ref)",
    )
    .persistent(false)
    .bind(ids)
    .fetch_all(store.pool())
    .await
    .context("cannot check which records vigil has already seen")?;
    Ok(known.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// The run

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
        step("starting broker, predictor, trainer and orchestrator in this process");
        let ctx = ServiceContext::new(config.clone());
        let mut started = spawn_services(&ctx, &token).await?;
        // The predictor is ready only once a model is promoted: that comes later.
        if let Err(error) = started
            .wait_ready(&ctx, &["predictor"], Duration::from_secs(120))
            .await
        {
            token.cancel();
            let _ = started.supervise(&token).await;
            return Err(error);
        }
        predictor_url = started.predictor_url();
        services = Some(started);
    }
    let started_here = services.is_some();

    let steps = run_steps(config, &store, &bus, files, args, &predictor_url);
    let outcome = match services.as_mut() {
        Some(running) => tokio::select! {
            outcome = steps => outcome,
            stopped = running.next_stopped() => Err(match stopped {
                Some(Err(error)) => error.context("a service failed during the demo"),
                Some(Ok(name)) => anyhow::anyhow!("the {name} stopped during the demo"),
                None => anyhow::anyhow!("the services stopped during the demo"),
            }),
        },
        None => steps.await,
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

    let registered: Vec<ModelRef> = std::iter::once(&first)
        .chain(retrain.as_ref())
        .flat_map(|r| &r.registered)
        .map(|m| ModelRef {
            id: m.id.clone(),
            model_type: m.model_type.as_str().to_owned(),
            version: m.version,
        })
        .collect();
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
        },
        seconds,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
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

// ---------------------------------------------------------------------------------------------
// Replay with a live line

/// What the replay observed.
#[derive(Debug, Clone, Copy, Default)]
struct Replayed {
    published: usize,
    duplicates: usize,
    /// THREAT_DETECTED events seen for the replayed records.
    detected: usize,
    /// From the first publish until every workflow was done.
    seconds: f64,
}

/// Domain events seen for the replayed records, by type.
#[derive(Debug, Default)]
struct LiveCounts {
    seen: HashSet<String>,
    detected: usize,
    workflows: usize,
    alerts: usize,
    remediations: usize,
    incidents: usize,
}

impl LiveCounts {
    fn observe(&mut self, message: &async_nats::Message, ids: &HashSet<&str>) {
        let Ok(event) = v1::SecurityEvent::decode(message.payload.clone()) else {
            return;
        };
        if !ids.contains(event.correlation_id.as_str()) || !self.seen.insert(event.id) {
            return;
        }
        let kind = message.subject.rsplit('.').next().unwrap_or_default();
        match kind {
            "threat_detected" => self.detected += 1,
            "workflow_completed" => self.workflows += 1,
            "alert_routed" => self.alerts += 1,
            "remediation_executed" => self.remediations += 1,
            "incident_created" => self.incidents += 1,
            _ => {}
        }
    }
}

async fn replay(bus: &Bus, store: &Store, rows: &[LabeledExample]) -> anyhow::Result<Replayed> {
    let ids: HashSet<&str> = rows.iter().map(|e| e.signal.id.as_str()).collect();
    let id_list: Vec<&str> = ids.iter().copied().collect();
    let expected = ids.len();
    let events_subject = bus.topology().stream_subjects(StreamKind::Events);
    let mut events = bus
        .client()
        .subscribe(events_subject.clone())
        .await
        .with_context(|| format!("cannot subscribe to {events_subject}"))?;
    // The subscription is known to the server before the first signal goes out.
    bus.client()
        .flush()
        .await
        .context("cannot confirm the events subscription")?;

    let bar = ProgressBar::new(expected as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} workflows  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let published = Arc::new(AtomicUsize::new(0));
    let signals: Vec<v1::ThreatSignal> = rows
        .iter()
        .map(|e| v1::ThreatSignal::from(e.signal.clone()))
        .collect();
    let started = Instant::now();
    let mut publishing = {
        let bus = bus.clone();
        let published = published.clone();
        tokio::spawn(async move {
            publish_signals(&bus, INGEST_KIND, &signals, 0, move |_| {
                published.fetch_add(1, Ordering::Relaxed);
            })
            .await
        })
    };
    let mut tally = None;
    let mut live = LiveCounts::default();
    let mut recorded = 0usize;
    let mut reconcile = tokio::time::interval(Duration::from_secs(1));
    let mut last_change = Instant::now();
    let mut last_state = (0, 0, 0);
    loop {
        let done = live.workflows.max(recorded);
        if tally.is_some() && done >= expected {
            break;
        }
        tokio::select! {
            message = events.next() => {
                let Some(message) = message else {
                    bail!("the subscription to {events_subject} ended");
                };
                live.observe(&message, &ids);
            }
            joined = &mut publishing, if tally.is_none() => {
                let joined = joined.context("the publishing task failed")??;
                tally = Some(joined);
            }
            _ = reconcile.tick() => {
                // The database is the record: it also counts workflows whose events this
                // subscription missed.
                recorded = count_workflows(store, &id_list).await?;
            }
        }
        let sent = published.load(Ordering::Relaxed);
        let state = (sent, live.workflows.max(recorded), live.detected);
        if state != last_state {
            last_state = state;
            last_change = Instant::now();
        } else if last_change.elapsed() > STALL_PATIENCE {
            bar.abandon();
            bail!(
                "no progress for {} s: {} of {expected} signals published, {} detected, {} \
                 workflows done. Is the orchestrator running for NATS prefix {:?}?",
                STALL_PATIENCE.as_secs(),
                sent,
                live.detected,
                state.1,
                bus.topology().prefix()
            );
        }
        bar.set_position(state.1.min(expected) as u64);
        bar.set_message(format!(
            "published {sent}/{expected} · workflows {} · alerts {} · remediations {} · incidents {}",
            state.1, live.alerts, live.remediations, live.incidents
        ));
    }
    bar.finish_and_clear();
    let tally = tally.context("publishing did not finish")?;
    Ok(Replayed {
        published: tally.published,
        duplicates: tally.duplicates,
        detected: live.detected,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn count_workflows(store: &Store, ids: &[&str]) -> anyhow::Result<usize> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM workflows WHERE event_id = ANY($1)")
        .persistent(false)
        .bind(ids)
        .fetch_one(store.pool())
        .await
        .context("cannot count the demo's workflows")?;
    Ok(usize::try_from(count).unwrap_or_default())
}

async fn workflows_of(store: &Store, ids: &[&str]) -> anyhow::Result<Vec<WorkflowExecution>> {
    let mut workflows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(2_000) {
        workflows.extend(store.workflows().get_by_event_ids(chunk).await?);
    }
    Ok(workflows)
}

// ---------------------------------------------------------------------------------------------
// What the workflows did

/// vigil's verdict is "threat" at this level and above (the label its assessments stood for).
const THREAT_LEVEL: Severity = Severity::High;

#[derive(Debug, Default)]
struct Outcomes {
    workflows: usize,
    succeeded: usize,
    failed: usize,
    verdicts: VerdictsReport,
    alerts: AlertsReport,
    remediations: RemediationsReport,
    incidents: IncidentsReport,
    durations: BTreeMap<String, Vec<f64>>,
}

impl Outcomes {
    fn of(workflows: &[WorkflowExecution], rows: &[LabeledExample]) -> Self {
        let truth: std::collections::HashMap<&str, bool> = rows
            .iter()
            .map(|e| (e.signal.id.as_str(), e.label))
            .collect();
        let mut out = Self {
            workflows: workflows.len(),
            ..Self::default()
        };
        let mut incident_ids = HashSet::new();
        for workflow in workflows {
            match workflow.status {
                WorkflowStatus::Success => out.succeeded += 1,
                WorkflowStatus::Failed => out.failed += 1,
                _ => {}
            }
            let results = &workflow.results;
            if let Ok(level) = serde_json::from_value::<Severity>(results["risk_level"].clone()) {
                *out.verdicts
                    .by_level
                    .entry(level.as_str().to_owned())
                    .or_default() += 1;
                if let Some(&label) = truth.get(workflow.event_id.as_str()) {
                    out.verdicts.compared += 1;
                    if (level >= THREAT_LEVEL) == label {
                        out.verdicts.matching_true_label += 1;
                    }
                }
            }
            if !results["prediction"].is_null() {
                out.verdicts.scored_by_model += 1;
            } else if let Some(predict) = workflow.steps.iter().find(|s| s.name == "predict") {
                let why = predict.detail.as_deref().unwrap_or("no reason recorded");
                *out.verdicts.not_scored.entry(reason_kind(why)).or_default() += 1;
            }
            out.alerts.observe(&results["alerts"]);
            out.remediations.observe(&results["remediation"]);
            if let Some(id) = results["incident"]["incident_id"].as_str() {
                out.incidents.events_attached += 1;
                if results["incident"]["created"].as_bool() == Some(true) {
                    out.incidents.opened += 1;
                }
                incident_ids.insert(id.to_owned());
            }
            for s in &workflow.steps {
                if s.outcome == StepOutcome::Succeeded {
                    out.durations
                        .entry(s.name.clone())
                        .or_default()
                        .push(s.duration_ms);
                }
            }
            if workflow.status == WorkflowStatus::Success {
                out.durations
                    .entry("workflow".to_owned())
                    .or_default()
                    .push(workflow.duration_seconds * 1_000.0);
            }
        }
        out.incidents.touched = incident_ids.len();
        out
    }

    fn latency(&self) -> BTreeMap<String, Percentiles> {
        self.durations
            .iter()
            .filter_map(|(stage, values)| Some((stage.clone(), Percentiles::of(values)?)))
            .collect()
    }
}

impl AlertsReport {
    fn observe(&mut self, alerts: &serde_json::Value) {
        if let Some(why) = alerts["skipped"].as_str() {
            *self.not_routed.entry(reason_kind(why)).or_default() += 1;
            return;
        }
        for alert in alerts["channels"].as_array().into_iter().flatten() {
            let channel = alert["channel"].as_str().unwrap_or("?").to_owned();
            let status = alert["status"].as_str().unwrap_or("?").to_owned();
            *self
                .by_channel
                .entry(channel)
                .or_default()
                .entry(status)
                .or_default() += 1;
            self.total += 1;
        }
    }
}

impl RemediationsReport {
    fn observe(&mut self, remediation: &serde_json::Value) {
        if let Some(why) = remediation["skipped"].as_str() {
            *self.not_taken.entry(reason_kind(why)).or_default() += 1;
        }
        for action in remediation["actions"].as_array().into_iter().flatten() {
            self.total += 1;
            let kind = action["kind"].as_str().unwrap_or("?").to_owned();
            let status = action["status"].as_str().unwrap_or("?").to_owned();
            if status == "simulated" {
                self.dry_run += 1;
            }
            *self.by_kind.entry(kind).or_default() += 1;
            *self.by_status.entry(status).or_default() += 1;
        }
    }
}

/// A step's reason with its measured numbers masked (`risk 6.62 is not above the remediation
/// threshold 7` -> `risk N is not above ...`), so that reasons of one kind count together;
/// whole numbers (thresholds, channel names) are kept.
fn reason_kind(reason: &str) -> String {
    reason
        .split(' ')
        .map(|word| {
            let bare = word.trim_end_matches([',', ';', ':', ')']);
            if bare.contains('.') && bare.parse::<f64>().is_ok() {
                word.replacen(bare, "N", 1)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Feedback

/// One analyst verdict the demo gives: the record's true label on the workflow that handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FeedbackItem {
    event_id: String,
    workflow_id: String,
    /// The data set's label: `true` for an attack.
    true_label: bool,
    /// vigil's verdict: risk level high or above.
    verdict: bool,
    /// The data set's class name of an attack (`neptune`, ...).
    attack_type: Option<String>,
}

/// Every k-th replayed record (in replay order) that has a workflow, `size` in all at most.
fn feedback_sample(
    rows: &[LabeledExample],
    workflows: &[WorkflowExecution],
    size: usize,
) -> Vec<FeedbackItem> {
    let by_event: std::collections::HashMap<&str, &WorkflowExecution> =
        workflows.iter().map(|w| (w.event_id.as_str(), w)).collect();
    let handled: Vec<(&LabeledExample, &WorkflowExecution)> = rows
        .iter()
        .filter_map(|e| Some((e, *by_event.get(e.signal.id.as_str())?)))
        .collect();
    if size == 0 || handled.is_empty() {
        return Vec::new();
    }
    let every = handled.len().div_ceil(size).max(1);
    handled
        .iter()
        .step_by(every)
        .take(size)
        .map(|(example, workflow)| FeedbackItem {
            event_id: example.signal.id.clone(),
            workflow_id: workflow.id.clone(),
            true_label: example.label,
            attack_type: example.class_name.clone(),
            verdict: serde_json::from_value::<Severity>(workflow.results["risk_level"].clone())
                .is_ok_and(|level| level >= THREAT_LEVEL),
        })
        .collect()
}

/// How one feedback request went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FeedbackAnswer {
    Accepted,
    Refused(String),
    /// Nobody answers on the subject.
    Unavailable(String),
}

/// Sends one verdict to the feedback service on `subject` and reads its answer.
///
/// The request is a `vigil.v1.FeedbackRecord` in proto3 JSON (Content-Type: application/json):
/// the verdict on vigil's handling (`CORRECT` when its verdict matched the true label,
/// `INCORRECT` otherwise), the true label, and the attack's name for an attack. An answer
/// carrying a `Nats-Service-Error` header, a NATS error status or a JSON body with an `error`
/// field is a refusal; any other answer is an acceptance.
// TODO(issue 14): check this against the feedback service's request and reply once it lands
// (docs/feedback.md).
async fn submit_feedback(
    client: &async_nats::Client,
    subject: &str,
    item: &FeedbackItem,
) -> FeedbackAnswer {
    let mut record = serde_json::json!({
        "workflowExecutionId": item.workflow_id,
        "feedbackType": if item.verdict == item.true_label {
            "FEEDBACK_TYPE_CORRECT"
        } else {
            "FEEDBACK_TYPE_INCORRECT"
        },
        "confidence": 1.0,
        "correction": "the data set's label for this record",
        "analyst": ACTOR,
        "label": if item.true_label { "TRUE_LABEL_ATTACK" } else { "TRUE_LABEL_BENIGN" },
    });
    if let Some(attack) = item.attack_type.as_deref().filter(|_| item.true_label) {
        record["attackType"] = serde_json::Value::from(attack);
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        vigil_bus::headers::CONTENT_TYPE,
        vigil_bus::headers::APPLICATION_JSON,
    );
    let request = async_nats::Request::new()
        .payload(record.to_string().into())
        .headers(headers)
        .timeout(Some(FEEDBACK_TIMEOUT));
    let reply = match client.send_request(subject.to_owned(), request).await {
        Ok(reply) => reply,
        Err(error) => {
            return match error.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    FeedbackAnswer::Unavailable(format!("no feedback service answers on {subject}"))
                }
                async_nats::RequestErrorKind::TimedOut => FeedbackAnswer::Unavailable(format!(
                    "no answer on {subject} within {} s",
                    FEEDBACK_TIMEOUT.as_secs()
                )),
                _ => FeedbackAnswer::Refused(error.to_string()),
            };
        }
    };
    if let Some(error) =
        vigil_bus::headers::header_value(reply.headers.as_ref(), "Nats-Service-Error")
    {
        return FeedbackAnswer::Refused(error.to_owned());
    }
    if let Some(status) = reply.status.filter(|s| !s.is_success()) {
        return FeedbackAnswer::Refused(format!(
            "status {status}: {}",
            reply.description.unwrap_or_default()
        ));
    }
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&reply.payload)
        && let Some(error) = body.get("error").filter(|e| !e.is_null())
    {
        return FeedbackAnswer::Refused(error.to_string());
    }
    FeedbackAnswer::Accepted
}

/// Gives the sample's verdicts; the first request tells whether a feedback service answers.
async fn feedback_round(
    client: &async_nats::Client,
    subject: &str,
    sample: &[FeedbackItem],
) -> FeedbackReport {
    let mut report = FeedbackReport {
        subject: subject.to_owned(),
        sample: sample.len(),
        status: "submitted".to_owned(),
        ..FeedbackReport::default()
    };
    let Some((first, rest)) = sample.split_first() else {
        report.status = "not available".to_owned();
        report.detail = Some("no replayed record has a workflow to judge".to_owned());
        return report;
    };
    let mut answers = vec![submit_feedback(client, subject, first).await];
    if let Some(FeedbackAnswer::Unavailable(why)) = answers.first() {
        report.status = "not available".to_owned();
        report.detail = Some(format!("not available ({why})"));
        return report;
    }
    answers.extend(
        futures::stream::iter(rest)
            .map(|item| submit_feedback(client, subject, item))
            .buffered(16)
            .collect::<Vec<_>>()
            .await,
    );
    for (item, answer) in sample.iter().zip(&answers) {
        match answer {
            FeedbackAnswer::Accepted => {
                report.accepted += 1;
                if item.verdict != item.true_label {
                    report.corrections += 1;
                }
            }
            FeedbackAnswer::Refused(why) | FeedbackAnswer::Unavailable(why) => {
                report.refused += 1;
                report.detail.get_or_insert_with(|| why.clone());
            }
        }
    }
    report.submitted = answers.len();
    report
}

// ---------------------------------------------------------------------------------------------
// The report

/// What `vigil demo` did, as printed (or as JSON with `--json`).
#[derive(Debug, Serialize)]
pub struct Report {
    pub data: DataReport,
    /// Whether the demo started the services or used running ones.
    pub services: String,
    pub nats_prefix: String,
    /// The database URL, password redacted.
    pub database: String,
    pub events: EventsReport,
    pub verdicts: VerdictsReport,
    pub alerts: AlertsReport,
    pub remediations: RemediationsReport,
    pub incidents: IncidentsReport,
    pub models: ModelsReport,
    pub accuracy: AccuracyReport,
    pub feedback: FeedbackReport,
    /// Per workflow step (and the whole workflow), over the steps that ran.
    pub latency_ms: BTreeMap<String, Percentiles>,
    /// What the demo left in the database.
    pub created: Created,
    /// Wall-clock seconds per phase, and in total.
    pub seconds: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
pub struct DataReport {
    pub dir: String,
    pub training_file: String,
    pub replay_file: String,
    pub training_rows: usize,
    pub replayed_rows: usize,
    pub holdout_rows: usize,
    /// Rows of the replay file skipped because vigil had already seen them.
    pub already_known_rows: usize,
    pub malformed_rows: usize,
}

#[derive(Debug, Serialize)]
pub struct EventsReport {
    /// Signals the ingest stream stored.
    pub published: usize,
    /// Signals it already held (same id within its dedup window).
    pub duplicates: usize,
    /// THREAT_DETECTED events the broker published for them.
    pub detected: usize,
    /// Workflow rows recorded for them.
    pub workflows: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// From the first publish until the last workflow was done.
    pub seconds: f64,
    pub per_second: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerdictsReport {
    /// Workflows per final risk level.
    pub by_level: BTreeMap<String, usize>,
    /// Workflows whose assessment included the ML prediction.
    pub scored_by_model: usize,
    /// Workflows scored by rules alone, per reason.
    pub not_scored: BTreeMap<String, usize>,
    /// Workflows whose verdict (high or critical = threat) matched the record's true label.
    pub matching_true_label: usize,
    pub compared: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertsReport {
    pub total: usize,
    /// Alerts per channel, per delivery status.
    pub by_channel: BTreeMap<String, BTreeMap<String, usize>>,
    /// Workflows that routed no alert, per reason.
    pub not_routed: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RemediationsReport {
    pub total: usize,
    /// Recorded by the dry-run executor (nothing applied).
    pub dry_run: usize,
    pub by_kind: BTreeMap<String, usize>,
    pub by_status: BTreeMap<String, usize>,
    /// Workflows that took no action, per reason.
    pub not_taken: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IncidentsReport {
    /// Incidents the replayed records opened.
    pub opened: usize,
    /// Distinct incidents they were attached to (opened or already open).
    pub touched: usize,
    pub events_attached: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRef {
    pub id: String,
    pub model_type: String,
    pub version: i32,
}

impl ModelRef {
    fn of(version: &vigil_domain::ModelVersion) -> Self {
        Self {
            id: version.id.clone(),
            model_type: version.model_type.as_str().to_owned(),
            version: version.version,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub outcome: RunOutcome,
    pub reason: String,
    pub examples: usize,
    pub seconds: f64,
    /// F1 of the new ensemble on the run's own held-out split.
    pub f1: Option<f64>,
    pub ensemble: Option<ModelRef>,
}

impl RunSummary {
    fn of(report: &RunReport) -> Self {
        Self {
            run_id: report.run_id.clone(),
            outcome: report.outcome,
            reason: report.reason.clone(),
            examples: report.examples.total,
            seconds: report.duration_seconds,
            f1: report
                .metrics
                .as_ref()
                .and_then(|m| m.get("f1"))
                .and_then(serde_json::Value::as_f64),
            ensemble: report.ensemble().map(|m| ModelRef {
                id: m.id.clone(),
                model_type: m.model_type.as_str().to_owned(),
                version: m.version,
            }),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ModelsReport {
    pub first_run: RunSummary,
    /// The production ensemble after the first run.
    pub production_before: ModelRef,
    /// Whether the predictor served it before the replay began.
    pub predictor_serving: bool,
    /// The run after the feedback round (none without feedback).
    pub retrain: Option<RunSummary>,
    pub production_after: Option<ModelRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    pub model: ModelRef,
    pub rows: usize,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub auc_roc: f64,
}

#[derive(Debug, Serialize)]
pub struct AccuracyReport {
    /// Labelled rows never replayed, imported nor fed back.
    pub holdout_rows: usize,
    /// The production ensemble before the feedback round.
    pub before: Option<Accuracy>,
    /// The production ensemble after it (none without feedback).
    pub after: Option<Accuracy>,
    /// The retrained ensemble, when it did not reach production.
    pub retrained: Option<Accuracy>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedbackReport {
    /// `submitted`, or `not available` when no feedback service answers.
    pub status: String,
    pub subject: String,
    pub sample: usize,
    pub submitted: usize,
    pub accepted: usize,
    pub refused: usize,
    /// Accepted verdicts that said vigil was wrong.
    pub corrections: usize,
    /// Why feedback was not available, or the first refusal.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` for no values.
    fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        Some(Self {
            count: sorted.len(),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted[sorted.len() - 1],
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Created {
    /// Training examples imported that were not there before.
    pub training_examples: u64,
    pub workflows: usize,
    pub alerts: usize,
    /// Dry-run or applied remediation actions recorded.
    pub remediations: usize,
    pub incidents_opened: usize,
    pub models_registered: Vec<ModelRef>,
}

/// `12345` as `12,345`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 incident`, `2 incidents`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", grouped(n))
    }
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

fn counts(map: &BTreeMap<String, usize>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {}", grouped(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// The report as a person reads it.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let total = self.seconds.get("total").copied().unwrap_or_default();
        let d = &self.data;
        let e = &self.events;
        let _ = writeln!(s, "\nvigil demo: done in {total:.1} s\n");
        let _ = writeln!(
            s,
            "data         {}: trained on {} rows of {}; replayed {} records of {} it never \
             trained on; {} more held out",
            d.dir,
            grouped(d.training_rows),
            d.training_file,
            grouped(d.replayed_rows),
            d.replay_file,
            grouped(d.holdout_rows)
        );
        if d.already_known_rows > 0 {
            let _ = writeln!(
                s,
                "             ({} records skipped: vigil had seen them in an earlier run)",
                grouped(d.already_known_rows)
            );
        }
        let _ = writeln!(
            s,
            "services     {} (NATS prefix {:?}, database {})",
            self.services, self.nats_prefix, self.database
        );
        let _ = writeln!(
            s,
            "\nevents       {} published, {} detected by the broker, {} workflows ({} succeeded, \
             {} failed) in {:.1} s ({:.0}/s)",
            grouped(e.published + e.duplicates),
            grouped(e.detected),
            grouped(e.workflows),
            grouped(e.succeeded),
            grouped(e.failed),
            e.seconds,
            e.per_second
        );
        let v = &self.verdicts;
        let _ = writeln!(
            s,
            "verdicts     {}; {} scored by the model",
            counts(&v.by_level),
            grouped(v.scored_by_model)
        );
        for (why, n) in &v.not_scored {
            let _ = writeln!(
                s,
                "             {} scored by rules alone: {why}",
                grouped(*n)
            );
        }
        let _ = writeln!(
            s,
            "             high or critical = threat matched the true label for {} of {} ({})",
            grouped(v.matching_true_label),
            grouped(v.compared),
            percent(v.matching_true_label, v.compared)
        );
        let a = &self.alerts;
        if a.by_channel.is_empty() {
            let _ = writeln!(s, "alerts       none routed");
        } else {
            let channels: Vec<String> = a
                .by_channel
                .iter()
                .map(|(channel, statuses)| format!("{channel}: {}", counts(statuses)))
                .collect();
            let _ = writeln!(
                s,
                "alerts       {} ({})",
                grouped(a.total),
                channels.join("; ")
            );
        }
        for (why, n) in &a.not_routed {
            let _ = writeln!(
                s,
                "             {} workflows routed none: {why}",
                grouped(*n)
            );
        }
        let r = &self.remediations;
        let _ = writeln!(
            s,
            "remediation  {} actions, {} of them dry-run{}",
            grouped(r.total),
            grouped(r.dry_run),
            if r.by_kind.is_empty() {
                String::new()
            } else {
                format!(" ({})", counts(&r.by_kind))
            }
        );
        for (why, n) in top(&r.not_taken, 4) {
            let _ = writeln!(s, "             {} workflows took none: {why}", grouped(n));
        }
        let i = &self.incidents;
        let _ = writeln!(
            s,
            "incidents    {} opened; {} events attached to {}",
            grouped(i.opened),
            grouped(i.events_attached),
            plural(i.touched, "incident")
        );

        let m = &self.models;
        let _ = writeln!(
            s,
            "\nmodel        first run: {:?} on {} examples in {:.1} s: {}",
            m.first_run.outcome,
            grouped(m.first_run.examples),
            m.first_run.seconds,
            m.first_run.reason
        );
        let _ = writeln!(
            s,
            "             production: ensemble v{} ({}){}",
            m.production_before.version,
            m.production_before.id,
            if m.predictor_serving {
                ", served by the predictor during the replay"
            } else {
                ", NOT served by the predictor during the replay"
            }
        );
        if let Some(run) = &m.retrain {
            let _ = writeln!(
                s,
                "             retrained: {:?} on {} examples in {:.1} s: {}",
                run.outcome,
                grouped(run.examples),
                run.seconds,
                run.reason
            );
        }
        let f = &self.feedback;
        if f.accepted == 0 {
            let _ = writeln!(
                s,
                "feedback     {}",
                f.detail.as_deref().unwrap_or("not available")
            );
        } else {
            let _ = writeln!(
                s,
                "feedback     {} true labels given as analyst verdicts on {} ({} said vigil was \
                 wrong), {} refused",
                grouped(f.accepted),
                f.subject,
                grouped(f.corrections),
                grouped(f.refused)
            );
        }
        let acc = &self.accuracy;
        let _ = writeln!(
            s,
            "accuracy     on {} held-out rows the demo never trained on nor fed back:",
            grouped(acc.holdout_rows)
        );
        let line = |label: &str, a: &Option<Accuracy>| match a {
            Some(a) => format!(
                "             {label:<17} ensemble v{:<3} accuracy {:.4}  precision {:.4}  \
                 recall {:.4}  f1 {:.4}  auc {:.4}",
                a.model.version, a.accuracy, a.precision, a.recall, a.f1, a.auc_roc
            ),
            None => format!("             {label:<17} -"),
        };
        let _ = writeln!(s, "{}", line("before feedback", &acc.before));
        if f.accepted == 0 {
            let _ = writeln!(
                s,
                "             after feedback    - (no feedback round, no retraining)"
            );
        } else {
            let _ = writeln!(s, "{}", line("after feedback", &acc.after));
            if acc.retrained.is_some() {
                let _ = writeln!(s, "{}", line("retrained (staged)", &acc.retrained));
            }
        }

        let _ = writeln!(
            s,
            "\nlatency ms   {:<14} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "stage", "n", "p50", "p90", "p99", "max"
        );
        for (stage, p) in &self.latency_ms {
            let _ = writeln!(
                s,
                "             {:<14} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                stage, p.count, p.p50, p.p90, p.p99, p.max
            );
        }

        let c = &self.created;
        let models: Vec<String> = c
            .models_registered
            .iter()
            .map(|m| format!("{} v{}", m.model_type, m.version))
            .collect();
        let _ = writeln!(
            s,
            "\ncreated      {} training examples, {} workflows, {} alerts, {} remediation records, \
             {} opened",
            grouped(c.training_examples as usize),
            grouped(c.workflows),
            grouped(c.alerts),
            grouped(c.remediations),
            plural(c.incidents_opened, "incident")
        );
        let _ = writeln!(
            s,
            "             models registered: {}",
            if models.is_empty() {
                "none".to_owned()
            } else {
                models.join(", ")
            }
        );
        let _ = writeln!(
            s,
            "             (see `vigil models list`, `vigil remediation list`)"
        );
        s
    }
}

/// The `n` largest entries.
fn top(map: &BTreeMap<String, usize>, n: usize) -> Vec<(String, usize)> {
    let mut entries: Vec<(String, usize)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    entries.truncate(n);
    entries
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_environment_and_the_defaults() {
        let flag = Path::new("/from/flag");
        let dirs = candidate_dirs(Some(flag), Some(PathBuf::from("/from/env")));
        assert_eq!(dirs, vec![(PathBuf::from("/from/flag"), "from --data")]);
        let dirs = candidate_dirs(None, Some(PathBuf::from("/from/env")));
        assert_eq!(
            dirs,
            vec![(PathBuf::from("/from/env"), "from VIGIL_DATA_DIR")]
        );
        let dirs = candidate_dirs(None, None);
        assert_eq!(dirs[0].0, Path::new("../shared/data/nsl-kdd"));
        assert!(dirs.len() == 2 && dirs[1].0.ends_with("shared/data/nsl-kdd"));
    }

    #[test]
    fn missing_data_names_the_source_and_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let error = DataFiles::locate_in(&[(dir.path().to_path_buf(), "from --data")])
            .unwrap_err()
            .to_string();
        for expected in [NSL_KDD_URL, TRAIN_FULL, TRAIN_20_PERCENT, TEST, "--data"] {
            assert!(error.contains(expected), "{expected} missing from: {error}");
        }
    }

    #[test]
    fn the_test_file_is_replayed_when_present_else_the_training_files_split() {
        let dir = tempfile::tempdir().unwrap();
        let candidates = [(dir.path().to_path_buf(), "from --data")];
        std::fs::write(dir.path().join(TRAIN_FULL), "").unwrap();
        let files = DataFiles::locate_in(&candidates).unwrap();
        assert_eq!(files.training, files.replay);
        std::fs::write(dir.path().join(TRAIN_20_PERCENT), "").unwrap();
        let files = DataFiles::locate_in(&candidates).unwrap();
        assert_eq!(
            (file_name(&files.training), file_name(&files.replay)),
            (TRAIN_20_PERCENT.to_owned(), TRAIN_FULL.to_owned())
        );
        std::fs::write(dir.path().join(TEST), "").unwrap();
        let files = DataFiles::locate_in(&candidates).unwrap();
        assert_eq!(file_name(&files.replay), TEST);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&values).unwrap();
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        let one = Percentiles::of(&[3.5]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (3.5, 3.5, 3.5));
        assert!(Percentiles::of(&[]).is_none());
    }

    #[test]
    fn reasons_of_one_kind_count_together() {
        assert_eq!(
            reason_kind("risk 6.62 is not above the remediation threshold 7"),
            "risk N is not above the remediation threshold 7"
        );
        assert_eq!(
            reason_kind("predictor did not answer within 50ms"),
            "predictor did not answer within 50ms"
        );
        assert_eq!(reason_kind("score 0.5, below 1.25;"), "score N, below N;");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
