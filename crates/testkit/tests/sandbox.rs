//! The sandbox against the real NATS and PostgreSQL: what it makes, it removes; services it
//! starts can be stopped, killed, and report how they ended.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use vigil_bus::{StreamKind, TopologyConfig};
use vigil_testkit::{Sandbox, TestDatabase, eventually};

async fn stream_names(client: &async_nats::Client) -> Vec<String> {
    let js = async_nats::jetstream::new(client.clone());
    let mut names = Vec::new();
    let mut listing = js.stream_names();
    while let Some(name) = listing.next().await {
        names.push(name.unwrap());
    }
    names
}

async fn database_exists(name: &str) -> bool {
    let admin = vigil_store::Store::connect(&vigil_config::DatabaseSettings {
        url: vigil_testkit::admin_url(),
        max_connections: 1,
        acquire_timeout_ms: 5_000,
    })
    .await
    .unwrap();
    let exists = sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
    )
    .bind(name)
    .fetch_one(admin.pool())
    .await
    .unwrap();
    admin.close().await;
    exists
}

#[tokio::test]
async fn dropping_a_sandbox_deletes_its_streams_and_its_database() {
    let sandbox = Sandbox::with(&["thresholds.high=6.5"]).await;
    assert_eq!(sandbox.config().thresholds.high, 6.5);
    assert_eq!(sandbox.config().nats.prefix, sandbox.prefix());
    assert_eq!(sandbox.config().database.url, sandbox.database().url());
    // Another topology under the same prefix (another replica's view) goes with it too.
    let other = sandbox
        .bus_with(TopologyConfig {
            work_max_messages: 3,
            ..TopologyConfig::default()
        })
        .await;
    assert_eq!(other.topology().prefix(), sandbox.prefix());
    let client = async_nats::connect(vigil_testkit::nats_url())
        .await
        .unwrap();
    let ours = |names: Vec<String>, prefix: &str| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| n.contains(prefix))
            .collect::<Vec<_>>()
    };
    let prefix = sandbox.prefix().to_owned();
    let before = ours(stream_names(&client).await, &prefix);
    assert!(
        before.contains(&sandbox.bus().topology().stream_name(StreamKind::Events)),
        "{before:?}"
    );
    assert!(before.iter().any(|n| n.starts_with("KV_")), "{before:?}");
    assert_eq!(sandbox.count("SELECT count(*) FROM workflows").await, 0);
    let database = sandbox.database().name().to_owned();
    assert!(database_exists(&database).await);

    drop(sandbox);
    assert_eq!(
        ours(stream_names(&client).await, &prefix),
        Vec::<String>::new()
    );
    assert!(!database_exists(&database).await, "database left behind");
}

#[tokio::test]
async fn a_test_database_is_dropped_with_its_guard() {
    let db = TestDatabase::new().await.unwrap();
    let name = db.name().to_owned();
    assert!(database_exists(&name).await);
    drop(db);
    assert!(!database_exists(&name).await, "database left behind");
}

#[tokio::test]
async fn a_spawned_service_gets_its_own_context_stops_and_reports_its_end() {
    let sandbox = Sandbox::start().await;
    // A service that says it is ready, then waits for its token.
    let mut svc = sandbox.spawn("toy", |ctx, token| async move {
        assert_eq!(ctx.config.nats.prefix.len(), 21);
        ctx.readiness.set("toy", true);
        token.cancelled().await;
        Ok::<(), String>(())
    });
    assert!(
        !svc.ctx().readiness.status().0,
        "not ready before it says so"
    );
    svc.ready(Duration::from_secs(30)).await;
    svc.stop().await;

    // One that fails: finished() reports the error.
    let mut failing = sandbox.spawn("failing", |_ctx, _token| async move {
        Err::<(), _>("cannot bind 127.0.0.1:9")
    });
    let ended = failing.finished().await;
    assert_eq!(ended, Err("cannot bind 127.0.0.1:9".to_owned()));

    // One that never answers its token: kill() ends it anyway.
    let stuck = sandbox.spawn("stuck", |_ctx, _token| async move {
        std::future::pending::<()>().await;
        Ok::<(), String>(())
    });
    let token = stuck.token().clone();
    stuck.kill().await;
    assert!(!token.is_cancelled(), "killed, not asked to stop");

    // eventually() hands back what it waited for.
    let mut n = 0;
    let seen = eventually(Duration::from_secs(5), "three looks", || {
        n += 1;
        let n = n;
        async move { (n == 3).then_some(n) }
    })
    .await;
    assert_eq!(seen, 3);
}

#[tokio::test]
#[should_panic(expected = "ready")]
async fn a_service_that_stops_before_it_is_ready_fails_the_wait() {
    let sandbox = Sandbox::start().await;
    let mut svc = sandbox.spawn(
        "quitter",
        |_ctx, _token| async move { Ok::<(), String>(()) },
    );
    svc.ready(Duration::from_secs(30)).await;
}
