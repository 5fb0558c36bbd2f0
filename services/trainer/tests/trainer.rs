//! The trainer against the real PostgreSQL and NATS, training real (small) models on NSL-KDD.
//!
//! The data are found at `../../../shared/data/nsl-kdd/` from this crate (dev tree and CI
//! clone), or in `VIGIL_DATA_DIR`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;
use vigil_config::{Config, Sources};
use vigil_domain::{EventType, ModelType, SecurityEvent};
use vigil_ml::{BoostConfig, ForestConfig, MlpConfig, TrainConfig};
use vigil_proto::v1;
use vigil_runtime::ServiceContext;
use vigil_store::test_util::TestDatabase;
use vigil_store::{ModelEventKind, Store};
use vigil_trainer::{DatasetFormat, RunOutcome, RunReport};

/// Rows of the 20 % file the tests train on: enough for real models, quick to fit.
const ROWS: usize = 2_500;
/// A guard against a hung service, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(900);

fn data_file() -> PathBuf {
    std::env::var("VIGIL_DATA_DIR")
        .map_or_else(
            |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nsl-kdd"),
            PathBuf::from,
        )
        .join("KDDTrain+_20Percent.txt")
}

/// The first `ROWS` rows of the 20 % file, as a file of their own.
fn data_subset(dir: &tempfile::TempDir) -> PathBuf {
    let source = data_file();
    let file = std::fs::File::open(&source)
        .unwrap_or_else(|e| panic!("{}: {e} (set VIGIL_DATA_DIR)", source.display()));
    let path = dir.path().join("subset.txt");
    let mut out = std::fs::File::create(&path).unwrap();
    for line in BufReader::new(file).lines().take(ROWS) {
        writeln!(out, "{}", line.unwrap()).unwrap();
    }
    path
}

/// Smaller models than the defaults, so a run takes seconds; still the real learners.
fn small_train_config(dir: &tempfile::TempDir) -> PathBuf {
    let config = TrainConfig {
        forest: ForestConfig {
            n_trees: 20,
            ..ForestConfig::default()
        },
        xgboost: BoostConfig {
            rounds: 30,
            ..BoostConfig::default()
        },
        mlp: MlpConfig {
            max_epochs: 5,
            ..MlpConfig::default()
        },
        ..TrainConfig::default()
    };
    let path = dir.path().join("train.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    path
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn config(db: &TestDatabase, dir: &tempfile::TempDir, extra: &[String]) -> Config {
    let prefix = format!("tt{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut overrides = vec![
        format!("nats.url=\"{}\"", nats_url()),
        format!("nats.prefix=\"{prefix}\""),
        "telemetry.http_addr=\"127.0.0.1:0\"".to_string(),
        format!(
            "trainer.train_config=\"{}\"",
            small_train_config(dir).display()
        ),
        // Once a year at midnight on January 1st: never during a test run in practice.
        "trainer.schedule=\"0 0 0 1 1 *\"".to_string(),
    ];
    overrides.extend_from_slice(extra);
    let mut config = Config::load(&Sources {
        file: None,
        env: Vec::new(),
        overrides,
    })
    .unwrap();
    config.database = db.settings();
    config
}

/// The value of the trainer counter `name` in `/metrics`.
fn counter(ctx: &ServiceContext, name: &str) -> u64 {
    let metric = format!("vigil_trainer_{name}_total ");
    ctx.metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(&metric)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_trains_at_a_time() {
    let db = TestDatabase::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = vigil_trainer::read_dataset(&data_subset(&dir), DatasetFormat::NslKdd).unwrap();
    vigil_trainer::import_examples(db.store(), &outcome.examples)
        .await
        .unwrap();
    // Another replica's run, as far as this trainer can tell: the lock is taken.
    let other_replica = db
        .store()
        .try_lock(vigil_trainer::RUN_LOCK)
        .await
        .unwrap()
        .unwrap();
    let config = config(
        &db,
        &dir,
        &[
            "trainer.min_new_examples=1".to_string(),
            "trainer.check_interval_secs=1".to_string(),
        ],
    );
    let (subject, client) = requester_for(&config).await;
    let (ctx, token, mut task) = start(config);
    wait_ready(&ctx, &mut task).await;

    // The threshold is met, but the other replica is training: the run is skipped.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while counter(&ctx, "runs_skipped") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no run was skipped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counter(&ctx, "runs_started"), 0);
    assert!(db.store().models().list(None).await.unwrap().is_empty());

    // A requested run waits for the other replica instead of giving up.
    let requester = {
        let client = client.clone();
        tokio::spawn(async move { request(&client, &subject).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!requester.is_finished(), "the request did not wait");
    assert_eq!(counter(&ctx, "runs_started"), 0);

    other_replica.release().await.unwrap();
    let report = requester.await.unwrap();
    assert!(
        matches!(
            report.outcome,
            RunOutcome::Promoted | RunOutcome::NotPromoted
        ),
        "{report:?}"
    );
    assert_eq!(report.registered.len(), 4);
    token.cancel();
    task.await.unwrap().unwrap();
    remove_streams(&ctx.config).await;
    // The request's run and at most the threshold run that may have taken the lock first,
    // one after the other; never two at once (the lock would have refused the second).
    let ensembles = db
        .store()
        .models()
        .list(Some(ModelType::Ensemble))
        .await
        .unwrap();
    assert!((1..=2).contains(&ensembles.len()), "{}", ensembles.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_another_replica_trained_on_do_not_count_as_new() {
    let db = TestDatabase::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = vigil_trainer::read_dataset(&data_subset(&dir), DatasetFormat::NslKdd).unwrap();
    let (first, later) = outcome.examples.split_at(2_000);
    let imported = vigil_trainer::import_examples(db.store(), first)
        .await
        .unwrap();
    let config = config(&db, &dir, &[]);
    let bus = vigil_bus::Bus::connect(&config.nats, vigil_runtime::topology(&config))
        .await
        .unwrap();
    bus.declare().await.unwrap();
    let train_config = vigil_trainer::train_config(&config.trainer).unwrap();
    let replica = |metrics| {
        vigil_trainer::Trainer::new(
            db.store().clone(),
            bus.clone(),
            train_config.clone(),
            &config.trainer,
            metrics,
        )
    };
    let (metrics_a, metrics_b) = (
        vigil_telemetry::Metrics::new(),
        vigil_telemetry::Metrics::new(),
    );
    let a = replica(&metrics_a).await.unwrap();
    let b = replica(&metrics_b).await.unwrap();
    assert_eq!(a.new_examples().await.unwrap(), imported.inserted);

    // Replica B trains on everything recorded so far.
    let report = b
        .run_once(vigil_trainer::Trigger::Schedule, &CancellationToken::new())
        .await;
    assert_eq!(report.outcome, RunOutcome::Promoted, "{report:?}");
    assert_eq!(
        a.new_examples().await.unwrap(),
        0,
        "A must not train again what B just trained on"
    );
    assert_eq!(b.new_examples().await.unwrap(), 0);

    let more = vigil_trainer::import_examples(db.store(), &later[..300])
        .await
        .unwrap();
    assert_eq!(more.inserted, 300);
    assert_eq!(a.new_examples().await.unwrap(), 300);
    assert_eq!(b.new_examples().await.unwrap(), 300);
    remove_streams(&config).await;
}

/// Deletes the test's prefixed streams, leaving the shared NATS server as it was.
async fn remove_streams(config: &Config) {
    let bus = vigil_bus::Bus::connect(&config.nats, vigil_runtime::topology(config))
        .await
        .unwrap();
    bus.topology().delete(bus.jetstream()).await.unwrap();
}

/// The run-request subject of `config` and a client that waits as long as a run may take.
async fn requester_for(config: &Config) -> (String, async_nats::Client) {
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(PATIENCE))
        .connect(nats_url())
        .await
        .unwrap();
    (vigil_trainer::run_subject(&config.nats.prefix), client)
}

/// Starts the trainer through `run_in`; returns its context, token and task.
fn start(
    config: Config,
) -> (
    ServiceContext,
    CancellationToken,
    tokio::task::JoinHandle<vigil_trainer::Result<()>>,
) {
    let ctx = ServiceContext::new(config);
    // Not ready until the trainer says so.
    ctx.readiness.set("trainer", false);
    let token = CancellationToken::new();
    let task = tokio::spawn(vigil_trainer::run_in(ctx.clone(), token.clone()));
    (ctx, token, task)
}

async fn wait_ready(
    ctx: &ServiceContext,
    task: &mut tokio::task::JoinHandle<vigil_trainer::Result<()>>,
) {
    tokio::time::timeout(PATIENCE, async {
        while !ctx.readiness.status().0 {
            if task.is_finished() {
                panic!("the trainer stopped: {:?}", task.await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the trainer never became ready");
}

async fn production_ensemble_id(store: &Store) -> Option<String> {
    store
        .models()
        .production(ModelType::Ensemble)
        .await
        .unwrap()
        .map(|r| r.version.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enough_new_examples_start_a_run_that_registers_promotes_and_announces() {
    let db = TestDatabase::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The whole 20 % file (25,192 rows), imported by the trainer itself at start-up.
    let config = config(
        &db,
        &dir,
        &[
            format!("trainer.dataset=\"{}\"", data_file().display()),
            "trainer.min_new_examples=20000".to_string(),
            "trainer.check_interval_secs=1".to_string(),
        ],
    );
    let client = async_nats::connect(nats_url()).await.unwrap();
    let subject = format!("{}.vigil.events.model_promoted", config.nats.prefix);
    let mut promoted = client.subscribe(subject).await.unwrap();
    client.flush().await.unwrap();

    let (ctx, token, mut task) = start(config);
    let message = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            message = promoted.next() => message.unwrap(),
            stopped = &mut task => panic!("the trainer stopped: {stopped:?}"),
        }
    })
    .await
    .expect("no MODEL_PROMOTED event");
    let event =
        SecurityEvent::try_from(v1::SecurityEvent::decode(message.payload).unwrap()).unwrap();
    assert_eq!(event.event_type, EventType::ModelPromoted);
    assert_eq!(event.source, "trainer");

    let store = db.store();
    let production = production_ensemble_id(store)
        .await
        .expect("an ensemble in production");
    assert_eq!(event.data["model_id"], production.as_str());
    assert_eq!(event.data["version"].as_f64(), Some(1.0));
    assert!(
        event.data["metrics"]["f1"].as_f64().unwrap() > 0.8,
        "{}",
        event.data
    );
    assert_eq!(event.id, format!("model_promoted:{production}"));

    // The configured file was imported as data set examples, once per distinct row.
    let by_source = store.training().count_by_source().await.unwrap();
    assert_eq!(by_source.len(), 1, "{by_source:?}");
    assert_eq!(by_source[0].0, vigil_store::ExampleSource::Dataset);
    assert!(by_source[0].1 > 25_000, "{by_source:?}");

    // Every member and the ensemble, version 1, active and in production, with its metrics.
    let versions = store.models().list(None).await.unwrap();
    assert_eq!(versions.len(), 4, "{versions:?}");
    for model_type in ModelType::ALL {
        let record = versions
            .iter()
            .find(|r| r.version.model_type == model_type)
            .unwrap_or_else(|| panic!("no {model_type} registered"));
        assert_eq!(record.version.version, 1);
        assert!(record.version.is_active && record.version.is_production);
        assert!(
            record.version.metrics.f1 > 0.5,
            "{model_type}: {:?}",
            record.version.metrics
        );
        assert!(record.artifact_bytes > 0);
    }
    // The stored artifact is one the predictor can load.
    let bytes = store.models().load_artifact(&production).await.unwrap();
    let artifact = vigil_ml::ModelArtifact::from_bytes(&bytes).unwrap();
    assert_eq!(
        event.data["artifact_id"],
        artifact.metadata.model_version_id.as_str()
    );
    let history = store
        .models()
        .history(Some(ModelType::Ensemble))
        .await
        .unwrap();
    assert!(
        history
            .iter()
            .any(|e| e.event == ModelEventKind::PromotedProduction
                && e.actor == "trainer"
                && e.reason.contains("no ensemble in production"))
    );

    token.cancel();
    task.await.unwrap().unwrap();
    remove_streams(&ctx.config).await;
}

async fn request(client: &async_nats::Client, subject: &str) -> RunReport {
    // The subscription may not have reached the server yet right after readiness.
    for _ in 0..50 {
        match client
            .request(
                subject.to_string(),
                br#"{"requested_by":"test"}"#.to_vec().into(),
            )
            .await
        {
            Ok(reply) => return serde_json::from_slice(&reply.payload).unwrap(),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("request failed: {e}"),
        }
    }
    panic!("nobody answers on {subject}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_runs_the_trainer_and_a_model_that_is_not_better_stays_out_of_production() {
    let db = TestDatabase::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = vigil_trainer::read_dataset(&data_subset(&dir), DatasetFormat::NslKdd).unwrap();
    let imported = vigil_trainer::import_examples(db.store(), &outcome.examples)
        .await
        .unwrap();
    assert_eq!(imported.read, ROWS);
    // No run by itself; a new ensemble must be better by more than 1.0 F1, which none can be.
    let config = config(
        &db,
        &dir,
        &[
            "trainer.min_new_examples=1000000000".to_string(),
            "trainer.promotion_margin=1.0".to_string(),
        ],
    );
    let (subject, client) = requester_for(&config).await;
    let (ctx, token, mut task) = start(config);
    wait_ready(&ctx, &mut task).await;
    let store = db.store();
    assert_eq!(
        production_ensemble_id(store).await,
        None,
        "no run before the request"
    );

    let first = request(&client, &subject).await;
    assert_eq!(first.outcome, RunOutcome::Promoted, "{first:?}");
    assert!(first.promoted && first.event_published);
    assert!(
        first.reason.contains("no ensemble in production"),
        "{}",
        first.reason
    );
    assert_eq!(first.examples.total as u64, imported.inserted);
    assert_eq!(
        first.examples.by_source["dataset"] as u64,
        imported.inserted
    );
    assert!(first.examples.test > 0 && first.examples.train > first.examples.test);
    assert_eq!(first.registered.len(), 4);
    assert_eq!(
        first.trigger,
        vigil_trainer::Trigger::Request {
            requested_by: "test".into()
        }
    );
    let first_ensemble = first.ensemble().unwrap().clone();
    assert_eq!(
        production_ensemble_id(store).await.as_deref(),
        Some(first_ensemble.id.as_str())
    );

    let second = request(&client, &subject).await;
    assert_eq!(second.outcome, RunOutcome::NotPromoted, "{second:?}");
    assert!(!second.promoted && !second.event_published);
    assert!(
        second.reason.contains("does not beat production v1") && second.reason.contains("margin 1"),
        "{}",
        second.reason
    );
    // Both ensembles were measured on the same held-out split.
    assert_eq!(
        second.metrics.as_ref().unwrap()["rows"],
        second.production_metrics.as_ref().unwrap()["rows"]
    );
    assert_eq!(second.previous_production.as_ref(), Some(&first_ensemble));
    let second_ensemble = second.ensemble().unwrap();
    assert_eq!(second_ensemble.version, 2);
    // Production unchanged; the new version is registered and active (staging) only.
    assert_eq!(
        production_ensemble_id(store).await.as_deref(),
        Some(first_ensemble.id.as_str())
    );
    let active = store
        .models()
        .active(ModelType::Ensemble)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.version.id, second_ensemble.id);
    assert!(!active.version.is_production);

    token.cancel();
    task.await.unwrap().unwrap();
    remove_streams(&ctx.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_both_classes_fails_with_a_reason_and_registers_nothing() {
    let db = TestDatabase::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = vigil_trainer::read_dataset(&data_subset(&dir), DatasetFormat::NslKdd).unwrap();
    let benign: Vec<_> = outcome
        .examples
        .into_iter()
        .filter(|e| !e.label)
        .take(300)
        .collect();
    vigil_trainer::import_examples(db.store(), &benign)
        .await
        .unwrap();
    let config = config(
        &db,
        &dir,
        &["trainer.min_new_examples=1000000000".to_string()],
    );
    let (subject, client) = requester_for(&config).await;
    let (ctx, token, mut task) = start(config);
    wait_ready(&ctx, &mut task).await;
    let report = request(&client, &subject).await;
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    assert!(report.reason.contains("both classes"), "{}", report.reason);
    assert!(report.registered.is_empty());
    assert!(db.store().models().list(None).await.unwrap().is_empty());
    token.cancel();
    task.await.unwrap().unwrap();
    remove_streams(&ctx.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_training_abandons_the_run_cleanly() {
    let db = TestDatabase::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = vigil_trainer::read_dataset(&data_subset(&dir), DatasetFormat::NslKdd).unwrap();
    vigil_trainer::import_examples(db.store(), &outcome.examples)
        .await
        .unwrap();
    let mut config = config(
        &db,
        &dir,
        &["trainer.min_new_examples=1000000000".to_string()],
    );
    // The full-size models: training takes far longer than the shutdown below needs.
    config.trainer.train_config = None;
    let (subject, client) = requester_for(&config).await;
    let (ctx, token, mut task) = start(config);
    wait_ready(&ctx, &mut task).await;
    let requester = {
        let client = client.clone();
        tokio::spawn(async move { request(&client, &subject).await })
    };
    // Shut down once the run has started.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !ctx
        .metrics
        .render()
        .contains("vigil_trainer_runs_started_total 1")
    {
        assert!(
            !requester.is_finished(),
            "the request ended before a run started"
        );
        assert!(tokio::time::Instant::now() < deadline, "no run started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    token.cancel();
    task.await.unwrap().unwrap();
    remove_streams(&ctx.config).await;
    let report = requester.await.unwrap();
    assert_eq!(report.outcome, RunOutcome::Abandoned, "{report:?}");
    assert!(report.registered.is_empty());
    assert!(db.store().models().list(None).await.unwrap().is_empty());
}
