use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tracing::info;
use vigil_config::{DatabaseSettings, redact_url_password};
use vigil_domain::ValidationError;

use crate::models::ModelRegistry;
use crate::workflows::Workflows;
use crate::{Error, Result};

/// The schema migrations in `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// What one migration run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    /// Versions applied by this run, oldest first; empty when the schema was already current.
    pub applied: Vec<i64>,
    /// Versions recorded in the database after the run.
    pub total: usize,
}

/// A PostgreSQL connection pool and the repositories on top of it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Opens a pool and checks that one connection works, so an unreachable database is reported
    /// at start-up with its (password-redacted) address.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self> {
        let options = connect_options(&settings.url)?;
        if settings.max_connections == 0 {
            return Err(ValidationError::Invalid {
                field: "database.max_connections",
                reason: "must be at least 1".into(),
            }
            .into());
        }
        let timeout = Duration::from_millis(settings.acquire_timeout_ms);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(timeout)
            .connect_with(options.clone())
            .await
            .map_err(|cause| Error::Connect {
                target: describe_target(&settings.url, &options, timeout),
                cause,
            })?;
        Ok(Self { pool })
    }

    /// [`connect`](Self::connect), then [`migrate`](Self::migrate): what every service does at
    /// start-up.
    pub async fn connect_and_migrate(settings: &DatabaseSettings) -> Result<Self> {
        let store = Self::connect(settings).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Wraps an existing pool (tests, or a caller that built its own).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The underlying pool, for queries no repository covers yet.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations that the database has not seen yet.
    ///
    /// Safe to run from several replicas at once: the migrator holds an advisory lock, and a
    /// database that is already current is left untouched.
    pub async fn migrate(&self) -> Result<MigrationReport> {
        let before = self.applied_versions().await?;
        MIGRATOR.run(&self.pool).await?;
        let after = self.applied_versions().await?;
        let applied: Vec<i64> = after.difference(&before).copied().collect();
        if applied.is_empty() {
            info!(total = after.len(), "database schema is current");
        } else {
            info!(?applied, total = after.len(), "applied database migrations");
        }
        Ok(MigrationReport {
            applied,
            total: after.len(),
        })
    }

    /// Versions recorded as applied in `_sqlx_migrations`; none before the first run.
    ///
    /// Reads without creating the table: creating it outside the migrator's advisory lock could
    /// race with another replica's migrator.
    async fn applied_versions(&self) -> Result<BTreeSet<i64>> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        if !exists {
            return Ok(BTreeSet::new());
        }
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        Ok(versions.into_iter().collect())
    }

    /// One round trip to the database, for readiness probes.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection; waits for checked-out ones to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Opens a transaction that records many workflows and commits them together.
    pub async fn begin_batch(&self) -> Result<crate::WorkflowBatch> {
        Ok(crate::WorkflowBatch::new(self.pool.begin().await?))
    }

    /// The alerts repository.
    pub fn alerts(&self) -> crate::Alerts<'_> {
        crate::Alerts::new(self.pool())
    }

    /// The remediations repository.
    pub fn remediations(&self) -> crate::Remediations<'_> {
        crate::Remediations::new(self.pool())
    }

    /// The incidents repository.
    pub fn incidents(&self) -> crate::Incidents<'_> {
        crate::Incidents::new(self.pool())
    }

    /// The `workflows` table.
    pub fn workflows(&self) -> Workflows<'_> {
        Workflows::new(&self.pool)
    }

    /// The model registry: `model_versions` and its `model_events` history.
    pub fn models(&self) -> ModelRegistry<'_> {
        ModelRegistry::new(&self.pool)
    }

    /// Analysts' verdicts and the training runs they asked for.
    pub fn feedback(&self) -> crate::Feedback<'_> {
        crate::Feedback::new(&self.pool)
    }

    /// The signals workflows processed, unlabelled.
    pub fn workflow_signals(&self) -> crate::WorkflowSignals<'_> {
        crate::WorkflowSignals::new(&self.pool)
    }

    /// The audit trail of live configuration changes.
    pub fn config_audit(&self) -> crate::ConfigAudit<'_> {
        crate::ConfigAudit::new(&self.pool)
    }

    /// Requested training runs admitted by the rate limit, shared by every trainer replica.
    pub fn run_admissions(&self) -> crate::RunAdmissions<'_> {
        crate::RunAdmissions::new(&self.pool)
    }

    /// The labelled examples the trainer learns from.
    pub fn training(&self) -> crate::TrainingExamples<'_> {
        crate::TrainingExamples::new(&self.pool)
    }
}

/// Parses a database URL; the error repeats the URL without its password.
pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).map_err(|cause| Error::InvalidUrl {
        url: redact_url_password(url),
        cause,
    })
}

fn describe_target(url: &str, options: &PgConnectOptions, timeout: Duration) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    format!(
        "{}:{} (database {database}, user {}, url {}, waited up to {} ms)",
        options.get_host(),
        options.get_port(),
        options.get_username(),
        redact_url_password(url),
        timeout.as_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_description_names_host_and_hides_password() {
        let url = "postgres://vigil:hunter2@db.example:6543/vigil";
        let options = connect_options(url).expect("valid url");
        let target = describe_target(url, &options, Duration::from_millis(250));
        assert!(target.starts_with("db.example:6543"), "{target}");
        assert!(target.contains("database vigil"), "{target}");
        assert!(!target.contains("hunter2"), "{target}");
    }

    #[test]
    fn invalid_url_error_hides_password() {
        let err = connect_options("postgres://vigil:hunter2@db.example:notaport/vigil")
            .expect_err("bad port");
        let message = err.to_string();
        assert!(message.contains("invalid database URL"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn migrations_are_embedded_in_order() {
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert!(!versions.is_empty());
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }
}
