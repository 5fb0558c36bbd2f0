//! Replica locks against the real PostgreSQL: one holder at a time across connections and
//! pools (replicas), released explicitly or when the holder goes away.

use std::time::Duration;

use vigil_store::Store;
use vigil_testkit::{TestDatabase, eventually};

#[tokio::test]
async fn one_holder_at_a_time_across_replicas_and_released_when_dropped() {
    let db = TestDatabase::new().await.unwrap();
    // A second pool on the same database stands in for another replica.
    let other = Store::connect(&db.settings()).await.unwrap();

    let held = db.store().try_lock("training-run").await.unwrap().unwrap();
    assert_eq!(held.name(), "training-run");
    assert!(other.try_lock("training-run").await.unwrap().is_none());
    assert!(
        other.try_lock("another-job").await.unwrap().is_some(),
        "locks with other names are independent"
    );

    held.release().await.unwrap();
    let theirs = other.try_lock("training-run").await.unwrap().unwrap();
    assert!(db.store().try_lock("training-run").await.unwrap().is_none());

    // Dropped without a release (a panicking run): the session closes and PostgreSQL frees
    // the lock, instead of the pool keeping a connection that holds it.
    drop(theirs);
    let retaken = eventually(
        Duration::from_secs(30),
        "the dropped lock to be freed",
        || async { db.store().try_lock("training-run").await.unwrap() },
    )
    .await;
    assert_eq!(retaken.name(), "training-run");
}
