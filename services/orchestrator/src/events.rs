//! The domain events of one workflow, built from its record alone: a redelivery whose workflow
//! was already committed publishes them again exactly as the first attempt did (same ids, so
//! the events stream drops the repeats), and no event can claim more than the record says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_config::ChannelKind;
use vigil_domain::{
    AlertStatus, Assessment, EventType, PredictionResult, RemediationAction, SecurityEvent,
    Severity, StepOutcome, WorkflowExecution,
};

/// What a workflow found and did: stored as the `results` of its row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WorkflowResults {
    /// The final score, 0-10 (the assessment's, repeated for readers of the row).
    pub risk_score: f64,
    pub risk_level: Severity,
    pub ml_score: Option<f64>,
    /// The rule assessment with its factors.
    pub assessment: Assessment,
    /// The ML prediction, when the predictor answered.
    pub prediction: Option<PredictionResult>,
    /// Channels, grouping and delivery status.
    pub alerts: AlertsResult,
    /// The actions taken, or why none was.
    pub remediation: RemediationResult,
    /// The incident the event is attached to, or why none was.
    pub incident: IncidentResult,
    /// The content digest of the signal (`ThreatSignal::content_digest`): a later signal with
    /// this event id and another digest reused the id. Absent in rows written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_digest: Option<String>,
}

/// What the alert step did. Stored as `{"skipped": why}` or the routed form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum AlertsResult {
    Routed {
        threat_key: String,
        /// A repeat of a threat alerted on within the grouping window: nothing was sent.
        grouped: bool,
        /// Channels the routing rule named that have no settings.
        unconfigured: Vec<ChannelKind>,
        /// Each channel's alert as recorded.
        channels: Vec<ChannelResult>,
    },
    Skipped {
        skipped: String,
    },
}

/// One channel's alert in [`AlertsResult::Routed`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChannelResult {
    pub channel: String,
    pub status: AlertStatus,
    pub attempts: u32,
    pub error: Option<String>,
}

/// What the remediation step did. Stored as `{"skipped": why}` or the actions with notes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum RemediationResult {
    Acted {
        actions: Vec<RemediationAction>,
        /// Planned actions left out, and why (no user attribute, ...).
        notes: Vec<String>,
    },
    Skipped {
        skipped: String,
    },
}

impl RemediationResult {
    /// Why nothing was done, when nothing was.
    pub fn skipped(&self) -> Option<&str> {
        match self {
            RemediationResult::Skipped { skipped } => Some(skipped),
            RemediationResult::Acted { .. } => None,
        }
    }
}

/// The incident step: requested while the workflow runs, attached once it is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum IncidentResult {
    Attached {
        incident_id: String,
        threat_key: Option<String>,
        /// A new incident was opened for this event.
        created: bool,
    },
    Requested {
        threat_key: String,
    },
    Skipped {
        skipped: String,
    },
}

impl WorkflowResults {
    /// The results of a stored workflow; `None` for a row another version wrote differently.
    pub fn of(workflow: &WorkflowExecution) -> Option<Self> {
        serde_json::from_value(workflow.results.clone()).ok()
    }
}

/// The events of a committed workflow, in step order: one per step that did something, then
/// WORKFLOW_COMPLETED.
pub(crate) fn workflow_events(
    workflow: &WorkflowExecution,
    results: &WorkflowResults,
) -> Vec<SecurityEvent> {
    let at = workflow.completed_at.unwrap_or(workflow.started_at);
    let level = Some(results.risk_level);
    let event = |event_type: EventType, data: serde_json::Value| SecurityEvent {
        id: format!("{}:{}", event_type.as_str(), workflow.event_id),
        event_type,
        timestamp: at,
        source: "orchestrator".into(),
        correlation_id: workflow.event_id.clone(),
        severity: level,
        data,
    };
    let succeeded = |name: &str| {
        workflow
            .steps
            .iter()
            .any(|s| s.name == name && s.outcome == StepOutcome::Succeeded)
    };

    let a = &results.assessment;
    let mut events = vec![event(
        EventType::AssessmentComplete,
        json!({
            "risk_score": a.risk_score,
            "risk_level": a.risk_level,
            "rule_score": a.rule_score,
            "ml_score": a.ml_score,
            "confidence": a.confidence,
            "factors": a.factors,
        }),
    )];
    if let Some(p) = &results.prediction {
        // An abstaining model says why and gives no score to act on; either way the event
        // carries what a reviewer reads: coverage, domain, each member and the novelty member.
        let mut data = json!({
            "model_version_id": p.model_version_id,
            "coverage": p.coverage,
            "missing_inputs": p.missing_inputs,
            "in_domain": p.in_domain,
            "probability": p.probability,
            "decision_threshold": p.decision_threshold,
            "member_probabilities": p.member_probabilities,
            "novelty": p.novelty,
        });
        let severity = match &p.abstention {
            Some(abstention) => {
                data["abstention"] = json!({
                    "reason": abstention.reason,
                    "detail": abstention.detail,
                });
                None
            }
            None => {
                data["risk_score"] = json!(p.risk_score);
                data["confidence"] = json!(p.confidence);
                Some(p.risk_level)
            }
        };
        events.push(SecurityEvent {
            severity,
            ..event(EventType::PredictionComplete, data)
        });
    }
    if succeeded("route_alerts") {
        events.push(event(EventType::AlertRouted, to_json(&results.alerts)));
    }
    // A remediation that failed for good after its retries is reported like one that worked:
    // its actions carry their status and error.
    let remediated = workflow
        .steps
        .iter()
        .any(|s| s.name == "remediate" && s.outcome != StepOutcome::Skipped);
    if remediated {
        events.push(event(
            EventType::RemediationExecuted,
            to_json(&results.remediation),
        ));
    }
    if succeeded("incident") {
        events.push(event(
            EventType::IncidentCreated,
            to_json(&results.incident),
        ));
    }
    events.push(event(
        EventType::WorkflowCompleted,
        json!({
            "workflow_id": workflow.id,
            "status": workflow.status,
            "duration_seconds": workflow.duration_seconds,
            "error": workflow.error_message,
            "steps": workflow
                .steps
                .iter()
                .map(|s| (s.name.clone(), s.outcome))
                .collect::<BTreeMap<_, _>>(),
        }),
    ));
    events
}

/// The JSON of a result; these types always serialise.
fn to_json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use vigil_domain::{RiskFactor, WorkflowStatus, WorkflowStep};

    use super::*;

    fn step(name: &str, outcome: StepOutcome) -> WorkflowStep {
        WorkflowStep {
            name: name.into(),
            outcome,
            detail: None,
            duration_ms: 0.5,
        }
    }

    fn workflow(remediated: StepOutcome) -> (WorkflowExecution, WorkflowResults) {
        let results = WorkflowResults {
            risk_score: 8.1,
            risk_level: Severity::High,
            ml_score: None,
            assessment: Assessment {
                threat_id: "evt-1".into(),
                risk_score: 8.1,
                risk_level: Severity::High,
                confidence: 0.9,
                rule_score: 8.1,
                ml_score: None,
                factors: vec![RiskFactor {
                    name: "type_weight".into(),
                    contribution: 3.0,
                    detail: "port_scan".into(),
                }],
                assessed_at: Utc::now(),
            },
            prediction: None,
            alerts: AlertsResult::Skipped {
                skipped: "no routing rule for level high".into(),
            },
            remediation: RemediationResult::Acted {
                actions: Vec::new(),
                notes: Vec::new(),
            },
            incident: IncidentResult::Attached {
                incident_id: "i-1".into(),
                threat_key: Some("port_scan:203.0.113.5".into()),
                created: true,
            },
            signal_digest: None,
        };
        let workflow = WorkflowExecution {
            id: "0190b4d2-0000-7000-8000-000000000001".into(),
            event_id: "evt-1".into(),
            workflow_type: "threat_response".into(),
            status: WorkflowStatus::Success,
            started_at: Utc::now(),
            completed_at: Some(Utc::now()),
            steps: vec![
                step("assess", StepOutcome::Succeeded),
                step("predict", StepOutcome::Skipped),
                step("route_alerts", StepOutcome::Skipped),
                step("remediate", remediated),
                step("incident", StepOutcome::Succeeded),
            ],
            results: serde_json::to_value(&results).unwrap_or_default(),
            error_message: None,
            duration_seconds: 0.01,
        };
        (workflow, results)
    }

    fn types(events: &[SecurityEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.event_type.as_str()).collect()
    }

    #[test]
    fn only_steps_that_did_something_publish_an_event() {
        let (wf, results) = workflow(StepOutcome::Succeeded);
        assert_eq!(
            types(&workflow_events(&wf, &results)),
            [
                "assessment_complete",
                "remediation_executed",
                "incident_created",
                "workflow_completed"
            ]
        );
        let (wf, results) = workflow(StepOutcome::Skipped);
        assert_eq!(
            types(&workflow_events(&wf, &results)),
            [
                "assessment_complete",
                "incident_created",
                "workflow_completed"
            ]
        );
    }

    fn prediction(coverage: f64) -> PredictionResult {
        PredictionResult {
            threat_id: "evt-1".into(),
            risk_score: 9.99,
            risk_level: Severity::Critical,
            confidence: 0.98,
            model_version_id: "ens-1".into(),
            features_used: BTreeMap::new(),
            prediction_time_ms: 0.1,
            created_at: Utc::now(),
            coverage,
            missing_inputs: vec!["count".into()],
            in_domain: 0.7,
            probability: 0.999,
            decision_threshold: 0.1,
            member_probabilities: BTreeMap::from([(vigil_domain::ModelType::Xgboost, 0.99)]),
            novelty: 0.02,
            abstention: None,
        }
        .abstain_below(0.5)
    }

    #[test]
    fn prediction_complete_says_why_the_model_abstained_and_gives_no_score() {
        let (mut wf, mut results) = workflow(StepOutcome::Skipped);
        results.prediction = Some(prediction(0.03));
        wf.results = serde_json::to_value(&results).unwrap_or_default();
        let stored = WorkflowResults::of(&wf).expect("results read back");
        assert_eq!(
            stored, results,
            "the abstention is kept in the stored results"
        );
        let events = workflow_events(&wf, &stored);
        let predicted = events
            .iter()
            .find(|e| e.event_type == EventType::PredictionComplete)
            .expect("prediction_complete");
        assert_eq!(predicted.data["abstention"]["reason"], "low_coverage");
        assert!(
            predicted.data["abstention"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("count")),
            "{}",
            predicted.data
        );
        assert!(
            predicted.data.get("risk_score").is_none(),
            "{}",
            predicted.data
        );
        assert_eq!(predicted.severity, None);
        assert_eq!(predicted.data["coverage"], 0.03);

        results.prediction = Some(prediction(0.97));
        let events = workflow_events(&wf, &results);
        let predicted = events
            .iter()
            .find(|e| e.event_type == EventType::PredictionComplete)
            .expect("prediction_complete");
        assert!(predicted.data.get("abstention").is_none());
        assert_eq!(predicted.data["risk_score"], 9.99);
        assert_eq!(predicted.data["member_probabilities"]["xgboost"], 0.99);
        assert_eq!(predicted.severity, Some(Severity::Critical));
    }

    #[test]
    fn events_rebuilt_from_the_stored_row_are_the_ones_first_published() {
        let (wf, results) = workflow(StepOutcome::Succeeded);
        let first = workflow_events(&wf, &results);
        let stored = WorkflowResults::of(&wf).expect("results read back");
        let again = workflow_events(&wf, &stored);
        assert_eq!(first, again);
        assert!(
            first.iter().all(|e| e.id.ends_with(":evt-1")),
            "ids are deterministic per event type and event"
        );
        let completed = first.last().expect("workflow_completed");
        assert_eq!(completed.data["status"], "SUCCESS");
        assert_eq!(completed.data["steps"]["remediate"], "succeeded");
    }

    #[test]
    fn results_are_stored_in_the_shapes_readers_know() {
        let (wf, _) = workflow(StepOutcome::Succeeded);
        assert_eq!(
            wf.results["alerts"],
            json!({ "skipped": "no routing rule for level high" })
        );
        assert_eq!(
            wf.results["remediation"],
            json!({ "actions": [], "notes": [] })
        );
        assert_eq!(
            wf.results["incident"],
            json!({ "incident_id": "i-1", "threat_key": "port_scan:203.0.113.5", "created": true })
        );
        let requested: IncidentResult = serde_json::from_value(json!({ "threat_key": "k" }))
            .unwrap_or(IncidentResult::Skipped {
                skipped: "unreadable".into(),
            });
        assert_eq!(
            requested,
            IncidentResult::Requested {
                threat_key: "k".into()
            }
        );
    }
}
