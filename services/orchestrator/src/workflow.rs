//! One workflow per threat signal, each step idempotent by event id.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use serde_json::json;
use tonic::transport::Channel;
use tracing::Instrument;
use vigil_bus::{Bus, Delivery, PublishOptions, TraceParent};
use vigil_config::Config;
use vigil_domain::{
    ActionStatus, Assessment, PredictionResult, RemediationAction, SecurityEvent, Severity,
    StepOutcome, ThreatSignal, WorkflowExecution, WorkflowStatus, WorkflowStep,
};
use vigil_notify::Notifier;
use vigil_proto::v1;
use vigil_proto::v1::predictor_client::PredictorClient;
use vigil_runtime::LiveConfig;
use vigil_soar::{AlertRouter, PreviousAlert, Remediator, ThreatAssessor, incident, threat_key};

use crate::effects::Effects;
use vigil_store::Store;
use vigil_telemetry::Metrics;

use crate::commit::{Committer, IncidentRequest, WorkflowRecord};
use crate::events::{
    AlertsResult, ChannelResult, IncidentResult, RemediationResult, WorkflowResults,
    workflow_events,
};
use crate::metrics::OrchestratorMetrics;
use crate::{Error, Result};

const WORKFLOW_TYPE: &str = "threat_response";

/// No live configuration revision is ever this one.
const NEVER_APPLIED: u64 = u64::MAX;

/// Runs workflows; shared by every in-flight task.
pub struct Orchestrator {
    bus: Bus,
    store: Store,
    committer: Committer,
    live: LiveConfig,
    /// The assessor of the live configuration revision it was built for.
    assessor: Mutex<(u64, Arc<ThreatAssessor>)>,
    router: AlertRouter,
    effects: Arc<Effects>,
    predictor: Option<PredictorClient<Channel>>,
    /// How often a running workflow extends its message's ack deadline: a third of `ack_wait`.
    progress_every: Duration,
    metrics: OrchestratorMetrics,
}

/// The live settings one workflow runs with, read once when it starts.
struct Policy {
    config: Arc<Config>,
    assessor: Arc<ThreatAssessor>,
}

impl Policy {
    fn predict_timeout(&self) -> Duration {
        Duration::from_millis(self.config.orchestrator.predict_timeout_ms)
    }

    fn incident_min_severity(&self) -> Severity {
        self.config.soar.incidents.min_severity
    }
}

/// What a step failure means for the input message.
struct StepFailure {
    step: &'static str,
    reason: String,
}

impl Orchestrator {
    /// Builds the components from config; a predictor is used only when `predictor_url` is set.
    /// Thresholds, assessment, routing rules, remediation rails, the incident minimum and the
    /// predict deadline follow `live` from one workflow to the next.
    pub fn new(
        config: &Config,
        live: LiveConfig,
        bus: Bus,
        store: Store,
        metrics: &Metrics,
    ) -> Result<Self> {
        let soar = &config.soar;
        let notifier = Notifier::from_settings(&soar.channels, &soar.delivery)
            .map_err(|e| Error::Setup(e.to_string()))?;
        let router = AlertRouter::new(&soar.routing, notifier.channels());
        let remediator = Remediator::from_settings(soar.remediation.clone())
            .map_err(|e| Error::Setup(e.to_string()))?;
        let predictor = match &config.orchestrator.predictor_url {
            Some(url) => {
                let endpoint = vigil_runtime::grpc_tls::predictor_endpoint(
                    url,
                    &config.orchestrator.predictor_tls,
                )
                .map_err(|e| Error::Setup(format!("orchestrator.predictor_url: {e}")))?
                .connect_timeout(Duration::from_millis(
                    config.orchestrator.predict_timeout_ms.max(100),
                ));
                Some(PredictorClient::new(endpoint.connect_lazy()))
            }
            None => None,
        };
        let metrics = OrchestratorMetrics::register(metrics);
        let effects = Effects::new(store.clone(), notifier, remediator, metrics.clone());
        let committer = Committer::start(
            store.clone(),
            config.orchestrator.commit_batch_max,
            config.orchestrator.commit_concurrency,
            metrics.commit_batch_size.clone(),
        );
        let assessor = Arc::new(ThreatAssessor::new(
            soar.assessment.clone(),
            config.thresholds,
        ));
        Ok(Self {
            bus,
            store,
            committer,
            // Built from the start-up configuration: the first workflow rebuilds it (and hands
            // the router and the remediator their rules) from the live one.
            assessor: Mutex::new((NEVER_APPLIED, assessor)),
            live,
            router,
            effects,
            predictor,
            progress_every: Duration::from_secs(config.streams.ack_wait_secs.max(1)) / 3,
            metrics,
        })
    }

    /// The effects every workflow (and the sweeper) goes through.
    pub(crate) fn effects(&self) -> Arc<Effects> {
        self.effects.clone()
    }

    /// The live settings for the next workflow; a new configuration revision rebuilds the
    /// assessor and hands the new rules to the router and the remediator.
    fn policy(&self) -> Policy {
        // The revision first: the configuration read after it is at least that new.
        let revision = self.live.revision();
        let config = self.live.get();
        let mut built = self
            .assessor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if built.0 != revision {
            let assessor = ThreatAssessor::new(config.soar.assessment.clone(), config.thresholds);
            self.router.reconfigure(&config.soar.routing);
            self.effects
                .remediator
                .reconfigure(config.soar.remediation.clone());
            *built = (revision, Arc::new(assessor));
            tracing::info!(
                revision,
                "workflows now run with the changed live configuration"
            );
        }
        Policy {
            assessor: built.1.clone(),
            config,
        }
    }

    /// Processes one work message end to end and acks it once the workflow is committed and
    /// its events are published. `decoded` is the message as a signal with its content digest
    /// ([`decode`]); `recorded` is what is known of its event id (its claim, the
    /// workflow already stored), looked up for the whole pulled batch at once (or why the
    /// lookup failed). Returns whether the workflow succeeded (an invalid work item or a failed
    /// step is false).
    pub async fn handle(
        &self,
        delivery: Delivery<v1::ThreatSignal>,
        decoded: Decoded,
        recorded: Result<Earlier, String>,
    ) -> bool {
        let span = vigil_runtime::trace::follow(
            tracing::info_span!("orchestrator.workflow", event_id = %delivery.payload().id),
            delivery.traceparent().as_ref(),
        );
        self.handle_traced(delivery, decoded, recorded)
            .instrument(span)
            .await
    }

    async fn handle_traced(
        &self,
        delivery: Delivery<v1::ThreatSignal>,
        decoded: Decoded,
        recorded: Result<Earlier, String>,
    ) -> bool {
        let started = Instant::now();
        let (signal, digest) = match decoded {
            Ok((signal, digest)) if !signal.id.is_empty() => (signal, digest),
            Ok(_) => {
                dead_letter(&delivery, "work item has no id (not queued by the broker)").await;
                return false;
            }
            Err(reason) => {
                dead_letter(&delivery, &reason).await;
                return false;
            }
        };
        // What the workflow's events carry: this workflow's span, else the signal's trace.
        let traceparent = vigil_runtime::trace::outgoing(delivery.traceparent().map(|t| t.child()))
            .unwrap_or_else(TraceParent::generate);
        let reused_by = match &recorded {
            Ok(Earlier {
                workflow: Some(done),
                ..
            }) if done.status == WorkflowStatus::Success && reuses_id(done, &digest) => {
                Some(format!("whose workflow {} completed", done.id))
            }
            // Claimed for another signal: its workflow is running (here, on another replica)
            // or ended without success.
            Ok(Earlier {
                claimed_for: Some(claimed),
                ..
            }) if *claimed != digest => {
                Some("which holds it (its workflow is running or has run)".to_owned())
            }
            _ => None,
        };
        if let Some(holder) = reused_by {
            self.metrics.id_reused.inc();
            let reason = format!(
                "event id {:?} (sensor {:?}) was already used by another signal, {holder}; a \
                 reused id is refused rather than dropped: give each signal its own id",
                signal.id, signal.sensor
            );
            tracing::warn!(id = %signal.id, sensor = %signal.sensor, "event id reused by another signal");
            dead_letter(&delivery, &reason).await;
            return false;
        }
        let outcome = match recorded.map(|known| known.workflow) {
            Err(reason) => Err(fail("record", reason)),
            Ok(Some(done)) if done.status == WorkflowStatus::Success => {
                self.metrics.replayed.inc();
                // A redelivery may follow a commit whose events never went out (a failed
                // publish, a crash): publish them again; the stream drops those it has. A
                // first delivery of a completed event is a replay: nothing to do.
                if delivery.delivery_count() > 1 {
                    self.publish_events(&done, &traceparent).await
                } else {
                    Ok(())
                }
            }
            Ok(earlier) => {
                let workflow = guarded(self.run_workflow(&signal, digest, earlier, &traceparent));
                let outcome = keep_in_progress(&delivery, self.progress_every, workflow).await;
                if outcome.is_ok() {
                    self.metrics
                        .duration_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                outcome
            }
        };
        let ok = outcome.is_ok();
        match outcome {
            Ok(()) => {
                if let Err(error) = delivery.ack().await {
                    tracing::warn!(%error, id = %signal.id, "failed to ack work message");
                }
            }
            Err(failure) => {
                let reason = format!("workflow step {} failed: {}", failure.step, failure.reason);
                tracing::warn!(id = %signal.id, %reason, "workflow failed, will retry");
                if delivery.is_last_attempt() {
                    self.record_failure(&signal, &reason).await;
                }
                // Backing off (ack_wait, doubling) lets the attempts outlast a dependency's
                // restart instead of spending themselves in seconds.
                if let Err(error) = delivery
                    .retry_or_dead_letter(&reason, delivery.backoff())
                    .await
                {
                    tracing::warn!(%error, "failed to nak a failed workflow");
                }
            }
        }
        ok
    }

    /// Runs the steps, commits the workflow's records, then publishes its events. `earlier` is
    /// the row of an earlier attempt that did not succeed.
    async fn run_workflow(
        &self,
        signal: &ThreatSignal,
        digest: String,
        earlier: Option<WorkflowExecution>,
        traceparent: &TraceParent,
    ) -> Result<(), StepFailure> {
        let started_at = Utc::now();
        let clock = Instant::now();
        let event_id = signal.id.clone();
        // No RUNNING row is written first: every step below is idempotent on its own keys, so a
        // crashed attempt is simply run again.
        let workflow_id = earlier
            .as_ref()
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), |w| w.id.clone());
        let mut steps = Vec::new();

        let policy = self.policy();
        // 1 + 2: assess, with the ML prediction when the predictor answers in time.
        let t = Instant::now();
        let prediction = self.predict(signal, policy.predict_timeout()).await;
        let predict_step = match &prediction {
            Ok(p) => {
                let abstained = p.abstention.as_ref().map(|a| {
                    format!(
                        "model {} abstained ({}): {}",
                        p.model_version_id, a.reason, a.detail
                    )
                });
                step("predict", StepOutcome::Succeeded, abstained, t)
            }
            Err(why) => {
                self.metrics.predictions_skipped.inc();
                step("predict", StepOutcome::Skipped, Some(why.clone()), t)
            }
        };
        let t = Instant::now();
        let assessment = policy.assessor.assess(signal, prediction.as_ref().ok());
        steps.push(step("assess", StepOutcome::Succeeded, None, t));
        steps.push(predict_step);

        // 3: alerts, recorded before they are sent so a redelivery never sends twice.
        let t = Instant::now();
        let alerts = match self
            .route_alerts(&policy, &event_id, signal, &assessment)
            .await
            .map_err(|e| fail("route_alerts", e))?
        {
            Ok(alerts) => {
                steps.push(step("route_alerts", StepOutcome::Succeeded, None, t));
                alerts
            }
            Err(why) => {
                steps.push(step(
                    "route_alerts",
                    StepOutcome::Skipped,
                    Some(why.clone()),
                    t,
                ));
                AlertsResult::Skipped { skipped: why }
            }
        };

        // 4: remediation above the threshold (recorded with the workflow).
        let t = Instant::now();
        let (remediation, actions) = self
            .remediate(&event_id, signal, &assessment)
            .await
            .map_err(|e| fail("remediate", e))?;
        let failed: Vec<String> = actions
            .iter()
            .filter(|a| a.status == ActionStatus::Failed)
            .map(|a| {
                let error = a.details["error"].as_str().unwrap_or("no reason recorded");
                format!("{} {} failed: {error}", a.kind, a.target)
            })
            .collect();
        match remediation.skipped() {
            Some(why) => steps.push(step(
                "remediate",
                StepOutcome::Skipped,
                Some(why.to_owned()),
                t,
            )),
            // The workflow did its part; the action failed for good after its retries, and
            // the step, the workflow's error and its event say so (`vigil remediation retry`).
            None if !failed.is_empty() => steps.push(step(
                "remediate",
                StepOutcome::Failed,
                Some(failed.join("; ")),
                t,
            )),
            None => steps.push(step("remediate", StepOutcome::Succeeded, None, t)),
        }

        // 5: incident, opened or attached to when the workflow is committed.
        let t = Instant::now();
        let incident_min_severity = policy.incident_min_severity();
        let (incident, incident_request) = if assessment.risk_level >= incident_min_severity {
            steps.push(step("incident", StepOutcome::Succeeded, None, t));
            let request = IncidentRequest {
                threat_key: threat_key(signal),
                title: incident::incident_title(signal, assessment.risk_level),
                severity: assessment.risk_level,
                window: Duration::from_secs(policy.config.soar.incidents.window_seconds),
            };
            let requested = IncidentResult::Requested {
                threat_key: request.threat_key.clone(),
            };
            (requested, Some(request))
        } else {
            let why = format!(
                "level {} is below the incident minimum {}",
                assessment.risk_level, incident_min_severity
            );
            steps.push(step("incident", StepOutcome::Skipped, Some(why.clone()), t));
            (IncidentResult::Skipped { skipped: why }, None)
        };

        // 6: commit every record of the workflow (with other workflows' in one transaction),
        // then publish its events; the caller acks.
        let results = WorkflowResults {
            risk_score: assessment.risk_score,
            risk_level: assessment.risk_level,
            ml_score: assessment.ml_score,
            assessment,
            prediction: prediction.ok(),
            alerts,
            remediation,
            incident,
            signal_digest: Some(digest),
        };
        let record = WorkflowRecord {
            signal: signal.clone(),
            actions,
            incident: incident_request,
            results,
            workflow: WorkflowExecution {
                id: workflow_id,
                event_id,
                workflow_type: WORKFLOW_TYPE.into(),
                status: WorkflowStatus::Success,
                started_at,
                completed_at: Some(Utc::now()),
                steps,
                results: json!({}),
                error_message: (!failed.is_empty()).then(|| failed.join("; ")),
                duration_seconds: clock.elapsed().as_secs_f64(),
            },
        };
        let committed = self
            .committer
            .commit(record)
            .await
            .map_err(|e| fail("record", e))?;
        self.metrics.completed.inc();
        self.metrics
            .remediations
            .inc_by(committed.actions.len() as u64);
        let events = workflow_events(&committed.workflow, &committed.results);
        self.publish_all(events, traceparent).await
    }

    /// Publishes the events of a workflow committed by an earlier delivery.
    async fn publish_events(
        &self,
        workflow: &WorkflowExecution,
        traceparent: &TraceParent,
    ) -> Result<(), StepFailure> {
        let Some(results) = WorkflowResults::of(workflow) else {
            tracing::warn!(event_id = %workflow.event_id, "stored workflow results are not readable; its events are not published again");
            return Ok(());
        };
        self.publish_all(workflow_events(workflow, &results), traceparent)
            .await
    }

    async fn publish_all(
        &self,
        events: Vec<SecurityEvent>,
        traceparent: &TraceParent,
    ) -> Result<(), StepFailure> {
        let published =
            futures::future::join_all(events.into_iter().map(|e| self.publish(e, traceparent)))
                .await;
        for result in published {
            result.map_err(|e| fail("publish_events", e))?;
        }
        Ok(())
    }

    async fn predict(
        &self,
        signal: &ThreatSignal,
        deadline: Duration,
    ) -> Result<PredictionResult, String> {
        let Some(client) = &self.predictor else {
            return Err("no predictor configured".into());
        };
        let mut client = client.clone();
        let mut request = tonic::Request::new(v1::PredictRequest {
            signal: Some(signal.clone().into()),
        });
        // The predictor's span joins this workflow's trace.
        if let Some(traceparent) = vigil_runtime::trace::outgoing(None)
            && let Ok(value) = traceparent.to_string().parse()
        {
            request
                .metadata_mut()
                .insert(vigil_runtime::trace::TRACEPARENT, value);
        }
        let call = tokio::time::timeout(deadline, client.predict(request)).await;
        let response = match call {
            Err(_) => {
                return Err(format!("predictor did not answer within {deadline:?}"));
            }
            Ok(Err(status)) => return Err(format!("predictor unavailable: {}", status.message())),
            Ok(Ok(response)) => response.into_inner(),
        };
        let result = response
            .result
            .ok_or("predictor answered without a result")?;
        PredictionResult::try_from(result).map_err(|e| format!("predictor answered nonsense: {e}"))
    }

    /// Routes the alerts of the event's level; `Err` says why there was nothing to route.
    async fn route_alerts(
        &self,
        policy: &Policy,
        event_id: &str,
        signal: &ThreatSignal,
        assessment: &Assessment,
    ) -> Result<Result<AlertsResult, String>, vigil_store::Error> {
        let level = assessment.risk_level;
        if self.router.channels_for(level).is_empty() {
            // Nothing can be sent at this level: no grouping lookup on the hot path.
            let named = policy.config.soar.routing.rules.for_level(level);
            let why = if named.is_empty() {
                format!("no routing rule for level {level}")
            } else {
                let names: Vec<String> = named.iter().map(ToString::to_string).collect();
                format!(
                    "the rule for level {level} names only channels without settings ({})",
                    names.join(", ")
                )
            };
            return Ok(Err(why));
        }
        let key = threat_key(signal);
        let previous = self
            .store
            .alerts()
            .last_delivered(&key)
            .await?
            .map(|(sent_at, severity)| PreviousAlert { sent_at, severity });
        let decision = self
            .router
            .route(event_id, signal, assessment, previous, Utc::now());
        let recorded = self.effects.send_alerts(event_id, &decision).await?;
        Ok(Ok(AlertsResult::Routed {
            threat_key: decision.threat_key,
            grouped: decision.grouped,
            unconfigured: decision.unconfigured,
            channels: recorded
                .into_iter()
                .map(|a| ChannelResult {
                    channel: a.channel,
                    status: a.status,
                    attempts: a.attempts,
                    error: a.last_error,
                })
                .collect(),
        }))
    }

    /// Carries out the planned actions (each recorded before and after it happens, see
    /// [`Effects::remediate`]); the actions are also recorded with the workflow.
    async fn remediate(
        &self,
        event_id: &str,
        signal: &ThreatSignal,
        assessment: &Assessment,
    ) -> Result<(RemediationResult, Vec<RemediationAction>), vigil_store::Error> {
        let plan = self.effects.remediator.plan(signal, assessment);
        if let Some(skipped) = plan.skipped {
            return Ok((RemediationResult::Skipped { skipped }, Vec::new()));
        }
        let actions = self
            .effects
            .remediate(event_id, &plan.actions, assessment.risk_score)
            .await?;
        if actions.is_empty() {
            let why = if plan.notes.is_empty() {
                "no applicable action".to_owned()
            } else {
                plan.notes.join("; ")
            };
            return Ok((RemediationResult::Skipped { skipped: why }, actions));
        }
        let result = RemediationResult::Acted {
            actions: actions.clone(),
            notes: plan.notes,
        };
        Ok((result, actions))
    }

    async fn publish(
        &self,
        event: SecurityEvent,
        traceparent: &TraceParent,
    ) -> Result<(), vigil_bus::Error> {
        let subject = self
            .bus
            .topology()
            .event_subject(event.event_type.as_str())?;
        let options = PublishOptions::new(event.id.clone()).traceparent(traceparent.clone());
        self.bus
            .publisher()
            .publish(&subject, &v1::SecurityEvent::from(event), options)
            .await?;
        Ok(())
    }

    async fn record_failure(&self, signal: &ThreatSignal, reason: &str) {
        self.metrics.failed.inc();
        let now = Utc::now();
        let workflow = WorkflowExecution {
            id: uuid::Uuid::now_v7().to_string(),
            event_id: signal.id.clone(),
            workflow_type: WORKFLOW_TYPE.into(),
            status: WorkflowStatus::Failed,
            started_at: now,
            completed_at: Some(now),
            steps: Vec::new(),
            results: json!({}),
            error_message: Some(reason.to_owned()),
            duration_seconds: 0.0,
        };
        if let Err(error) = self.store.workflows().insert_if_absent(&workflow).await {
            tracing::warn!(%error, id = %signal.id, "failed to record a failed workflow");
        }
    }
}

/// What is known of an event id before its workflow runs, looked up for a pulled batch at once.
#[derive(Debug, Clone, Default)]
pub struct Earlier {
    /// The workflow an earlier attempt stored for the id.
    pub workflow: Option<WorkflowExecution>,
    /// The content digest of the signal the id is claimed for (`event_claims`): another digest
    /// means another signal reuses the id.
    pub claimed_for: Option<String>,
}

/// Whether the signal whose content digest is `digest` reuses the event id of the committed
/// workflow `done` for other content (the digest stored with it differs); a redelivery or a
/// replay of the same signal does not.
fn reuses_id(done: &WorkflowExecution, digest: &str) -> bool {
    WorkflowResults::of(done)
        .and_then(|results| results.signal_digest)
        .is_some_and(|stored| stored != digest)
}

/// A work message as a signal with its content digest ([`ThreatSignal::content_digest`]), or
/// why it is not a signal (the dead letter's reason): decoded once per delivery, for the claim
/// of its id and for its workflow.
pub type Decoded = Result<(ThreatSignal, String), String>;

/// Decodes one work message ([`Decoded`]).
pub fn decode(delivery: &Delivery<v1::ThreatSignal>) -> Decoded {
    let signal = ThreatSignal::try_from(delivery.payload().clone())
        .map_err(|error| format!("invalid threat signal: {error}"))?;
    let digest = signal.content_digest();
    Ok((signal, digest))
}

/// Runs `work` while telling JetStream every `every` that `delivery` is still being worked on
/// (`AckKind::Progress`), so a workflow slower than the consumer's `ack_wait` (an effect
/// retrying against a slow API) is not delivered a second time while it runs.
async fn keep_in_progress<T, F: Future<Output = T>>(
    delivery: &Delivery<v1::ThreatSignal>,
    every: Duration,
    work: F,
) -> T {
    let mut work = std::pin::pin!(work);
    let start = tokio::time::Instant::now() + every;
    let mut ticks = tokio::time::interval_at(start, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            outcome = &mut work => return outcome,
            _ = ticks.tick() => {
                if let Err(error) = delivery.in_progress().await {
                    tracing::warn!(%error, "cannot extend the ack deadline of a running workflow");
                }
            }
        }
    }
}

/// Runs a workflow so that a panic inside it (a bug, never expected) fails this signal like any
/// other step failure: retried, then dead-lettered with the panic's message, instead of leaving
/// the message unacknowledged until the server gives up on it and it sits unseen in the stream.
async fn guarded(
    workflow: impl Future<Output = Result<(), StepFailure>>,
) -> Result<(), StepFailure> {
    match std::panic::AssertUnwindSafe(workflow).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => Err(fail("(panicked)", vigil_runtime::panic_message(&*panic))),
    }
}

fn fail(step: &'static str, error: impl std::fmt::Display) -> StepFailure {
    StepFailure {
        step,
        reason: error.to_string(),
    }
}

fn step(
    name: &str,
    outcome: StepOutcome,
    detail: Option<String>,
    started: Instant,
) -> WorkflowStep {
    WorkflowStep {
        name: name.into(),
        outcome,
        detail,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

async fn dead_letter(delivery: &Delivery<v1::ThreatSignal>, reason: &str) {
    if let Err(error) = delivery.dead_letter(reason).await {
        tracing::warn!(%error, "failed to dead-letter a work item");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_workflow_is_a_step_failure_with_the_panic_message() {
        let outcome = guarded(async {
            let steps: Vec<u32> = Vec::new();
            if steps.is_empty() {
                panic!("index out of bounds in step 3");
            }
            Ok(())
        })
        .await;
        let failure = outcome.expect_err("the panic became a failure");
        assert_eq!(failure.step, "(panicked)");
        assert_eq!(failure.reason, "index out of bounds in step 3");

        let fine = guarded(async { Ok(()) }).await;
        assert!(fine.is_ok());
    }
}
