//! The `feedback` table (analysts' verdicts) and `retrain_requests` (the training runs the
//! verdicts asked for).
//!
//! A verdict is written in one transaction that locks its workflow row, so verdicts on one
//! workflow are serialised across replicas: the same verdict sent twice finds the first and
//! writes nothing; a different verdict by the same analyst on the same workflow and action
//! supersedes the current one (both rows stay), and the workflow's signal gets the new true
//! label as an analyst-labelled training example.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use vigil_domain::{
    FeedbackRecord, FeedbackType, Severity, ThreatSignal, TrueLabel, ValidationError,
    WorkflowStatus,
};

use crate::ids::parse_uuid;
use crate::training::set_feedback_label;
use crate::{Error, Result};

/// A workflow as a verdict needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgedWorkflow {
    pub id: String,
    pub event_id: String,
    pub status: WorkflowStatus,
    /// The risk level vigil gave it (`None` when its results hold none: a failed workflow).
    pub risk_level: Option<Severity>,
    /// Whether its signal is recorded (verdicts on it then make a training example).
    pub has_signal: bool,
}

impl JudgedWorkflow {
    /// vigil's own verdict on the workflow's signal, if it reached one.
    pub fn system_label(&self) -> Option<TrueLabel> {
        self.risk_level.map(TrueLabel::verdict_of)
    }
}

/// A successful workflow no analyst has judged yet, as the review queue scores it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewCandidate {
    pub id: String,
    pub event_id: String,
    pub started_at: DateTime<Utc>,
    /// The workflow's recorded `results`: risk score and level, prediction, alerts,
    /// remediation.
    pub results: serde_json::Value,
    /// The signal it processed (`None` for a workflow recorded without it).
    pub signal: Option<ThreatSignal>,
}

/// A judged workflow's signal and the label of its current verdict: what the review queue's
/// exploration lane follows up (an unjudged signal like one judged an attack) or passes over.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgedSignal {
    pub event_id: String,
    pub label: TrueLabel,
    pub signal: ThreatSignal,
}

/// A judged workflow as the insights read it: what vigil recorded and what its current
/// verdict says the signal was.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgedOutcome {
    pub workflow_id: String,
    /// The signal's threat type (`None` for a workflow recorded without its signal).
    pub threat_type: Option<String>,
    /// The workflow's final risk score, 0-10.
    pub risk_score: f64,
    /// The level vigil gave it.
    pub risk_level: Severity,
    /// The true label of the workflow's newest current verdict.
    pub label: TrueLabel,
}

impl JudgedOutcome {
    /// vigil's own verdict on the workflow (attack from risk level high).
    pub fn system_label(&self) -> TrueLabel {
        TrueLabel::verdict_of(self.risk_level)
    }
}

/// A verdict to record; validated by the caller against its workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFeedback<'a> {
    /// The workflow's id (a UUID).
    pub workflow_id: &'a str,
    /// The alert or remediation judged; empty for the whole workflow.
    pub action_id: &'a str,
    pub feedback_type: FeedbackType,
    /// The signal's true label by this verdict.
    pub label: TrueLabel,
    /// vigil's own verdict on it.
    pub system_label: TrueLabel,
    pub attack_type: Option<&'a str>,
    pub confidence: f64,
    pub correction: Option<&'a str>,
    pub analyst: &'a str,
}

/// What recording a verdict did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A first verdict of this analyst on this workflow and action.
    Stored,
    /// The same verdict was already current; nothing was written.
    Duplicate,
    /// It replaced the analyst's earlier, different verdict (kept, marked superseded).
    Superseded { previous: String },
}

/// A recorded verdict and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackWrite {
    /// The stored verdict (for a duplicate, the one already there).
    pub record: FeedbackRecord,
    pub outcome: Recorded,
    /// The event id of the workflow judged.
    pub event_id: String,
    /// Whether the workflow's signal now carries this verdict's label as a training example.
    pub example: bool,
    /// Whether FEEDBACK_RECEIVED for it is already in the events stream.
    pub event_published: bool,
}

/// A retraining request the feedback service made.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrainRequest {
    pub id: String,
    /// `labels` or `accuracy`.
    pub trigger: String,
    /// Why, in words; sent to the trainer and written into its run report.
    pub reason: String,
    pub labels: u64,
    pub accuracy: Option<f64>,
    pub requested_at: DateTime<Utc>,
    pub attempts: u32,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub run_id: Option<String>,
    pub run_outcome: Option<String>,
    /// The trainer's whole run report (its trigger carries `reason`).
    pub run_report: Option<serde_json::Value>,
}

/// When the feedback service asks for a run; see `vigil_config::FeedbackSettings`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrainRule {
    /// Labelled verdicts since the last run or request; 0: off.
    pub after_labels: u64,
    /// Accuracy below which a run is asked for; 0: off.
    pub accuracy_floor: f64,
    /// Verdicts the accuracy is measured over.
    pub accuracy_window: u64,
}

/// The `feedback` and `retrain_requests` repository.
#[derive(Debug, Clone, Copy)]
pub struct Feedback<'a> {
    pool: &'a PgPool,
}

macro_rules! feedback_columns {
    () => {
        "id, workflow_id, action_id, feedback_type, confidence, correction, analyst, created_at, \
         label, attack_type, superseded_by, event_published_at"
    };
}

#[derive(Clone, sqlx::FromRow)]
struct FeedbackRow {
    id: Uuid,
    workflow_id: Uuid,
    action_id: String,
    feedback_type: String,
    confidence: f64,
    correction: Option<String>,
    analyst: String,
    created_at: DateTime<Utc>,
    label: Option<String>,
    attack_type: Option<String>,
    superseded_by: Option<Uuid>,
    event_published_at: Option<DateTime<Utc>>,
}

impl TryFrom<FeedbackRow> for FeedbackRecord {
    type Error = Error;

    fn try_from(row: FeedbackRow) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptRow {
            table: "feedback",
            reason: format!("{}: {reason}", row.id),
        };
        Ok(FeedbackRecord {
            id: row.id.to_string(),
            workflow_execution_id: row.workflow_id.to_string(),
            action_id: row.action_id.clone(),
            feedback_type: FeedbackType::from_str(&row.feedback_type)
                .map_err(|e| corrupt(e.to_string()))?,
            confidence: row.confidence,
            correction: row.correction.clone(),
            analyst: row.analyst.clone(),
            timestamp: row.created_at,
            label: row
                .label
                .as_deref()
                .map(TrueLabel::from_str)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            attack_type: row.attack_type.clone(),
            superseded_by: row.superseded_by.map(|id| id.to_string()),
        })
    }
}

#[derive(sqlx::FromRow)]
struct RetrainRow {
    id: Uuid,
    trigger: String,
    reason: String,
    labels: i64,
    accuracy: Option<f64>,
    requested_at: DateTime<Utc>,
    attempts: i32,
    delivered_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    run_id: Option<String>,
    run_outcome: Option<String>,
    run_report: Option<serde_json::Value>,
}

impl From<RetrainRow> for RetrainRequest {
    fn from(row: RetrainRow) -> Self {
        RetrainRequest {
            id: row.id.to_string(),
            trigger: row.trigger,
            reason: row.reason,
            labels: u64::try_from(row.labels).unwrap_or_default(),
            accuracy: row.accuracy,
            requested_at: row.requested_at,
            attempts: u32::try_from(row.attempts).unwrap_or_default(),
            delivered_at: row.delivered_at,
            last_error: row.last_error,
            run_id: row.run_id,
            run_outcome: row.run_outcome,
            run_report: row.run_report,
        }
    }
}

macro_rules! retrain_columns {
    () => {
        "id, trigger, reason, labels, accuracy, requested_at, attempts, delivered_at, last_error, \
         run_id, run_outcome, run_report"
    };
}

/// Whether two verdicts say the same thing (who, what and when aside).
fn same_content(row: &FeedbackRow, new: &NewFeedback<'_>) -> bool {
    row.feedback_type == new.feedback_type.as_str()
        && row.label.as_deref() == Some(new.label.as_str())
        && row.attack_type.as_deref() == new.attack_type
        && row.confidence.to_bits() == new.confidence.to_bits()
        && row.correction.as_deref() == new.correction
}

impl<'a> Feedback<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// The workflow `workflow` names: by its id when that is one, else by its event id.
    pub async fn find_workflow(&self, workflow: &str) -> Result<Option<JudgedWorkflow>> {
        let workflow = workflow.trim();
        if workflow.is_empty() {
            return Ok(None);
        }
        let id = Uuid::parse_str(workflow).ok();
        let row: Option<(Uuid, String, String, Option<String>, bool)> = sqlx::query_as(
            "SELECT w.id, w.event_id, w.status, w.results->>'risk_level', \
                    EXISTS (SELECT 1 FROM workflow_signals s WHERE s.event_id = w.event_id) \
             FROM workflows w \
             WHERE ($1::uuid IS NOT NULL AND w.id = $1) OR w.event_id = $2 \
             ORDER BY (w.id = $1) DESC NULLS LAST LIMIT 1",
        )
        .bind(id)
        .bind(workflow)
        .fetch_optional(self.pool)
        .await?;
        let Some((id, event_id, status, level, has_signal)) = row else {
            return Ok(None);
        };
        let corrupt = |reason: String| Error::CorruptRow {
            table: "workflows",
            reason: format!("event {event_id}: {reason}"),
        };
        Ok(Some(JudgedWorkflow {
            id: id.to_string(),
            status: WorkflowStatus::from_str(&status).map_err(|e| corrupt(e.to_string()))?,
            risk_level: level
                .as_deref()
                .map(Severity::from_str)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            has_signal,
            event_id,
        }))
    }

    /// The alerts and remediations of an event: the actions a verdict may name.
    pub async fn action_ids(&self, event_id: &str) -> Result<Vec<String>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM alerts WHERE event_id = $1 \
             UNION SELECT id FROM remediations WHERE event_id = $1 ORDER BY 1",
        )
        .bind(event_id)
        .fetch_all(self.pool)
        .await?;
        Ok(ids.into_iter().map(|id| id.to_string()).collect())
    }

    /// Records a verdict (see the module documentation): idempotent for the same content,
    /// superseding for a different one, with the workflow's training example relabelled.
    pub async fn record(&self, new: &NewFeedback<'_>) -> Result<FeedbackWrite> {
        let workflow_id = parse_uuid("workflow_id", new.workflow_id)?;
        if new.analyst.trim().is_empty() {
            return Err(ValidationError::Empty { field: "analyst" }.into());
        }
        let mut tx = self.pool.begin().await?;
        let event_id: Option<String> =
            sqlx::query_scalar("SELECT event_id FROM workflows WHERE id = $1 FOR UPDATE")
                .bind(workflow_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(event_id) = event_id else {
            return Err(Error::NotFound {
                entity: "workflow",
                key: new.workflow_id.to_string(),
            });
        };
        let current: Option<FeedbackRow> = sqlx::query_as(concat!(
            "SELECT ",
            feedback_columns!(),
            " FROM feedback WHERE workflow_id = $1 AND action_id = $2 AND analyst = $3 \
              AND superseded_by IS NULL ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(workflow_id)
        .bind(new.action_id)
        .bind(new.analyst)
        .fetch_optional(&mut *tx)
        .await?;
        let has_signal: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM workflow_signals WHERE event_id = $1)",
        )
        .bind(&event_id)
        .fetch_one(&mut *tx)
        .await?;

        if let Some(row) = current.as_ref().filter(|row| same_content(row, new)) {
            tx.rollback().await?;
            let event_published = row.event_published_at.is_some();
            let record = FeedbackRecord::try_from(row.clone())?;
            return Ok(FeedbackWrite {
                record,
                outcome: Recorded::Duplicate,
                event_id,
                example: has_signal,
                event_published,
            });
        }

        let id = Uuid::now_v7();
        let row: FeedbackRow = sqlx::query_as(concat!(
            "INSERT INTO feedback (id, workflow_id, action_id, feedback_type, confidence, \
                                   correction, analyst, label, system_label, attack_type) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ",
            feedback_columns!()
        ))
        .bind(id)
        .bind(workflow_id)
        .bind(new.action_id)
        .bind(new.feedback_type.as_str())
        .bind(new.confidence)
        .bind(new.correction)
        .bind(new.analyst)
        .bind(new.label.as_str())
        .bind(new.system_label.as_str())
        .bind(new.attack_type)
        .fetch_one(&mut *tx)
        .await?;
        // Every current verdict of the key (one, unless rows were written by hand) is replaced.
        let superseded: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE feedback SET superseded_by = $4, superseded_at = now() \
             WHERE workflow_id = $1 AND action_id = $2 AND analyst = $3 \
               AND superseded_by IS NULL AND id <> $4 RETURNING id",
        )
        .bind(workflow_id)
        .bind(new.action_id)
        .bind(new.analyst)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        if has_signal {
            label_signal(&mut tx, &event_id, new.label).await?;
        }
        tx.commit().await?;
        let outcome = match current {
            Some(previous) => Recorded::Superseded {
                previous: previous.id.to_string(),
            },
            None if !superseded.is_empty() => Recorded::Superseded {
                previous: superseded[0].to_string(),
            },
            None => Recorded::Stored,
        };
        Ok(FeedbackWrite {
            record: FeedbackRecord::try_from(row)?,
            outcome,
            event_id,
            example: has_signal,
            event_published: false,
        })
    }

    /// Notes that FEEDBACK_RECEIVED of verdict `id` is in the events stream.
    pub async fn mark_published(&self, id: &str) -> Result<()> {
        let id = parse_uuid("id", id)?;
        sqlx::query(
            "UPDATE feedback SET event_published_at = now() \
             WHERE id = $1 AND event_published_at IS NULL",
        )
        .bind(id)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Verdicts whose FEEDBACK_RECEIVED is not in the events stream yet, accepted more than a
    /// few seconds ago (the handler that stored them had its chance), oldest first; each with
    /// its workflow's event id, vigil's verdict, and whether its signal is an example.
    pub async fn unpublished(
        &self,
        limit: u64,
    ) -> Result<Vec<(FeedbackRecord, String, Option<TrueLabel>, bool)>> {
        #[derive(sqlx::FromRow)]
        struct Unpublished {
            #[sqlx(flatten)]
            row: FeedbackRow,
            event_id: String,
            system_label: Option<String>,
            example: bool,
        }
        let rows: Vec<Unpublished> = sqlx::query_as(
            "SELECT f.id, f.workflow_id, f.action_id, f.feedback_type, f.confidence, \
                    f.correction, f.analyst, f.created_at, f.label, f.attack_type, \
                    f.superseded_by, f.event_published_at, w.event_id, f.system_label, \
                    EXISTS (SELECT 1 FROM workflow_signals s WHERE s.event_id = w.event_id) \
                        AS example \
             FROM feedback f JOIN workflows w ON w.id = f.workflow_id \
             WHERE f.event_published_at IS NULL AND f.label IS NOT NULL \
               AND f.created_at < now() - interval '10 seconds' \
             ORDER BY f.created_at LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|u| {
                let system = u
                    .system_label
                    .as_deref()
                    .map(TrueLabel::from_str)
                    .transpose()
                    .map_err(|e| Error::CorruptRow {
                        table: "feedback",
                        reason: e.to_string(),
                    })?;
                Ok((
                    FeedbackRecord::try_from(u.row)?,
                    u.event_id,
                    system,
                    u.example,
                ))
            })
            .collect()
    }

    /// One verdict.
    pub async fn get(&self, id: &str) -> Result<Option<FeedbackRecord>> {
        let id = parse_uuid("id", id)?;
        let row: Option<FeedbackRow> = sqlx::query_as(concat!(
            "SELECT ",
            feedback_columns!(),
            " FROM feedback WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        row.map(FeedbackRecord::try_from).transpose()
    }

    /// Verdicts, newest first, superseded ones included (the history); only those on one
    /// workflow (its id) when given; at most `limit`.
    pub async fn list(&self, workflow_id: Option<&str>, limit: u64) -> Result<Vec<FeedbackRecord>> {
        let workflow_id = workflow_id
            .map(|id| parse_uuid("workflow_id", id))
            .transpose()?;
        let rows: Vec<FeedbackRow> = sqlx::query_as(concat!(
            "SELECT ",
            feedback_columns!(),
            " FROM feedback WHERE ($1::uuid IS NULL OR workflow_id = $1) \
              ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(workflow_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(FeedbackRecord::try_from).collect()
    }

    /// Verdicts stored, superseded ones included.
    pub async fn count(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM feedback")
            .fetch_one(self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// The newest `window` successful workflows without any verdict (by any analyst, on the
    /// workflow or one of its actions), newest first, with their results and signals: what the
    /// review queue scores.
    pub async fn review_candidates(&self, window: u64) -> Result<Vec<ReviewCandidate>> {
        #[derive(sqlx::FromRow)]
        struct CandidateRow {
            id: Uuid,
            event_id: String,
            started_at: DateTime<Utc>,
            results: serde_json::Value,
            signal: Option<serde_json::Value>,
        }
        let rows: Vec<CandidateRow> = sqlx::query_as(
            "SELECT w.id, w.event_id, w.started_at, w.results, s.signal \
             FROM workflows w LEFT JOIN workflow_signals s ON s.event_id = w.event_id \
             WHERE w.status = 'SUCCESS' \
               AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.workflow_id = w.id) \
             ORDER BY w.started_at DESC, w.id DESC LIMIT $1",
        )
        .bind(i64::try_from(window).unwrap_or(i64::MAX))
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let signal = row
                    .signal
                    .map(serde_json::from_value::<ThreatSignal>)
                    .transpose()
                    .map_err(|e| Error::CorruptRow {
                        table: "workflow_signals",
                        reason: format!("event {}: {e}", row.event_id),
                    })?;
                Ok(ReviewCandidate {
                    id: row.id.to_string(),
                    event_id: row.event_id,
                    started_at: row.started_at,
                    results: row.results,
                    signal,
                })
            })
            .collect()
    }

    /// The newest `limit` judged workflows that have a recorded signal, newest verdict first,
    /// each once with the label of its newest current verdict.
    pub async fn judged_signals(&self, limit: u64) -> Result<Vec<JudgedSignal>> {
        #[derive(sqlx::FromRow)]
        struct JudgedRow {
            event_id: String,
            label: String,
            signal: serde_json::Value,
        }
        let rows: Vec<JudgedRow> = sqlx::query_as(
            "SELECT j.event_id, j.label, s.signal FROM ( \
                 SELECT DISTINCT ON (f.workflow_id) w.event_id, f.label, f.created_at \
                 FROM feedback f JOIN workflows w ON w.id = f.workflow_id \
                 WHERE f.superseded_by IS NULL AND f.label IS NOT NULL \
                   AND w.status = 'SUCCESS' \
                 ORDER BY f.workflow_id, f.created_at DESC, f.id DESC) j \
             JOIN workflow_signals s ON s.event_id = j.event_id \
             ORDER BY j.created_at DESC, j.event_id LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let signal = serde_json::from_value::<ThreatSignal>(row.signal).map_err(|e| {
                    Error::CorruptRow {
                        table: "workflow_signals",
                        reason: format!("event {}: {e}", row.event_id),
                    }
                })?;
                let label = TrueLabel::from_str(&row.label).map_err(|e| Error::CorruptRow {
                    table: "feedback",
                    reason: format!("a verdict on event {}: {e}", row.event_id),
                })?;
                Ok(JudgedSignal {
                    event_id: row.event_id,
                    label,
                    signal,
                })
            })
            .collect()
    }

    /// Every successful workflow with a current labelled verdict, once, with the label of its
    /// newest current verdict (whoever gave it: the label its training example carries), and
    /// the score and level vigil recorded; oldest judged workflow first.
    pub async fn judged_outcomes(&self) -> Result<Vec<JudgedOutcome>> {
        #[derive(sqlx::FromRow)]
        struct JudgedRow {
            workflow_id: Uuid,
            label: String,
            risk_score: Option<f64>,
            risk_level: Option<String>,
            threat_type: Option<String>,
        }
        let rows: Vec<JudgedRow> = sqlx::query_as(
            "SELECT DISTINCT ON (f.workflow_id) f.workflow_id, f.label, \
                    (w.results->>'risk_score')::float8 AS risk_score, \
                    w.results->>'risk_level' AS risk_level, \
                    s.signal->>'threat_type' AS threat_type \
             FROM feedback f JOIN workflows w ON w.id = f.workflow_id \
             LEFT JOIN workflow_signals s ON s.event_id = w.event_id \
             WHERE f.superseded_by IS NULL AND f.label IS NOT NULL \
               AND w.status = 'SUCCESS' \
             ORDER BY f.workflow_id, f.created_at DESC, f.id DESC",
        )
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let id = row.workflow_id;
                let corrupt = |reason: String| Error::CorruptRow {
                    table: "workflows",
                    reason: format!("{id}: {reason}"),
                };
                Ok(JudgedOutcome {
                    workflow_id: id.to_string(),
                    threat_type: row.threat_type,
                    risk_score: row
                        .risk_score
                        .filter(|s| s.is_finite())
                        .ok_or_else(|| corrupt("results hold no risk_score".into()))?,
                    risk_level: row
                        .risk_level
                        .as_deref()
                        .ok_or_else(|| corrupt("results hold no risk_level".into()))
                        .and_then(|l| Severity::from_str(l).map_err(|e| corrupt(e.to_string())))?,
                    label: TrueLabel::from_str(&row.label).map_err(|e| Error::CorruptRow {
                        table: "feedback",
                        reason: format!("a verdict on {id}: {e}"),
                    })?,
                })
            })
            .collect()
    }

    /// Checks the retraining rule and, when it fires, records a request and returns it.
    /// Under a transaction-scoped advisory lock, so replicas checking at once fire once
    /// between them; `None` while an earlier request has not reached a trainer, or when the
    /// rule does not fire.
    ///
    /// - labels: labelled verdicts accepted since the later of the last request (when it reached
    ///   a trainer) and the newest registered ensemble reach `after_labels`;
    /// - accuracy: of the latest `accuracy_window` current verdicts accepted since the last
    ///   request (all of them needed), fewer than `accuracy_floor` agree with vigil's verdict.
    pub async fn check_retrain(&self, rule: &RetrainRule) -> Result<Option<RetrainRequest>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('vigil_store.retrain_requests'))")
            .execute(&mut *tx)
            .await?;
        let undelivered: i64 =
            sqlx::query_scalar("SELECT count(*) FROM retrain_requests WHERE delivered_at IS NULL")
                .fetch_one(&mut *tx)
                .await?;
        if undelivered > 0 {
            return Ok(None);
        }
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        // Verdicts accepted before a request reached a trainer are in that run.
        let last_request: DateTime<Utc> = sqlx::query_scalar(
            "SELECT max(coalesce(delivered_at, requested_at)) FROM retrain_requests",
        )
        .fetch_one(&mut *tx)
        .await
        .map(|at: Option<DateTime<Utc>>| at.unwrap_or(epoch))?;
        let last_run: DateTime<Utc> = sqlx::query_scalar(
            "SELECT max(created_at) FROM model_versions WHERE model_type = 'ensemble'",
        )
        .fetch_one(&mut *tx)
        .await
        .map(|at: Option<DateTime<Utc>>| at.unwrap_or(epoch))?;
        let labels = labelled_since(&mut tx, last_request.max(last_run)).await?;

        let fired = if rule.after_labels > 0 && labels >= rule.after_labels {
            Some((
                "labels",
                format!(
                    "{labels} labelled verdicts since the last run (feedback.retrain_after_labels \
                     = {})",
                    rule.after_labels
                ),
                None,
            ))
        } else if rule.accuracy_floor > 0.0 && rule.accuracy_window > 0 {
            let (judged, agreed) =
                accuracy_since(&mut tx, last_request, rule.accuracy_window).await?;
            let accuracy = if judged > 0 {
                agreed as f64 / judged as f64
            } else {
                1.0
            };
            (judged >= rule.accuracy_window && accuracy < rule.accuracy_floor).then(|| {
                (
                    "accuracy",
                    format!(
                        "vigil's verdict agreed with the analysts' in {agreed} of the last \
                         {judged} verdicts ({:.1} %), below feedback.accuracy_floor {:.1} %",
                        accuracy * 100.0,
                        rule.accuracy_floor * 100.0
                    ),
                    Some(accuracy),
                )
            })
        } else {
            None
        };
        let Some((trigger, reason, accuracy)) = fired else {
            return Ok(None);
        };
        let row: RetrainRow = sqlx::query_as(concat!(
            "INSERT INTO retrain_requests (id, trigger, reason, labels, accuracy) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            retrain_columns!()
        ))
        .bind(Uuid::now_v7())
        .bind(trigger)
        .bind(&reason)
        .bind(i64::try_from(labels).unwrap_or(i64::MAX))
        .bind(accuracy)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(row.into()))
    }

    /// Takes an undelivered request to send: the oldest one no replica has tried within
    /// `lease` (or `id` when given and not yet delivered), counting the attempt.
    pub async fn claim_retrain(
        &self,
        id: Option<&str>,
        lease: std::time::Duration,
    ) -> Result<Option<RetrainRequest>> {
        let id = id.map(|id| parse_uuid("id", id)).transpose()?;
        let lease_secs = lease.as_secs_f64();
        let row: Option<RetrainRow> = sqlx::query_as(concat!(
            "UPDATE retrain_requests SET attempts = attempts + 1, attempted_at = now() \
             WHERE id = ( \
                 SELECT id FROM retrain_requests \
                 WHERE delivered_at IS NULL AND ($1::uuid IS NULL OR id = $1) \
                   AND ($1::uuid IS NOT NULL OR attempted_at IS NULL \
                        OR attempted_at < now() - make_interval(secs => $2)) \
                 ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED \
             ) RETURNING ",
            retrain_columns!()
        ))
        .bind(id)
        .bind(lease_secs)
        .fetch_optional(self.pool)
        .await?;
        Ok(row.map(RetrainRequest::from))
    }

    /// Notes that a trainer took request `id`.
    pub async fn retrain_delivered(&self, id: &str) -> Result<()> {
        let id = parse_uuid("id", id)?;
        sqlx::query(
            "UPDATE retrain_requests SET delivered_at = coalesce(delivered_at, now()), \
                                        last_error = NULL WHERE id = $1",
        )
        .bind(id)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Notes why sending request `id` failed; it stays undelivered and is sent again.
    pub async fn retrain_failed(&self, id: &str, error: &str) -> Result<()> {
        let id = parse_uuid("id", id)?;
        sqlx::query("UPDATE retrain_requests SET last_error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Records the trainer's answer to request `id`: its run id, outcome and whole report.
    pub async fn retrain_reported(
        &self,
        id: &str,
        run_id: &str,
        outcome: &str,
        report: &serde_json::Value,
    ) -> Result<()> {
        let id = parse_uuid("id", id)?;
        sqlx::query(
            "UPDATE retrain_requests SET run_id = $2, run_outcome = $3, run_report = $4, \
                                        reported_at = now(), \
                                        delivered_at = coalesce(delivered_at, now()) \
             WHERE id = $1",
        )
        .bind(id)
        .bind(run_id)
        .bind(outcome)
        .bind(report)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Retraining requests, newest first.
    pub async fn retrain_requests(&self, limit: u64) -> Result<Vec<RetrainRequest>> {
        let rows: Vec<RetrainRow> = sqlx::query_as(concat!(
            "SELECT ",
            retrain_columns!(),
            " FROM retrain_requests ORDER BY requested_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool)
        .await?;
        Ok(rows.into_iter().map(RetrainRequest::from).collect())
    }
}

/// Gives the workflow's recorded signal the label `label` as an analyst-labelled example.
async fn label_signal(conn: &mut PgConnection, event_id: &str, label: TrueLabel) -> Result<()> {
    let signal: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT signal FROM workflow_signals WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(signal) = signal {
        set_feedback_label(conn, event_id, &signal, label.is_attack()).await?;
    }
    Ok(())
}

async fn labelled_since(conn: &mut PgConnection, since: DateTime<Utc>) -> Result<u64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM feedback WHERE label IS NOT NULL AND created_at > $1",
    )
    .bind(since)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(count).unwrap_or_default())
}

/// (verdicts judged, verdicts agreeing with vigil) among the latest `window` current verdicts
/// accepted after `since`.
async fn accuracy_since(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
    window: u64,
) -> Result<(u64, u64)> {
    let (judged, agreed): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE label = system_label) FROM ( \
             SELECT label, system_label FROM feedback \
             WHERE label IS NOT NULL AND system_label IS NOT NULL AND superseded_by IS NULL \
               AND created_at > $1 \
             ORDER BY created_at DESC LIMIT $2 \
         ) latest",
    )
    .bind(since)
    .bind(i64::try_from(window).unwrap_or(i64::MAX))
    .fetch_one(conn)
    .await?;
    Ok((
        u64::try_from(judged).unwrap_or_default(),
        u64::try_from(agreed).unwrap_or_default(),
    ))
}
