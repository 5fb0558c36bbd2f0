use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;
use vigil_domain::{ModelMetrics, ModelType, ModelVersion, ValidationError};

use crate::ids::parse_uuid;
use crate::{Error, Result};

/// A model version to register: the domain record plus what the registry keeps beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModelVersion {
    pub version: ModelVersion,
    /// The feature spec the model was trained with; serving must use the same one.
    pub feature_spec: serde_json::Value,
    /// The serialised model, in the one artifact format `vigil train` writes.
    pub artifact: Vec<u8>,
}

/// A registered model version, without its artifact bytes (fetch those with
/// [`ModelVersions::artifact`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    pub version: ModelVersion,
    pub feature_spec: serde_json::Value,
    /// Lowercase hex SHA-256 of the artifact, computed by PostgreSQL when the row was written.
    pub artifact_sha256: String,
    /// Size of the artifact in bytes.
    pub artifact_bytes: u64,
    pub created_at: DateTime<Utc>,
}

/// What happened to a model version; the names stored in `model_events.event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelEventKind {
    Registered,
    PromotedActive,
    PromotedProduction,
    Demoted,
    RolledBack,
    Retired,
}

impl ModelEventKind {
    /// The name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelEventKind::Registered => "registered",
            ModelEventKind::PromotedActive => "promoted_active",
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

/// One entry of a model type's history: who did what to which version, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEvent {
    pub model_version_id: String,
    pub model_type: ModelType,
    pub event: ModelEventKind,
    pub reason: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// The `model_versions` table and its `model_events` history.
///
/// This is storage only; the registry rules (promote if better by a margin, roll back) live
/// above it and rely on the schema's guarantees: one row per (type, version), at most one
/// production and one active row per type.
#[derive(Debug, Clone, Copy)]
pub struct ModelVersions<'a> {
    pool: &'a PgPool,
}

/// The columns `ModelRow` reads, as a literal so queries stay compile-time constants.
macro_rules! model_columns {
    () => {
        "id, model_type, version, trained_at, metrics, hyperparameters, training_samples, \
         features_used, feature_spec, artifact_sha256, \
         octet_length(artifact)::bigint AS artifact_bytes, is_active, is_production, created_at"
    };
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
            event: ModelEventKind::from_str(&row.event).map_err(corrupt)?,
            reason: row.reason,
            actor: row.actor,
            at: row.at,
        })
    }
}

impl<'a> ModelVersions<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// Stores a new version and records a `registered` event by `actor`, in one transaction.
    ///
    /// Refused with [`Error::AlreadyExists`] when the (type, version) pair is taken, or when the
    /// row claims production (or active) while another version of its type already holds it.
    pub async fn insert(&self, new: &NewModelVersion, actor: &str) -> Result<ModelRecord> {
        let v = &new.version;
        let id = parse_uuid("id", &v.id)?;
        validate_new_version(v, actor)?;
        let training_samples =
            i64::try_from(v.training_samples).map_err(|_| ValidationError::Invalid {
                field: "training_samples",
                reason: format!("{} does not fit in a bigint", v.training_samples),
            })?;

        let mut tx = self.pool.begin().await?;
        let (artifact_sha256, created_at): (String, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO model_versions (id, model_type, version, trained_at, metrics, \
                                         hyperparameters, training_samples, features_used, \
                                         feature_spec, artifact, is_active, is_production) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             RETURNING artifact_sha256, created_at",
        )
        .bind(id)
        .bind(v.model_type.as_str())
        .bind(v.version)
        .bind(v.trained_at)
        .bind(Json(&v.metrics))
        .bind(&v.hyperparameters)
        .bind(training_samples)
        .bind(&v.features_used)
        .bind(&new.feature_spec)
        .bind(&new.artifact)
        .bind(v.is_active)
        .bind(v.is_production)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO model_events (model_version_id, model_type, event, reason, actor) \
             VALUES ($1, $2, $3, '', $4)",
        )
        .bind(id)
        .bind(v.model_type.as_str())
        .bind(ModelEventKind::Registered.as_str())
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        Ok(ModelRecord {
            version: v.clone(),
            feature_spec: new.feature_spec.clone(),
            artifact_sha256,
            artifact_bytes: new.artifact.len() as u64,
            created_at,
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

    /// Every version of a type, newest first.
    pub async fn list(&self, model_type: ModelType) -> Result<Vec<ModelRecord>> {
        let rows: Vec<ModelRow> = sqlx::query_as(concat!(
            "SELECT ",
            model_columns!(),
            " FROM model_versions WHERE model_type = $1 ORDER BY version DESC"
        ))
        .bind(model_type.as_str())
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(ModelRecord::try_from).collect()
    }

    /// The number the next version of this type should take (1 for the first).
    pub async fn next_version(&self, model_type: ModelType) -> Result<i32> {
        let max: Option<i32> =
            sqlx::query_scalar("SELECT max(version) FROM model_versions WHERE model_type = $1")
                .bind(model_type.as_str())
                .fetch_one(self.pool)
                .await?;
        Ok(max.unwrap_or(0) + 1)
    }

    /// The serialised model of a version.
    pub async fn artifact(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let id = parse_uuid("id", id)?;
        let artifact: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT artifact FROM model_versions WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool)
                .await?;
        Ok(artifact)
    }

    /// The history of a model type, oldest first.
    pub async fn events(&self, model_type: ModelType) -> Result<Vec<ModelEvent>> {
        let rows: Vec<ModelEventRow> = sqlx::query_as(
            "SELECT model_version_id, model_type, event, reason, actor, at \
             FROM model_events WHERE model_type = $1 ORDER BY at, id",
        )
        .bind(model_type.as_str())
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(ModelEvent::try_from).collect()
    }
}

/// Checks the schema would also make, done first so the caller gets a message naming the field.
fn validate_new_version(v: &ModelVersion, actor: &str) -> Result<()> {
    if v.version < 1 {
        return Err(ValidationError::Invalid {
            field: "version",
            reason: format!("must be 1 or more, got {}", v.version),
        }
        .into());
    }
    if actor.trim().is_empty() {
        return Err(ValidationError::Empty { field: "actor" }.into());
    }
    Ok(())
}
