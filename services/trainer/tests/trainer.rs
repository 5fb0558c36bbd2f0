//! The trainer against the real PostgreSQL and NATS, training real (small) models on NSL-KDD
//! (see `vigil_testkit::nsl_kdd` for where the data are found).

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use prost::Message;
use tokio_util::sync::CancellationToken;
use vigil_domain::{EventType, ModelType, SecurityEvent};
use vigil_ml::{BoostConfig, ForestConfig, MlpConfig, TrainConfig};
use vigil_proto::v1;
use vigil_store::{ExampleSource, ModelEventKind, NewExample, Store};
use vigil_testkit::{Sandbox, Service, eventually, next_message, nsl_kdd};
use vigil_trainer::{DatasetFormat, RunOutcome, RunReport};

/// Rows of the 20 % file the tests train on: enough for real models, quick to fit.
const ROWS: usize = 2_500;
/// A guard against a hung service, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(900);

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

/// A sandbox whose trainer trains small models and never runs on its schedule during a test.
async fn sandbox(dir: &tempfile::TempDir, extra: &[String]) -> Sandbox {
    let mut overrides = vec![
        format!(
            "trainer.train_config=\"{}\"",
            small_train_config(dir).display()
        ),
        // Once a year at midnight on January 1st: never during a test run in practice.
        "trainer.schedule=\"0 0 0 1 1 *\"".to_string(),
    ];
    overrides.extend_from_slice(extra);
    Sandbox::with(&overrides).await
}

/// The first `ROWS` rows of the 20 % file, read as the trainer reads a data set.
fn subset_examples(dir: &tempfile::TempDir) -> Vec<vigil_ml::LabeledExample> {
    let path = nsl_kdd::subset(dir.path(), ROWS);
    vigil_trainer::read_dataset(&path, DatasetFormat::NslKdd)
        .unwrap()
        .examples
}

/// Starts the trainer in the sandbox and waits until it is ready.
async fn start_trainer(sandbox: &Sandbox) -> Service {
    let mut trainer = sandbox.spawn("trainer", vigil_trainer::run_in);
    trainer.ready(PATIENCE).await;
    trainer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_trains_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox(
        &dir,
        &[
            "trainer.min_new_examples=1".to_string(),
            "trainer.check_interval_secs=1".to_string(),
        ],
    )
    .await;
    let store = sandbox.store();
    vigil_trainer::import_examples(store, &subset_examples(&dir))
        .await
        .unwrap();
    // Another replica's run, as far as this trainer can tell: the lock is taken.
    let other_replica = store
        .try_lock(vigil_trainer::RUN_LOCK)
        .await
        .unwrap()
        .unwrap();
    let client = requester().await;
    let subject = vigil_trainer::run_subject(sandbox.prefix());
    let trainer = start_trainer(&sandbox).await;

    // The threshold is met, but the other replica is training: the run is skipped.
    eventually(PATIENCE, "a skipped run", || async {
        trainer.counter("vigil_trainer_runs_skipped") > 0
    })
    .await;
    assert_eq!(trainer.counter("vigil_trainer_runs_started"), 0);
    assert!(store.models().list(None).await.unwrap().is_empty());

    // A requested run waits for the other replica instead of giving up.
    let requester = {
        let client = client.clone();
        tokio::spawn(async move { request(&client, &subject).await })
    };
    // Nothing to observe for "still waiting" but the absence of an answer over a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!requester.is_finished(), "the request did not wait");
    assert_eq!(trainer.counter("vigil_trainer_runs_started"), 0);

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
    trainer.stop().await;
    // The request's run and at most the threshold run that may have taken the lock first,
    // one after the other; never two at once (the lock would have refused the second).
    let ensembles = store
        .models()
        .list(Some(ModelType::Ensemble))
        .await
        .unwrap();
    assert!((1..=2).contains(&ensembles.len()), "{}", ensembles.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_another_replica_trained_on_do_not_count_as_new() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox(&dir, &[]).await;
    let store = sandbox.store();
    let examples = subset_examples(&dir);
    let (first, later) = examples.split_at(2_000);
    let imported = vigil_trainer::import_examples(store, first).await.unwrap();
    let config = sandbox.config();
    let train_config = vigil_trainer::train_config(&config.trainer).unwrap();
    let replica = |metrics| {
        vigil_trainer::Trainer::new(
            store.clone(),
            sandbox.bus().clone(),
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

    let more = vigil_trainer::import_examples(store, &later[..300])
        .await
        .unwrap();
    assert_eq!(more.inserted, 300);
    assert_eq!(a.new_examples().await.unwrap(), 300);
    assert_eq!(b.new_examples().await.unwrap(), 300);
}

/// A client whose requests wait as long as a training run may take.
async fn requester() -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(PATIENCE))
        .connect(vigil_testkit::nats_url())
        .await
        .unwrap()
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
    let dir = tempfile::tempdir().unwrap();
    // The whole 20 % file (25,192 rows), imported by the trainer itself at start-up.
    let sandbox = sandbox(
        &dir,
        &[
            format!(
                "trainer.dataset=\"{}\"",
                nsl_kdd::train_20_percent().display()
            ),
            "trainer.min_new_examples=20000".to_string(),
            "trainer.check_interval_secs=1".to_string(),
        ],
    )
    .await;
    let mut promoted = sandbox
        .subscribe(&sandbox.subject("vigil.events.model_promoted"))
        .await;

    let mut trainer = sandbox.spawn("trainer", vigil_trainer::run_in);
    let message = tokio::select! {
        message = next_message(&mut promoted, PATIENCE, "MODEL_PROMOTED") => message,
        stopped = trainer.finished() => panic!("the trainer stopped: {stopped:?}"),
    };
    let event =
        SecurityEvent::try_from(v1::SecurityEvent::decode(message.payload).unwrap()).unwrap();
    assert_eq!(event.event_type, EventType::ModelPromoted);
    assert_eq!(event.source, "trainer");

    let store = sandbox.store();
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
    trainer.stop().await;
}

async fn request(client: &async_nats::Client, subject: &str) -> RunReport {
    // The subscription may not have reached the server yet right after readiness.
    eventually(PATIENCE, &format!("an answer on {subject}"), || async {
        match client
            .request(
                subject.to_string(),
                br#"{"requested_by":"test"}"#.to_vec().into(),
            )
            .await
        {
            Ok(reply) => Ok(serde_json::from_slice::<RunReport>(&reply.payload).unwrap()),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                Err("no responders")
            }
            Err(e) => panic!("request failed: {e}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_runs_the_trainer_and_a_model_that_is_not_better_stays_out_of_production() {
    let dir = tempfile::tempdir().unwrap();
    // No run by itself; a new ensemble must be better by more than 1.0 F1, which none can be.
    let sandbox = sandbox(
        &dir,
        &[
            "trainer.min_new_examples=1000000000".to_string(),
            "trainer.promotion_margin=1.0".to_string(),
        ],
    )
    .await;
    let store = sandbox.store();
    let imported = vigil_trainer::import_examples(store, &subset_examples(&dir))
        .await
        .unwrap();
    assert_eq!(imported.read, ROWS);
    let client = requester().await;
    let subject = vigil_trainer::run_subject(sandbox.prefix());
    let trainer = start_trainer(&sandbox).await;
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
            requested_by: "test".into(),
            reason: String::new(),
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
    // Both ensembles were measured on the same hold-out: the rows the first run held out too,
    // so production never trained on them.
    assert_eq!(
        second.metrics.as_ref().unwrap()["rows"],
        second.production_metrics.as_ref().unwrap()["rows"]
    );
    let (held_first, held_second) = (
        first.holdout.as_ref().unwrap(),
        second.holdout.as_ref().unwrap(),
    );
    assert_eq!(
        held_second.digest, held_first.digest,
        "the same rows held out"
    );
    assert_eq!(held_second.rows, held_first.rows);
    assert_eq!(second.metrics.as_ref().unwrap()["rows"], held_second.rows);
    assert_eq!(
        held_second.production_rule.as_ref(),
        Some(&held_second.rule)
    );
    assert_eq!(held_second.production_caveat, None);
    assert!(!second.reason.contains("optimistic"), "{}", second.reason);
    // Cross-validation ran on the training rows, and every registry row carries its mean F1.
    let cv = second.cross_validation.as_ref().unwrap();
    assert_eq!(cv.folds, 3);
    assert_eq!(cv.error, None);
    assert_eq!(cv.rows, second.examples.train + second.examples.validation);
    assert_eq!(cv.mean.len(), 4);
    let rows = store.models().list(None).await.unwrap();
    assert_eq!(rows.len(), 8);
    for row in &rows {
        let score = row.version.metrics.cross_val_score;
        assert!(
            score.is_some_and(|f1| f1 > 0.5 && f1 <= 1.0),
            "{} v{}: cross_val_score {score:?}",
            row.version.model_type,
            row.version.version
        );
        assert_eq!(row.version.hyperparameters["cross_validation"]["folds"], 3);
        assert_eq!(
            row.version.hyperparameters["holdout"]["rule"]["kind"],
            "hash"
        );
    }
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
    trainer.stop().await;
}

/// Analysts' verdicts reach production: a first ensemble trained on a data set without the
/// warezclient family misses it; analysts label the family's rows (feedback examples); the
/// next run's ensemble is promoted because it makes fewer errors than production on the
/// verdicts held out, though it cannot beat production's F1 by the margin (0.2 here, so that
/// the F1 rule alone could not promote it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_errors_on_held_out_verdicts_promote_what_the_analysts_taught() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox(
        &dir,
        &[
            "trainer.min_new_examples=1000000000".to_string(),
            "trainer.promotion_margin=0.2".to_string(),
            "trainer.cross_val_folds=0".to_string(),
        ],
    )
    .await;
    let store = sandbox.store();
    let is_warez = |e: &&vigil_ml::LabeledExample| e.class_name.as_deref() == Some("warezclient");
    let all = nsl_kdd::examples();
    let data_set: Vec<vigil_ml::LabeledExample> = all
        .iter()
        .filter(|e| !is_warez(e))
        .take(ROWS)
        .cloned()
        .collect();
    vigil_trainer::import_examples(store, &data_set)
        .await
        .unwrap();
    let client = requester().await;
    let subject = vigil_trainer::run_subject(sandbox.prefix());
    let trainer = start_trainer(&sandbox).await;
    let first = request(&client, &subject).await;
    assert_eq!(first.outcome, RunOutcome::Promoted, "{first:?}");

    let verdicts: Vec<&vigil_ml::LabeledExample> = all.iter().filter(is_warez).collect();
    assert!(verdicts.len() > 100, "{} warezclient rows", verdicts.len());
    let refs: Vec<String> = (0..verdicts.len())
        .map(|i| format!("evt-warez-{i}"))
        .collect();
    let batch: Vec<NewExample<'_>> = verdicts
        .iter()
        .zip(&refs)
        .map(|(e, source_ref)| NewExample {
            signal: &e.signal,
            label: true,
            source: ExampleSource::Feedback,
            source_ref,
            weight: 1.0,
        })
        .collect();
    store.training().record_batch(&batch).await.unwrap();

    let second = request(&client, &subject).await;
    let analysts = second.holdout.as_ref().unwrap().analysts.unwrap();
    let production_errors = analysts.production_errors.unwrap();
    assert!(analysts.rows > 5, "{analysts:?}");
    // Production never saw the family: it misses most of the held-out verdicts.
    assert!(production_errors * 2 > analysts.rows, "{analysts:?}");
    assert!(analysts.errors < production_errors, "{analysts:?}");
    assert_eq!(second.outcome, RunOutcome::Promoted, "{}", second.reason);
    assert!(
        second.reason.contains(&format!(
            "on the {} analysts' verdicts held out the new ensemble makes fewer wrong calls \
             than production v1 ({} against {production_errors})",
            analysts.rows, analysts.errors
        )),
        "{}",
        second.reason
    );
    assert_eq!(
        production_ensemble_id(store).await,
        second.ensemble().map(|m| m.id.clone())
    );
    trainer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_both_classes_fails_with_a_reason_and_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox(&dir, &["trainer.min_new_examples=1000000000".to_string()]).await;
    let benign: Vec<_> = subset_examples(&dir)
        .into_iter()
        .filter(|e| !e.label)
        .take(300)
        .collect();
    vigil_trainer::import_examples(sandbox.store(), &benign)
        .await
        .unwrap();
    let client = requester().await;
    let subject = vigil_trainer::run_subject(sandbox.prefix());
    let trainer = start_trainer(&sandbox).await;
    let report = request(&client, &subject).await;
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    assert!(report.reason.contains("both classes"), "{}", report.reason);
    assert!(report.registered.is_empty());
    assert!(
        sandbox
            .store()
            .models()
            .list(None)
            .await
            .unwrap()
            .is_empty()
    );
    trainer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_training_abandons_the_run_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = sandbox(&dir, &["trainer.min_new_examples=1000000000".to_string()]).await;
    vigil_trainer::import_examples(sandbox.store(), &subset_examples(&dir))
        .await
        .unwrap();
    // The full-size models: training takes far longer than the shutdown below needs.
    sandbox.config_mut().trainer.train_config = None;
    let client = requester().await;
    let subject = vigil_trainer::run_subject(sandbox.prefix());
    let trainer = start_trainer(&sandbox).await;
    let requester = {
        let client = client.clone();
        tokio::spawn(async move { request(&client, &subject).await })
    };
    // Shut down once the run has started.
    eventually(PATIENCE, "a run to start", || async {
        assert!(
            !requester.is_finished(),
            "the request ended before a run started"
        );
        trainer.counter("vigil_trainer_runs_started") == 1
    })
    .await;
    trainer.stop().await;
    let report = requester.await.unwrap();
    assert_eq!(report.outcome, RunOutcome::Abandoned, "{report:?}");
    assert!(report.registered.is_empty());
    assert!(
        sandbox
            .store()
            .models()
            .list(None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The held-out `source_ref`s of `refs` under the trainer's rule, as the report digests them:
/// in `source_ref` order, each followed by a 0 byte.
fn holdout_digest(rule: &vigil_ml::HashHoldout, refs: &[String]) -> (usize, String) {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&String> = refs.iter().filter(|r| rule.holds_out(r)).collect();
    sorted.sort();
    let mut digest = Sha256::new();
    for r in &sorted {
        digest.update(r.as_bytes());
        digest.update([0]);
    }
    let hex = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (sorted.len(), hex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_is_compared_on_rows_neither_ensemble_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox(
        &dir,
        &[
            "trainer.min_new_examples=1000000000".to_string(),
            "trainer.cross_val_folds=0".to_string(),
        ],
    )
    .await;
    let store = sandbox.store();
    let examples = subset_examples(&dir);
    let (first_rows, later_rows) = examples.split_at(1_500);
    vigil_trainer::import_examples(store, first_rows)
        .await
        .unwrap();
    let client = requester().await;
    let subject = vigil_trainer::run_subject(sandbox.prefix());
    let trainer = start_trainer(&sandbox).await;
    let first = request(&client, &subject).await;
    assert_eq!(first.outcome, RunOutcome::Promoted, "{first:?}");
    assert_eq!(first.cross_validation, None, "cross_val_folds = 0 is off");

    // New rows arrive; the second run's hold-out takes some of them, and of the first rows
    // exactly those the first run held out (and so never trained on).
    vigil_trainer::import_examples(store, later_rows)
        .await
        .unwrap();
    let second = request(&client, &subject).await;
    assert!(
        matches!(
            second.outcome,
            RunOutcome::Promoted | RunOutcome::NotPromoted
        ),
        "{second:?}"
    );
    trainer.stop().await;

    let settings = &sandbox.config().trainer;
    let rule = vigil_trainer::holdout_rule(&vigil_trainer::train_config(settings).unwrap());
    let refs = |rows: &[vigil_ml::LabeledExample]| -> Vec<String> {
        rows.iter().map(|e| e.signal.id.clone()).collect()
    };
    let all: Vec<String> = refs(&examples);
    let (first_held, first_digest) = holdout_digest(&rule, &refs(first_rows));
    let (second_held, second_digest) = holdout_digest(&rule, &all);
    let held_first = first.holdout.as_ref().unwrap();
    let held_second = second.holdout.as_ref().unwrap();
    assert_eq!(held_first.digest, first_digest);
    assert_eq!(held_second.digest, second_digest);
    assert!(
        first_held > 100 && second_held > first_held,
        "{first_held} / {second_held}"
    );
    assert_eq!(held_second.rows, second_held, "no held-out row was refused");
    // The rows the first (production) run trained on: none of them is held out now.
    let trained_first: HashSet<String> = refs(first_rows)
        .into_iter()
        .filter(|r| !rule.holds_out(r))
        .collect();
    let held_now: HashSet<String> = all.iter().filter(|r| rule.holds_out(r)).cloned().collect();
    assert_eq!(trained_first.intersection(&held_now).count(), 0);
    assert_eq!(
        first.examples.train + first.examples.validation + first_held,
        first.examples.total - first.examples.refused
    );
    // Both ensembles scored on those rows, and production's artifact says it held out the same.
    assert_eq!(
        second.production_metrics.as_ref().unwrap()["rows"],
        held_second.rows
    );
    assert_eq!(second.metrics.as_ref().unwrap()["rows"], held_second.rows);
    assert_eq!(
        held_second.production_rule.as_ref(),
        Some(&held_second.rule)
    );
    assert_eq!(held_second.production_caveat, None);

    // A trainer with another seed holds out other rows: its report says production may have
    // trained on some of them.
    let mut other = sandbox.config().clone();
    other.trainer.seed = 7;
    let mut trainer = sandbox.spawn_with_config("trainer", other, vigil_trainer::run_in);
    trainer.ready(PATIENCE).await;
    let third = request(&client, &subject).await;
    trainer.stop().await;
    let held_third = third.holdout.as_ref().unwrap();
    assert_ne!(held_third.digest, held_second.digest);
    let caveat = held_third.production_caveat.as_deref().unwrap_or_default();
    assert!(
        caveat.contains("may be optimistic for production") && caveat.contains("salt 42"),
        "{caveat}"
    );
    assert!(
        third.reason.contains("may be optimistic"),
        "{}",
        third.reason
    );
}
