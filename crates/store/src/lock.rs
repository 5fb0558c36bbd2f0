//! Work that must not run twice at once across replicas (a training run): a PostgreSQL
//! session advisory lock, held on a connection of its own for as long as the work runs.

use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use crate::Result;
use crate::store::Store;

/// A held lock; [`ReplicaLock::release`] gives it back. Dropped without that (a panic, a
/// cancelled future), its connection is closed rather than returned to the pool, and
/// PostgreSQL releases the lock with the session.
#[derive(Debug)]
pub struct ReplicaLock {
    name: String,
    connection: Option<PoolConnection<Postgres>>,
}

impl Store {
    /// Takes the lock `name` if no other session holds it: `None` means somebody else is
    /// doing that work right now. Locks belong to the database, so every replica that uses
    /// the same database sees the same ones.
    pub async fn try_lock(&self, name: &str) -> Result<Option<ReplicaLock>> {
        let mut connection = self.pool().acquire().await?;
        let taken: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext('vigil_store.replica_lock'), hashtext($1))",
        )
        .bind(name)
        .fetch_one(&mut *connection)
        .await?;
        Ok(taken.then(|| ReplicaLock {
            name: name.to_string(),
            connection: Some(connection),
        }))
    }
}

impl ReplicaLock {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lock and returns the connection to the pool.
    pub async fn release(mut self) -> Result<()> {
        let Some(mut connection) = self.connection.take() else {
            return Ok(());
        };
        let released = sqlx::query(
            "SELECT pg_advisory_unlock(hashtext('vigil_store.replica_lock'), hashtext($1))",
        )
        .bind(&self.name)
        .execute(&mut *connection)
        .await;
        if released.is_err() {
            // Never hand a connection that may still hold the lock back to the pool.
            drop(connection.detach());
        }
        released?;
        Ok(())
    }
}

impl Drop for ReplicaLock {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            drop(connection.detach());
        }
    }
}
