//! One training run: load the labelled examples, train and evaluate the ensemble, register
//! every model, promote, announce.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vigil_bus::{Bus, PublishOptions};
use vigil_domain::{EventType, ModelType, SecurityEvent};
use vigil_ml::{
    ArtifactMetadata, DataPipeline, EvaluationReport, LabeledExample, ModelArtifact,
    ModelEvaluator, TrainConfig, fit_ensemble,
};
use vigil_proto::v1;
use vigil_store::{ModelRecord, NewModelVersion, Store};

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
    /// The new ensemble on the held-out test split (members under `models`).
    pub metrics: Option<serde_json::Value>,
    /// The production ensemble before this run, on the same held-out split.
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
            metrics: None,
            production_metrics: None,
            previous_production: None,
            registered: Vec::new(),
            artifact_id: None,
            promoted: false,
            event_published: false,
            seconds: BTreeMap::new(),
        }
    }

    /// The registered ensemble, if the run got that far.
    pub fn ensemble(&self) -> Option<&RegisteredModel> {
        self.registered
            .iter()
            .find(|m| m.model_type == ModelType::Ensemble)
    }
}

/// What the new ensemble is compared with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Baseline {
    /// No ensemble serves production yet.
    None,
    /// The production ensemble could not be loaded or scored; the predictor cannot use it
    /// either, so replacing it is the safe choice.
    Unusable { version: i32, error: String },
    /// The production ensemble's F1 on the new run's held-out split.
    Scored { version: i32, f1: f64 },
}

/// Whether a new ensemble with `new_f1` on the held-out split goes to production, and why.
/// It must beat the production ensemble's F1 on the same split by more than `margin`.
pub(crate) fn decide(new_f1: f64, baseline: &Baseline, margin: f64) -> (bool, String) {
    match baseline {
        Baseline::None => (
            true,
            format!("no ensemble in production; new F1 {new_f1:.4} on the held-out split"),
        ),
        Baseline::Unusable { version, error } => (
            true,
            format!("production ensemble v{version} cannot be evaluated ({error}); replaced"),
        ),
        Baseline::Scored { version, f1 } => {
            let gain = new_f1 - f1;
            if gain > margin {
                (
                    true,
                    format!(
                        "new F1 {new_f1:.4} beats production v{version} ({f1:.4}) by {gain:.4} \
                         > margin {margin} on the same held-out split"
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "new F1 {new_f1:.4} does not beat production v{version} ({f1:.4}) by \
                         more than the margin {margin} on the same held-out split \
                         (difference {gain:+.4}); production unchanged"
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
    margin: f64,
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
            margin: settings.promotion_margin,
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
            RunOutcome::Skipped => {}
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
        let examples: Vec<LabeledExample> = stored
            .into_iter()
            .map(|e| {
                *report
                    .examples
                    .by_source
                    .entry(e.source.as_str().to_string())
                    .or_default() += 1;
                LabeledExample {
                    signal: e.signal,
                    label: e.label,
                    source: e.source.as_str().to_string(),
                    class_name: None,
                    weight: e.weight,
                }
            })
            .collect();
        report.examples.total = examples.len();
        report.examples.threats = examples.iter().filter(|e| e.label).count();
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
        let run_id = report.run_id.clone();
        let training = tokio::task::spawn_blocking(move || {
            train(examples, &config, production_bytes, &run_id)
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
        report.examples.test = trained.test_rows;
        report.seconds = trained.seconds.clone();
        report.metrics = Some(trained.evaluation.to_json());
        report.artifact_id = Some(trained.artifact.metadata.model_version_id.clone());
        let baseline = match (&production, &trained.production) {
            (None, _) | (Some(_), None) => Baseline::None,
            (Some(record), Some(Ok(evaluation))) => {
                report.production_metrics = Some(evaluation.to_json());
                Baseline::Scored {
                    version: record.version.version,
                    f1: evaluation.ensemble.f1,
                }
            }
            (Some(record), Some(Err(error))) => Baseline::Unusable {
                version: record.version.version,
                error: error.clone(),
            },
        };
        let (promote, reason) = decide(trained.evaluation.ensemble.f1, &baseline, self.margin);
        report.reason = reason;

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
        for mut version in versions {
            version.id = uuid::Uuid::now_v7().to_string();
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
        let subject = match self
            .bus
            .topology()
            .event_subject(EventType::ModelPromoted.as_str())
        {
            Ok(subject) => subject,
            Err(error) => {
                warn!(%error, "cannot name the model_promoted subject");
                return false;
            }
        };
        let message = v1::SecurityEvent::from(event.clone());
        for attempt in 1..=3u32 {
            match self
                .bus
                .publisher()
                .publish(&subject, &message, PublishOptions::new(event.id.clone()))
                .await
            {
                Ok(_) => {
                    info!(model_id = %ensemble.id, version = ensemble.version, "published model_promoted");
                    return true;
                }
                Err(error) => {
                    warn!(%error, attempt, model_id = %ensemble.id, "failed to publish model_promoted");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                        .await;
                }
            }
        }
        false
    }
}

/// A trained ensemble and what was measured about it.
struct Trained {
    artifact: ModelArtifact,
    bytes: Vec<u8>,
    evaluation: EvaluationReport,
    /// The production ensemble on the same held-out split (`None`: there is none).
    production: Option<std::result::Result<EvaluationReport, String>>,
    refused: usize,
    train_rows: usize,
    validation_rows: usize,
    test_rows: usize,
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

/// The CPU-bound part of a run: clean, split, fit, evaluate the new and the production ensemble
/// on the same held-out split, package the artifact.
fn train(
    examples: Vec<LabeledExample>,
    config: &TrainConfig,
    production: Option<std::result::Result<Vec<u8>, String>>,
    run_id: &str,
) -> Result<Trained> {
    let mut pipeline = DataPipeline::from_examples(examples);
    let clean = pipeline.clean();
    let splits = pipeline.into_splits(&config.split)?;
    if splits.test.is_empty() {
        return Err(Error::Training(
            "too few examples: the held-out test split is empty".into(),
        ));
    }
    let mut seconds = BTreeMap::new();
    let ensemble = fit_ensemble(
        &splits.train,
        &splits.validation,
        config,
        &LogProgress { run_id },
        &mut seconds,
    )?;
    let evaluation = ModelEvaluator::evaluate(&ensemble, &splits.test)?;
    let production = production.map(|loaded| {
        let bytes = loaded?;
        let artifact = ModelArtifact::from_bytes(&bytes).map_err(|e| e.to_string())?;
        ModelEvaluator::evaluate(&artifact.ensemble, &splits.test).map_err(|e| e.to_string())
    });
    let mut metrics = evaluation.models.clone();
    metrics.insert(ModelType::Ensemble, evaluation.ensemble);
    let metadata = ArtifactMetadata {
        model_version_id: ModelArtifact::version_id_of(&ensemble)?,
        trained_at: Utc::now(),
        training_samples: splits.train.len() as u64,
        feature_names: ensemble.spec.feature_names(),
        hyperparameters: serde_json::to_value(config)
            .map_err(|e| Error::Training(format!("training configuration: {e}")))?,
        library_version: env!("CARGO_PKG_VERSION").to_string(),
        data_source: "registry".to_string(),
    };
    let artifact = ModelArtifact {
        metadata,
        ensemble,
        metrics,
    };
    let bytes = artifact.to_bytes()?;
    Ok(Trained {
        artifact,
        bytes,
        evaluation,
        production,
        refused: clean.refused.len(),
        train_rows: splits.train.len(),
        validation_rows: splits.validation.len(),
        test_rows: splits.test.len(),
        seconds,
    })
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
