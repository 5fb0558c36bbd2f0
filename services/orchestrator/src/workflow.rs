//! One workflow per threat signal, each step idempotent by event id.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tonic::transport::{Channel, Endpoint};
use vigil_bus::{Bus, Delivery, PublishOptions, TraceParent};
use vigil_config::Config;
use vigil_domain::{
    Assessment, EventType, PredictionResult, SecurityEvent, Severity, StepOutcome, ThreatSignal,
    WorkflowExecution, WorkflowStatus, WorkflowStep,
};
use vigil_notify::Notifier;
use vigil_proto::v1;
use vigil_proto::v1::predictor_client::PredictorClient;
use vigil_soar::{AlertRouter, PreviousAlert, Remediator, ThreatAssessor, incident, threat_key};
use vigil_store::Store;
use vigil_telemetry::Metrics;

use crate::metrics::OrchestratorMetrics;
use crate::{Error, Result};

const WORKFLOW_TYPE: &str = "threat_response";

/// Runs workflows; shared by every in-flight task.
pub struct Orchestrator {
    bus: Bus,
    store: Store,
    assessor: ThreatAssessor,
    router: AlertRouter,
    routing_rules: vigil_config::RoutingRules,
    notifier: Notifier,
    remediator: Remediator,
    incident_min_severity: Severity,
    predictor: Option<PredictorClient<Channel>>,
    predict_timeout: Duration,
    metrics: OrchestratorMetrics,
}

/// What a step failure means for the input message.
struct StepFailure {
    step: &'static str,
    reason: String,
}

impl Orchestrator {
    /// Builds the components from config; a predictor is used only when `predictor_url` is set.
    pub fn new(config: &Config, bus: Bus, store: Store, metrics: &Metrics) -> Result<Self> {
        let soar = &config.soar;
        let notifier = Notifier::from_settings(&soar.channels, &soar.delivery)
            .map_err(|e| Error::Setup(e.to_string()))?;
        let router = AlertRouter::new(&soar.routing, notifier.channels());
        let remediator = Remediator::from_settings(soar.remediation.clone())
            .map_err(|e| Error::Setup(e.to_string()))?;
        let predictor = match &config.orchestrator.predictor_url {
            Some(url) => {
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| Error::Setup(format!("orchestrator.predictor_url {url:?}: {e}")))?
                    .connect_timeout(Duration::from_millis(
                        config.orchestrator.predict_timeout_ms.max(100),
                    ));
                Some(PredictorClient::new(endpoint.connect_lazy()))
            }
            None => None,
        };
        Ok(Self {
            bus,
            store,
            assessor: ThreatAssessor::new(soar.assessment.clone(), config.thresholds),
            router,
            routing_rules: soar.routing.rules.clone(),
            notifier,
            remediator,
            incident_min_severity: soar.incidents.min_severity,
            predictor,
            predict_timeout: Duration::from_millis(config.orchestrator.predict_timeout_ms),
            metrics: OrchestratorMetrics::register(metrics),
        })
    }

    /// Processes one work message end to end and acks it once the workflow is committed.
    pub async fn handle(&self, delivery: Delivery<v1::ThreatSignal>) {
        let started = Instant::now();
        let signal = match ThreatSignal::try_from(delivery.payload().clone()) {
            Ok(signal) if !signal.id.is_empty() => signal,
            Ok(_) => {
                return dead_letter(&delivery, "work item has no id (not queued by the broker)")
                    .await;
            }
            Err(error) => {
                return dead_letter(&delivery, &format!("invalid threat signal: {error}")).await;
            }
        };
        let traceparent = delivery.traceparent().unwrap_or_else(TraceParent::generate);
        match self.run_workflow(&signal, &traceparent).await {
            Ok(replayed) => {
                if replayed {
                    self.metrics.replayed.inc();
                } else {
                    self.metrics
                        .duration_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
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
                if let Err(error) = delivery
                    .retry_or_dead_letter(&reason, Duration::from_secs(1))
                    .await
                {
                    tracing::warn!(%error, "failed to nak a failed workflow");
                }
            }
        }
    }

    /// Returns `Ok(true)` when the workflow had already completed (a redelivery).
    async fn run_workflow(
        &self,
        signal: &ThreatSignal,
        traceparent: &TraceParent,
    ) -> Result<bool, StepFailure> {
        let started_at = Utc::now();
        let clock = Instant::now();
        let event_id = signal.id.clone();
        let workflows = self.store.workflows();
        let existing = workflows
            .get_by_event_id(&event_id)
            .await
            .map_err(|e| fail("record", e))?;
        // No RUNNING row is written first: every step below is idempotent on its own keys, so a
        // crashed attempt is simply run again, and one commit per workflow is saved.
        let workflow_id = match existing {
            Some(w) if w.status == WorkflowStatus::Success => return Ok(true),
            Some(w) => w.id,
            None => uuid::Uuid::now_v7().to_string(),
        };
        let mut steps = Vec::new();
        let mut events = Vec::new();

        // 1 + 2: assess, with the ML prediction when the predictor answers in time.
        let t = Instant::now();
        let prediction = self.predict(signal).await;
        let predict_step = match &prediction {
            Ok(_) => step("predict", StepOutcome::Succeeded, None, t),
            Err(why) => {
                self.metrics.predictions_skipped.inc();
                step("predict", StepOutcome::Skipped, Some(why.clone()), t)
            }
        };
        let t = Instant::now();
        let assessment = self.assessor.assess(signal, prediction.as_ref().ok());
        steps.push(step("assess", StepOutcome::Succeeded, None, t));
        steps.push(predict_step);
        events.push(self.event(
            EventType::AssessmentComplete,
            signal,
            Some(assessment.risk_level),
            json!({
                "risk_score": assessment.risk_score,
                "risk_level": assessment.risk_level,
                "rule_score": assessment.rule_score,
                "ml_score": assessment.ml_score,
                "confidence": assessment.confidence,
                "factors": assessment.factors,
            }),
        ));
        if let Ok(prediction) = &prediction {
            events.push(self.event(
                EventType::PredictionComplete,
                signal,
                Some(prediction.risk_level),
                json!({
                    "risk_score": prediction.risk_score,
                    "confidence": prediction.confidence,
                    "model_version_id": prediction.model_version_id,
                }),
            ));
        }

        // The verdict is a labelled example for the trainer (analyst feedback overrides it).
        let example = vigil_store::NewExample {
            signal,
            label: assessment.risk_level >= Severity::High,
            source: vigil_store::ExampleSource::Assessment,
            source_ref: &event_id,
            weight: 1.0,
        };
        self.store
            .training()
            .record(&example)
            .await
            .map_err(|e| fail("assess", e))?;

        // 3: alerts, recorded before they are sent so a redelivery never sends twice.
        let t = Instant::now();
        let alerts = self
            .route_alerts(&event_id, signal, &assessment)
            .await
            .map_err(|e| fail("route_alerts", e))?;
        steps.push(step("route_alerts", StepOutcome::Succeeded, None, t));
        events.push(self.event(
            EventType::AlertRouted,
            signal,
            Some(assessment.risk_level),
            alerts.clone(),
        ));

        // 4: remediation above the threshold.
        let t = Instant::now();
        let (remediation, remediation_ids) = self
            .remediate(&event_id, signal, &assessment)
            .await
            .map_err(|e| fail("remediate", e))?;
        match remediation.get("skipped").and_then(|s| s.as_str()) {
            Some(why) => steps.push(step(
                "remediate",
                StepOutcome::Skipped,
                Some(why.to_owned()),
                t,
            )),
            None => {
                steps.push(step("remediate", StepOutcome::Succeeded, None, t));
                events.push(self.event(
                    EventType::RemediationExecuted,
                    signal,
                    Some(assessment.risk_level),
                    remediation.clone(),
                ));
            }
        }

        // 5: incident.
        let t = Instant::now();
        let incident = if assessment.risk_level >= self.incident_min_severity {
            let key = threat_key(signal);
            let title = incident::incident_title(signal, assessment.risk_level);
            let attachment = self
                .store
                .incidents()
                .open_or_attach(&key, &title, assessment.risk_level, &event_id)
                .await
                .map_err(|e| fail("incident", e))?;
            for action_id in &remediation_ids {
                self.store
                    .incidents()
                    .attach_action(
                        &attachment.incident_id,
                        action_id,
                        &json!({"kind": "remediation"}),
                    )
                    .await
                    .map_err(|e| fail("incident", e))?;
            }
            steps.push(step("incident", StepOutcome::Succeeded, None, t));
            let data = json!({
                "incident_id": attachment.incident_id,
                "threat_key": key,
                "created": attachment.created,
            });
            events.push(self.event(
                EventType::IncidentCreated,
                signal,
                Some(assessment.risk_level),
                data.clone(),
            ));
            data
        } else {
            let why = format!(
                "level {} is below the incident minimum {}",
                assessment.risk_level, self.incident_min_severity
            );
            steps.push(step("incident", StepOutcome::Skipped, Some(why.clone()), t));
            json!({"skipped": why})
        };

        // 6: events out (deterministic ids: a retry re-publishes into the duplicate window),
        // then the workflow row, then the caller acks.
        let results = json!({
            "risk_score": assessment.risk_score,
            "risk_level": assessment.risk_level,
            "ml_score": assessment.ml_score,
            "alerts": alerts,
            "remediation": remediation,
            "incident": incident,
        });
        let completed_at = Utc::now();
        let workflow = WorkflowExecution {
            id: workflow_id,
            event_id: event_id.clone(),
            workflow_type: WORKFLOW_TYPE.into(),
            status: WorkflowStatus::Success,
            started_at,
            completed_at: Some(completed_at),
            steps,
            results: results.clone(),
            error_message: None,
            duration_seconds: clock.elapsed().as_secs_f64(),
        };
        events.push(self.event(EventType::WorkflowCompleted, signal, Some(assessment.risk_level), json!({
            "workflow_id": workflow.id,
            "status": "SUCCESS",
            "duration_seconds": workflow.duration_seconds,
            "steps": workflow.steps.iter().map(|s| (s.name.clone(), s.outcome)).collect::<BTreeMap<_, _>>(),
        })));
        let published =
            futures::future::join_all(events.into_iter().map(|e| self.publish(e, traceparent)))
                .await;
        for result in published {
            result.map_err(|e| fail("publish_events", e))?;
        }
        if !workflows
            .insert_if_absent(&workflow)
            .await
            .map_err(|e| fail("record", e))?
            .is_new()
        {
            // An earlier attempt left a FAILED row, or a parallel redelivery finished first.
            workflows
                .update(&workflow)
                .await
                .map_err(|e| fail("record", e))?;
        }
        self.metrics.completed.inc();
        Ok(false)
    }

    async fn predict(&self, signal: &ThreatSignal) -> Result<PredictionResult, String> {
        let Some(client) = &self.predictor else {
            return Err("no predictor configured".into());
        };
        let mut client = client.clone();
        let request = v1::PredictRequest {
            signal: Some(signal.clone().into()),
        };
        let call = tokio::time::timeout(self.predict_timeout, client.predict(request)).await;
        let response = match call {
            Err(_) => {
                return Err(format!(
                    "predictor did not answer within {:?}",
                    self.predict_timeout
                ));
            }
            Ok(Err(status)) => return Err(format!("predictor unavailable: {}", status.message())),
            Ok(Ok(response)) => response.into_inner(),
        };
        let result = response
            .result
            .ok_or("predictor answered without a result")?;
        PredictionResult::try_from(result).map_err(|e| format!("predictor answered nonsense: {e}"))
    }

    async fn route_alerts(
        &self,
        event_id: &str,
        signal: &ThreatSignal,
        assessment: &Assessment,
    ) -> Result<serde_json::Value, vigil_store::Error> {
        let key = threat_key(signal);
        if self
            .routing_rules
            .for_level(assessment.risk_level)
            .is_empty()
        {
            // Nothing to route at this level: skip the grouping lookup on the hot path.
            return Ok(
                json!({ "threat_key": key, "grouped": false, "unconfigured": [], "channels": [] }),
            );
        }
        let previous = self
            .store
            .alerts()
            .last_delivered(&key)
            .await?
            .map(|(sent_at, severity)| PreviousAlert { sent_at, severity });
        let decision = self
            .router
            .route(event_id, signal, assessment, previous, Utc::now());
        let alerts = self.store.alerts();
        let mut to_send = Vec::new();
        for alert in &decision.alerts {
            if alerts.insert_if_absent(alert, &json!({})).await?.is_new() {
                to_send.push(alert.clone());
            }
        }
        for report in self.notifier.deliver_all(to_send, &decision.details).await {
            let a = &report.alert;
            // A fallback delivery may add a row for its channel.
            alerts.insert_if_absent(a, &report.payload).await?;
            alerts
                .record_delivery(
                    &a.event_id,
                    &a.channel,
                    a.status,
                    a.attempts,
                    a.last_error.as_deref(),
                    a.delivered_at,
                )
                .await?;
            if report.alert.status == vigil_domain::AlertStatus::Delivered {
                self.metrics.alerts_delivered.inc();
            } else if report.alert.status == vigil_domain::AlertStatus::Failed {
                self.metrics.alerts_failed.inc();
                tracing::warn!(channel = %a.channel, error = ?a.last_error, event_id, "alert delivery failed");
            }
        }
        let recorded = if decision.alerts.is_empty() {
            Vec::new()
        } else {
            alerts.for_event(event_id).await?
        };
        Ok(json!({
            "threat_key": decision.threat_key,
            "grouped": decision.grouped,
            "unconfigured": decision.unconfigured,
            "channels": recorded.iter().map(|a| json!({
                "channel": a.channel, "status": a.status, "attempts": a.attempts, "error": a.last_error,
            })).collect::<Vec<_>>(),
        }))
    }

    async fn remediate(
        &self,
        event_id: &str,
        signal: &ThreatSignal,
        assessment: &Assessment,
    ) -> Result<(serde_json::Value, Vec<String>), vigil_store::Error> {
        let plan = self.remediator.plan(signal, assessment);
        if let Some(why) = plan.skipped {
            return Ok((json!({"skipped": why}), Vec::new()));
        }
        let repo = self.store.remediations();
        let done = repo.for_event(event_id).await?;
        let mut ids = Vec::new();
        let mut actions = Vec::new();
        for planned in &plan.actions {
            // A redelivery finds the action it already took.
            if let Some(existing) = done
                .iter()
                .find(|a| a.kind == planned.kind && a.target == planned.target)
            {
                ids.push(existing.id.clone());
                actions.push(existing.clone());
                continue;
            }
            let action = self
                .remediator
                .carry_out(event_id, planned, assessment.risk_score, Utc::now())
                .await;
            repo.insert_if_absent(&action).await?;
            self.metrics.remediations.inc();
            ids.push(action.id.clone());
            actions.push(action);
        }
        if actions.is_empty() {
            let why = if plan.notes.is_empty() {
                "no applicable action".to_owned()
            } else {
                plan.notes.join("; ")
            };
            return Ok((json!({"skipped": why}), ids));
        }
        Ok((json!({ "actions": actions, "notes": plan.notes }), ids))
    }

    fn event(
        &self,
        event_type: EventType,
        signal: &ThreatSignal,
        severity: Option<Severity>,
        data: serde_json::Value,
    ) -> SecurityEvent {
        SecurityEvent {
            id: format!("{}:{}", event_type.as_str(), signal.id),
            event_type,
            timestamp: Utc::now(),
            source: "orchestrator".into(),
            correlation_id: signal.id.clone(),
            severity,
            data,
        }
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
        let options = PublishOptions::new(event.id.clone()).traceparent(traceparent.child());
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
