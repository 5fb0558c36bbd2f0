//! The embedded migrations build the whole schema on an empty database, and running them again
//! changes nothing.

use sqlx::PgPool;
use vigil_store::MIGRATOR;
use vigil_testkit::TestDatabase;

const TABLES: [&str; 14] = [
    "alerts",
    "config_audit",
    "event_claims",
    "feedback",
    "incident_timeline",
    "incidents",
    "model_events",
    "model_versions",
    "remediations",
    "retrain_requests",
    "run_admissions",
    "training_examples",
    "workflow_signals",
    "workflows",
];

/// Every column, constraint and index of the public schema, one sorted line each.
async fn schema_snapshot(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    let mut lines: Vec<String> = sqlx::query_scalar(
        "SELECT format('column %s.%s %s null=%s default=%s', table_name, column_name, data_type, \
                       is_nullable, coalesce(column_default, '-')) \
         FROM information_schema.columns WHERE table_schema = 'public' \
         UNION ALL \
         SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid)) \
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
         UNION ALL \
         SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'",
    )
    .fetch_all(pool)
    .await?;
    lines.sort();
    Ok(lines)
}

async fn table_names(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    let names = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(names)
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_then_are_a_no_op() -> anyhow::Result<()> {
    let db = TestDatabase::empty().await?;
    let pool = db.store().pool();
    assert!(
        table_names(pool).await?.is_empty(),
        "database should start empty"
    );

    let first = db.migrate().await?;
    let embedded: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(first.applied, embedded, "first run applies every migration");
    assert_eq!(first.total, embedded.len());
    assert_eq!(table_names(pool).await?, TABLES);
    let before = schema_snapshot(pool).await?;

    let second = db.migrate().await?;
    assert!(
        second.applied.is_empty(),
        "second run applied {:?}",
        second.applied
    );
    assert_eq!(second.total, embedded.len());
    assert_eq!(schema_snapshot(pool).await?, before, "schema changed");

    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await?;
    assert_eq!(
        recorded as usize,
        embedded.len(),
        "each migration recorded once"
    );
    Ok(())
}

#[tokio::test]
async fn connect_and_migrate_on_a_current_database_applies_nothing() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let before = schema_snapshot(db.store().pool()).await?;

    let store = vigil_store::Store::connect_and_migrate(&db.settings()).await?;
    store.ping().await?;
    let report = store.migrate().await?;
    assert!(report.applied.is_empty());
    assert_eq!(schema_snapshot(store.pool()).await?, before);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn concurrent_migrators_on_one_database_both_succeed() -> anyhow::Result<()> {
    // Replicas start together; the advisory lock must serialise them.
    let db = TestDatabase::empty().await?;
    let a = vigil_store::Store::connect(&db.settings()).await?;
    let b = vigil_store::Store::connect(&db.settings()).await?;
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra?, rb?);
    assert_eq!(ra.total, MIGRATOR.iter().count());
    assert_eq!(rb.total, MIGRATOR.iter().count());
    assert_eq!(table_names(db.store().pool()).await?, TABLES);
    a.close().await;
    b.close().await;
    Ok(())
}

#[tokio::test]
async fn unreachable_database_is_reported_with_its_host_and_without_password() {
    // Port 1 on localhost refuses connections.
    let settings = vigil_config::DatabaseSettings {
        url: "postgres://vigil:s3cret-pw@127.0.0.1:1/vigil".into(),
        max_connections: 1,
        acquire_timeout_ms: 300,
    };
    let err = vigil_store::Store::connect(&settings)
        .await
        .expect_err("nothing listens on port 1");
    let message = err.to_string();
    assert!(matches!(err, vigil_store::Error::Connect { .. }), "{err:?}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
}
