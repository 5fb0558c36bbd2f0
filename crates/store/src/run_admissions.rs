//! The limit on requested training runs (`trainer.max_requested_runs_per_hour`), counted in
//! PostgreSQL: anyone allowed to publish on `vigil.trainer.run` can ask for a run, a run costs
//! minutes of every core, and each trainer replica counting its own hour would let N replicas
//! start N times the limit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::Result;

/// The window the limit counts over.
pub const RUN_ADMISSION_WINDOW: Duration = Duration::from_secs(3600);

/// What the limit said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAdmission {
    /// The request may start a run; [`RunAdmissions::refund`] gives the admission back.
    Admitted { id: i64 },
    /// Refused: `in_window` requests were admitted within the last hour, and the next one is
    /// allowed after `retry_after` (`None`: the limit is 0, never).
    Refused {
        in_window: u64,
        retry_after: Option<Duration>,
    },
}

/// The `run_admissions` table.
#[derive(Debug, Clone, Copy)]
pub struct RunAdmissions<'a> {
    pool: &'a PgPool,
}

impl<'a> RunAdmissions<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// Admits a request by `requested_by` when fewer than `per_hour` were admitted in the hour
    /// before (by the database's clock, under a lock every replica takes), and counts it.
    pub async fn admit(&self, per_hour: u32, requested_by: &str) -> Result<RunAdmission> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('vigil_store.run_admissions'))")
            .execute(&mut *tx)
            .await?;
        let window = RUN_ADMISSION_WINDOW.as_secs_f64();
        sqlx::query(
            "DELETE FROM run_admissions WHERE admitted_at <= now() - make_interval(secs => $1)",
        )
        .bind(window)
        .execute(&mut *tx)
        .await?;
        // Oldest first, with the database's now.
        let admitted: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT admitted_at, now() FROM run_admissions ORDER BY admitted_at, id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let limit = usize::try_from(per_hour).unwrap_or(usize::MAX);
        if admitted.len() < limit {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO run_admissions (requested_by) VALUES ($1) RETURNING id",
            )
            .bind(requested_by)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(RunAdmission::Admitted { id });
        }
        tx.commit().await?;
        // The limit may have been lowered live below what the window holds: one more fits once
        // all but `limit - 1` have aged out, i.e. when the one at `len - limit` (oldest first)
        // has.
        let retry_after = (limit > 0)
            .then(|| admitted.get(admitted.len() - limit))
            .flatten()
            .map(|(at, now)| {
                let age = (*now - *at).to_std().unwrap_or_default();
                RUN_ADMISSION_WINDOW.saturating_sub(age)
            });
        Ok(RunAdmission::Refused {
            in_window: u64::try_from(admitted.len()).unwrap_or(u64::MAX),
            retry_after,
        })
    }

    /// Gives an admission back (the request could not be queued after all).
    pub async fn refund(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM run_admissions WHERE id = $1")
            .bind(id)
            .execute(self.pool)
            .await?;
        Ok(())
    }
}
