//! The domain events of one workflow, built from its record alone: a redelivery whose workflow
//! was already committed publishes them again exactly as the first attempt did (same ids, so
//! the events stream drops the repeats), and no event can claim more than the record says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use vigil_domain::{
    Assessment, EventType, PredictionResult, SecurityEvent, Severity, StepOutcome,
    WorkflowExecution,
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
    pub alerts: serde_json::Value,
    /// The actions taken, or why none was.
    pub remediation: serde_json::Value,
    /// The incident the event is attached to, or why none was.
    pub incident: serde_json::Value,
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
        events.push(SecurityEvent {
            severity: Some(p.risk_level),
            ..event(
                EventType::PredictionComplete,
                json!({
                    "risk_score": p.risk_score,
                    "confidence": p.confidence,
                    "model_version_id": p.model_version_id,
                }),
            )
        });
    }
    if succeeded("route_alerts") {
        events.push(event(EventType::AlertRouted, results.alerts.clone()));
    }
    if succeeded("remediate") {
        events.push(event(
            EventType::RemediationExecuted,
            results.remediation.clone(),
        ));
    }
    if succeeded("incident") {
        events.push(event(EventType::IncidentCreated, results.incident.clone()));
    }
    events.push(event(
        EventType::WorkflowCompleted,
        json!({
            "workflow_id": workflow.id,
            "status": workflow.status,
            "duration_seconds": workflow.duration_seconds,
            "steps": workflow
                .steps
                .iter()
                .map(|s| (s.name.clone(), s.outcome))
                .collect::<BTreeMap<_, _>>(),
        }),
    ));
    events
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
            alerts: json!({ "skipped": "no routing rule for level high" }),
            remediation: json!({ "actions": [] }),
            incident: json!({ "incident_id": "i-1", "created": true }),
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
}
