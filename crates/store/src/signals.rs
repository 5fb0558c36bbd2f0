//! The `workflow_signals` table: the signal each workflow processed, unlabelled.
//!
//! Observed traffic is not training data: vigil's verdict on it is not a label. The feedback
//! service reads a workflow's signal from here to record the analyst-labelled example; drift
//! statistics may read it; the trainer never does.

use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use vigil_domain::ThreatSignal;

use crate::{Error, Result};

/// The `workflow_signals` repository.
#[derive(Debug, Clone, Copy)]
pub struct WorkflowSignals<'a> {
    pool: &'a PgPool,
}

impl<'a> WorkflowSignals<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// The signal the workflow of `event_id` processed, if it was recorded.
    pub async fn get(&self, event_id: &str) -> Result<Option<ThreatSignal>> {
        let value: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT signal FROM workflow_signals WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(self.pool)
                .await?;
        value
            .map(|v| {
                serde_json::from_value(v).map_err(|e| Error::CorruptRow {
                    table: "workflow_signals",
                    reason: format!("event {event_id}: {e}"),
                })
            })
            .transpose()
    }

    /// How many signals are recorded.
    pub async fn count(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_signals")
            .fetch_one(self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }
}

/// Records the signal of each (event id, signal), skipping events that have one; the
/// workflows must already be written (same transaction). Returns how many were new.
pub(crate) async fn insert_signals(
    conn: &mut PgConnection,
    signals: &[(&str, &ThreatSignal)],
) -> Result<u64> {
    if signals.is_empty() {
        return Ok(0);
    }
    let event_ids: Vec<&str> = signals.iter().map(|(id, _)| *id).collect();
    let bodies: Vec<Json<&ThreatSignal>> = signals.iter().map(|(_, s)| Json(*s)).collect();
    let result = sqlx::query(
        "INSERT INTO workflow_signals (event_id, signal) \
         SELECT * FROM UNNEST($1::text[], $2::jsonb[]) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&event_ids)
    .bind(&bodies)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}
