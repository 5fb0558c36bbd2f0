use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use vigil_domain::{WorkflowExecution, WorkflowStatus, WorkflowStep};

use crate::ids::parse_uuid;
use crate::{Error, InsertOutcome, Result};

/// The `workflows` table: one row per threat event, keyed by event id.
#[derive(Debug, Clone, Copy)]
pub struct Workflows<'a> {
    pool: &'a PgPool,
}

/// The columns `WorkflowRow` reads, as a literal so queries stay compile-time constants.
macro_rules! workflow_columns {
    () => {
        "id, event_id, workflow_type, status, started_at, completed_at, steps, results, \
         error_message, duration_seconds"
    };
}

#[derive(sqlx::FromRow)]
struct WorkflowRow {
    id: Uuid,
    event_id: String,
    workflow_type: String,
    status: String,
    started_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    steps: serde_json::Value,
    results: serde_json::Value,
    error_message: Option<String>,
    duration_seconds: f64,
}

impl TryFrom<WorkflowRow> for WorkflowExecution {
    type Error = Error;

    fn try_from(row: WorkflowRow) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptRow {
            table: "workflows",
            reason: format!("event {}: {reason}", row.event_id),
        };
        let status = WorkflowStatus::from_str(&row.status).map_err(|e| corrupt(e.to_string()))?;
        let steps: Vec<WorkflowStep> = serde_json::from_value(row.steps.clone())
            .map_err(|e| corrupt(format!("steps: {e}")))?;
        Ok(WorkflowExecution {
            id: row.id.to_string(),
            event_id: row.event_id,
            workflow_type: row.workflow_type,
            status,
            started_at: row.started_at,
            completed_at: row.completed_at,
            steps,
            results: row.results,
            error_message: row.error_message,
            duration_seconds: row.duration_seconds,
        })
    }
}

impl<'a> Workflows<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// Records a workflow unless one exists for its event id; a redelivered event gets
    /// [`InsertOutcome::AlreadyPresent`] and the stored row is left as it was.
    pub async fn insert_if_absent(&self, workflow: &WorkflowExecution) -> Result<InsertOutcome> {
        workflow.validate()?;
        let id = parse_uuid("id", &workflow.id)?;
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO workflows (id, event_id, workflow_type, status, started_at, completed_at, \
                                    steps, results, error_message, duration_seconds) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (event_id) DO NOTHING \
             RETURNING id",
        )
        .bind(id)
        .bind(&workflow.event_id)
        .bind(&workflow.workflow_type)
        .bind(workflow.status.as_str())
        .bind(workflow.started_at)
        .bind(workflow.completed_at)
        .bind(Json(&workflow.steps))
        .bind(&workflow.results)
        .bind(&workflow.error_message)
        .bind(workflow.duration_seconds)
        .fetch_optional(self.pool)
        .await?;
        Ok(InsertOutcome::of_returning(inserted))
    }

    /// Saves the progress of an existing workflow (status, steps, results, error, timing), found
    /// by its event id. The id and start time recorded first are kept.
    pub async fn update(&self, workflow: &WorkflowExecution) -> Result<()> {
        workflow.validate()?;
        let result = sqlx::query(
            "UPDATE workflows SET workflow_type = $2, status = $3, completed_at = $4, steps = $5, \
                                  results = $6, error_message = $7, duration_seconds = $8, \
                                  updated_at = now() \
             WHERE event_id = $1",
        )
        .bind(&workflow.event_id)
        .bind(&workflow.workflow_type)
        .bind(workflow.status.as_str())
        .bind(workflow.completed_at)
        .bind(Json(&workflow.steps))
        .bind(&workflow.results)
        .bind(&workflow.error_message)
        .bind(workflow.duration_seconds)
        .execute(self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound {
                entity: "workflow for event",
                key: workflow.event_id.clone(),
            });
        }
        Ok(())
    }

    /// The workflow of one event, if it has been recorded.
    pub async fn get_by_event_id(&self, event_id: &str) -> Result<Option<WorkflowExecution>> {
        let row: Option<WorkflowRow> = sqlx::query_as(concat!(
            "SELECT ",
            workflow_columns!(),
            " FROM workflows WHERE event_id = $1"
        ))
        .bind(event_id)
        .fetch_optional(self.pool)
        .await?;
        row.map(WorkflowExecution::try_from).transpose()
    }

    /// The recorded workflows of many events at once (events without one are absent).
    pub async fn get_by_event_ids(&self, event_ids: &[&str]) -> Result<Vec<WorkflowExecution>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<WorkflowRow> = sqlx::query_as(concat!(
            "SELECT ",
            workflow_columns!(),
            " FROM workflows WHERE event_id = ANY($1)"
        ))
        // Planned for each call: a plan cached while the table was small scans it in full,
        // comparing every row with every id, long after the table has grown.
        .persistent(false)
        .bind(event_ids)
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(WorkflowExecution::try_from).collect()
    }

    /// Claims each event id for the signal whose content digest comes with it, unless the id is
    /// claimed already, and returns the digest every id is claimed for: this call's, or an
    /// earlier one's. An id claimed for another digest is being reused by another signal. Within
    /// one call, the first of two claims of one id wins.
    pub async fn claim_event_ids(
        &self,
        claims: &[(&str, &str)],
    ) -> Result<std::collections::HashMap<String, String>> {
        if claims.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let (ids, digests): (Vec<&str>, Vec<&str>) = claims.iter().copied().unzip();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "WITH wanted AS ( \
                 SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY \
                     AS w(event_id, signal_digest, n)), \
             claimed AS ( \
                 INSERT INTO event_claims (event_id, signal_digest) \
                 SELECT event_id, signal_digest FROM wanted ORDER BY n \
                 ON CONFLICT (event_id) DO NOTHING \
                 RETURNING event_id, signal_digest) \
             SELECT event_id, signal_digest FROM claimed \
             UNION ALL \
             SELECT event_id, signal_digest FROM event_claims WHERE event_id = ANY($1)",
        )
        .persistent(false)
        .bind(&ids)
        .bind(&digests)
        .fetch_all(self.pool)
        .await?;
        let mut claimed: std::collections::HashMap<String, String> = rows.into_iter().collect();
        // A claim another transaction committed while this one waited on it is not in this
        // statement's snapshot: read those again.
        let missing: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !claimed.contains_key(*id))
            .collect();
        if !missing.is_empty() {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT event_id, signal_digest FROM event_claims WHERE event_id = ANY($1)",
            )
            .persistent(false)
            .bind(&missing)
            .fetch_all(self.pool)
            .await?;
            claimed.extend(rows);
        }
        Ok(claimed)
    }

    /// A workflow by its own id.
    pub async fn get(&self, id: &str) -> Result<Option<WorkflowExecution>> {
        let id = parse_uuid("id", id)?;
        let row: Option<WorkflowRow> = sqlx::query_as(concat!(
            "SELECT ",
            workflow_columns!(),
            " FROM workflows WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        row.map(WorkflowExecution::try_from).transpose()
    }

    /// How many workflows are recorded.
    pub async fn count(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM workflows")
            .fetch_one(self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }
}

/// Records many finished workflows with one statement: a new event gets its row, an event that
/// already has one (a FAILED earlier attempt, a parallel redelivery) gets its progress saved over
/// it, keeping the id and start time recorded first. Each event id may appear once.
pub(crate) async fn save_all(
    conn: &mut PgConnection,
    workflows: &[&WorkflowExecution],
) -> Result<()> {
    if workflows.is_empty() {
        return Ok(());
    }
    let n = workflows.len();
    let (mut ids, mut event_ids, mut types, mut statuses) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut started, mut completed, mut steps, mut results) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut errors, mut durations) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for workflow in workflows {
        workflow.validate()?;
        ids.push(parse_uuid("id", &workflow.id)?);
        event_ids.push(workflow.event_id.as_str());
        types.push(workflow.workflow_type.as_str());
        statuses.push(workflow.status.as_str());
        started.push(workflow.started_at);
        completed.push(workflow.completed_at);
        steps.push(Json(&workflow.steps));
        results.push(Json(&workflow.results));
        errors.push(workflow.error_message.as_deref());
        durations.push(workflow.duration_seconds);
    }
    sqlx::query(
        "INSERT INTO workflows (id, event_id, workflow_type, status, started_at, completed_at, \
                                steps, results, error_message, duration_seconds) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], \
                              $5::timestamptz[], $6::timestamptz[], $7::jsonb[], $8::jsonb[], \
                              $9::text[], $10::float8[]) \
         ON CONFLICT (event_id) DO UPDATE SET \
             workflow_type = EXCLUDED.workflow_type, status = EXCLUDED.status, \
             completed_at = EXCLUDED.completed_at, steps = EXCLUDED.steps, \
             results = EXCLUDED.results, error_message = EXCLUDED.error_message, \
             duration_seconds = EXCLUDED.duration_seconds, updated_at = now()",
    )
    .bind(&ids)
    .bind(&event_ids)
    .bind(&types)
    .bind(&statuses)
    .bind(&started)
    .bind(&completed)
    .bind(&steps)
    .bind(&results)
    .bind(&errors)
    .bind(&durations)
    .execute(conn)
    .await?;
    Ok(())
}
