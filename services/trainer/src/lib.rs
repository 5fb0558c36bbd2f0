//! The trainer: retrains the ensemble from the labelled examples in PostgreSQL (analyst
//! verdicts and imported data sets; never vigil's own verdicts) on a cron schedule, when enough
//! new examples have arrived, and on request over NATS (`vigil models train`, the feedback
//! service's retraining trigger). Every run registers the member models and
//! the ensemble with their held-out metrics, makes them active, and promotes them to production
//! only when the new ensemble beats the production one on the same held-out split by the
//! configured margin, or makes fewer errors than it on the analysts' verdicts held out while
//! staying within the margin (or when none is in production); a promotion is announced as
//! MODEL_PROMOTED on `vigil.events.model_promoted`.

mod import;
mod metrics;
mod promoted;
mod requests;
mod run;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vigil_config::{Config, TrainerSettings};
use vigil_ml::TrainConfig;
use vigil_runtime::{Beat, ServiceContext};
use vigil_store::Store;

use crate::requests::{QUEUED_REQUESTS, QueuedRequest, RequestGate};

pub use import::{DatasetFormat, ImportReport, import_examples, read_dataset};
pub use promoted::{hand_promotion, publish_model_promoted};
pub use run::{
    ACTOR, AnalystHoldout, CrossValidationSummary, ExampleCounts, HoldoutReport, RUN_LOCK,
    RegisteredModel, RunOutcome, RunReport, Trainer, Trigger, holdout_rule,
};
pub use vigil_config::Schedule;

/// Why the trainer stopped, or could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] vigil_bus::Error),
    #[error(transparent)]
    Store(#[from] vigil_store::Error),
    #[error("training failed: {0}")]
    Ml(#[from] vigil_ml::Error),
    #[error("training failed: {0}")]
    Training(String),
    #[error("invalid trainer settings: {0}")]
    Config(String),
    #[error("cannot read {path}: {reason}")]
    Dataset { path: String, reason: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Result of a trainer operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The subject the trainer answers run requests on: `<prefix>.vigil.trainer.run` (no prefix in
/// production). Replicas share it as a queue group, so one request starts one run, and together
/// they start at most `trainer.max_requested_runs_per_hour` of them in any hour (counted in
/// PostgreSQL).
pub fn run_subject(prefix: &str) -> String {
    if prefix.is_empty() {
        "vigil.trainer.run".to_string()
    } else {
        format!("{prefix}.vigil.trainer.run")
    }
}

/// The body of a run request (optional: an empty body is a request too).
///
/// Any other field refuses the request: a message that is not a request (a JetStream reply or
/// acknowledgement that a client pointed at the run subject) must not start a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunRequest {
    /// Who asked, for the registry history.
    pub requested_by: String,
    /// Why, written into the run report's trigger (e.g. the feedback service's "120 labelled
    /// verdicts since the last run (retrain_after_labels = 100)").
    pub reason: String,
}

/// The training configuration of `settings`: the JSON file it names (as `vigil train --config`)
/// or the defaults, with the configured seed everywhere and the configured operating point.
pub fn train_config(settings: &TrainerSettings) -> Result<TrainConfig> {
    let mut config = match &settings.train_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!("trainer.train_config {}: {e}", path.display()))
            })?;
            TrainConfig::from_json(&text).map_err(|e| {
                Error::Config(format!(
                    "trainer.train_config {} is not a training configuration: {e}",
                    path.display()
                ))
            })?
        }
        None => TrainConfig::default(),
    };
    if let Some(point) = &settings.operating_point {
        config.operating_point = point
            .parse()
            .map_err(|e| Error::Config(format!("trainer.operating_point: {e}")))?;
    }
    Ok(config.with_seed(settings.seed))
}

/// Runs a standalone trainer (with its own `/metrics` endpoint) until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    vigil_runtime::run_standalone(config, shutdown, run_in).await
}

/// Runs the trainer in a shared context until `token` is cancelled. Shutdown stops taking
/// requests; a run that is still training is abandoned (nothing registered), one that is
/// registering finishes first.
pub async fn run_in(ctx: ServiceContext, token: CancellationToken) -> Result<()> {
    let config = ctx.config.clone();
    let settings = &config.trainer;
    // Config::validate has checked the schedule and the trainer's other settings.
    let schedule = Schedule::parse(&settings.schedule).map_err(Error::Config)?;
    let train_config = train_config(settings)?;
    let store = Store::connect_and_migrate(&config.database).await?;
    let bus = vigil_runtime::connect_bus(&ctx, &token).await?;
    let beat = ctx.pulse.register("trainer");
    beat.check_postgres(store.pool().clone());
    let trainer = Trainer::new(
        store.clone(),
        bus.clone(),
        train_config,
        settings,
        &ctx.metrics,
    )
    .await?;

    if let Some(path) = &settings.dataset {
        let report = import_file(&trainer, path).await?;
        info!(path = %path.display(), read = report.read, inserted = report.inserted,
              skipped_rows = report.skipped_rows, "imported the configured data set");
    }

    let subject = run_subject(bus.topology().prefix());
    let requests = bus
        .client()
        .queue_subscribe(subject.clone(), "vigil-trainer".to_string())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to run requests on {subject}: {e}"))?;
    // A round trip to the server, so the subscription is in place before we report ready:
    // a request sent right after /readyz turns green must find a responder.
    bus.client()
        .flush()
        .await
        .map_err(|e| anyhow::anyhow!("cannot confirm the run request subscription: {e}"))?;
    // Requests are admitted (or refused, at once) by a task of their own, so that a flood is
    // answered while a run trains; admitted ones wait here, one run at a time.
    let (queue, mut admitted) = tokio::sync::mpsc::channel::<QueuedRequest>(QUEUED_REQUESTS);
    let gate_token = token.child_token();
    let gate = tokio::spawn(
        RequestGate {
            client: bus.client().clone(),
            live: ctx.live.clone(),
            store,
            refused: trainer.metrics().runs_rate_limited.clone(),
            invalid: trainer.metrics().run_requests_invalid.clone(),
            queue,
        }
        .run(requests, gate_token.clone()),
    );
    // The schedule, the check interval and the example count follow the live configuration.
    let mut live = ctx.live.get();
    let mut schedule = live_schedule(&live.trainer, schedule);
    let mut checks = check_interval(&live.trainer);
    let mut changes = ctx.live.changed();
    ctx.readiness.set("trainer", true);
    info!(%subject, schedule = %live.trainer.schedule, min_new_examples = live.trainer.min_new_examples,
          "trainer waiting for work");

    loop {
        let next_fire = schedule.next_after(chrono::Utc::now());
        let until_schedule = next_fire
            .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(Duration::from_secs(365 * 24 * 3600));
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            request = admitted.recv() => {
                let Some(QueuedRequest { trigger, reply }) = request else {
                    // The gate ended: the subscription did (it says so).
                    break;
                };
                let report = run_recorded(&trainer, &beat, trigger, &token).await;
                if let Some(reply) = reply {
                    requests::send_report(bus.client(), reply, &report).await;
                }
            }
            () = tokio::time::sleep(until_schedule) => {
                if let Some(fired) = next_fire {
                    // Replicas fire together; one that comes late must not train again what
                    // another registered since this tick.
                    match trainer.newest_ensemble_at().await {
                        Ok(Some(registered)) if registered >= fired => {
                            info!(%fired, %registered, "scheduled run already done by another replica");
                        }
                        _ => {
                            run_recorded(&trainer, &beat, Trigger::Schedule, &token).await;
                        }
                    }
                }
            }
            Ok(()) = changes.changed() => {
                let next = ctx.live.get();
                if next.trainer.schedule != live.trainer.schedule {
                    schedule = live_schedule(&next.trainer, schedule);
                    info!(schedule = %next.trainer.schedule, "training schedule changed");
                }
                if next.trainer.check_interval_secs != live.trainer.check_interval_secs {
                    checks = check_interval(&next.trainer);
                }
                live = next;
            }
            _ = checks.tick() => {
                match trainer.new_examples().await {
                    Ok(count) if count >= live.trainer.min_new_examples && count > 0 => {
                        run_recorded(&trainer, &beat, Trigger::NewExamples { count }, &token).await;
                    }
                    Ok(_) => {}
                    Err(error) => warn!(%error, "cannot count new training examples"),
                }
            }
        }
    }
    gate_token.cancel();
    if let Err(error) = gate.await {
        warn!(%error, "the run request gate failed");
    }
    // Admitted requests that did not get to run are told so rather than left waiting.
    admitted.close();
    while let Ok(QueuedRequest { trigger, reply }) = admitted.try_recv() {
        if let Some(reply) = reply {
            let report = RunReport::unstarted(
                trigger,
                RunOutcome::Abandoned,
                "the trainer shut down before this requested run started".to_owned(),
            );
            requests::send_report(bus.client(), reply, &report).await;
        }
    }
    ctx.readiness.remove("trainer");
    info!("trainer stopped");
    Ok(())
}

/// The live schedule; the one in force stays when the new expression does not parse (the
/// configuration's validation refuses such a value before it is written).
fn live_schedule(settings: &TrainerSettings, current: Schedule) -> Schedule {
    match Schedule::parse(&settings.schedule) {
        Ok(schedule) => schedule,
        Err(error) => {
            warn!(%error, "keeping the training schedule in force");
            current
        }
    }
}

fn check_interval(settings: &TrainerSettings) -> tokio::time::Interval {
    let every = Duration::from_secs(settings.check_interval_secs.max(1));
    let mut checks = tokio::time::interval(every);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    checks
}

/// One training run, recorded in the trainer's heartbeats: a failed run is a failed
/// operation; a skipped or abandoned one is not an operation.
async fn run_recorded(
    trainer: &Trainer,
    beat: &Beat,
    trigger: Trigger,
    token: &CancellationToken,
) -> RunReport {
    let started = Instant::now();
    let report = trainer.run_once(trigger, token).await;
    match report.outcome {
        RunOutcome::Skipped | RunOutcome::Abandoned => {}
        outcome => beat.record(outcome != RunOutcome::Failed, started.elapsed()),
    }
    report
}

async fn import_file(trainer: &Trainer, path: &Path) -> Result<ImportReport> {
    let owned = path.to_path_buf();
    let outcome = tokio::task::spawn_blocking(move || read_dataset(&owned, DatasetFormat::NslKdd))
        .await
        .map_err(|e| Error::Training(format!("reading the data set: {e}")))??;
    let mut report = import_examples(trainer.store(), &outcome.examples).await?;
    report.skipped_rows = outcome.errors.len();
    trainer.metrics().examples_imported.inc_by(report.inserted);
    Ok(report)
}
