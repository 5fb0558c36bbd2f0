//! One training run: load the labelled examples, train and evaluate the ensemble, register
//! every model, promote, announce.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vigil_bus::Bus;
use vigil_domain::{EventType, ModelMetrics, ModelType, SecurityEvent};
use vigil_ml::{
    ArtifactMetadata, DataPipeline, Ensemble, EvaluationReport, HashHoldout, Holdout, HoldoutRule,
    LabeledExample, ModelArtifact, ModelEvaluator, SplitConfig, TrainConfig, fit_ensemble,
};
use vigil_store::{ExampleSource, ModelRecord, NewModelVersion, Store};

use crate::metrics::TrainerMetrics;
use crate::{Error, Result};

/// Who the trainer's registry changes are recorded as.
pub const ACTOR: &str = "trainer";

/// The replica lock ([`vigil_store::ReplicaLock`]) a training run holds: one run at a time
/// across every trainer replica on the same database.
pub const RUN_LOCK: &str = "vigil-trainer.run";

/// How often a requested run asks again for the lock while another replica trains.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Trigger {
    /// The cron schedule fired.
    Schedule,
    /// Enough labelled examples arrived since the last run.
    NewExamples { count: u64 },
    /// Somebody asked over NATS (`vigil models train`, the feedback service's retraining
    /// trigger), saying why when it has a reason.
    Request {
        requested_by: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Schedule => f.write_str("schedule"),
            Trigger::NewExamples { count } => write!(f, "{count} new examples"),
            Trigger::Request {
                requested_by,
                reason,
            } if reason.is_empty() => write!(f, "request by {requested_by}"),
            Trigger::Request {
                requested_by,
                reason,
            } => write!(f, "request by {requested_by}: {reason}"),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The new ensemble was registered, made active and promoted to production.
    Promoted,
    /// The new ensemble was registered and made active; production kept the current one.
    NotPromoted,
    /// Nothing was trained or registered (no usable data, database down, ...); see `reason`.
    Failed,
    /// Shutdown came while the models were training; nothing was registered.
    Abandoned,
    /// Another trainer replica was running a training run, so this one did nothing (a
    /// scheduled or threshold run; a requested run waits for the other one instead).
    Skipped,
    /// A request refused by `trainer.max_requested_runs_per_hour`: no run started;
    /// `next_run_allowed_at` says when a request is allowed again.
    RateLimited,
}

/// The examples a run used. Every one is labelled by an analyst (`feedback`) or an imported
/// data set (`dataset`); vigil's own verdicts are never among them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExampleCounts {
    /// Signals loaded (one per `source_ref`, label resolved).
    pub total: usize,
    pub threats: usize,
    pub benign: usize,
    /// Whose label each loaded signal carries.
    pub by_source: BTreeMap<String, usize>,
    /// Each source's share of the loaded signals (0-1).
    pub share_by_source: BTreeMap<String, f64>,
    /// The most signals a run loads (`trainer.max_examples`).
    pub cap: u64,
    /// Labelled signals there were, by the source whose label wins, before the cap.
    pub available_by_source: BTreeMap<String, usize>,
    /// Signals the cap left out, by source.
    pub evicted_by_source: BTreeMap<String, usize>,
    /// Which signals the cap leaves out first: data-set rows, oldest first, then
    /// analyst-labelled rows, oldest first.
    pub eviction_order: Vec<String>,
    /// What an analyst-labelled signal's sample weight was multiplied by
    /// (`trainer.feedback_weight`).
    pub feedback_weight: f64,
    /// Dropped by the data pipeline's cleaning (non-finite values, bad weights).
    pub refused: usize,
    pub train: usize,
    pub validation: usize,
    pub test: usize,
}

impl ExampleCounts {
    /// Fills in the cap, what was available per source, what the cap left out and each
    /// source's share, from `by_source` (what was loaded).
    fn account_for_cap(&mut self, cap: u64, available: &[(vigil_store::ExampleSource, u64)]) {
        self.cap = cap;
        self.eviction_order = vigil_store::EVICTION_ORDER
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        for (source, count) in available {
            let name = source.as_str().to_string();
            let count = usize::try_from(*count).unwrap_or(usize::MAX);
            let loaded = self.by_source.get(&name).copied().unwrap_or(0);
            self.available_by_source.insert(name.clone(), count);
            self.evicted_by_source
                .insert(name, count.saturating_sub(loaded));
        }
        if self.total > 0 {
            self.share_by_source = self
                .by_source
                .iter()
                .map(|(source, n)| (source.clone(), *n as f64 / self.total as f64))
                .collect();
        }
    }
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub model_type: ModelType,
    /// The registry id (a UUID).
    pub id: String,
    pub version: i32,
}

impl RegisteredModel {
    fn of(record: &ModelRecord) -> Self {
        Self {
            model_type: record.version.model_type,
            id: record.version.id.clone(),
            version: record.version.version,
        }
    }
}

/// What one run did and why; logged, and sent back to whoever requested the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub outcome: RunOutcome,
    /// Why it was promoted or not, or what went wrong.
    pub reason: String,
    pub examples: ExampleCounts,
    /// The rows both ensembles were scored on, and whether production may have trained on
    /// some of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<HoldoutReport>,
    /// Stratified k-fold cross-validation on the training rows (`trainer.cross_val_folds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<CrossValidationSummary>,
    /// The new ensemble on the hold-out (members under `models`).
    pub metrics: Option<serde_json::Value>,
    /// The production ensemble before this run, on the same hold-out.
    pub production_metrics: Option<serde_json::Value>,
    /// The production ensemble before this run.
    pub previous_production: Option<RegisteredModel>,
    /// Every version this run registered, members first, the ensemble last.
    pub registered: Vec<RegisteredModel>,
    /// The content id of the artifact (`ens-...`), as the predictor reports it.
    pub artifact_id: Option<String>,
    pub promoted: bool,
    /// Whether MODEL_PROMOTED was published (only for a promotion).
    pub event_published: bool,
    /// Wall-clock seconds per training step.
    pub seconds: BTreeMap<String, f64>,
    /// For a request refused by the rate limit: when the next request is allowed (`None` with
    /// a limit of 0, which refuses them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_allowed_at: Option<DateTime<Utc>>,
}

impl RunReport {
    fn new(trigger: Trigger, started_at: DateTime<Utc>) -> Self {
        Self {
            run_id: uuid::Uuid::now_v7().to_string(),
            trigger,
            started_at,
            duration_seconds: 0.0,
            outcome: RunOutcome::Failed,
            reason: String::new(),
            examples: ExampleCounts::default(),
            holdout: None,
            cross_validation: None,
            metrics: None,
            production_metrics: None,
            previous_production: None,
            registered: Vec::new(),
            artifact_id: None,
            promoted: false,
            event_published: false,
            seconds: BTreeMap::new(),
            next_run_allowed_at: None,
        }
    }

    /// The report of a request that started no run (refused, or left over at shutdown).
    pub(crate) fn unstarted(trigger: Trigger, outcome: RunOutcome, reason: String) -> Self {
        Self {
            outcome,
            reason,
            ..Self::new(trigger, Utc::now())
        }
    }

    /// The registered ensemble, if the run got that far.
    pub fn ensemble(&self) -> Option<&RegisteredModel> {
        self.registered
            .iter()
            .find(|m| m.model_type == ModelType::Ensemble)
    }
}

/// The hold-out of a run: the rows the new and the production ensemble are scored on.
///
/// A row is held out when the SHA-256 of its `source_ref` (salted with the split seed) falls
/// below the test share ([`HashHoldout`]), so every run with the same rule holds out the same
/// rows, and a production ensemble trained by an earlier run with that rule never trained on
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutReport {
    pub rule: HoldoutRule,
    /// Rows held out and scored (after cleaning).
    pub rows: usize,
    pub threats: usize,
    /// SHA-256 (hex) of the held-out `source_ref`s in order, each followed by a 0 byte: two
    /// runs with the same digest held out the same rows.
    pub digest: String,
    /// The rule the production ensemble was scored with when it was trained (`None`: no
    /// production ensemble, or its artifact does not record one).
    pub production_rule: Option<HoldoutRule>,
    /// Set when production's rule is not this run's: some of this hold-out's rows may have
    /// been in production's training data, which flatters production.
    pub production_caveat: Option<String>,
    /// The analysts' verdicts among the held-out rows, and each ensemble's errors on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysts: Option<AnalystHoldout>,
}

/// The held-out rows labelled by analysts (verdicts neither ensemble trained on): where
/// production is known to be wrong, and whether the new ensemble is too.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnalystHoldout {
    pub rows: usize,
    /// The new ensemble's wrong calls on them.
    pub errors: usize,
    /// The production ensemble's (`None`: none in production, or it could not be scored).
    pub production_errors: Option<usize>,
}

/// Cross-validation of the training recipe on the run's training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidationSummary {
    pub folds: usize,
    /// Training rows it used (at most `trainer.cross_val_max_rows`, evenly spaced).
    pub rows: usize,
    /// Mean metrics over the folds per model; the mean F1 is each registry row's
    /// `cross_val_score`. Empty when it failed.
    pub mean: BTreeMap<ModelType, ModelMetrics>,
    pub seconds: f64,
    /// Why it could not run (too few rows of a class for the folds, ...); the run goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the new ensemble is compared with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Baseline {
    /// No ensemble serves production yet.
    None,
    /// The production ensemble could not be loaded or scored; the predictor cannot use it
    /// either, so replacing it is the safe choice.
    Unusable { version: i32, error: String },
    /// The production ensemble's F1 on the new run's hold-out, and on its analysts' rows the
    /// two ensembles' errors.
    Scored {
        version: i32,
        f1: f64,
        analysts: Option<AnalystHoldout>,
    },
}

/// Whether a new ensemble with `new_f1` on the hold-out goes to production, and why. It must
/// beat the production ensemble's F1 on the same rows by more than `margin`; or, when the
/// hold-out holds analysts' verdicts, make fewer errors on them than production while its F1
/// is no more than `margin` below production's.
///
/// The second way is how analysts' verdicts reach production: they are a few rows among a data
/// set's thousands, chosen where the model is wrong, so what they teach barely moves the F1 of
/// the whole hold-out (already 0.99 on NSL-KDD: no run could beat it by the default margin).
pub(crate) fn decide(new_f1: f64, baseline: &Baseline, margin: f64) -> (bool, String) {
    match baseline {
        Baseline::None => (
            true,
            format!("no ensemble in production; new F1 {new_f1:.4} on the hold-out"),
        ),
        Baseline::Unusable { version, error } => (
            true,
            format!("production ensemble v{version} cannot be evaluated ({error}); replaced"),
        ),
        Baseline::Scored {
            version,
            f1,
            analysts,
        } => {
            let gain = new_f1 - f1;
            let on_verdicts = analysts.and_then(|a| {
                a.production_errors
                    .filter(|_| a.rows > 0)
                    .map(|production| (a.rows, a.errors, production))
            });
            let verdicts = on_verdicts.map_or_else(String::new, |(rows, new, production)| {
                format!(
                    "; on the {rows} analysts' verdicts held out, wrong calls: new {new}, \
                     production {production}"
                )
            });
            if gain > margin {
                (
                    true,
                    format!(
                        "new F1 {new_f1:.4} beats production v{version} ({f1:.4}) by {gain:.4} \
                         > margin {margin} on the same hold-out{verdicts}"
                    ),
                )
            } else if let Some((rows, new, production)) = on_verdicts
                && new < production
                && gain >= -margin
            {
                (
                    true,
                    format!(
                        "on the {rows} analysts' verdicts held out the new ensemble makes fewer \
                         wrong calls than production v{version} ({new} against {production}), \
                         and its F1 \
                         {new_f1:.4} is within the margin {margin} of production's ({f1:.4}, \
                         difference {gain:+.4}) on the same hold-out"
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "new F1 {new_f1:.4} does not beat production v{version} ({f1:.4}) by \
                         more than the margin {margin} on the same hold-out \
                         (difference {gain:+.4}){verdicts}; production unchanged"
                    ),
                )
            }
        }
    }
}

/// Trains, registers and promotes; one run at a time per trainer.
pub struct Trainer {
    store: Store,
    bus: Bus,
    train_config: TrainConfig,
    max_examples: u64,
    /// Multiplies the sample weight of analyst-labelled signals.
    feedback_weight: f64,
    margin: f64,
    cross_val: CrossValPlan,
    metrics: TrainerMetrics,
    /// When the last run started: examples recorded after it count as new.
    watermark: Mutex<DateTime<Utc>>,
    /// When this replica last registered an ensemble, to tell its own runs from others'.
    registered_here: Mutex<Option<DateTime<Utc>>>,
}

impl Trainer {
    /// A trainer; its first threshold check counts examples recorded after the newest
    /// registered ensemble was trained (all of them when there is none).
    pub async fn new(
        store: Store,
        bus: Bus,
        train_config: TrainConfig,
        settings: &vigil_config::TrainerSettings,
        metrics: &vigil_telemetry::Metrics,
    ) -> Result<Self> {
        let watermark = store
            .models()
            .newest_registered_at(ModelType::Ensemble)
            .await?
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        Ok(Self {
            store,
            bus,
            train_config,
            max_examples: settings.max_examples,
            feedback_weight: settings.feedback_weight,
            margin: settings.promotion_margin,
            cross_val: CrossValPlan {
                folds: settings.cross_val_folds,
                max_rows: settings.cross_val_max_rows,
            },
            metrics: TrainerMetrics::register(metrics),
            watermark: Mutex::new(watermark),
            registered_here: Mutex::new(None),
        })
    }

    /// The store the trainer reads and writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn metrics(&self) -> &TrainerMetrics {
        &self.metrics
    }

    /// Examples recorded since the last run started here or, when the newest ensemble was
    /// registered by another replica, since that registration if it is later: examples
    /// another replica already trained on do not start a second run. (Examples recorded
    /// while that replica trained then count for neither; the next run still uses them.)
    pub async fn new_examples(&self) -> Result<u64> {
        let own = *self.watermark.lock().unwrap_or_else(|p| p.into_inner());
        let mine = *self
            .registered_here
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let since = match self.newest_ensemble_at().await? {
            Some(newest) if Some(newest) != mine => own.max(newest),
            _ => own,
        };
        Ok(self.store.training().count_since(since).await?)
    }

    /// When the newest ensemble was registered, by this replica or another.
    pub async fn newest_ensemble_at(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .store
            .models()
            .newest_registered_at(ModelType::Ensemble)
            .await?)
    }

    /// Runs once and reports; failures are in the report, never an `Err`. Cancelling `token`
    /// while the models train abandons the run (nothing is registered); once registration has
    /// begun the run completes, so the registry never holds half a run's promotions.
    ///
    /// One run at a time across replicas ([`RUN_LOCK`]): a scheduled or threshold run finds
    /// another replica training and is skipped; a requested run waits for it.
    pub async fn run_once(&self, trigger: Trigger, token: &CancellationToken) -> RunReport {
        let clock = Instant::now();
        let mut report = RunReport::new(trigger, Utc::now());
        let lock = match self.run_lock(&report.trigger, token).await {
            Ok(Some(lock)) => lock,
            Ok(None) if token.is_cancelled() => {
                report.outcome = RunOutcome::Abandoned;
                report.reason = "shut down while waiting for another replica's training run".into();
                return report;
            }
            Ok(None) => {
                report.outcome = RunOutcome::Skipped;
                report.reason = "another trainer replica is running a training run".into();
                self.metrics.runs_skipped.inc();
                info!(run_id = %report.run_id, trigger = %report.trigger,
                      "training run skipped: another replica is training");
                return report;
            }
            Err(error) => {
                report.outcome = RunOutcome::Failed;
                report.reason = format!("cannot take the training run lock: {error}");
                self.metrics.runs_failed.inc();
                warn!(run_id = %report.run_id, reason = %report.reason, "training run failed");
                return report;
            }
        };
        report.started_at = Utc::now();
        *self.watermark.lock().unwrap_or_else(|p| p.into_inner()) = report.started_at;
        self.metrics.runs_started.inc();
        info!(run_id = %report.run_id, trigger = %report.trigger, "training run started");
        if let Err(error) = self.run_steps(&mut report, token).await {
            report.outcome = RunOutcome::Failed;
            report.reason = error.to_string();
        }
        if let Err(error) = lock.release().await {
            // Its connection is closed instead, which frees the lock too.
            warn!(%error, run_id = %report.run_id, "cannot release the training run lock");
        }
        report.duration_seconds = clock.elapsed().as_secs_f64();
        self.metrics
            .run_duration_seconds
            .observe(report.duration_seconds);
        match report.outcome {
            RunOutcome::Failed => {
                self.metrics.runs_failed.inc();
                warn!(run_id = %report.run_id, reason = %report.reason, "training run failed");
            }
            RunOutcome::Abandoned => {
                info!(run_id = %report.run_id, "training run abandoned at shutdown");
            }
            RunOutcome::Skipped | RunOutcome::RateLimited => {}
            RunOutcome::Promoted | RunOutcome::NotPromoted => info!(
                run_id = %report.run_id,
                outcome = ?report.outcome,
                examples = report.examples.total,
                seconds = report.duration_seconds,
                reason = %report.reason,
                "training run finished"
            ),
        }
        report
    }

    /// The run lock: at once or not at all for a scheduled or threshold run, waited for by a
    /// requested one (`None` also when shutdown comes while waiting).
    async fn run_lock(
        &self,
        trigger: &Trigger,
        token: &CancellationToken,
    ) -> Result<Option<vigil_store::ReplicaLock>> {
        let mut waiting = false;
        loop {
            if let Some(lock) = self.store.try_lock(RUN_LOCK).await? {
                return Ok(Some(lock));
            }
            if !matches!(trigger, Trigger::Request { .. }) {
                return Ok(None);
            }
            if !waiting {
                waiting = true;
                info!(trigger = %trigger, "waiting for another replica's training run");
            }
            tokio::select! {
                () = token.cancelled() => return Ok(None),
                () = tokio::time::sleep(LOCK_RETRY) => {}
            }
        }
    }

    async fn run_steps(&self, report: &mut RunReport, token: &CancellationToken) -> Result<()> {
        let registry = self.store.models();
        let production = registry.production(ModelType::Ensemble).await?;
        let production_bytes = match &production {
            Some(record) => Some(
                registry
                    .load_artifact(&record.version.id)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            None => None,
        };
        report.previous_production = production.as_ref().map(RegisteredModel::of);

        let training = self.store.training();
        let available = training.resolved_by_source().await?;
        let stored = training.load(self.max_examples).await?;
        let examples: Vec<(String, LabeledExample)> = stored
            .into_iter()
            .map(|e| {
                *report
                    .examples
                    .by_source
                    .entry(e.source.as_str().to_string())
                    .or_default() += 1;
                let weight = match e.source {
                    vigil_store::ExampleSource::Feedback => e.weight * self.feedback_weight,
                    vigil_store::ExampleSource::Dataset => e.weight,
                };
                let example = LabeledExample {
                    signal: e.signal,
                    label: e.label,
                    source: e.source.as_str().to_string(),
                    class_name: None,
                    weight,
                };
                (e.source_ref, example)
            })
            .collect();
        report.examples.feedback_weight = self.feedback_weight;
        report.examples.total = examples.len();
        report.examples.threats = examples.iter().filter(|(_, e)| e.label).count();
        report.examples.benign = report.examples.total - report.examples.threats;
        report
            .examples
            .account_for_cap(self.max_examples, &available);
        self.metrics
            .last_run_examples
            .set(i64::try_from(examples.len()).unwrap_or(i64::MAX));
        info!(
            run_id = %report.run_id,
            examples = report.examples.total,
            threats = report.examples.threats,
            "training on labelled examples"
        );

        let config = self.train_config.clone();
        let plan = self.cross_val;
        let run_id = report.run_id.clone();
        let training = tokio::task::spawn_blocking(move || {
            train(examples, &config, plan, production_bytes, &run_id)
        });
        let trained = tokio::select! {
            biased;
            () = token.cancelled() => {
                report.outcome = RunOutcome::Abandoned;
                report.reason = "shutdown while training; nothing was registered".into();
                return Ok(());
            }
            joined = training => joined.map_err(|e| Error::Training(format!("training task: {e}")))?,
        }?;

        report.examples.refused = trained.refused;
        report.examples.train = trained.train_rows;
        report.examples.validation = trained.validation_rows;
        report.examples.test = trained.holdout.rows;
        report.seconds = trained.seconds.clone();
        report.metrics = Some(trained.evaluation.to_json());
        report.artifact_id = Some(trained.artifact.metadata.model_version_id.clone());
        report.cross_validation = trained.cross_validation.clone();
        let mut holdout = trained.holdout.clone();
        let baseline = match (&production, &trained.production) {
            (None, _) | (Some(_), None) => Baseline::None,
            (Some(record), Some(Ok(scored))) => {
                report.production_metrics = Some(scored.evaluation.to_json());
                holdout.production_rule = scored.holdout.as_ref().map(|h| h.rule.clone());
                holdout.production_caveat = production_caveat(
                    record.version.version,
                    scored.holdout.as_ref().map(|h| &h.rule),
                    &holdout.rule,
                );
                holdout.analysts = holdout.analysts.map(|a| AnalystHoldout {
                    production_errors: Some(scored.analyst_errors),
                    ..a
                });
                Baseline::Scored {
                    version: record.version.version,
                    f1: scored.evaluation.ensemble.f1,
                    analysts: holdout.analysts,
                }
            }
            (Some(record), Some(Err(error))) => Baseline::Unusable {
                version: record.version.version,
                error: error.clone(),
            },
        };
        let (promote, mut reason) = decide(trained.evaluation.ensemble.f1, &baseline, self.margin);
        if let Some(caveat) = &holdout.production_caveat {
            warn!(run_id = %report.run_id, %caveat, "the comparison with production may be optimistic");
            reason.push_str(&format!(" ({caveat})"));
        }
        report.reason = reason;
        report.holdout = Some(holdout);

        self.register(report, &trained).await?;
        if promote {
            self.promote(report).await?;
            report.outcome = RunOutcome::Promoted;
            report.promoted = true;
            self.metrics.promotions.inc();
            report.event_published = self.announce(report, &trained.evaluation).await;
        } else {
            report.outcome = RunOutcome::NotPromoted;
            self.metrics.promotions_refused.inc();
        }
        Ok(())
    }

    /// Registers the members and the ensemble (all with the one artifact) and makes them the
    /// active versions of their types.
    async fn register(&self, report: &mut RunReport, trained: &Trained) -> Result<()> {
        let registry = self.store.models();
        let feature_spec = serde_json::to_value(&trained.artifact.ensemble.spec)
            .map_err(|e| Error::Training(format!("feature spec: {e}")))?;
        let reason = format!(
            "run {}: trained on {} examples ({})",
            report.run_id, report.examples.total, report.trigger
        );
        let mut versions = trained.artifact.model_versions(1);
        // Members first, so a registered ensemble always has its members registered.
        versions.sort_by_key(|v| v.model_type == ModelType::Ensemble);
        // The registry row says how the run held out rows and cross-validated, beside the
        // training configuration.
        let holdout = report
            .holdout
            .as_ref()
            .map(|h| serde_json::json!({ "rule": h.rule, "rows": h.rows, "digest": h.digest }));
        let cross_validation = report
            .cross_validation
            .as_ref()
            .map(|cv| serde_json::json!({ "folds": cv.folds, "rows": cv.rows }));
        for mut version in versions {
            version.id = uuid::Uuid::now_v7().to_string();
            if let serde_json::Value::Object(map) = &mut version.hyperparameters {
                if let Some(holdout) = &holdout {
                    map.insert("holdout".into(), holdout.clone());
                }
                if let Some(cv) = &cross_validation {
                    map.insert("cross_validation".into(), cv.clone());
                }
            }
            let new = NewModelVersion {
                version,
                feature_spec: feature_spec.clone(),
                artifact: trained.bytes.clone(),
            };
            let record = registry.register(&new, ACTOR, &reason).await?;
            self.metrics.models_registered.inc();
            if record.version.model_type == ModelType::Ensemble {
                *self
                    .registered_here
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(record.created_at);
            }
            report.registered.push(RegisteredModel::of(&record));
        }
        let active_reason = format!("newest trained version (run {})", report.run_id);
        for model in &report.registered {
            registry
                .promote_to_active(&model.id, ACTOR, &active_reason)
                .await?;
        }
        Ok(())
    }

    /// Moves the run's versions into production, the ensemble last.
    async fn promote(&self, report: &RunReport) -> Result<()> {
        let registry = self.store.models();
        let reason = format!("run {}: {}", report.run_id, report.reason);
        for model in &report.registered {
            registry
                .promote_to_production(&model.id, ACTOR, &reason)
                .await?;
        }
        Ok(())
    }

    /// Publishes MODEL_PROMOTED for the run's ensemble; the message id is derived from the
    /// registry id, so a retried publish is stored once. Returns whether it was stored.
    async fn announce(&self, report: &RunReport, evaluation: &EvaluationReport) -> bool {
        let Some(ensemble) = report.ensemble() else {
            return false;
        };
        let event = SecurityEvent {
            id: format!("model_promoted:{}", ensemble.id),
            event_type: EventType::ModelPromoted,
            timestamp: Utc::now(),
            source: ACTOR.into(),
            correlation_id: report.run_id.clone(),
            severity: None,
            data: serde_json::json!({
                "model_id": ensemble.id,
                "model_type": ModelType::Ensemble.as_str(),
                "version": ensemble.version,
                "artifact_id": report.artifact_id,
                "previous_model_id": report.previous_production.as_ref().map(|m| m.id.clone()),
                "metrics": evaluation.to_json(),
                "reason": report.reason,
            }),
        };
        crate::promoted::publish_model_promoted(&self.bus, &event).await
    }
}

/// How a run cross-validates (`trainer.cross_val_folds`, `trainer.cross_val_max_rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CrossValPlan {
    /// 0: off.
    pub(crate) folds: usize,
    pub(crate) max_rows: usize,
}

/// The production ensemble scored on the run's hold-out, with the hold-out it was scored on
/// when it was trained.
struct ProductionScore {
    evaluation: EvaluationReport,
    holdout: Option<Holdout>,
    /// Its wrong calls on the held-out analysts' verdicts.
    analyst_errors: usize,
}

/// A trained ensemble and what was measured about it.
struct Trained {
    artifact: ModelArtifact,
    bytes: Vec<u8>,
    evaluation: EvaluationReport,
    /// The production ensemble on the same hold-out (`None`: there is none).
    production: Option<std::result::Result<ProductionScore, String>>,
    holdout: HoldoutReport,
    cross_validation: Option<CrossValidationSummary>,
    refused: usize,
    train_rows: usize,
    validation_rows: usize,
    seconds: BTreeMap<String, f64>,
}

/// Logs the library's long steps.
struct LogProgress<'a> {
    run_id: &'a str,
}

impl vigil_ml::Progress for LogProgress<'_> {
    fn stage(&self, name: &str, total: u64) {
        info!(run_id = %self.run_id, step = name, total, "training step started");
    }
    fn advance(&self, _name: &str, _delta: u64) {}
    fn finish_stage(&self, name: &str) {
        info!(run_id = %self.run_id, step = name, "training step finished");
    }
}

/// The trainer's hold-out rule for `config`: rows whose `source_ref` hashes (salted with the
/// split seed) below the test share.
pub fn holdout_rule(config: &TrainConfig) -> HashHoldout {
    HashHoldout::new("source_ref", config.split.test, config.split.seed)
}

/// Why comparing production v`version` on this run's hold-out may flatter it: it was scored
/// on another rule's hold-out when it was trained (or its artifact does not say), so it may
/// have trained on some of these rows. `None` when the rules are the same.
pub(crate) fn production_caveat(
    version: i32,
    production: Option<&HoldoutRule>,
    this_run: &HoldoutRule,
) -> Option<String> {
    match production {
        Some(rule) if rule == this_run => None,
        Some(rule) => Some(format!(
            "production v{version} held out rows by another rule ({}), not this run's ({}): it \
             may have trained on some of this hold-out, so the comparison may be optimistic \
             for production",
            rule.describe(),
            this_run.describe()
        )),
        None => Some(format!(
            "production v{version}'s artifact does not record how it held out rows: it may \
             have trained on some of this hold-out, so the comparison may be optimistic for \
             production"
        )),
    }
}

/// How many of `examples` the ensemble calls wrongly (threat for benign or benign for threat).
fn wrong_calls(ensemble: &Ensemble, examples: &[&LabeledExample]) -> Result<usize> {
    let mut wrong = 0;
    for example in examples {
        let score = ensemble
            .score(&example.signal)
            .map_err(|e| Error::Training(format!("scoring a held-out verdict: {e}")))?;
        if score.is_threat != example.label {
            wrong += 1;
        }
    }
    Ok(wrong)
}

/// The CPU-bound part of a run: hold out the rows whose `source_ref` the rule picks, clean,
/// split the rest into train and validation, fit, cross-validate, evaluate the new and the
/// production ensemble on the same hold-out, package the artifact.
fn train(
    examples: Vec<(String, LabeledExample)>,
    config: &TrainConfig,
    plan: CrossValPlan,
    production: Option<std::result::Result<Vec<u8>, String>>,
    run_id: &str,
) -> Result<Trained> {
    let rule = holdout_rule(config);
    let mut digest = Sha256::new();
    let (mut held, mut rest) = (Vec::new(), Vec::new());
    for (source_ref, example) in examples {
        if rule.holds_out(&source_ref) {
            digest.update(source_ref.as_bytes());
            digest.update([0]);
            held.push(example);
        } else {
            rest.push(example);
        }
    }
    let mut held = DataPipeline::from_examples(held);
    let held_clean = held.clean();
    let held = held.into_examples();
    if held.is_empty() {
        return Err(Error::Training(
            "too few examples: the hold-out is empty".into(),
        ));
    }
    let mut pipeline = DataPipeline::from_examples(rest);
    let clean = pipeline.clean();
    // The rest goes to train and validation in the configured proportion.
    let split = config.split;
    let kept = split.train + split.validation;
    let splits = pipeline.into_splits(&SplitConfig {
        train: split.train / kept,
        validation: split.validation / kept,
        test: 0.0,
        seed: split.seed,
    })?;
    let mut seconds = BTreeMap::new();
    let ensemble = fit_ensemble(
        &splits.train,
        &splits.validation,
        config,
        &LogProgress { run_id },
        &mut seconds,
    )?;
    let evaluation = ModelEvaluator::evaluate(&ensemble, &held)?;
    let verdicts: Vec<&LabeledExample> = held
        .iter()
        .filter(|e| e.source == ExampleSource::Feedback.as_str())
        .collect();
    let analysts = (!verdicts.is_empty())
        .then(|| {
            Ok::<_, Error>(AnalystHoldout {
                rows: verdicts.len(),
                errors: wrong_calls(&ensemble, &verdicts)?,
                production_errors: None,
            })
        })
        .transpose()?;
    let production = production.map(|loaded| {
        let bytes = loaded?;
        let artifact = ModelArtifact::from_bytes(&bytes).map_err(|e| e.to_string())?;
        let evaluation =
            ModelEvaluator::evaluate(&artifact.ensemble, &held).map_err(|e| e.to_string())?;
        let analyst_errors =
            wrong_calls(&artifact.ensemble, &verdicts).map_err(|e| e.to_string())?;
        Ok(ProductionScore {
            evaluation,
            holdout: artifact.metadata.holdout,
            analyst_errors,
        })
    });
    let cross_validation = (plan.folds >= 2).then(|| {
        let started = Instant::now();
        let rows = evenly_spaced(
            splits.train.iter().chain(&splits.validation),
            splits.train.len() + splits.validation.len(),
            plan.max_rows,
        );
        let outcome =
            ModelEvaluator::cross_validate(&rows, config, plan.folds, &LogProgress { run_id });
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(cv) => CrossValidationSummary {
                folds: plan.folds,
                rows: rows.len(),
                mean: cv.mean,
                seconds,
                error: None,
            },
            Err(error) => {
                warn!(%run_id, %error, "cross-validation failed; the run goes on without it");
                CrossValidationSummary {
                    folds: plan.folds,
                    rows: rows.len(),
                    mean: BTreeMap::new(),
                    seconds,
                    error: Some(error.to_string()),
                }
            }
        }
    });
    if let Some(cv) = &cross_validation {
        seconds.insert("cross_validation".to_string(), cv.seconds);
    }
    let mut metrics = evaluation.models.clone();
    metrics.insert(ModelType::Ensemble, evaluation.ensemble);
    if let Some(cv) = &cross_validation {
        for (model_type, m) in &mut metrics {
            m.cross_val_score = cv.mean.get(model_type).map(|mean| mean.f1);
        }
    }
    let holdout = Holdout {
        rule: HoldoutRule::Hash(rule),
        rows: held.len() as u64,
    };
    let metadata = ArtifactMetadata {
        model_version_id: ModelArtifact::version_id_of(&ensemble)?,
        trained_at: Utc::now(),
        training_samples: splits.train.len() as u64,
        feature_names: ensemble.spec.feature_names(),
        hyperparameters: serde_json::to_value(config)
            .map_err(|e| Error::Training(format!("training configuration: {e}")))?,
        library_version: env!("CARGO_PKG_VERSION").to_string(),
        data_source: "registry".to_string(),
        holdout: Some(holdout.clone()),
    };
    let artifact = ModelArtifact {
        metadata,
        ensemble,
        metrics,
    };
    let bytes = artifact.to_bytes()?;
    let digest: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Trained {
        artifact,
        bytes,
        evaluation,
        production,
        holdout: HoldoutReport {
            rule: holdout.rule,
            rows: held.len(),
            threats: held.iter().filter(|e| e.label).count(),
            digest,
            production_rule: None,
            production_caveat: None,
            analysts,
        },
        cross_validation,
        refused: clean.refused.len() + held_clean.refused.len(),
        train_rows: splits.train.len(),
        validation_rows: splits.validation.len(),
        seconds,
    })
}

/// At most `max` of the `len` rows `rows` yields, evenly spaced (all of them when there are
/// no more than `max`), cloned.
fn evenly_spaced<'a>(
    rows: impl Iterator<Item = &'a LabeledExample>,
    len: usize,
    max: usize,
) -> Vec<LabeledExample> {
    if len <= max {
        return rows.cloned().collect();
    }
    // Row i is kept when it is the first of its stride: floor(i * max / len) changes at it.
    rows.enumerate()
        .filter(|(i, _)| *i == 0 || (i * max / len) != ((i - 1) * max / len))
        .map(|(_, e)| e.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_ensemble_always_goes_to_production() {
        let (promote, reason) = decide(0.4, &Baseline::None, 0.005);
        assert!(promote);
        assert!(reason.contains("no ensemble in production"), "{reason}");
    }

    #[test]
    fn a_better_ensemble_must_beat_production_by_more_than_the_margin() {
        let baseline = Baseline::Scored {
            version: 3,
            f1: 0.90,
            analysts: None,
        };
        assert!(decide(0.91, &baseline, 0.005).0);
        let (promote, reason) = decide(0.903, &baseline, 0.005);
        assert!(!promote);
        assert!(reason.contains("does not beat production v3"), "{reason}");
        assert!(
            !decide(0.90, &baseline, 0.0).0,
            "a tie is not an improvement"
        );
        assert!(!decide(0.80, &baseline, 0.0).0);
    }

    #[test]
    fn fewer_errors_on_held_out_verdicts_promote_an_ensemble_within_the_margin() {
        let with = |errors: usize, production: usize| Baseline::Scored {
            version: 3,
            f1: 0.996,
            analysts: Some(AnalystHoldout {
                rows: 8,
                errors,
                production_errors: Some(production),
            }),
        };
        // Fixes 4 of production's 6 mistakes; 0.002 below production's F1, within 0.005.
        let (promote, reason) = decide(0.994, &with(2, 6), 0.005);
        assert!(promote, "{reason}");
        assert!(
            reason.contains(
                "on the 8 analysts' verdicts held out the new ensemble makes fewer wrong calls \
                 than production v3 (2 against 6)"
            ),
            "{reason}"
        );
        // As many errors as production: no evidence it learnt anything.
        let (promote, reason) = decide(0.996, &with(6, 6), 0.005);
        assert!(!promote);
        assert!(
            reason.contains("wrong calls: new 6, production 6"),
            "{reason}"
        );
        // Fewer errors, but worse than the margin on the whole hold-out.
        assert!(!decide(0.99, &with(0, 6), 0.005).0);
        // No verdicts held out, or production not scored on them: the F1 rule alone.
        let none_held = Baseline::Scored {
            version: 3,
            f1: 0.996,
            analysts: Some(AnalystHoldout {
                rows: 0,
                errors: 0,
                production_errors: Some(0),
            }),
        };
        assert!(!decide(0.996, &none_held, 0.005).0);
        let unscored = Baseline::Scored {
            version: 3,
            f1: 0.996,
            analysts: Some(AnalystHoldout {
                rows: 8,
                errors: 0,
                production_errors: None,
            }),
        };
        assert!(!decide(0.996, &unscored, 0.005).0);
    }

    #[test]
    fn an_unusable_production_ensemble_is_replaced() {
        let baseline = Baseline::Unusable {
            version: 2,
            error: "checksum mismatch".into(),
        };
        let (promote, reason) = decide(0.5, &baseline, 0.005);
        assert!(promote);
        assert!(reason.contains("checksum mismatch"), "{reason}");
    }

    #[test]
    fn the_report_says_what_the_cap_left_out_and_each_source_share() {
        use vigil_store::ExampleSource;
        let mut counts = ExampleCounts {
            total: 4,
            by_source: [("dataset".to_string(), 3), ("feedback".to_string(), 1)].into(),
            ..ExampleCounts::default()
        };
        counts.account_for_cap(
            4,
            &[(ExampleSource::Feedback, 1), (ExampleSource::Dataset, 10)],
        );
        assert_eq!(counts.cap, 4);
        assert_eq!(counts.evicted_by_source["dataset"], 7);
        assert_eq!(counts.evicted_by_source["feedback"], 0);
        assert_eq!(counts.available_by_source["dataset"], 10);
        assert!((counts.share_by_source["dataset"] - 0.75).abs() < 1e-12);
        assert!((counts.share_by_source["feedback"] - 0.25).abs() < 1e-12);
        assert!(counts.eviction_order[0].starts_with("dataset"));
    }

    #[test]
    fn reports_round_trip_as_json() {
        let mut report = RunReport::new(
            Trigger::Request {
                requested_by: "cli".into(),
                reason: "testing".into(),
            },
            Utc::now(),
        );
        report.registered.push(RegisteredModel {
            model_type: ModelType::Ensemble,
            id: "x".into(),
            version: 1,
        });
        let json = serde_json::to_string(&report).unwrap_or_default();
        let back: RunReport = serde_json::from_str(&json).expect("report decodes");
        assert_eq!(back, report);
        assert_eq!(back.ensemble().map(|m| m.version), Some(1));
    }
}
