use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
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
