//! One submission: decode, validate against its workflow, store, announce, reply.

use std::sync::Arc;

use async_nats::Message;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, warn};
use vigil_bus::headers::{self, ContentType, header_value};
use vigil_bus::{Bus, PublishOptions, TraceParent};
use vigil_domain::{
    EventType, FeedbackRecord, FeedbackSubmission, SecurityEvent, TrueLabel, WorkflowStatus,
};
use vigil_proto::v1;
use vigil_store::{FeedbackWrite, NewFeedback, Recorded, Store};

use crate::metrics::FeedbackMetrics;
use crate::retrain::Retrainer;

/// Who the service's events come from.
const SOURCE: &str = "feedback";

/// Unpublished events republished per sweep, at most.
const REPUBLISH_BATCH: u64 = 256;

/// What became of an accepted submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitOutcome {
    /// A first verdict of this analyst on this workflow and action.
    Stored,
    /// The same verdict was already stored; nothing changed.
    Duplicate,
    /// It replaced the analyst's earlier, different verdict (kept in the history).
    Superseded,
}

/// The reply to a submission, always JSON: `{"ok":false,"error":"..."}` for a refusal (nothing
/// was stored), otherwise `ok: true` with the stored verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubmitReply {
    pub ok: bool,
    /// What is wrong with the submission, or what failed; one message a person can act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The stored verdict's id (for a duplicate, the one stored first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<SubmitOutcome>,
    /// The verdict this one replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The signal's true label by this verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<TrueLabel>,
    /// vigil's own verdict on the workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_label: Option<TrueLabel>,
    /// Whether the workflow's signal is now an analyst-labelled training example with `label`
    /// (false for workflows recorded without their signal).
    pub training_example: bool,
    /// Whether FEEDBACK_RECEIVED is in the events stream (if not, the service sends it again).
    pub event_published: bool,
}

impl SubmitReply {
    /// A refusal.
    pub fn refused(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
            ..Self::default()
        }
    }
}

/// Handles submissions; shared by every in-flight task.
pub(crate) struct Submissions {
    store: Store,
    bus: Bus,
    retrainer: Arc<Retrainer>,
    metrics: FeedbackMetrics,
}

impl Submissions {
    pub fn new(
        store: Store,
        bus: Bus,
        retrainer: Arc<Retrainer>,
        metrics: FeedbackMetrics,
    ) -> Self {
        Self {
            store,
            bus,
            retrainer,
            metrics,
        }
    }

    /// Handles one message and replies to it (a message without a reply subject is handled
    /// and logged). Returns false when the verdict was refused or could not be stored.
    pub async fn handle(&self, message: Message) -> bool {
        let traceparent = header_value(message.headers.as_ref(), headers::TRACEPARENT)
            .and_then(|v| v.parse::<TraceParent>().ok());
        let span = vigil_runtime::trace::follow(
            tracing::info_span!("feedback.submission"),
            traceparent.as_ref(),
        );
        self.handle_traced(message, traceparent)
            .instrument(span)
            .await
    }

    async fn handle_traced(&self, message: Message, traceparent: Option<TraceParent>) -> bool {
        let reply = match decode(&message) {
            Err(error) => self.refuse(error),
            Ok(submission) => self.submit(&submission, traceparent).await,
        };
        if !reply.ok {
            info!(
                error = reply.error.as_deref().unwrap_or_default(),
                "submission refused"
            );
        }
        let Some(reply_to) = message.reply else {
            warn!("a submission came without a reply subject; its sender sees no answer");
            return reply.ok;
        };
        let body = serde_json::to_vec(&reply).unwrap_or_else(|_| {
            br#"{"ok":false,"error":"the reply could not be encoded"}"#.to_vec()
        });
        if let Err(error) = self.bus.client().publish(reply_to, body.into()).await {
            warn!(%error, "cannot send the reply to a submission");
        }
        reply.ok
    }

    fn refuse(&self, error: String) -> SubmitReply {
        self.metrics.refused.inc();
        SubmitReply::refused(error)
    }

    /// Validates a submission against its workflow, stores it, announces it.
    pub async fn submit(
        &self,
        submission: &FeedbackSubmission,
        traceparent: Option<TraceParent>,
    ) -> SubmitReply {
        let feedback = self.store.feedback();
        let workflow = match feedback.find_workflow(&submission.workflow).await {
            Ok(Some(workflow)) => workflow,
            Ok(None) => {
                return self.refuse(format!(
                    "unknown workflow {:?}: give a workflow id or the id of the event it \
                     processed",
                    submission.workflow
                ));
            }
            Err(error) => return self.failed("cannot look the workflow up", &error),
        };
        let system_label = match (workflow.status, workflow.system_label()) {
            (WorkflowStatus::Success, Some(label)) => label,
            (status, _) => {
                return self.refuse(format!(
                    "workflow {} did not complete ({status}): vigil reached no verdict to judge",
                    workflow.id
                ));
            }
        };
        if !submission.action_id.is_empty() {
            match feedback.action_ids(&workflow.event_id).await {
                Ok(actions) if actions.contains(&submission.action_id) => {}
                Ok(actions) => {
                    let known = if actions.is_empty() {
                        "it took none (leave the action out to judge the whole workflow)".into()
                    } else {
                        format!("its actions are {}", actions.join(", "))
                    };
                    return self.refuse(format!(
                        "unknown action {:?} of workflow {}: {known}",
                        submission.action_id, workflow.id
                    ));
                }
                Err(error) => return self.failed("cannot look the actions up", &error),
            }
        }
        let label = match submission.true_label(system_label) {
            Ok(label) => label,
            Err(error) => return self.refuse(error.to_string()),
        };
        let new = NewFeedback {
            workflow_id: &workflow.id,
            action_id: &submission.action_id,
            feedback_type: submission.feedback_type,
            label,
            system_label,
            attack_type: submission.attack_type.as_deref(),
            confidence: submission.confidence,
            correction: submission.correction.as_deref(),
            analyst: &submission.analyst,
        };
        let written = match feedback.record(&new).await {
            Ok(written) => written,
            Err(vigil_store::Error::NotFound { .. }) => {
                return self.refuse(format!("unknown workflow {:?}", submission.workflow));
            }
            Err(vigil_store::Error::Invalid(error)) => return self.refuse(error.to_string()),
            Err(error) => return self.failed("cannot store the verdict", &error),
        };
        let outcome = match &written.outcome {
            Recorded::Stored => SubmitOutcome::Stored,
            Recorded::Duplicate => SubmitOutcome::Duplicate,
            Recorded::Superseded { .. } => SubmitOutcome::Superseded,
        };
        match outcome {
            SubmitOutcome::Duplicate => {
                self.metrics.duplicates.inc();
            }
            SubmitOutcome::Superseded => {
                self.metrics.stored.inc();
                self.metrics.superseded.inc();
            }
            SubmitOutcome::Stored => {
                self.metrics.stored.inc();
            }
        }
        info!(feedback_id = %written.record.id, workflow_id = %workflow.id, ?outcome,
              verdict = %submission.feedback_type, %label, %system_label, "verdict accepted");
        let event_published = written.event_published
            || self
                .announce(&written, &workflow.event_id, system_label, traceparent)
                .await;
        if outcome != SubmitOutcome::Duplicate {
            self.retrainer.request_check();
        }
        SubmitReply {
            ok: true,
            error: None,
            feedback_id: Some(written.record.id.clone()),
            outcome: Some(outcome),
            superseded_id: match &written.outcome {
                Recorded::Superseded { previous } => Some(previous.clone()),
                _ => None,
            },
            workflow_id: Some(workflow.id),
            event_id: Some(written.event_id.clone()),
            label: Some(label),
            system_label: Some(system_label),
            training_example: written.example,
            event_published,
        }
    }

    /// Not the sender's fault: the verdict was not stored; sending it again is safe.
    fn failed(&self, what: &str, error: &vigil_store::Error) -> SubmitReply {
        warn!(%error, "{what}");
        SubmitReply::refused(format!(
            "{what}: {error}; nothing was stored, send the verdict again"
        ))
    }

    /// Publishes FEEDBACK_RECEIVED for a stored verdict and notes it; false when it could not
    /// be (a later sweep sends it).
    async fn announce(
        &self,
        written: &FeedbackWrite,
        event_id: &str,
        system_label: TrueLabel,
        traceparent: Option<TraceParent>,
    ) -> bool {
        let superseded = match &written.outcome {
            Recorded::Superseded { previous } => Some(previous.as_str()),
            _ => None,
        };
        let event = feedback_event(
            &written.record,
            event_id,
            Some(system_label),
            superseded,
            written.example,
        );
        self.publish(event, &written.record.id, traceparent).await
    }

    async fn publish(
        &self,
        event: SecurityEvent,
        feedback_id: &str,
        traceparent: Option<TraceParent>,
    ) -> bool {
        let subject = match self
            .bus
            .topology()
            .event_subject(EventType::FeedbackReceived.as_str())
        {
            Ok(subject) => subject,
            Err(error) => {
                warn!(%error, "cannot name the feedback_received subject");
                return false;
            }
        };
        let options = PublishOptions::new(event.id.clone()).maybe_traceparent(
            vigil_runtime::trace::outgoing(traceparent.map(|t| t.child())),
        );
        let sent = self
            .bus
            .publisher()
            .publish(&subject, &v1::SecurityEvent::from(event), options)
            .await;
        if let Err(error) = sent {
            warn!(%error, feedback_id, "cannot publish feedback_received; it is sent again later");
            return false;
        }
        self.metrics.events_published.inc();
        if let Err(error) = self.store.feedback().mark_published(feedback_id).await {
            // The event is in the stream; sending it again later is dropped as a duplicate
            // within the stream's window.
            warn!(%error, feedback_id, "cannot note that feedback_received was published");
        }
        true
    }

    /// Sends the FEEDBACK_RECEIVED events that could not be published when their verdicts were
    /// stored.
    pub async fn republish_events(&self) {
        let pending = match self.store.feedback().unpublished(REPUBLISH_BATCH).await {
            Ok(pending) => pending,
            Err(error) => {
                warn!(%error, "cannot list unpublished feedback events");
                return;
            }
        };
        for (record, event_id, system_label, example) in pending {
            let event = feedback_event(&record, &event_id, system_label, None, example);
            self.publish(event, &record.id, None).await;
        }
    }
}

/// Decodes a submission: protobuf unless `Content-Type: application/json`.
fn decode(message: &Message) -> Result<FeedbackSubmission, String> {
    let content_type = match header_value(message.headers.as_ref(), headers::CONTENT_TYPE) {
        None => ContentType::Protobuf,
        Some(value) => ContentType::from_header(value).ok_or_else(|| {
            format!(
                "unsupported content type {value:?}; send {} or {}",
                headers::APPLICATION_PROTOBUF,
                headers::APPLICATION_JSON
            )
        })?,
    };
    let wire: v1::FeedbackRecord = match content_type {
        ContentType::Protobuf => prost::Message::decode(message.payload.as_ref())
            .map_err(|e| format!("not a vigil.v1.FeedbackRecord in protobuf: {e}"))?,
        ContentType::Json => serde_json::from_slice(&message.payload)
            .map_err(|e| format!("not a vigil.v1.FeedbackRecord in JSON: {e}"))?,
    };
    FeedbackSubmission::try_from(wire).map_err(|e| e.to_string())
}

/// FEEDBACK_RECEIVED for a stored verdict; its id is derived from the verdict's, so a repeat
/// within the stream's window is dropped.
fn feedback_event(
    record: &FeedbackRecord,
    event_id: &str,
    system_label: Option<TrueLabel>,
    superseded: Option<&str>,
    example: bool,
) -> SecurityEvent {
    SecurityEvent {
        id: format!("{}:{}", EventType::FeedbackReceived.as_str(), record.id),
        event_type: EventType::FeedbackReceived,
        timestamp: Utc::now(),
        source: SOURCE.into(),
        correlation_id: event_id.to_owned(),
        severity: None,
        data: serde_json::json!({
            "feedback_id": record.id,
            "workflow_id": record.workflow_execution_id,
            "event_id": event_id,
            "action_id": record.action_id,
            "feedback_type": record.feedback_type,
            "label": record.label,
            "system_label": system_label,
            "attack_type": record.attack_type,
            "confidence": record.confidence,
            "correction": record.correction,
            "analyst": record.analyst,
            "superseded_id": superseded,
            "training_example": example,
            "submitted_at": record.timestamp,
        }),
    }
}
