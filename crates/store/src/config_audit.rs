//! `config_audit`: every change to the live configuration, applied or refused.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::Result;

/// One attempt to change a live key, as `vigil config set` records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    /// The dotted key, e.g. `thresholds.high`.
    pub key: String,
    /// The value in force before (JSON); `None` when the key had no live value.
    pub old_value: Option<serde_json::Value>,
    /// The value asked for (JSON); `None` for a reset to the start-up value.
    pub new_value: Option<serde_json::Value>,
    /// Who asked (`user@host`, or `--actor`).
    pub actor: String,
    /// Whether it was written to the bucket.
    pub accepted: bool,
    /// Why it was refused (invalid value, not a live key, a concurrent change).
    pub reason: Option<String>,
    /// The bucket revision the accepted change produced.
    pub revision: Option<u64>,
}

/// A [`ConfigChange`] as stored, with its id and time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditedChange {
    pub id: i64,
    #[serde(flatten)]
    pub change: ConfigChange,
    pub at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    key: String,
    old_value: Option<serde_json::Value>,
    new_value: Option<serde_json::Value>,
    actor: String,
    accepted: bool,
    reason: Option<String>,
    revision: Option<i64>,
    at: DateTime<Utc>,
}

/// The configuration audit trail.
#[derive(Debug, Clone, Copy)]
pub struct ConfigAudit<'a> {
    pool: &'a PgPool,
}

impl<'a> ConfigAudit<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// Records one attempt; returns its id.
    pub async fn record(&self, change: &ConfigChange) -> Result<i64> {
        let revision = change.revision.and_then(|r| i64::try_from(r).ok());
        let id = sqlx::query_scalar(
            "INSERT INTO config_audit (key, old_value, new_value, actor, accepted, reason, revision)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&change.key)
        .bind(&change.old_value)
        .bind(&change.new_value)
        .bind(&change.actor)
        .bind(change.accepted)
        .bind(&change.reason)
        .bind(revision)
        .fetch_one(self.pool)
        .await?;
        Ok(id)
    }

    /// The newest `limit` attempts, of `key` only when given, newest first.
    pub async fn history(&self, key: Option<&str>, limit: i64) -> Result<Vec<AuditedChange>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, key, old_value, new_value, actor, accepted, reason, revision, at
             FROM config_audit
             WHERE $1::text IS NULL OR key = $1
             ORDER BY at DESC, id DESC
             LIMIT $2",
        )
        .bind(key)
        .bind(limit.max(0))
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| AuditedChange {
                id: row.id,
                at: row.at,
                change: ConfigChange {
                    key: row.key,
                    old_value: row.old_value,
                    new_value: row.new_value,
                    actor: row.actor,
                    accepted: row.accepted,
                    reason: row.reason,
                    revision: row.revision.and_then(|r| u64::try_from(r).ok()),
                },
            })
            .collect())
    }
}
