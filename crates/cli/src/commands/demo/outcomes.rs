//! What the replayed records' workflows did, read from their rows: verdicts, alerts,
//! remediations, incidents, and the duration of every step.

use std::collections::{BTreeMap, HashMap, HashSet};

use vigil_domain::{Severity, StepOutcome, WorkflowExecution, WorkflowStatus};
use vigil_ml::LabeledExample;

use super::report::{
    AlertsReport, IncidentsReport, Percentiles, RemediationsReport, VerdictsReport,
};

/// vigil's verdict is "threat" at this level and above (the label its assessments stood for).
pub(super) const THREAT_LEVEL: Severity = Severity::High;

#[derive(Debug, Default)]
pub(super) struct Outcomes {
    pub(super) workflows: usize,
    pub(super) succeeded: usize,
    pub(super) failed: usize,
    pub(super) verdicts: VerdictsReport,
    pub(super) alerts: AlertsReport,
    pub(super) remediations: RemediationsReport,
    pub(super) incidents: IncidentsReport,
    pub(super) durations: BTreeMap<String, Vec<f64>>,
}

impl Outcomes {
    pub(super) fn of(workflows: &[WorkflowExecution], rows: &[LabeledExample]) -> Self {
        let truth: HashMap<&str, bool> = rows
            .iter()
            .map(|e| (e.signal.id.as_str(), e.label))
            .collect();
        let mut out = Self {
            workflows: workflows.len(),
            ..Self::default()
        };
        let mut incident_ids = HashSet::new();
        for workflow in workflows {
            match workflow.status {
                WorkflowStatus::Success => out.succeeded += 1,
                WorkflowStatus::Failed => out.failed += 1,
                _ => {}
            }
            let results = &workflow.results;
            if let Ok(level) = serde_json::from_value::<Severity>(results["risk_level"].clone()) {
                *out.verdicts
                    .by_level
                    .entry(level.as_str().to_owned())
                    .or_default() += 1;
                if let Some(&label) = truth.get(workflow.event_id.as_str()) {
                    out.verdicts.compared += 1;
                    if (level >= THREAT_LEVEL) == label {
                        out.verdicts.matching_true_label += 1;
                    }
                }
            }
            if !results["prediction"].is_null() {
                out.verdicts.scored_by_model += 1;
            } else if let Some(predict) = workflow.steps.iter().find(|s| s.name == "predict") {
                let why = predict.detail.as_deref().unwrap_or("no reason recorded");
                *out.verdicts.not_scored.entry(reason_kind(why)).or_default() += 1;
            }
            out.alerts.observe(&results["alerts"]);
            out.remediations.observe(&results["remediation"]);
            if let Some(id) = results["incident"]["incident_id"].as_str() {
                out.incidents.events_attached += 1;
                if results["incident"]["created"].as_bool() == Some(true) {
                    out.incidents.opened += 1;
                }
                incident_ids.insert(id.to_owned());
            }
            for s in &workflow.steps {
                if s.outcome == StepOutcome::Succeeded {
                    out.durations
                        .entry(s.name.clone())
                        .or_default()
                        .push(s.duration_ms);
                }
            }
            if workflow.status == WorkflowStatus::Success {
                out.durations
                    .entry("workflow".to_owned())
                    .or_default()
                    .push(workflow.duration_seconds * 1_000.0);
            }
        }
        out.incidents.touched = incident_ids.len();
        out
    }

    pub(super) fn latency(&self) -> BTreeMap<String, Percentiles> {
        self.durations
            .iter()
            .filter_map(|(stage, values)| Some((stage.clone(), Percentiles::of(values)?)))
            .collect()
    }
}

impl AlertsReport {
    fn observe(&mut self, alerts: &serde_json::Value) {
        if let Some(why) = alerts["skipped"].as_str() {
            *self.not_routed.entry(reason_kind(why)).or_default() += 1;
            return;
        }
        for alert in alerts["channels"].as_array().into_iter().flatten() {
            let channel = alert["channel"].as_str().unwrap_or("?").to_owned();
            let status = alert["status"].as_str().unwrap_or("?").to_owned();
            *self
                .by_channel
                .entry(channel)
                .or_default()
                .entry(status)
                .or_default() += 1;
            self.total += 1;
        }
    }
}

impl RemediationsReport {
    fn observe(&mut self, remediation: &serde_json::Value) {
        if let Some(why) = remediation["skipped"].as_str() {
            *self.not_taken.entry(reason_kind(why)).or_default() += 1;
        }
        for action in remediation["actions"].as_array().into_iter().flatten() {
            self.total += 1;
            let kind = action["kind"].as_str().unwrap_or("?").to_owned();
            let status = action["status"].as_str().unwrap_or("?").to_owned();
            if status == "simulated" {
                self.dry_run += 1;
            }
            *self.by_kind.entry(kind).or_default() += 1;
            *self.by_status.entry(status).or_default() += 1;
        }
    }
}

/// A step's reason with its measured numbers masked (`risk 6.62 is not above the remediation
/// threshold 7` -> `risk N is not above ...`), so that reasons of one kind count together;
/// whole numbers (thresholds, channel names) are kept.
fn reason_kind(reason: &str) -> String {
    reason
        .split(' ')
        .map(|word| {
            let bare = word.trim_end_matches([',', ';', ':', ')']);
            if bare.contains('.') && bare.parse::<f64>().is_ok() {
                word.replacen(bare, "N", 1)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reasons_of_one_kind_count_together() {
        assert_eq!(
            reason_kind("risk 6.62 is not above the remediation threshold 7"),
            "risk N is not above the remediation threshold 7"
        );
        assert_eq!(
            reason_kind("predictor did not answer within 50ms"),
            "predictor did not answer within 50ms"
        );
        assert_eq!(reason_kind("score 0.5, below 1.25;"), "score N, below N;");
    }
}
