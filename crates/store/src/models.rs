//! The model registry: every trained version, which one serves production and which one is
//! active in staging, and the history of how that came to be.
//!
//! # Concurrency
//!
//! Every write takes a transaction-scoped advisory lock for its model type before reading
//! anything it decides on, so writes to one type run one after another (writes to different
//! types do not wait for each other). Concurrent promotions therefore have sequential semantics:
//! both succeed, the one that got the lock last is the one left in the slot, and the history
//! shows both, in order. Independently of the lock, the partial unique indexes of the schema
//! refuse a second production or active row for a type, whatever code writes it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgConnection;
use sqlx::types::Json;
use tracing::{debug, info, warn};
use uuid::Uuid;
use vigil_domain::{ModelMetrics, ModelType, ModelVersion, ValidationError};

use crate::ids::parse_uuid;
use crate::{Error, Result};

/// The columns `ModelRow` reads, as a literal so queries stay compile-time constants.
macro_rules! model_columns {
    () => {
        "id, model_type, version, trained_at, metrics, hyperparameters, training_samples, \
         features_used, feature_spec, artifact_sha256, \
         octet_length(artifact)::bigint AS artifact_bytes, is_active, is_production, created_at"
    };
}

/// How often [`ModelRegistry::register`] tries again after losing a race for a version number.
const REGISTER_ATTEMPTS: u32 = 5;

/// A model version to register: the domain record plus what the registry keeps beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModelVersion {
    pub version: ModelVersion,
    /// The feature spec the model was trained with; serving must use the same one.
    pub feature_spec: serde_json::Value,
    /// The serialised model, in the one artifact format `vigil train` writes.
    pub artifact: Vec<u8>,
}

/// A registered model version, without its artifact bytes (fetch those, verified, with
/// [`ModelRegistry::load_artifact`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    pub version: ModelVersion,
    pub feature_spec: serde_json::Value,
    /// Lowercase hex SHA-256 of the artifact, recorded when the version was registered.
    pub artifact_sha256: String,
    /// Size of the artifact in bytes.
    pub artifact_bytes: u64,
    pub created_at: DateTime<Utc>,
}

/// What a promotion or a rollback did.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The version now holding the slot (after a rollback: the restored one), as it is now.
    pub promoted: ModelRecord,
    /// The version that held the slot before and was moved out of it, as it is now.
    pub replaced: Option<ModelRecord>,
    /// False when the version already held the slot: nothing was written, no event recorded.
    pub changed: bool,
}

/// What happened to a model version; the names stored in `model_events.event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelEventKind {
    /// The version was stored.
    Registered,
    /// The version became the active (staging) one.
    PromotedActive,
    /// The version stopped being the active one (another took its place).
    Deactivated,
    /// The version started serving production, by a promotion or as the target of a rollback.
    PromotedProduction,
    /// The version stopped serving production because another was promoted.
    Demoted,
    /// The version stopped serving production because it was rolled back.
    RolledBack,
    /// The version was retired.
    Retired,
}

impl ModelEventKind {
    /// The name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelEventKind::Registered => "registered",
            ModelEventKind::PromotedActive => "promoted_active",
            ModelEventKind::Deactivated => "deactivated",
            ModelEventKind::PromotedProduction => "promoted_production",
            ModelEventKind::Demoted => "demoted",
            ModelEventKind::RolledBack => "rolled_back",
            ModelEventKind::Retired => "retired",
        }
    }
}

impl fmt::Display for ModelEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelEventKind {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, ValidationError> {
        Ok(match s {
            "registered" => ModelEventKind::Registered,
            "promoted_active" => ModelEventKind::PromotedActive,
            "deactivated" => ModelEventKind::Deactivated,
            "promoted_production" => ModelEventKind::PromotedProduction,
            "demoted" => ModelEventKind::Demoted,
            "rolled_back" => ModelEventKind::RolledBack,
            "retired" => ModelEventKind::Retired,
            other => {
                return Err(ValidationError::Invalid {
                    field: "event",
                    reason: format!("unknown model event {other:?}"),
                });
            }
        })
    }
}

/// One entry of the registry's history: who did what to which version, when and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEvent {
    pub model_version_id: String,
    pub model_type: ModelType,
    /// The version number of `model_version_id`.
    pub version: i32,
    pub event: ModelEventKind,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// The two slots a model type has, each held by at most one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Active,
    Production,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::Active => "active",
            Slot::Production => "production",
        }
    }

    /// The version holding the slot, locked for the rest of the transaction.
    fn holder_query(self) -> &'static str {
        match self {
            Slot::Active => concat!(
                "SELECT ",
                model_columns!(),
                " FROM model_versions WHERE model_type = $1 AND is_active FOR UPDATE"
            ),
            Slot::Production => concat!(
                "SELECT ",
                model_columns!(),
                " FROM model_versions WHERE model_type = $1 AND is_production FOR UPDATE"
            ),
        }
    }

    fn set_query(self) -> &'static str {
        match self {
            Slot::Active => "UPDATE model_versions SET is_active = $2 WHERE id = $1",
            Slot::Production => "UPDATE model_versions SET is_production = $2 WHERE id = $1",
        }
    }

    fn entered(self) -> ModelEventKind {
        match self {
            Slot::Active => ModelEventKind::PromotedActive,
            Slot::Production => ModelEventKind::PromotedProduction,
        }
    }

    fn left(self) -> ModelEventKind {
        match self {
            Slot::Active => ModelEventKind::Deactivated,
            Slot::Production => ModelEventKind::Demoted,
        }
    }
}

/// The model registry over `model_versions` and its `model_events` history.
///
/// Every change (register, promote, roll back) is one transaction that also records who made
/// it and why, so the history answers which version served production at any moment
/// ([`production_at`](Self::production_at)). See the module documentation for concurrency.
#[derive(Debug, Clone, Copy)]
pub struct ModelRegistry<'a> {
    pool: &'a PgPool,
}

#[derive(sqlx::FromRow)]
struct ModelRow {
    id: Uuid,
    model_type: String,
    version: i32,
    trained_at: DateTime<Utc>,
    metrics: serde_json::Value,
    hyperparameters: serde_json::Value,
    training_samples: i64,
    features_used: Vec<String>,
    feature_spec: serde_json::Value,
    artifact_sha256: String,
    artifact_bytes: i64,
    is_active: bool,
    is_production: bool,
    created_at: DateTime<Utc>,
}

impl TryFrom<ModelRow> for ModelRecord {
    type Error = Error;

    fn try_from(row: ModelRow) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptRow {
            table: "model_versions",
            reason: format!("{}: {reason}", row.id),
        };
        let model_type =
            ModelType::from_str(&row.model_type).map_err(|e| corrupt(e.to_string()))?;
        let metrics: ModelMetrics = serde_json::from_value(row.metrics.clone())
            .map_err(|e| corrupt(format!("metrics: {e}")))?;
        let training_samples = u64::try_from(row.training_samples)
            .map_err(|e| corrupt(format!("training_samples: {e}")))?;
        let artifact_bytes = u64::try_from(row.artifact_bytes)
            .map_err(|e| corrupt(format!("artifact size: {e}")))?;
        Ok(ModelRecord {
            version: ModelVersion {
                id: row.id.to_string(),
                model_type,
                version: row.version,
                trained_at: row.trained_at,
                metrics,
                hyperparameters: row.hyperparameters,
                training_samples,
                features_used: row.features_used,
                is_active: row.is_active,
                is_production: row.is_production,
            },
            feature_spec: row.feature_spec,
            artifact_sha256: row.artifact_sha256,
            artifact_bytes,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ModelEventRow {
    model_version_id: Uuid,
    model_type: String,
    version: i32,
    event: String,
    reason: String,
    actor: String,
    at: DateTime<Utc>,
}

impl TryFrom<ModelEventRow> for ModelEvent {
    type Error = Error;

    fn try_from(row: ModelEventRow) -> Result<Self> {
        let corrupt = |e: ValidationError| Error::CorruptRow {
            table: "model_events",
            reason: format!("version {}: {e}", row.model_version_id),
        };
        Ok(ModelEvent {
            model_version_id: row.model_version_id.to_string(),
            model_type: ModelType::from_str(&row.model_type).map_err(corrupt)?,
            version: row.version,
            event: ModelEventKind::from_str(&row.event).map_err(corrupt)?,
            reason: row.reason,
            actor: row.actor,
            at: row.at,
        })
    }
}

impl<'a> ModelRegistry<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// Stores a new version under the next free version number of its type and records a
    /// `registered` event, in one transaction; the returned record carries the number assigned.
    ///
    /// The number in `new.version.version` is ignored. Concurrent registrations of one type get
    /// distinct numbers; losing a race is retried, not reported. A new version holds no slot:
    /// setting `is_active` or `is_production` is refused, promote it instead so the change is
    /// recorded. The artifact's SHA-256 is recorded beside it and checked on every load.
    pub async fn register(
        &self,
        new: &NewModelVersion,
        actor: &str,
        reason: &str,
    ) -> Result<ModelRecord> {
        let id = parse_uuid("id", &new.version.id)?;
        validate_actor(actor)?;
        if new.version.is_active || new.version.is_production {
            return Err(ValidationError::Invalid {
                field: "is_active/is_production",
                reason: "a new version is registered outside both slots; promote it afterwards"
                    .into(),
            }
            .into());
        }
        let training_samples = training_samples(&new.version)?;
        let artifact_sha256 = sha256_hex(&new.artifact);

        let mut attempt = 1;
        loop {
            match self
                .try_register(id, new, training_samples, &artifact_sha256, actor, reason)
                .await
            {
                Err(err) if attempt < REGISTER_ATTEMPTS && is_transient(&err) => {
                    debug!(model_type = %new.version.model_type, attempt, error = %err,
                           "retrying model registration");
                    attempt += 1;
                }
                Ok(record) => {
                    info!(model_type = %record.version.model_type, version = record.version.version,
                          id = %record.version.id, %actor, "registered model version");
                    return Ok(record);
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// One attempt of [`register`](Self::register).
    async fn try_register(
        &self,
        id: Uuid,
        new: &NewModelVersion,
        training_samples: i64,
        artifact_sha256: &str,
        actor: &str,
        reason: &str,
    ) -> Result<ModelRecord> {
        let model_type = new.version.model_type;
        let mut tx = self.pool.begin().await?;
        let at = lock_model_type(&mut tx, model_type).await?;
        let number: i32 = sqlx::query_scalar(
            "SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE model_type = $1",
        )
        .bind(model_type.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let row = RowToInsert {
            id,
            new,
            number,
            training_samples,
            artifact_sha256,
            is_active: false,
            is_production: false,
        };
        insert_row(&mut tx, &row).await?;
        EventToRecord { at, actor, reason }
            .record(&mut tx, id, model_type, ModelEventKind::Registered)
            .await?;
        let record = fetch_record(&mut tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Stores a version under the number it carries, holding the slots its flags claim, with a
    /// `registered` event and one event per slot claimed. For imports and tests; new versions
    /// should go through [`register`](Self::register).
    ///
    /// Refused with [`Error::AlreadyExists`] when the (type, version) pair is taken, or when the
    /// row claims production (or active) while another version of its type already holds it.
    pub async fn insert(&self, new: &NewModelVersion, actor: &str) -> Result<ModelRecord> {
        let v = &new.version;
        let id = parse_uuid("id", &v.id)?;
        if v.version < 1 {
            return Err(ValidationError::Invalid {
                field: "version",
                reason: format!("must be 1 or more, got {}", v.version),
            }
            .into());
        }
        validate_actor(actor)?;
        let training_samples = training_samples(v)?;
        let artifact_sha256 = sha256_hex(&new.artifact);

        let mut tx = self.pool.begin().await?;
        let at = lock_model_type(&mut tx, v.model_type).await?;
        let row = RowToInsert {
            id,
            new,
            number: v.version,
            training_samples,
            artifact_sha256: &artifact_sha256,
            is_active: v.is_active,
            is_production: v.is_production,
        };
        insert_row(&mut tx, &row).await?;
        let event = EventToRecord {
            at,
            actor,
            reason: "",
        };
        event
            .record(&mut tx, id, v.model_type, ModelEventKind::Registered)
            .await?;
        for (claimed, slot) in [
            (v.is_active, Slot::Active),
            (v.is_production, Slot::Production),
        ] {
            if claimed {
                event
                    .record(&mut tx, id, v.model_type, slot.entered())
                    .await?;
            }
        }
        let record = fetch_record(&mut tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Makes a version the active (staging) one of its type; the version that was active, if
    /// any, is deactivated in the same transaction. Each change is recorded with `actor` and
    /// `reason`. Promoting the version that is already active changes nothing.
    ///
    /// Refused with [`Error::CorruptArtifact`] when the version's artifact no longer matches its
    /// checksum, and [`Error::NotFound`] for an unknown id.
    pub async fn promote_to_active(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Promotion> {
        self.promote(id, Slot::Active, actor, reason).await
    }

    /// Makes a version the one serving production for its type; the version that was in
    /// production, if any, is demoted in the same transaction. Each change is recorded with
    /// `actor` and `reason`. Promoting the version already in production changes nothing.
    ///
    /// Concurrent promotions of one type run one after the other and all succeed: the last one
    /// wins, and there is never more than one production version. Refused with
    /// [`Error::CorruptArtifact`] when the version's artifact no longer matches its checksum, and
    /// [`Error::NotFound`] for an unknown id.
    pub async fn promote_to_production(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Promotion> {
        self.promote(id, Slot::Production, actor, reason).await
    }

    /// Takes the production version of a type out of production (`rolled_back`) and restores
    /// the one that served production before it was promoted (`promoted_production`), in one
    /// transaction.
    ///
    /// "Before" comes from the production history, not from version numbers, and versions that
    /// were rolled back are skipped: after v1, v2, v3 were promoted in turn, rolling back twice
    /// restores v2 and then v1. With no version in production, or none before it, this is
    /// [`Error::NothingToRollBack`] and nothing changes.
    pub async fn rollback_to_previous(
        &self,
        model_type: ModelType,
        actor: &str,
        reason: &str,
    ) -> Result<Promotion> {
        validate_actor(actor)?;
        validate_reason(reason)?;
        let mut tx = self.pool.begin().await?;
        let at = lock_model_type(&mut tx, model_type).await?;
        let current: Option<ModelRow> = sqlx::query_as(Slot::Production.holder_query())
            .bind(model_type.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(current) = current else {
            return Err(Error::NothingToRollBack {
                model_type,
                reason: "no version is in production",
            });
        };
        let events: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT model_version_id, event FROM model_events \
             WHERE model_type = $1 AND event IN ('promoted_production', 'rolled_back') \
             ORDER BY id",
        )
        .bind(model_type.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let events = events
            .into_iter()
            .map(|(id, event)| {
                let kind = ModelEventKind::from_str(&event).map_err(|e| Error::CorruptRow {
                    table: "model_events",
                    reason: format!("version {id}: {e}"),
                })?;
                Ok((id, kind))
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(previous) = previous_production(&events, current.id) else {
            return Err(Error::NothingToRollBack {
                model_type,
                reason: "no earlier production version in its history",
            });
        };
        lock_row(&mut tx, previous).await?;
        verify_stored_artifact(&mut tx, previous).await?;

        let event = EventToRecord { at, actor, reason };
        set_slot(&mut tx, Slot::Production, current.id, false).await?;
        event
            .record(&mut tx, current.id, model_type, ModelEventKind::RolledBack)
            .await?;
        set_slot(&mut tx, Slot::Production, previous, true).await?;
        event
            .record(
                &mut tx,
                previous,
                model_type,
                ModelEventKind::PromotedProduction,
            )
            .await?;
        let promoted = fetch_record(&mut tx, previous).await?;
        let replaced = fetch_record(&mut tx, current.id).await?;
        tx.commit().await?;
        info!(%model_type, from = replaced.version.version, to = promoted.version.version,
              %actor, %reason, "rolled back production model");
        Ok(Promotion {
            promoted,
            replaced: Some(replaced),
            changed: true,
        })
    }

    async fn promote(&self, id: &str, slot: Slot, actor: &str, reason: &str) -> Result<Promotion> {
        let uuid = parse_uuid("id", id)?;
        validate_actor(actor)?;
        validate_reason(reason)?;
        let mut tx = self.pool.begin().await?;
        // The type never changes, so it can be read before the lock that guards the slots.
        let model_type: Option<String> =
            sqlx::query_scalar("SELECT model_type FROM model_versions WHERE id = $1")
                .bind(uuid)
                .fetch_optional(&mut *tx)
                .await?;
        let model_type = model_type.ok_or_else(|| not_found(id))?;
        let model_type = ModelType::from_str(&model_type).map_err(|e| Error::CorruptRow {
            table: "model_versions",
            reason: format!("{uuid}: {e}"),
        })?;
        let at = lock_model_type(&mut tx, model_type).await?;
        lock_row(&mut tx, uuid).await?;
        let holder: Option<ModelRow> = sqlx::query_as(slot.holder_query())
            .bind(model_type.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let holder = holder.map(|row| row.id);
        if holder == Some(uuid) {
            let promoted = fetch_record(&mut tx, uuid).await?;
            tx.commit().await?;
            return Ok(Promotion {
                promoted,
                replaced: None,
                changed: false,
            });
        }
        verify_stored_artifact(&mut tx, uuid).await?;

        let event = EventToRecord { at, actor, reason };
        if let Some(holder) = holder {
            set_slot(&mut tx, slot, holder, false).await?;
            event
                .record(&mut tx, holder, model_type, slot.left())
                .await?;
        }
        set_slot(&mut tx, slot, uuid, true).await?;
        event
            .record(&mut tx, uuid, model_type, slot.entered())
            .await?;
        let promoted = fetch_record(&mut tx, uuid).await?;
        let replaced = match holder {
            Some(holder) => Some(fetch_record(&mut tx, holder).await?),
            None => None,
        };
        tx.commit().await?;
        info!(%model_type, slot = slot.name(), version = promoted.version.version,
              replaced = ?replaced.as_ref().map(|r| r.version.version), %actor, %reason,
              "promoted model version");
        Ok(Promotion {
            promoted,
            replaced,
            changed: true,
        })
    }

    /// A version by its id.
    pub async fn get(&self, id: &str) -> Result<Option<ModelRecord>> {
        let id = parse_uuid("id", id)?;
        let row: Option<ModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            model_columns!(),
            " FROM model_versions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool)
        .await?;
        row.map(ModelRecord::try_from).transpose()
    }

    /// A version by its type and number.
    pub async fn get_version(
        &self,
        model_type: ModelType,
        version: i32,
    ) -> Result<Option<ModelRecord>> {
        let row: Option<ModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            model_columns!(),
            " FROM model_versions WHERE model_type = $1 AND version = $2"
        ))
        .bind(model_type.as_str())
        .bind(version)
        .fetch_optional(self.pool)
        .await?;
        row.map(ModelRecord::try_from).transpose()
    }

    /// The version of this type serving production traffic, if any.
    pub async fn production(&self, model_type: ModelType) -> Result<Option<ModelRecord>> {
        let row: Option<ModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            model_columns!(),
            " FROM model_versions WHERE model_type = $1 AND is_production"
        ))
        .bind(model_type.as_str())
        .fetch_optional(self.pool)
        .await?;
        row.map(ModelRecord::try_from).transpose()
    }

    /// The version of this type active in staging, if any.
    pub async fn active(&self, model_type: ModelType) -> Result<Option<ModelRecord>> {
        let row: Option<ModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            model_columns!(),
            " FROM model_versions WHERE model_type = $1 AND is_active"
        ))
        .bind(model_type.as_str())
        .fetch_optional(self.pool)
        .await?;
        row.map(ModelRecord::try_from).transpose()
    }

    /// Every version of one type (or of every type, by type name), newest first.
    pub async fn list(&self, model_type: Option<ModelType>) -> Result<Vec<ModelRecord>> {
        let rows: Vec<ModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            model_columns!(),
            " FROM model_versions WHERE $1::text IS NULL OR model_type = $1 \
              ORDER BY model_type, version DESC"
        ))
        .bind(model_type.map(ModelType::as_str))
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(ModelRecord::try_from).collect()
    }

    /// When the newest version of this type was registered (`None` before the first).
    pub async fn newest_registered_at(
        &self,
        model_type: ModelType,
    ) -> Result<Option<DateTime<Utc>>> {
        let at =
            sqlx::query_scalar("SELECT max(created_at) FROM model_versions WHERE model_type = $1")
                .bind(model_type.as_str())
                .fetch_one(self.pool)
                .await?;
        Ok(at)
    }

    /// The number the next version of this type will take (1 for the first). Only a hint:
    /// [`register`](Self::register) assigns the number itself.
    pub async fn next_version(&self, model_type: ModelType) -> Result<i32> {
        let max: Option<i32> =
            sqlx::query_scalar("SELECT max(version) FROM model_versions WHERE model_type = $1")
                .bind(model_type.as_str())
                .fetch_one(self.pool)
                .await?;
        Ok(max.unwrap_or(0) + 1)
    }

    /// The serialised model of a version, after checking that its SHA-256 still matches the
    /// checksum recorded at registration ([`Error::CorruptArtifact`] when it does not).
    pub async fn load_artifact(&self, id: &str) -> Result<Vec<u8>> {
        let uuid = parse_uuid("id", id)?;
        let row: Option<(Vec<u8>, String)> =
            sqlx::query_as("SELECT artifact, artifact_sha256 FROM model_versions WHERE id = $1")
                .bind(uuid)
                .fetch_optional(self.pool)
                .await?;
        let (artifact, expected) = row.ok_or_else(|| not_found(id))?;
        let actual = sha256_hex(&artifact);
        if actual != expected {
            warn!(id = %uuid, %expected, %actual, "model artifact does not match its checksum");
            return Err(Error::CorruptArtifact {
                id: uuid.to_string(),
                expected,
                actual,
            });
        }
        Ok(artifact)
    }

    /// The history of one model type (or of all of them), in the order it happened.
    pub async fn history(&self, model_type: Option<ModelType>) -> Result<Vec<ModelEvent>> {
        let rows: Vec<ModelEventRow> = sqlx::query_as(
            "SELECT e.model_version_id, e.model_type, v.version, e.event, e.reason, e.actor, e.at \
             FROM model_events e JOIN model_versions v ON v.id = e.model_version_id \
             WHERE $1::text IS NULL OR e.model_type = $1 \
             ORDER BY e.id",
        )
        .bind(model_type.map(ModelType::as_str))
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(ModelEvent::try_from).collect()
    }

    /// The version of this type that was serving production at `at`, answered from the history
    /// (a change made at exactly `at` counts). The record shows the version's flags as they are
    /// now.
    pub async fn production_at(
        &self,
        model_type: ModelType,
        at: DateTime<Utc>,
    ) -> Result<Option<ModelRecord>> {
        // The last production change at or before `at` decides: a promotion names the version,
        // a demotion or rollback with no promotion after it means nothing was in production.
        // One change writes its events with one timestamp, in order, so the id breaks ties.
        let row: Option<ModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            model_columns!(),
            " FROM model_versions WHERE id = ( \
                SELECT CASE WHEN event = 'promoted_production' THEN model_version_id END \
                FROM model_events \
                WHERE model_type = $1 AND at <= $2 \
                  AND event IN ('promoted_production', 'demoted', 'rolled_back') \
                ORDER BY at DESC, id DESC LIMIT 1)"
        ))
        .bind(model_type.as_str())
        .bind(at)
        .fetch_optional(self.pool)
        .await?;
        row.map(ModelRecord::try_from).transpose()
    }
}

/// The version to restore when `current` is rolled back, from the production events of its type
/// in the order they were written.
///
/// Replays the history as a stack: a promotion pushes its version (unless it is already on top,
/// as when a rollback restores it), a rollback removes the rolled-back version. The answer is
/// the topmost entry other than `current`.
fn previous_production(events: &[(Uuid, ModelEventKind)], current: Uuid) -> Option<Uuid> {
    let mut stack: Vec<Uuid> = Vec::new();
    for &(id, kind) in events {
        match kind {
            ModelEventKind::PromotedProduction if stack.last() != Some(&id) => stack.push(id),
            ModelEventKind::RolledBack => {
                if let Some(pos) = stack.iter().rposition(|v| *v == id) {
                    stack.remove(pos);
                }
            }
            _ => {}
        }
    }
    stack.iter().rev().copied().find(|v| *v != current)
}

/// Serialises every registry write to one model type until the transaction ends, and returns
/// the time the change happens, taken once the lock is held so that changes made one after
/// another get increasing timestamps.
async fn lock_model_type(conn: &mut PgConnection, model_type: ModelType) -> Result<DateTime<Utc>> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('vigil_store.model_registry'), hashtext($1))",
    )
    .bind(model_type.as_str())
    .execute(&mut *conn)
    .await?;
    let at = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *conn)
        .await?;
    Ok(at)
}

/// Locks one version's row for the rest of the transaction.
async fn lock_row(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let found: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM model_versions WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    found.map(|_| ()).ok_or_else(|| not_found(&id.to_string()))
}

async fn set_slot(conn: &mut PgConnection, slot: Slot, id: Uuid, holds: bool) -> Result<()> {
    sqlx::query(slot.set_query())
        .bind(id)
        .bind(holds)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Refuses to put a version whose stored bytes no longer match their checksum into a slot;
/// PostgreSQL hashes them, so the artifact does not travel.
async fn verify_stored_artifact(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let (expected, actual): (String, String) = sqlx::query_as(
        "SELECT artifact_sha256, encode(sha256(artifact), 'hex') FROM model_versions \
         WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    if expected != actual {
        warn!(%id, %expected, %actual, "refusing to promote a corrupt model artifact");
        return Err(Error::CorruptArtifact {
            id: id.to_string(),
            expected,
            actual,
        });
    }
    Ok(())
}

async fn fetch_record(conn: &mut PgConnection, id: Uuid) -> Result<ModelRecord> {
    let row: ModelRow = sqlx::query_as(concat!(
        "SELECT ",
        model_columns!(),
        " FROM model_versions WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    ModelRecord::try_from(row)
}

struct RowToInsert<'n> {
    id: Uuid,
    new: &'n NewModelVersion,
    number: i32,
    training_samples: i64,
    artifact_sha256: &'n str,
    is_active: bool,
    is_production: bool,
}

async fn insert_row(conn: &mut PgConnection, row: &RowToInsert<'_>) -> Result<()> {
    let v = &row.new.version;
    sqlx::query(
        "INSERT INTO model_versions (id, model_type, version, trained_at, metrics, \
                                     hyperparameters, training_samples, features_used, \
                                     feature_spec, artifact, artifact_sha256, is_active, \
                                     is_production) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(row.id)
    .bind(v.model_type.as_str())
    .bind(row.number)
    .bind(v.trained_at)
    .bind(Json(&v.metrics))
    .bind(&v.hyperparameters)
    .bind(row.training_samples)
    .bind(&v.features_used)
    .bind(&row.new.feature_spec)
    .bind(&row.new.artifact)
    .bind(row.artifact_sha256)
    .bind(row.is_active)
    .bind(row.is_production)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Who made a change, why and when; every event of one change shares them.
struct EventToRecord<'e> {
    at: DateTime<Utc>,
    actor: &'e str,
    reason: &'e str,
}

impl EventToRecord<'_> {
    async fn record(
        &self,
        conn: &mut PgConnection,
        id: Uuid,
        model_type: ModelType,
        kind: ModelEventKind,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO model_events (model_version_id, model_type, event, reason, actor, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(model_type.as_str())
        .bind(kind.as_str())
        .bind(self.reason)
        .bind(self.actor)
        .bind(self.at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// Errors worth another attempt: a version number taken by a concurrent writer that bypassed
/// the lock, a serialisation failure, a deadlock or a lock timeout.
fn is_transient(err: &Error) -> bool {
    match err {
        Error::AlreadyExists { constraint, .. } => constraint == "model_versions_type_version_key",
        Error::Database(err) => err
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| matches!(&*code, "40001" | "40P01" | "55P03")),
        _ => false,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn not_found(id: &str) -> Error {
    Error::NotFound {
        entity: "model version",
        key: id.to_owned(),
    }
}

fn training_samples(v: &ModelVersion) -> Result<i64> {
    i64::try_from(v.training_samples).map_err(|_| {
        ValidationError::Invalid {
            field: "training_samples",
            reason: format!("{} does not fit in a bigint", v.training_samples),
        }
        .into()
    })
}

/// Checked before the database would, so the caller gets a message naming the field.
fn validate_actor(actor: &str) -> Result<()> {
    if actor.trim().is_empty() {
        return Err(ValidationError::Empty { field: "actor" }.into());
    }
    Ok(())
}

/// Promotions and rollbacks must say why: the history is what an operator reads afterwards.
fn validate_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(ValidationError::Empty { field: "reason" }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ModelEventKind::{PromotedProduction as Promoted, RolledBack};

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn previous_production_follows_the_history_not_the_numbers() {
        let v = ids(3);
        // v3 promoted first, then v1: rolling back v1 restores v3.
        let events = [(v[2], Promoted), (v[0], Promoted)];
        assert_eq!(previous_production(&events, v[0]), Some(v[2]));
    }

    #[test]
    fn repeated_rollbacks_walk_back_past_rolled_back_versions() {
        let v = ids(3);
        let mut events = vec![(v[0], Promoted), (v[1], Promoted), (v[2], Promoted)];
        assert_eq!(previous_production(&events, v[2]), Some(v[1]));
        events.extend([(v[2], RolledBack), (v[1], Promoted)]);
        assert_eq!(previous_production(&events, v[1]), Some(v[0]));
        events.extend([(v[1], RolledBack), (v[0], Promoted)]);
        assert_eq!(previous_production(&events, v[0]), None);
    }

    #[test]
    fn a_re_promoted_version_counts_at_its_latest_promotion() {
        let v = ids(2);
        let events = [(v[0], Promoted), (v[1], Promoted), (v[0], Promoted)];
        assert_eq!(previous_production(&events, v[0]), Some(v[1]));
        assert_eq!(previous_production(&[], v[0]), None);
        assert_eq!(previous_production(&[(v[0], Promoted)], v[0]), None);
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn event_names_round_trip() {
        for kind in [
            ModelEventKind::Registered,
            ModelEventKind::PromotedActive,
            ModelEventKind::Deactivated,
            ModelEventKind::PromotedProduction,
            ModelEventKind::Demoted,
            ModelEventKind::RolledBack,
            ModelEventKind::Retired,
        ] {
            assert_eq!(ModelEventKind::from_str(kind.as_str()).ok(), Some(kind));
        }
        assert!(ModelEventKind::from_str("promoted").is_err());
    }
}
