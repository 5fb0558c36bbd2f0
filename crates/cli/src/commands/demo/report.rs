//! The report: what the demo did, as data (`--json`) and as text a person reads.

use std::collections::BTreeMap;

use serde::Serialize;
use vigil_trainer::{RunOutcome, RunReport};

/// What `vigil demo` did, as printed (or as JSON with `--json`).
#[derive(Debug, Serialize)]
pub struct Report {
    pub data: DataReport,
    /// Whether the demo started the services or used running ones.
    pub services: String,
    pub nats_prefix: String,
    /// The database URL, password redacted.
    pub database: String,
    pub events: EventsReport,
    pub verdicts: VerdictsReport,
    pub alerts: AlertsReport,
    pub remediations: RemediationsReport,
    pub incidents: IncidentsReport,
    pub models: ModelsReport,
    pub accuracy: AccuracyReport,
    pub feedback: FeedbackReport,
    /// Per workflow step (and the whole workflow), over the steps that ran.
    pub latency_ms: BTreeMap<String, Percentiles>,
    /// What the demo left in the database.
    pub created: Created,
    /// Wall-clock seconds per phase, and in total.
    pub seconds: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
pub struct DataReport {
    pub dir: String,
    pub training_file: String,
    pub replay_file: String,
    pub training_rows: usize,
    pub replayed_rows: usize,
    pub holdout_rows: usize,
    /// Rows of the replay file skipped because vigil had already seen them.
    pub already_known_rows: usize,
    pub malformed_rows: usize,
}

#[derive(Debug, Serialize)]
pub struct EventsReport {
    /// Signals the ingest stream stored.
    pub published: usize,
    /// Signals it already held (same id within its dedup window).
    pub duplicates: usize,
    /// THREAT_DETECTED events the broker published for them.
    pub detected: usize,
    /// Workflow rows recorded for them.
    pub workflows: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// From the first publish until the last workflow was done.
    pub seconds: f64,
    pub per_second: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerdictsReport {
    /// Workflows per final risk level.
    pub by_level: BTreeMap<String, usize>,
    /// Workflows whose assessment included the ML prediction.
    pub scored_by_model: usize,
    /// Workflows scored by rules alone, per reason.
    pub not_scored: BTreeMap<String, usize>,
    /// Workflows whose verdict (high or critical = threat) matched the record's true label.
    pub matching_true_label: usize,
    pub compared: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertsReport {
    pub total: usize,
    /// Alerts per channel, per delivery status.
    pub by_channel: BTreeMap<String, BTreeMap<String, usize>>,
    /// Workflows that routed no alert, per reason.
    pub not_routed: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RemediationsReport {
    pub total: usize,
    /// Recorded by the dry-run executor (nothing applied).
    pub dry_run: usize,
    pub by_kind: BTreeMap<String, usize>,
    pub by_status: BTreeMap<String, usize>,
    /// Workflows that took no action, per reason.
    pub not_taken: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IncidentsReport {
    /// Incidents the replayed records opened.
    pub opened: usize,
    /// Distinct incidents they were attached to (opened or already open).
    pub touched: usize,
    pub events_attached: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRef {
    pub id: String,
    pub model_type: String,
    pub version: i32,
}

impl ModelRef {
    pub(super) fn of(version: &vigil_domain::ModelVersion) -> Self {
        Self {
            id: version.id.clone(),
            model_type: version.model_type.as_str().to_owned(),
            version: version.version,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub outcome: RunOutcome,
    pub reason: String,
    pub examples: usize,
    pub seconds: f64,
    /// F1 of the new ensemble on the run's own held-out split.
    pub f1: Option<f64>,
    pub ensemble: Option<ModelRef>,
}

impl RunSummary {
    pub(super) fn of(report: &RunReport) -> Self {
        Self {
            run_id: report.run_id.clone(),
            outcome: report.outcome,
            reason: report.reason.clone(),
            examples: report.examples.total,
            seconds: report.duration_seconds,
            f1: report
                .metrics
                .as_ref()
                .and_then(|m| m.get("f1"))
                .and_then(serde_json::Value::as_f64),
            ensemble: report.ensemble().map(|m| ModelRef {
                id: m.id.clone(),
                model_type: m.model_type.as_str().to_owned(),
                version: m.version,
            }),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ModelsReport {
    pub first_run: RunSummary,
    /// The production ensemble after the first run.
    pub production_before: ModelRef,
    /// Whether the predictor served it before the replay began.
    pub predictor_serving: bool,
    /// The run after the feedback round (none without feedback).
    pub retrain: Option<RunSummary>,
    pub production_after: Option<ModelRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    pub model: ModelRef,
    pub rows: usize,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub auc_roc: f64,
}

#[derive(Debug, Serialize)]
pub struct AccuracyReport {
    /// Labelled rows never replayed, imported nor fed back.
    pub holdout_rows: usize,
    /// The production ensemble before the feedback round.
    pub before: Option<Accuracy>,
    /// The production ensemble after it (none without feedback).
    pub after: Option<Accuracy>,
    /// The retrained ensemble, when it did not reach production.
    pub retrained: Option<Accuracy>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedbackReport {
    /// `submitted`, or `not available` when no feedback service answers.
    pub status: String,
    pub subject: String,
    pub sample: usize,
    pub submitted: usize,
    pub accepted: usize,
    pub refused: usize,
    /// Accepted verdicts that said vigil was wrong.
    pub corrections: usize,
    /// Why feedback was not available, or the first refusal.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` for no values.
    pub(super) fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        Some(Self {
            count: sorted.len(),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted[sorted.len() - 1],
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Created {
    /// Training examples imported that were not there before.
    pub training_examples: u64,
    pub workflows: usize,
    pub alerts: usize,
    /// Dry-run or applied remediation actions recorded.
    pub remediations: usize,
    pub incidents_opened: usize,
    pub models_registered: Vec<ModelRef>,
    /// Ensembles trained by runs the demo did not ask for (the feedback service's retraining
    /// trigger, the trainer's schedule), with why.
    pub other_runs: Vec<String>,
}

/// `12345` as `12,345`.
pub(super) fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 incident`, `2 incidents`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", grouped(n))
    }
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

fn counts(map: &BTreeMap<String, usize>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {}", grouped(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// The report as a person reads it.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let total = self.seconds.get("total").copied().unwrap_or_default();
        let d = &self.data;
        let e = &self.events;
        let _ = writeln!(s, "\nvigil demo: done in {total:.1} s\n");
        let _ = writeln!(
            s,
            "data         {}: trained on {} rows of {}; replayed {} records of {} it never \
             trained on; {} more held out",
            d.dir,
            grouped(d.training_rows),
            d.training_file,
            grouped(d.replayed_rows),
            d.replay_file,
            grouped(d.holdout_rows)
        );
        if d.already_known_rows > 0 {
            let _ = writeln!(
                s,
                "             ({} records skipped: vigil had seen them in an earlier run)",
                grouped(d.already_known_rows)
            );
        }
        let _ = writeln!(
            s,
            "services     {} (NATS prefix {:?}, database {})",
            self.services, self.nats_prefix, self.database
        );
        let _ = writeln!(
            s,
            "\nevents       {} published, {} detected by the broker, {} workflows ({} succeeded, \
             {} failed) in {:.1} s ({:.0}/s)",
            grouped(e.published + e.duplicates),
            grouped(e.detected),
            grouped(e.workflows),
            grouped(e.succeeded),
            grouped(e.failed),
            e.seconds,
            e.per_second
        );
        let v = &self.verdicts;
        let _ = writeln!(
            s,
            "verdicts     {}; {} scored by the model",
            counts(&v.by_level),
            grouped(v.scored_by_model)
        );
        for (why, n) in &v.not_scored {
            let _ = writeln!(
                s,
                "             {} scored by rules alone: {why}",
                grouped(*n)
            );
        }
        let _ = writeln!(
            s,
            "             high or critical = threat matched the true label for {} of {} ({})",
            grouped(v.matching_true_label),
            grouped(v.compared),
            percent(v.matching_true_label, v.compared)
        );
        let a = &self.alerts;
        if a.by_channel.is_empty() {
            let _ = writeln!(s, "alerts       none routed");
        } else {
            let channels: Vec<String> = a
                .by_channel
                .iter()
                .map(|(channel, statuses)| format!("{channel}: {}", counts(statuses)))
                .collect();
            let _ = writeln!(
                s,
                "alerts       {} ({})",
                grouped(a.total),
                channels.join("; ")
            );
        }
        for (why, n) in &a.not_routed {
            let _ = writeln!(
                s,
                "             {} workflows routed none: {why}",
                grouped(*n)
            );
        }
        let r = &self.remediations;
        let _ = writeln!(
            s,
            "remediation  {} actions, {} of them dry-run{}",
            grouped(r.total),
            grouped(r.dry_run),
            if r.by_kind.is_empty() {
                String::new()
            } else {
                format!(" ({})", counts(&r.by_kind))
            }
        );
        for (why, n) in top(&r.not_taken, 4) {
            let _ = writeln!(s, "             {} workflows took none: {why}", grouped(n));
        }
        let i = &self.incidents;
        let _ = writeln!(
            s,
            "incidents    {} opened; {} events attached to {}",
            grouped(i.opened),
            grouped(i.events_attached),
            plural(i.touched, "incident")
        );

        let m = &self.models;
        let _ = writeln!(
            s,
            "\nmodel        first run: {:?} on {} examples in {:.1} s: {}",
            m.first_run.outcome,
            grouped(m.first_run.examples),
            m.first_run.seconds,
            m.first_run.reason
        );
        let _ = writeln!(
            s,
            "             production: ensemble v{} ({}){}",
            m.production_before.version,
            m.production_before.id,
            if m.predictor_serving {
                ", served by the predictor during the replay"
            } else {
                ", NOT served by the predictor during the replay"
            }
        );
        if let Some(run) = &m.retrain {
            let _ = writeln!(
                s,
                "             retrained: {:?} on {} examples in {:.1} s: {}",
                run.outcome,
                grouped(run.examples),
                run.seconds,
                run.reason
            );
        }
        let f = &self.feedback;
        if f.accepted == 0 {
            let _ = writeln!(
                s,
                "feedback     {}",
                f.detail.as_deref().unwrap_or("not available")
            );
        } else {
            let _ = writeln!(
                s,
                "feedback     {} true labels given as analyst verdicts on {} ({} said vigil was \
                 wrong), {} refused",
                grouped(f.accepted),
                f.subject,
                grouped(f.corrections),
                grouped(f.refused)
            );
        }
        let acc = &self.accuracy;
        let _ = writeln!(
            s,
            "accuracy     on {} held-out rows the demo never trained on nor fed back:",
            grouped(acc.holdout_rows)
        );
        let line = |label: &str, a: &Option<Accuracy>| match a {
            Some(a) => format!(
                "             {label:<17} ensemble v{:<3} accuracy {:.4}  precision {:.4}  \
                 recall {:.4}  f1 {:.4}  auc {:.4}",
                a.model.version, a.accuracy, a.precision, a.recall, a.f1, a.auc_roc
            ),
            None => format!("             {label:<17} -"),
        };
        let _ = writeln!(s, "{}", line("before feedback", &acc.before));
        if f.accepted == 0 {
            let _ = writeln!(
                s,
                "             after feedback    - (no feedback round, no retraining)"
            );
        } else {
            let _ = writeln!(s, "{}", line("after feedback", &acc.after));
            if acc.retrained.is_some() {
                let _ = writeln!(s, "{}", line("retrained (staged)", &acc.retrained));
            }
        }

        let _ = writeln!(
            s,
            "\nlatency ms   {:<14} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "stage", "n", "p50", "p90", "p99", "max"
        );
        for (stage, p) in &self.latency_ms {
            let _ = writeln!(
                s,
                "             {:<14} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                stage, p.count, p.p50, p.p90, p.p99, p.max
            );
        }

        let c = &self.created;
        let ensembles: Vec<String> = c
            .models_registered
            .iter()
            .filter(|m| m.model_type == "ensemble")
            .map(|m| format!("v{}", m.version))
            .collect();
        let _ = writeln!(
            s,
            "\ncreated      {} training examples, {} workflows, {} alerts, {} remediation records, \
             {} opened",
            grouped(c.training_examples as usize),
            grouped(c.workflows),
            grouped(c.alerts),
            grouped(c.remediations),
            plural(c.incidents_opened, "incident")
        );
        let _ = writeln!(
            s,
            "             {} model versions registered: {}",
            c.models_registered.len(),
            if ensembles.is_empty() {
                "none".to_owned()
            } else {
                format!(
                    "ensemble {} with their random forest, XGBoost and neural network",
                    ensembles.join(", ")
                )
            }
        );
        for run in &c.other_runs {
            let _ = writeln!(s, "             {run}");
        }
        let _ = writeln!(
            s,
            "             (see `vigil models list`, `vigil remediation list`)"
        );
        s
    }
}

/// The `n` largest entries.
fn top(map: &BTreeMap<String, usize>, n: usize) -> Vec<(String, usize)> {
    let mut entries: Vec<(String, usize)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    entries.truncate(n);
    entries
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&values).unwrap();
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        let one = Percentiles::of(&[3.5]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (3.5, 3.5, 3.5));
        assert!(Percentiles::of(&[]).is_none());
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
