//! Alerts, remediations and incidents: the records of components 2-4, each idempotent by event
//! id through the unique keys of `migrations/0004_soar.sql`.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use vigil_domain::{
    ActionKind, ActionStatus, Alert, AlertStatus, Incident, IncidentStatus, RemediationAction,
    Severity,
};

use crate::ids::parse_uuid;
use crate::{Error, InsertOutcome, Result};

fn alert_status_str(status: AlertStatus) -> &'static str {
    match status {
        AlertStatus::Pending => "pending",
        AlertStatus::Delivered => "delivered",
        AlertStatus::Grouped => "grouped",
        AlertStatus::RateLimited => "rate_limited",
        AlertStatus::Failed => "failed",
    }
}

fn action_status_str(status: ActionStatus) -> &'static str {
    match status {
        ActionStatus::Pending => "pending",
        ActionStatus::Simulated => "simulated",
        ActionStatus::Applied => "applied",
        ActionStatus::Refused => "refused",
        ActionStatus::Failed => "failed",
        ActionStatus::Undone => "undone",
        ActionStatus::Expired => "expired",
    }
}

fn parse_json_enum<T: serde::de::DeserializeOwned>(table: &'static str, value: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|e| {
        Error::CorruptRow {
            table,
            reason: format!("unknown value {value:?}: {e}"),
        }
    })
}

/// The `alerts` table: one row per (event, channel).
#[derive(Debug, Clone, Copy)]
pub struct Alerts<'a> {
    pool: &'a PgPool,
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: Uuid,
    event_id: String,
    threat_key: String,
    channel: String,
    severity: String,
    title: String,
    body: String,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

impl TryFrom<AlertRow> for Alert {
    type Error = Error;

    fn try_from(row: AlertRow) -> Result<Self> {
        Ok(Alert {
            id: row.id.to_string(),
            event_id: row.event_id,
            threat_key: row.threat_key,
            channel: row.channel,
            severity: parse_json_enum("alerts", &row.severity)?,
            title: row.title,
            body: row.body,
            status: parse_json_enum("alerts", &row.status)?,
            attempts: u32::try_from(row.attempts).unwrap_or_default(),
            last_error: row.last_error,
            created_at: row.created_at,
            delivered_at: row.delivered_at,
        })
    }
}

impl<'a> Alerts<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// Records an alert unless one exists for its (event, channel); a redelivered event gets
    /// [`InsertOutcome::AlreadyPresent`] and must not send again.
    pub async fn insert_if_absent(
        &self,
        alert: &Alert,
        payload: &serde_json::Value,
    ) -> Result<InsertOutcome> {
        let inserted = insert_alert(INSERT_ALERT_IF_ABSENT, alert, payload)?
            .execute(self.pool)
            .await?;
        Ok(if inserted.rows_affected() == 1 {
            InsertOutcome::Inserted
        } else {
            InsertOutcome::AlreadyPresent
        })
    }

    /// Records how delivery of `alert` on its (event, channel) ended, adding its row with
    /// `payload` when there is none (a fallback channel's delivery) in the same statement.
    pub async fn record_delivery(&self, alert: &Alert, payload: &serde_json::Value) -> Result<()> {
        insert_alert(INSERT_ALERT_OR_RECORD_DELIVERY, alert, payload)?
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// The alerts of one event, oldest first.
    pub async fn for_event(&self, event_id: &str) -> Result<Vec<Alert>> {
        let rows: Vec<AlertRow> = sqlx::query_as(
            "SELECT id, event_id, threat_key, channel, severity, title, body, status, attempts, \
                    last_error, created_at, delivered_at \
             FROM alerts WHERE event_id = $1 ORDER BY created_at, channel",
        )
        .bind(event_id)
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(Alert::try_from).collect()
    }

    /// The alerts of one event still `pending` (recorded, delivery never recorded), each with
    /// the payload rendered for it: an attempt that stopped between recording and delivering
    /// left them, and the next attempt sends them (same id, same bytes).
    pub async fn pending_for_event(
        &self,
        event_id: &str,
    ) -> Result<Vec<(Alert, serde_json::Value)>> {
        self.pending_where("event_id = $1", event_id, i64::MAX)
            .await
    }

    /// Alerts left `pending` since before `older_than`, oldest first, at most `limit`: no
    /// attempt of their workflow can still be running, so nothing else will ever send them.
    pub async fn stale_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(Alert, serde_json::Value)>> {
        self.pending_where("created_at < $1", older_than, limit)
            .await
    }

    async fn pending_where<T>(
        &self,
        condition: &str,
        value: T,
        limit: i64,
    ) -> Result<Vec<(Alert, serde_json::Value)>>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        #[derive(sqlx::FromRow)]
        struct PendingRow {
            #[sqlx(flatten)]
            alert: AlertRow,
            payload: serde_json::Value,
        }
        let rows: Vec<PendingRow> = sqlx::query_as(&format!(
            "SELECT id, event_id, threat_key, channel, severity, title, body, status, attempts, \
                    last_error, created_at, delivered_at, payload \
             FROM alerts WHERE status = 'pending' AND {condition} \
             ORDER BY created_at, channel LIMIT $2"
        ))
        .bind(value)
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|row| Ok((Alert::try_from(row.alert)?, row.payload)))
            .collect()
    }

    /// When the last alert for this threat key went out, on any channel, and at what severity
    /// (for grouping repeats).
    pub async fn last_delivered(
        &self,
        threat_key: &str,
    ) -> Result<Option<(DateTime<Utc>, Severity)>> {
        let row: Option<(DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT created_at, severity FROM alerts \
             WHERE threat_key = $1 AND status = 'delivered' ORDER BY created_at DESC LIMIT 1",
        )
        .bind(threat_key)
        .fetch_optional(self.pool)
        .await?;
        row.map(|(at, severity)| Ok((at, parse_json_enum("alerts", &severity)?)))
            .transpose()
    }
}

macro_rules! insert_alert_sql {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO alerts (id, event_id, threat_key, channel, severity, title, body, \
                                 status, attempts, last_error, payload, created_at, delivered_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (event_id, channel) ",
            $on_conflict
        )
    };
}

/// Keeps a recorded alert as it is.
const INSERT_ALERT_IF_ABSENT: &str = insert_alert_sql!("DO NOTHING");

/// Saves a delivery's outcome over the recorded alert.
const INSERT_ALERT_OR_RECORD_DELIVERY: &str = insert_alert_sql!(
    "DO UPDATE SET status = EXCLUDED.status, attempts = EXCLUDED.attempts, \
     last_error = EXCLUDED.last_error, delivered_at = EXCLUDED.delivered_at"
);

/// `sql` (one of the two above) bound to one alert row.
fn insert_alert<'q>(
    sql: &'static str,
    alert: &'q Alert,
    payload: &'q serde_json::Value,
) -> Result<sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>> {
    Ok(sqlx::query(sql)
        .bind(parse_uuid("id", &alert.id)?)
        .bind(&alert.event_id)
        .bind(&alert.threat_key)
        .bind(&alert.channel)
        .bind(alert.severity.as_str())
        .bind(&alert.title)
        .bind(&alert.body)
        .bind(alert_status_str(alert.status))
        .bind(i32::try_from(alert.attempts).unwrap_or(i32::MAX))
        .bind(&alert.last_error)
        .bind(payload)
        .bind(alert.created_at)
        .bind(alert.delivered_at))
}

/// What [`Remediations::record_intent`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// The intent is recorded: call the executor, then record its answer.
    Recorded,
    /// The shared per-minute cap is reached: refuse the action.
    CapReached { cap: u32 },
    /// An earlier attempt recorded this action (`pending`: call again with the same key).
    Exists(RemediationAction),
}

/// The `remediations` table: one row per (event, action, target).
#[derive(Debug, Clone, Copy)]
pub struct Remediations<'a> {
    pool: &'a PgPool,
}

#[derive(sqlx::FromRow)]
struct RemediationRow {
    id: Uuid,
    event_id: String,
    action_kind: String,
    target: String,
    executor: String,
    status: String,
    details: serde_json::Value,
    undo: serde_json::Value,
    expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<RemediationRow> for RemediationAction {
    type Error = Error;

    fn try_from(row: RemediationRow) -> Result<Self> {
        Ok(RemediationAction {
            id: row.id.to_string(),
            event_id: row.event_id,
            kind: ActionKind::from_str(&row.action_kind).map_err(|e| Error::CorruptRow {
                table: "remediations",
                reason: e.to_string(),
            })?,
            target: row.target,
            executor: row.executor,
            status: parse_json_enum("remediations", &row.status)?,
            details: row.details,
            undo: row.undo,
            expires_at: row.expires_at,
            created_at: row.created_at,
        })
    }
}

const REMEDIATION_COLUMNS: &str =
    "id, event_id, action_kind, target, executor, status, details, undo, expires_at, created_at";

impl<'a> Remediations<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// Records an action unless the same (event, action, target) exists; a redelivered event
    /// gets [`InsertOutcome::AlreadyPresent`] and must not act again.
    pub async fn insert_if_absent(&self, action: &RemediationAction) -> Result<InsertOutcome> {
        let id = parse_uuid("id", &action.id)?;
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO remediations (id, event_id, action_kind, target, executor, status, details, \
                                       undo, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (event_id, action_kind, target) DO NOTHING RETURNING id",
        )
        .bind(id)
        .bind(&action.event_id)
        .bind(action.kind.as_str())
        .bind(&action.target)
        .bind(&action.executor)
        .bind(action_status_str(action.status))
        .bind(&action.details)
        .bind(&action.undo)
        .bind(action.expires_at)
        .bind(action.created_at)
        .fetch_optional(self.pool)
        .await?;
        Ok(InsertOutcome::of_returning(inserted))
    }

    /// Records the intent to carry out `action` (status `pending`) before its executor is
    /// called, under the per-minute cap shared by every replica using this database: the
    /// actions of the last minute (by the database's clock) that reached an executor are
    /// counted, and the intent is written, in one transaction holding the cap's lock.
    ///
    /// An action already recorded for the same (event, action, target) is returned as it is:
    /// `pending` means an earlier attempt stopped before recording the executor's answer (call
    /// it again with the same key); anything else is its outcome (do not call).
    pub async fn record_intent(
        &self,
        action: &RemediationAction,
        cap_per_minute: u32,
    ) -> Result<Intent> {
        let id = parse_uuid("id", &action.id)?;
        // Without the lock first: an action already recorded, or a cap already reached, is
        // answered without queueing behind every other replica's intents. Unlocked, the count
        // can miss intents being recorded (then the lock is taken and it counts again), never
        // hold one too many, so this refuses only what the lock would (at most a moment early
        // as the minute slides). Only an intent that may be recorded takes the lock.
        let mut conn = self.pool.acquire().await?;
        if let Some(known) = existing_or_capped(&mut conn, action, cap_per_minute).await? {
            return Ok(known);
        }
        drop(conn);
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('vigil_store.remediation_cap'))")
            .execute(&mut *tx)
            .await?;
        if let Some(known) = existing_or_capped(&mut tx, action, cap_per_minute).await? {
            return Ok(known);
        }
        sqlx::query(
            "INSERT INTO remediations (id, event_id, action_kind, target, executor, status, details, \
                                       undo, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(&action.event_id)
        .bind(action.kind.as_str())
        .bind(&action.target)
        .bind(&action.executor)
        .bind(&action.details)
        .bind(&action.undo)
        .bind(action.expires_at)
        .bind(action.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Intent::Recorded)
    }

    /// Records the executor's answer for an action whose intent is `pending`; an outcome
    /// recorded meanwhile (by the sweeper or an operator) is kept. Returns whether this call
    /// wrote it.
    pub async fn record_outcome(&self, action: &RemediationAction) -> Result<bool> {
        let id = parse_uuid("id", &action.id)?;
        let result = sqlx::query(
            "UPDATE remediations SET status = $2, details = $3 WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(action_status_str(action.status))
        .bind(&action.details)
        .execute(self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Intents left `pending` since before `older_than`, oldest first, at most `limit`: no
    /// attempt of their workflow can still be running.
    pub async fn stale_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<RemediationAction>> {
        let rows: Vec<RemediationRow> = sqlx::query_as(&format!(
            "SELECT {REMEDIATION_COLUMNS} FROM remediations \
             WHERE status = 'pending' AND created_at < $1 ORDER BY created_at LIMIT $2"
        ))
        .bind(older_than)
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(RemediationAction::try_from).collect()
    }

    /// Sets the status of an action (applied, failed, undone, ...).
    pub async fn set_status(
        &self,
        id: &str,
        status: ActionStatus,
        details: Option<&serde_json::Value>,
    ) -> Result<()> {
        let uuid = parse_uuid("id", id)?;
        let undone = matches!(status, ActionStatus::Undone | ActionStatus::Expired);
        let result = sqlx::query(
            "UPDATE remediations SET status = $2, details = COALESCE($3, details), \
                    undone_at = CASE WHEN $4 THEN now() ELSE undone_at END \
             WHERE id = $1",
        )
        .bind(uuid)
        .bind(action_status_str(status))
        .bind(details)
        .bind(undone)
        .execute(self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound {
                entity: "remediation",
                key: id.to_owned(),
            });
        }
        Ok(())
    }

    /// One action by id.
    pub async fn get(&self, id: &str) -> Result<RemediationAction> {
        let uuid = parse_uuid("id", id)?;
        let row: Option<RemediationRow> = sqlx::query_as(&format!(
            "SELECT {REMEDIATION_COLUMNS} FROM remediations WHERE id = $1"
        ))
        .bind(uuid)
        .fetch_optional(self.pool)
        .await?;
        row.ok_or_else(|| Error::NotFound {
            entity: "remediation",
            key: id.to_owned(),
        })?
        .try_into()
    }

    /// The actions of one event.
    pub async fn for_event(&self, event_id: &str) -> Result<Vec<RemediationAction>> {
        let rows: Vec<RemediationRow> = sqlx::query_as(&format!(
            "SELECT {REMEDIATION_COLUMNS} FROM remediations WHERE event_id = $1 ORDER BY created_at"
        ))
        .bind(event_id)
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(RemediationAction::try_from).collect()
    }

    /// The most recent actions, newest first.
    pub async fn recent(&self, limit: i64) -> Result<Vec<RemediationAction>> {
        let rows: Vec<RemediationRow> = sqlx::query_as(&format!(
            "SELECT {REMEDIATION_COLUMNS} FROM remediations ORDER BY created_at DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(RemediationAction::try_from).collect()
    }
}

/// The `incidents` table and its timeline.
#[derive(Debug, Clone, Copy)]
pub struct Incidents<'a> {
    pool: &'a PgPool,
}

/// What [`Incidents::open_or_attach`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentAttachment {
    pub incident_id: String,
    /// A new incident was opened for this event.
    pub created: bool,
    /// The event was already on the timeline (a redelivery): nothing changed.
    pub already_attached: bool,
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: Uuid,
    threat_key: String,
    title: String,
    severity: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl<'a> Incidents<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// Attaches `event_id` to the unresolved incident of `threat_key`, raising its severity to
    /// `severity` when higher, or opens a new incident when there is none. Safe under concurrent
    /// callers (the partial unique index admits one unresolved incident per key) and under
    /// redelivery (the timeline admits an event once).
    pub async fn open_or_attach(
        &self,
        threat_key: &str,
        title: &str,
        severity: Severity,
        event_id: &str,
    ) -> Result<IncidentAttachment> {
        let event = IncidentEvent {
            threat_key,
            title,
            severity,
            event_id,
            action_ids: &[],
            window: None,
        };
        // The incident and its timeline entry land together.
        let mut tx = self.pool.begin().await?;
        let mut attached = open_or_attach_many(&mut tx, &[event]).await?;
        tx.commit().await?;
        attached
            .pop()
            .ok_or_else(|| Error::Database(sqlx::Error::Protocol("no incident came back".into())))
    }

    /// Adds an action (alert or remediation id) to an incident's timeline, once.
    pub async fn attach_action(
        &self,
        incident_id: &str,
        action_id: &str,
        details: &serde_json::Value,
    ) -> Result<()> {
        let id = parse_uuid("incident_id", incident_id)?;
        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, kind, ref_id, details) VALUES ($1, 'action', $2, $3) \
             ON CONFLICT (incident_id, kind, ref_id) DO NOTHING",
        )
        .bind(id)
        .bind(action_id)
        .bind(details)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Moves an incident to `status`, recording the change on its timeline.
    pub async fn set_status(&self, incident_id: &str, status: IncidentStatus) -> Result<()> {
        let id = parse_uuid("incident_id", incident_id)?;
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query(
            "UPDATE incidents SET status = $2, updated_at = now(), \
                    resolved_at = CASE WHEN $2 = 'resolved' THEN now() ELSE NULL END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound {
                entity: "incident",
                key: incident_id.to_owned(),
            });
        }
        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, kind, ref_id) VALUES ($1, 'status', $2) \
             ON CONFLICT (incident_id, kind, ref_id) DO UPDATE SET at = now()",
        )
        .bind(id)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One incident with the ids of its events, oldest first.
    pub async fn get(&self, incident_id: &str) -> Result<Incident> {
        let id = parse_uuid("incident_id", incident_id)?;
        let row: IncidentRow = sqlx::query_as(
            "SELECT id, threat_key, title, severity, status, created_at, updated_at FROM incidents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool)
        .await?
        .ok_or_else(|| Error::NotFound { entity: "incident", key: incident_id.to_owned() })?;
        let event_ids: Vec<String> = sqlx::query_scalar(
            "SELECT ref_id FROM incident_timeline WHERE incident_id = $1 AND kind = 'event' ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(self.pool)
        .await?;
        let corrupt = |e: vigil_domain::ValidationError| Error::CorruptRow {
            table: "incidents",
            reason: e.to_string(),
        };
        Ok(Incident {
            id: row.id.to_string(),
            threat_key: row.threat_key,
            title: row.title,
            severity: Severity::from_str(&row.severity).map_err(corrupt)?,
            status: IncidentStatus::from_str(&row.status).map_err(corrupt)?,
            event_ids,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// Ids of the incidents that are not resolved, most recently updated first.
    pub async fn unresolved(&self) -> Result<Vec<String>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE status <> 'resolved' ORDER BY updated_at DESC",
        )
        .fetch_all(self.pool)
        .await?;
        Ok(ids.into_iter().map(|id| id.to_string()).collect())
    }
}

/// One event to put on the timeline of its threat's incident, with the actions taken for it.
#[derive(Debug, Clone, Copy)]
pub struct IncidentEvent<'a> {
    pub threat_key: &'a str,
    /// Used when the event opens the incident.
    pub title: &'a str,
    pub severity: Severity,
    pub event_id: &'a str,
    /// Remediation (or alert) ids to add to the timeline as actions.
    pub action_ids: &'a [String],
    /// `soar.incidents.window_seconds`: an unresolved incident of the key not updated within it
    /// is resolved first, and the event opens a new one; `None` never resolves.
    pub window: Option<std::time::Duration>,
}

/// Resolves the unresolved incident of every key among `events` that was not updated within
/// its event's window (the shortest, when events of one key disagree), noting why on its
/// timeline, so that the upsert after it opens a new one. Keys are locked in sorted order, as
/// the upsert does.
async fn resolve_stale(conn: &mut PgConnection, events: &[IncidentEvent<'_>]) -> Result<()> {
    let mut windows: BTreeMap<&str, f64> = BTreeMap::new();
    for event in events {
        if let Some(window) = event.window {
            let secs = window.as_secs_f64();
            windows
                .entry(event.threat_key)
                .and_modify(|w| *w = w.min(secs))
                .or_insert(secs);
        }
    }
    if windows.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = windows.keys().copied().collect();
    let secs: Vec<f64> = windows.values().copied().collect();
    let resolved: Vec<Uuid> = sqlx::query_scalar(
        "WITH stale AS ( \
             SELECT i.id FROM incidents i \
             JOIN UNNEST($1::text[], $2::float8[]) AS t(threat_key, window_secs) \
               ON i.threat_key = t.threat_key \
             WHERE i.status <> 'resolved' \
               AND i.updated_at < now() - make_interval(secs => t.window_secs) \
             ORDER BY i.threat_key \
             FOR UPDATE OF i) \
         UPDATE incidents SET status = 'resolved', resolved_at = now(), updated_at = now() \
         WHERE id IN (SELECT id FROM stale) \
         RETURNING id",
    )
    // Planned for each call: a generic plan chosen while the table was small scans every
    // incident on each commit once it has grown (5 ms at 10,000 incidents, measured).
    .persistent(false)
    .bind(&keys)
    .bind(&secs)
    .fetch_all(&mut *conn)
    .await?;
    if !resolved.is_empty() {
        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, kind, ref_id, details) \
             SELECT id, 'status', 'resolved', \
                    '{\"reason\": \"no event within the incident window\"}'::jsonb \
             FROM UNNEST($1::uuid[]) AS t(id) \
             ON CONFLICT (incident_id, kind, ref_id) DO NOTHING",
        )
        .bind(&resolved)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Opens or updates the unresolved incident of each key (proposed id, first title, highest
/// severity) in key order; returns (incident, key) for each key written. With `fresh_within`
/// (seconds), an unresolved incident not updated within it is left alone and not returned.
async fn upsert_incidents<'k>(
    conn: &mut PgConnection,
    keys: impl Iterator<Item = (&'k &'k str, &'k (Uuid, &'k str, Severity))>,
    fresh_within: Option<f64>,
) -> Result<Vec<(Uuid, String)>> {
    let (mut proposed, mut names, mut titles, mut severities) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (key, (id, title, severity)) in keys {
        proposed.push(*id);
        names.push(*key);
        titles.push(*title);
        severities.push(severity.as_str());
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query_as(
        "INSERT INTO incidents AS i (id, threat_key, title, severity) \
         SELECT id, threat_key, title, severity \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) \
              WITH ORDINALITY AS t(id, threat_key, title, severity, ord) \
         ORDER BY ord \
         ON CONFLICT (threat_key) WHERE status <> 'resolved' DO UPDATE SET \
             severity = CASE \
                 WHEN array_position(ARRAY['low', 'medium', 'high', 'critical'], EXCLUDED.severity) \
                    > array_position(ARRAY['low', 'medium', 'high', 'critical'], i.severity) \
                 THEN EXCLUDED.severity ELSE i.severity END, \
             updated_at = now() \
         WHERE $5::float8 IS NULL OR i.updated_at >= now() - make_interval(secs => $5) \
         RETURNING i.id, i.threat_key",
    )
    .bind(&proposed)
    .bind(&names)
    .bind(&titles)
    .bind(&severities)
    .bind(fresh_within)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

/// Opens or updates the unresolved incident of every threat key among `events` (a stale
/// incident of a key is resolved, and a new one opened), then adds the events and their actions
/// to the timelines; returns one attachment per event, in order. Within a key, the first event
/// opens the incident, the highest severity wins, and an event already on the timeline is left
/// as it was.
///
/// Keys are written in sorted order, so concurrent callers lock incidents in the same order and
/// cannot deadlock; a concurrent caller's new incident is updated rather than doubled.
pub(crate) async fn open_or_attach_many(
    conn: &mut PgConnection,
    events: &[IncidentEvent<'_>],
) -> Result<Vec<IncidentAttachment>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // Per key: a proposed id, the first event's title, the highest severity.
    let mut keys: BTreeMap<&str, (Uuid, &str, Severity)> = BTreeMap::new();
    for event in events {
        if event.threat_key.is_empty() || event.event_id.is_empty() {
            return Err(vigil_domain::ValidationError::Empty {
                field: "threat_key and event_id",
            }
            .into());
        }
        keys.entry(event.threat_key)
            .and_modify(|(_, _, severity)| *severity = (*severity).max(event.severity))
            .or_insert((Uuid::now_v7(), event.title, event.severity));
    }
    // Usually every event of a batch has the one live window: the upsert then leaves a stale
    // incident alone, and only the keys it did not return (stale ones) are resolved and upserted
    // again, instead of a resolving statement before every upsert. Events that disagree (the
    // window changed mid-batch, or some never resolve) are resolved first, as a whole.
    let shared_window = events
        .first()
        .and_then(|first| first.window)
        .filter(|window| events.iter().all(|event| event.window == Some(*window)))
        .map(|window| window.as_secs_f64());
    if shared_window.is_none() {
        resolve_stale(conn, events).await?;
    }
    let mut rows = upsert_incidents(conn, keys.iter(), shared_window).await?;
    if rows.len() < keys.len() {
        let returned: BTreeSet<&str> = rows.iter().map(|(_, key)| key.as_str()).collect();
        let stale: Vec<IncidentEvent<'_>> = events
            .iter()
            .filter(|event| !returned.contains(event.threat_key))
            .cloned()
            .collect();
        resolve_stale(conn, &stale).await?;
        let again = keys.iter().filter(|(key, _)| !returned.contains(**key));
        rows.extend(upsert_incidents(conn, again, None).await?);
    }
    let incident_of: BTreeMap<String, Uuid> = rows.into_iter().map(|(id, key)| (key, id)).collect();
    let incident = |key: &str| {
        incident_of.get(key).copied().ok_or_else(|| {
            Error::Database(sqlx::Error::Protocol(format!(
                "no incident came back for threat key {key}"
            )))
        })
    };

    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    let mut refs = Vec::new();
    let mut details = Vec::new();
    for event in events {
        let id = incident(event.threat_key)?;
        ids.push(id);
        kinds.push("event");
        refs.push(event.event_id);
        details.push(serde_json::json!({}));
        for action in event.action_ids {
            ids.push(id);
            kinds.push("action");
            refs.push(action.as_str());
            details.push(serde_json::json!({ "event_id": event.event_id }));
        }
    }
    let added: Vec<Option<String>> = sqlx::query_scalar(
        "INSERT INTO incident_timeline (incident_id, kind, ref_id, details) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) \
         ON CONFLICT (incident_id, kind, ref_id) DO NOTHING \
         RETURNING CASE kind WHEN 'event' THEN ref_id END",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&refs)
    .bind(&details)
    .fetch_all(&mut *conn)
    .await?;
    let added: BTreeSet<String> = added.into_iter().flatten().collect();

    let mut opened = BTreeSet::new();
    events
        .iter()
        .map(|event| {
            let id = incident(event.threat_key)?;
            let created = keys[event.threat_key].0 == id && opened.insert(event.threat_key);
            Ok(IncidentAttachment {
                incident_id: id.to_string(),
                created,
                already_attached: !added.contains(event.event_id),
            })
        })
        .collect()
}

/// Records many actions with one statement, skipping (event, action, target) keys already
/// present; returns how many were new.
pub(crate) async fn insert_actions(
    conn: &mut PgConnection,
    actions: &[RemediationAction],
) -> Result<u64> {
    if actions.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(actions.len());
    let mut event_ids = Vec::with_capacity(actions.len());
    let mut kinds = Vec::with_capacity(actions.len());
    let mut targets = Vec::with_capacity(actions.len());
    let mut executors = Vec::with_capacity(actions.len());
    let mut statuses = Vec::with_capacity(actions.len());
    let mut details = Vec::with_capacity(actions.len());
    let mut undos = Vec::with_capacity(actions.len());
    let mut expiries = Vec::with_capacity(actions.len());
    let mut created = Vec::with_capacity(actions.len());
    for action in actions {
        ids.push(parse_uuid("id", &action.id)?);
        event_ids.push(action.event_id.as_str());
        kinds.push(action.kind.as_str());
        targets.push(action.target.as_str());
        executors.push(action.executor.as_str());
        statuses.push(action_status_str(action.status));
        details.push(action.details.clone());
        undos.push(action.undo.clone());
        expiries.push(action.expires_at);
        created.push(action.created_at);
    }
    let result = sqlx::query(
        "INSERT INTO remediations (id, event_id, action_kind, target, executor, status, details, \
                                   undo, expires_at, created_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                              $6::text[], $7::jsonb[], $8::jsonb[], $9::timestamptz[], \
                              $10::timestamptz[]) \
         ON CONFLICT (event_id, action_kind, target) DO UPDATE \
             SET status = EXCLUDED.status, details = EXCLUDED.details \
             WHERE remediations.status = 'pending' AND EXCLUDED.status <> 'pending'",
    )
    .bind(&ids)
    .bind(&event_ids)
    .bind(&kinds)
    .bind(&targets)
    .bind(&executors)
    .bind(&statuses)
    .bind(&details)
    .bind(&undos)
    .bind(&expiries)
    .bind(&created)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

/// The action's recorded row, if any, or the cap reached: what [`Remediations::record_intent`]
/// answers without recording.
async fn existing_or_capped(
    conn: &mut PgConnection,
    action: &RemediationAction,
    cap_per_minute: u32,
) -> Result<Option<Intent>> {
    // One round trip for both questions: every high-risk signal asks them, and once the cap is
    // reached nearly all of them are answered here. Refused actions never reached an executor;
    // every other status did (or is about to). Every intent recorded before this one counts,
    // whatever time its replica stamped it with: bounding the window by this action's own
    // time would let a replica whose clock read earlier (or that prepared earlier and took the
    // lock later) miss the others. The partial index `remediations_acting_by_time` holds
    // exactly the rows counted.
    let (in_last_minute, existing): (i64, Option<Uuid>) = sqlx::query_as(
        "SELECT acting.n, r.id \
         FROM (SELECT count(*) AS n FROM remediations \
               WHERE created_at > now() - interval '1 minute' AND status <> 'refused') acting \
         LEFT JOIN remediations r \
           ON r.event_id = $1 AND r.action_kind = $2 AND r.target = $3",
    )
    .bind(&action.event_id)
    .bind(action.kind.as_str())
    .bind(&action.target)
    .fetch_one(&mut *conn)
    .await?;
    if let Some(id) = existing {
        // A redelivery or a resumed attempt: read what was recorded.
        let row: RemediationRow = sqlx::query_as(&format!(
            "SELECT {REMEDIATION_COLUMNS} FROM remediations WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        return Ok(Some(Intent::Exists(row.try_into()?)));
    }
    Ok(
        (in_last_minute >= i64::from(cap_per_minute)).then_some(Intent::CapReached {
            cap: cap_per_minute,
        }),
    )
}
