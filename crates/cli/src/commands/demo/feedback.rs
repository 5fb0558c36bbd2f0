//! The feedback round: the true labels of a sample of replayed records given back as analyst
//! verdicts on `vigil.feedback.submit`, when a feedback service answers there.

use std::time::Duration;

use futures::StreamExt;
use vigil_domain::{Severity, WorkflowExecution};
use vigil_ml::LabeledExample;

use super::outcomes::THREAT_LEVEL;
use super::report::FeedbackReport;

/// Who the verdicts are given as.
const ANALYST: &str = "vigil-demo";
/// How long a feedback request waits for its answer.
const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One analyst verdict the demo gives: the record's true label on the workflow that handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FeedbackItem {
    event_id: String,
    workflow_id: String,
    /// The data set's label: `true` for an attack.
    true_label: bool,
    /// vigil's verdict: risk level high or above.
    verdict: bool,
    /// The data set's class name of an attack (`neptune`, ...).
    attack_type: Option<String>,
}

/// `size` replayed records that have a workflow (all of them when there are fewer), spread
/// evenly over the replay order.
pub(super) fn feedback_sample(
    rows: &[LabeledExample],
    workflows: &[WorkflowExecution],
    size: usize,
) -> Vec<FeedbackItem> {
    let by_event: std::collections::HashMap<&str, &WorkflowExecution> =
        workflows.iter().map(|w| (w.event_id.as_str(), w)).collect();
    let handled: Vec<(&LabeledExample, &WorkflowExecution)> = rows
        .iter()
        .filter_map(|e| Some((e, *by_event.get(e.signal.id.as_str())?)))
        .collect();
    if size == 0 || handled.is_empty() {
        return Vec::new();
    }
    // Evenly spread: item i of the sample is handled record i * len / size.
    let size = size.min(handled.len());
    (0..size)
        .map(|i| handled[i * handled.len() / size])
        .map(|(example, workflow)| FeedbackItem {
            event_id: example.signal.id.clone(),
            workflow_id: workflow.id.clone(),
            true_label: example.label,
            attack_type: example.class_name.clone(),
            verdict: serde_json::from_value::<Severity>(workflow.results["risk_level"].clone())
                .is_ok_and(|level| level >= THREAT_LEVEL),
        })
        .collect()
}

/// How one feedback request went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FeedbackAnswer {
    Accepted,
    Refused(String),
    /// Nobody answers on the subject.
    Unavailable(String),
}

/// Sends one verdict to the feedback service on `subject` and reads its answer.
///
/// The request is a `vigil.v1.FeedbackRecord` in proto3 JSON (Content-Type: application/json):
/// the verdict on vigil's handling (`CORRECT` when its verdict matched the true label,
/// `INCORRECT` otherwise), the true label, and the attack's name for an attack. An answer
/// carrying a `Nats-Service-Error` header, a NATS error status, or a JSON body with an `error`
/// or `"ok": false` (the feedback service's reply, docs/feedback.md) is a refusal; any other
/// answer is an acceptance.
async fn submit_feedback(
    client: &async_nats::Client,
    subject: &str,
    item: &FeedbackItem,
) -> FeedbackAnswer {
    let mut record = serde_json::json!({
        "workflowExecutionId": item.workflow_id,
        "feedbackType": if item.verdict == item.true_label {
            "FEEDBACK_TYPE_CORRECT"
        } else {
            "FEEDBACK_TYPE_INCORRECT"
        },
        "confidence": 1.0,
        "correction": "the data set's label for this record",
        "analyst": ANALYST,
        "label": if item.true_label { "TRUE_LABEL_ATTACK" } else { "TRUE_LABEL_BENIGN" },
    });
    if let Some(attack) = item.attack_type.as_deref().filter(|_| item.true_label) {
        record["attackType"] = serde_json::Value::from(attack);
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        vigil_bus::headers::CONTENT_TYPE,
        vigil_bus::headers::APPLICATION_JSON,
    );
    let request = async_nats::Request::new()
        .payload(record.to_string().into())
        .headers(headers)
        .timeout(Some(FEEDBACK_TIMEOUT));
    let reply = match client.send_request(subject.to_owned(), request).await {
        Ok(reply) => reply,
        Err(error) => {
            return match error.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    FeedbackAnswer::Unavailable(format!("no feedback service answers on {subject}"))
                }
                async_nats::RequestErrorKind::TimedOut => FeedbackAnswer::Unavailable(format!(
                    "no answer on {subject} within {} s",
                    FEEDBACK_TIMEOUT.as_secs()
                )),
                _ => FeedbackAnswer::Refused(error.to_string()),
            };
        }
    };
    if let Some(error) =
        vigil_bus::headers::header_value(reply.headers.as_ref(), "Nats-Service-Error")
    {
        return FeedbackAnswer::Refused(error.to_owned());
    }
    if let Some(status) = reply.status.filter(|s| !s.is_success()) {
        return FeedbackAnswer::Refused(format!(
            "status {status}: {}",
            reply.description.unwrap_or_default()
        ));
    }
    if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&reply.payload) {
        let error = body.get("error").filter(|e| !e.is_null());
        if error.is_some() || body.get("ok") == Some(&serde_json::Value::Bool(false)) {
            let why = error.map_or_else(
                || body.to_string(),
                |e| e.as_str().map_or_else(|| e.to_string(), str::to_owned),
            );
            return FeedbackAnswer::Refused(why);
        }
    }
    FeedbackAnswer::Accepted
}

/// Gives the sample's verdicts; the first request tells whether a feedback service answers.
pub(super) async fn feedback_round(
    client: &async_nats::Client,
    subject: &str,
    sample: &[FeedbackItem],
) -> FeedbackReport {
    let mut report = FeedbackReport {
        subject: subject.to_owned(),
        sample: sample.len(),
        status: "submitted".to_owned(),
        ..FeedbackReport::default()
    };
    let Some((first, rest)) = sample.split_first() else {
        report.status = "not available".to_owned();
        report.detail = Some("no replayed record has a workflow to judge".to_owned());
        return report;
    };
    let mut answers = vec![submit_feedback(client, subject, first).await];
    if let Some(FeedbackAnswer::Unavailable(why)) = answers.first() {
        report.status = "not available".to_owned();
        report.detail = Some(format!("not available ({why})"));
        return report;
    }
    answers.extend(
        futures::stream::iter(rest)
            .map(|item| submit_feedback(client, subject, item))
            .buffered(16)
            .collect::<Vec<_>>()
            .await,
    );
    for (item, answer) in sample.iter().zip(&answers) {
        match answer {
            FeedbackAnswer::Accepted => {
                report.accepted += 1;
                if item.verdict != item.true_label {
                    report.corrections += 1;
                }
            }
            FeedbackAnswer::Refused(why) | FeedbackAnswer::Unavailable(why) => {
                report.refused += 1;
                report.detail.get_or_insert_with(|| why.clone());
            }
        }
    }
    report.submitted = answers.len();
    report
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn handled(n: usize) -> (Vec<LabeledExample>, Vec<WorkflowExecution>) {
        let mut rows = Vec::new();
        let mut workflows = Vec::new();
        for i in 0..n {
            let mut signal =
                vigil_domain::ThreatSignal::new("network_connection", 0.5, chrono::Utc::now());
            signal.id = format!("row-{i}");
            rows.push(LabeledExample {
                signal,
                label: i % 4 == 0,
                source: "nsl-kdd".into(),
                class_name: Some(if i % 4 == 0 { "neptune" } else { "normal" }.into()),
                weight: 1.0,
            });
            workflows.push(WorkflowExecution {
                id: format!("wf-{i}"),
                event_id: format!("row-{i}"),
                workflow_type: "threat_response".into(),
                status: vigil_domain::WorkflowStatus::Success,
                started_at: chrono::Utc::now(),
                completed_at: None,
                steps: Vec::new(),
                results: serde_json::json!({ "risk_level": if i % 20 == 0 { "high" } else { "low" } }),
                error_message: None,
                duration_seconds: 0.0,
            });
        }
        (rows, workflows)
    }

    #[test]
    fn the_sample_spreads_over_the_replay_and_carries_both_verdicts() {
        let (rows, workflows) = handled(100);
        let sample = feedback_sample(&rows, &workflows, 10);
        assert_eq!(sample.len(), 10);
        assert_eq!(feedback_sample(&rows, &workflows, 30).len(), 30);
        assert_eq!(sample[0].event_id, "row-0");
        assert_eq!(sample[1].event_id, "row-10");
        assert_eq!(sample[0].workflow_id, "wf-0");
        assert!(
            sample[0].true_label && sample[0].verdict,
            "row 0: attack, risk high"
        );
        assert!(
            !sample[1].true_label && !sample[1].verdict,
            "row 10: normal, risk low"
        );
        assert_eq!(sample[0].attack_type.as_deref(), Some("neptune"));
        // A record without a workflow is never judged; asking for more than there is gives all.
        assert_eq!(feedback_sample(&rows, &workflows[..5], 50).len(), 5);
        assert!(feedback_sample(&rows, &workflows, 0).is_empty());
    }
}
