//! Throw-away databases: each [`TestDatabase`] is a freshly created PostgreSQL database of its
//! own, so tests run in parallel without seeing each other's rows.
//!
//! The server comes from `DATABASE_URL` (default [`DEFAULT_ADMIN_URL`]); the role it names must
//! be allowed to create databases. Each database is named `vigil_test_<unix seconds>_<random>`
//! and dropped when its `TestDatabase` is dropped, even when the test panics. A test process that
//! is killed leaves its database behind; the next `TestDatabase` in any process drops leftovers
//! older than [`STALE_AFTER`], which no live test can still be using.

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use vigil_config::DatabaseSettings;
use vigil_store::{MigrationReport, Store};

use crate::unix_seconds;

/// The server tests use when `DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Test databases (and sandbox streams) older than this are left over from killed runs.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

const PREFIX: &str = "vigil_test_";

/// The URL of the server test databases are created on: `DATABASE_URL`, else the default.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// A database created for one test, with a [`Store`] connected to it; dropped on drop.
#[derive(Debug)]
pub struct TestDatabase {
    store: Store,
    name: String,
    url: String,
    admin: PgConnectOptions,
}

impl TestDatabase {
    /// A new database with every migration applied.
    pub async fn new() -> anyhow::Result<Self> {
        let db = Self::empty().await?;
        db.store
            .migrate()
            .await
            .with_context(|| format!("migrating the test database {}", db.name))?;
        Ok(db)
    }

    /// A new database with no migrations applied, for tests of the migrations themselves.
    pub async fn empty() -> anyhow::Result<Self> {
        let admin_url = admin_url();
        let admin = PgConnectOptions::from_str(&admin_url).with_context(|| {
            format!(
                "DATABASE_URL {} is not a PostgreSQL URL",
                vigil_config::redact_url_password(&admin_url)
            )
        })?;
        static SWEEP: Once = Once::new();
        let mut sweep_needed = false;
        SWEEP.call_once(|| sweep_needed = true);

        let mut conn = admin.connect().await.with_context(|| {
            format!(
                "PostgreSQL is not reachable at {} (set DATABASE_URL)",
                vigil_config::redact_url_password(&admin_url)
            )
        })?;
        if sweep_needed {
            drop_stale_databases(&mut conn).await;
        }
        let name = new_database_name();
        // Identifiers cannot be bound as parameters; the name is ours, made of [a-z0-9_] only.
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating the test database {name}"))?;
        conn.close().await?;

        let url = with_database(&admin_url, &name);
        let settings = settings_for(&url);
        let store = match Store::connect(&settings).await {
            Ok(store) => store,
            Err(err) => {
                drop_database_blocking(&admin, &name);
                return Err(err.into());
            }
        };
        Ok(Self {
            store,
            name,
            url,
            admin,
        })
    }

    /// The store connected to this database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The database name (`vigil_test_...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of this database, for code under test that connects by itself.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Settings pointing at this database, for services started through their `run` function.
    pub fn settings(&self) -> DatabaseSettings {
        settings_for(&self.url)
    }

    /// Runs the migrations again (they should apply nothing).
    pub async fn migrate(&self) -> vigil_store::Result<MigrationReport> {
        self.store.migrate().await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        drop_database_blocking(&self.admin, &self.name);
    }
}

fn settings_for(url: &str) -> DatabaseSettings {
    DatabaseSettings {
        url: url.to_owned(),
        max_connections: 4,
        acquire_timeout_ms: 10_000,
    }
}

/// Drops a test database from a helper thread with its own runtime: `Drop` cannot await, and
/// this must also work while the test's runtime is unwinding from a panic.
fn drop_database_blocking(admin: &PgConnectOptions, name: &str) {
    let admin = admin.clone();
    let name = name.to_owned();
    crate::block_on_helper_thread(format!("dropping {name}"), move || async move {
        let mut conn = admin.connect().await?;
        drop_database(&mut conn, &name).await?;
        conn.close().await?;
        Ok(())
    });
}

async fn drop_database(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    debug_assert!(is_test_database_name(name));
    // WITH (FORCE) ends the test's own pool connections, which may still be open.
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Drops test databases left behind by killed runs; failures only warn (another process may be
/// dropping the same one).
async fn drop_stale_databases(conn: &mut PgConnection) {
    let names: Vec<String> =
        match sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut *conn)
            .await
        {
            Ok(names) => names,
            Err(err) => {
                eprintln!("vigil-testkit: cannot list old test databases: {err}");
                return;
            }
        };
    let now = unix_seconds();
    for name in names {
        let Some(created) = created_at_from_name(&name) else {
            continue;
        };
        if now.saturating_sub(created) < STALE_AFTER.as_secs() {
            continue;
        }
        if let Err(err) = drop_database(conn, &name).await {
            eprintln!("vigil-testkit: cannot drop stale {name}: {err}");
        }
    }
}

fn new_database_name() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{PREFIX}{}_{}", unix_seconds(), &random[..16])
}

fn is_test_database_name(name: &str) -> bool {
    name.starts_with(PREFIX)
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn created_at_from_name(name: &str) -> Option<u64> {
    if !is_test_database_name(name) {
        return None;
    }
    let rest = name.strip_prefix(PREFIX)?;
    let (seconds, _random) = rest.split_once('_')?;
    u64::from_str(seconds).ok()
}

/// `url` with its database (the path) replaced by `database`, keeping user, host and query.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    match query {
        Some(query) => format!("{scheme}://{authority}/{database}?{query}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    }

    #[test]
    fn names_are_valid_and_carry_their_age() {
        let name = new_database_name();
        assert!(is_test_database_name(&name), "{name}");
        let created = created_at_from_name(&name).expect("timestamp in name");
        assert!(unix_seconds() - created < 60);
        assert_eq!(created_at_from_name("vigil_test_abc_def"), None);
        assert_eq!(created_at_from_name("test"), None);
    }
}
