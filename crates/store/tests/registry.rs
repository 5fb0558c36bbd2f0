//! The model registry: promotions, rollbacks, the history behind them, artifact integrity, and
//! what concurrent writers can and cannot do to the one-production-version rule.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::model_version;
use sqlx::PgPool;
use tokio::sync::Barrier;
use vigil_domain::ModelType;
use vigil_store::{Error, ModelEventKind, ModelRecord, ModelRegistry, Store};
use vigil_testkit::TestDatabase;

/// Registers a fresh version of `model_type` (its number is assigned by the registry).
async fn register(models: &ModelRegistry<'_>, model_type: ModelType) -> anyhow::Result<String> {
    // The number in the input is deliberately wrong: the registry must assign its own.
    let record = models
        .register(
            &model_version(model_type, 99),
            "trainer",
            "nightly training",
        )
        .await?;
    Ok(record.version.id)
}

/// Rows flagged production for a type, counted in SQL rather than through the registry.
async fn production_rows(pool: &PgPool, model_type: ModelType) -> anyhow::Result<Vec<String>> {
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM model_versions WHERE model_type = $1 AND is_production")
            .bind(model_type.as_str())
            .fetch_all(pool)
            .await?;
    Ok(ids.into_iter().map(|id| id.to_string()).collect())
}

async fn active_rows(pool: &PgPool, model_type: ModelType) -> anyhow::Result<Vec<String>> {
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM model_versions WHERE model_type = $1 AND is_active")
            .bind(model_type.as_str())
            .fetch_all(pool)
            .await?;
    Ok(ids.into_iter().map(|id| id.to_string()).collect())
}

/// (version, event, actor, reason) of a type's history, in order.
async fn history_summary(
    models: &ModelRegistry<'_>,
    model_type: ModelType,
) -> anyhow::Result<Vec<(i32, ModelEventKind, String, String)>> {
    Ok(models
        .history(Some(model_type))
        .await?
        .into_iter()
        .map(|e| (e.version, e.event, e.actor, e.reason))
        .collect())
}

fn event(
    version: i32,
    kind: ModelEventKind,
    actor: &str,
    reason: &str,
) -> (i32, ModelEventKind, String, String) {
    (version, kind, actor.to_owned(), reason.to_owned())
}

fn version_of(record: Option<ModelRecord>) -> Option<i32> {
    record.map(|r| r.version.version)
}

#[tokio::test]
async fn promote_promote_rollback_leaves_the_earlier_version_and_the_history() -> anyhow::Result<()>
{
    use ModelEventKind::*;
    let db = TestDatabase::new().await?;
    let pool = db.store().pool();
    let models = db.store().models();
    let t = ModelType::RandomForest;

    let v1 = register(&models, t).await?;
    let v2 = register(&models, t).await?;
    assert_eq!(version_of(models.get(&v1).await?), Some(1));
    assert_eq!(version_of(models.get(&v2).await?), Some(2));

    let first = models
        .promote_to_production(&v1, "alice", "first model")
        .await?;
    assert!(first.changed);
    assert_eq!(first.promoted.version.id, v1);
    assert!(first.promoted.version.is_production);
    assert_eq!(first.replaced, None);

    // A moment that lies strictly between the two promotions, on the wall clock.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let while_v1_served = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let second = models
        .promote_to_production(&v2, "bob", "better f1")
        .await?;
    assert_eq!(second.promoted.version.id, v2);
    let replaced = second.replaced.expect("v1 was in production");
    assert_eq!(replaced.version.id, v1);
    assert!(!replaced.version.is_production);
    assert_eq!(production_rows(pool, t).await?, [v2.as_str()]);

    let rollback = models
        .rollback_to_previous(t, "carol", "precision regression")
        .await?;
    assert_eq!(rollback.promoted.version.id, v1);
    assert_eq!(
        rollback
            .replaced
            .map(|r| (r.version.id, r.version.is_production)),
        Some((v2.clone(), false))
    );
    assert_eq!(production_rows(pool, t).await?, [v1.as_str()]);
    assert_eq!(
        models.production(t).await?.map(|r| r.version.id),
        Some(v1.clone())
    );

    assert_eq!(
        history_summary(&models, t).await?,
        [
            event(1, Registered, "trainer", "nightly training"),
            event(2, Registered, "trainer", "nightly training"),
            event(1, PromotedProduction, "alice", "first model"),
            event(1, Demoted, "bob", "better f1"),
            event(2, PromotedProduction, "bob", "better f1"),
            event(2, RolledBack, "carol", "precision regression"),
            event(1, PromotedProduction, "carol", "precision regression"),
        ]
    );

    // Which version served production when, answered from the history.
    let events = models.history(Some(t)).await?;
    let at = |i: usize| events[i].at;
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at), "{events:?}");
    let one_micro = chrono::Duration::microseconds(1);
    let before_any_promotion = at(2) - one_micro;
    assert_eq!(
        version_of(models.production_at(t, before_any_promotion).await?),
        None
    );
    assert_eq!(version_of(models.production_at(t, at(2)).await?), Some(1));
    assert_eq!(
        version_of(models.production_at(t, while_v1_served).await?),
        Some(1)
    );
    assert_eq!(
        version_of(models.production_at(t, at(4) - one_micro).await?),
        Some(1)
    );
    assert_eq!(version_of(models.production_at(t, at(4)).await?), Some(2));
    assert_eq!(
        version_of(models.production_at(t, at(5) - one_micro).await?),
        Some(2)
    );
    assert_eq!(version_of(models.production_at(t, at(6)).await?), Some(1));
    assert_eq!(
        version_of(models.production_at(t, Utc::now()).await?),
        Some(1)
    );
    // Another type's history does not leak in.
    assert_eq!(
        models.production_at(ModelType::Xgboost, Utc::now()).await?,
        None
    );
    Ok(())
}

#[tokio::test]
async fn rollback_follows_the_production_history_not_the_version_numbers() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let models = db.store().models();
    let t = ModelType::Xgboost;
    let v1 = register(&models, t).await?;
    let v2 = register(&models, t).await?;
    let v3 = register(&models, t).await?;

    // v3 went to production first, then v1: rolling back v1 must restore v3 (there is no v0).
    models.promote_to_production(&v3, "ops", "hotfix").await?;
    models
        .promote_to_production(&v1, "ops", "retrained")
        .await?;
    let back = models.rollback_to_previous(t, "ops", "bad v1").await?;
    assert_eq!(back.promoted.version.id, v3);

    // Then v2 on top of v3; repeated rollbacks walk back past versions already rolled back.
    models.promote_to_production(&v2, "ops", "new data").await?;
    let back = models.rollback_to_previous(t, "ops", "bad v2").await?;
    assert_eq!(back.promoted.version.id, v3);
    let err = models
        .rollback_to_previous(t, "ops", "bad v3")
        .await
        .expect_err("v3 has nothing before it: v1 and v2 were rolled back");
    assert!(matches!(err, Error::NothingToRollBack { .. }), "{err:?}");
    assert_eq!(production_rows(db.store().pool(), t).await?, [v3]);
    Ok(())
}

#[tokio::test]
async fn rollback_with_nothing_to_roll_back_to_is_an_error_and_changes_nothing()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.store().pool();
    let models = db.store().models();
    let t = ModelType::NeuralNetwork;

    // Nothing in production at all.
    let err = models
        .rollback_to_previous(t, "ops", "panic button")
        .await
        .expect_err("nothing in production");
    assert!(matches!(err, Error::NothingToRollBack { model_type, .. } if model_type == t));
    assert!(
        err.to_string().contains("no version is in production"),
        "{err}"
    );

    let v1 = register(&models, t).await?;
    register(&models, t).await?;
    models.promote_to_production(&v1, "ops", "first").await?;
    let versions_before = models.list(Some(t)).await?;
    let history_before = models.history(Some(t)).await?;

    // One version has ever been in production: there is no earlier one.
    let err = models
        .rollback_to_previous(t, "ops", "panic button")
        .await
        .expect_err("no earlier production version");
    assert!(matches!(err, Error::NothingToRollBack { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no earlier production version"),
        "{err}"
    );

    assert_eq!(models.list(Some(t)).await?, versions_before);
    assert_eq!(models.history(Some(t)).await?, history_before);
    assert_eq!(production_rows(pool, t).await?, [v1]);
    Ok(())
}

#[tokio::test]
async fn promote_to_active_keeps_one_active_version_per_type() -> anyhow::Result<()> {
    use ModelEventKind::*;
    let db = TestDatabase::new().await?;
    let pool = db.store().pool();
    let models = db.store().models();
    let t = ModelType::Ensemble;
    assert_eq!(models.newest_registered_at(t).await?, None);
    let v1 = register(&models, t).await?;
    let v2 = register(&models, t).await?;
    let other = register(&models, ModelType::Xgboost).await?;
    let newest = models.get(&v2).await?.map(|r| r.created_at);
    assert_eq!(models.newest_registered_at(t).await?, newest);

    models.promote_to_active(&v1, "alice", "shadow run").await?;
    models
        .promote_to_active(&other, "alice", "shadow run")
        .await?;
    let second = models.promote_to_active(&v2, "bob", "fresher data").await?;
    assert_eq!(second.replaced.map(|r| r.version.id), Some(v1.clone()));

    assert_eq!(active_rows(pool, t).await?, [v2.as_str()]);
    assert_eq!(
        models.active(t).await?.map(|r| r.version.id),
        Some(v2.clone())
    );
    // The other type's active version is untouched.
    assert_eq!(active_rows(pool, ModelType::Xgboost).await?, [other]);

    // Promoting the active version again is a no-op, recorded nowhere.
    let again = models.promote_to_active(&v2, "bob", "again").await?;
    assert!(!again.changed);
    assert_eq!(again.replaced, None);

    // The active slot and the production slot are independent.
    models
        .promote_to_production(&v2, "carol", "shadow run passed")
        .await?;
    let v2_now = models.get(&v2).await?.expect("v2");
    assert!(v2_now.version.is_active && v2_now.version.is_production);
    assert!(production_rows(pool, t).await?.len() == 1);

    assert_eq!(
        history_summary(&models, t).await?,
        [
            event(1, Registered, "trainer", "nightly training"),
            event(2, Registered, "trainer", "nightly training"),
            event(1, PromotedActive, "alice", "shadow run"),
            event(1, Deactivated, "bob", "fresher data"),
            event(2, PromotedActive, "bob", "fresher data"),
            event(2, PromotedProduction, "carol", "shadow run passed"),
        ]
    );
    // The history of every type interleaves both, in the order it happened.
    let all: Vec<(ModelType, ModelEventKind)> = models
        .history(None)
        .await?
        .into_iter()
        .map(|e| (e.model_type, e.event))
        .collect();
    let x = ModelType::Xgboost;
    assert_eq!(
        all,
        [
            (t, Registered),
            (t, Registered),
            (x, Registered),
            (t, PromotedActive),
            (x, PromotedActive),
            (t, Deactivated),
            (t, PromotedActive),
            (t, PromotedProduction),
        ]
    );
    assert_eq!(models.list(None).await?.len(), 3);
    Ok(())
}

/// Promotes `a` and `b` at the same moment from two tasks on two connections, `rounds` times,
/// starting each round from `base` holding the slot, and checks after each round that exactly
/// one of the two holds it and that the history agrees on which.
async fn race_promotions(
    store: &Store,
    production: bool,
    base: &str,
    a: &str,
    b: &str,
    rounds: usize,
) -> anyhow::Result<()> {
    let t = store
        .models()
        .get(base)
        .await?
        .expect("base")
        .version
        .model_type;
    let (entered, left) = if production {
        (ModelEventKind::PromotedProduction, ModelEventKind::Demoted)
    } else {
        (ModelEventKind::PromotedActive, ModelEventKind::Deactivated)
    };
    let mut winners = [0usize; 2];
    for round in 0..rounds {
        let promote = |store: Store, id: String, barrier: Arc<Barrier>| async move {
            barrier.wait().await;
            let models = store.models();
            if production {
                models.promote_to_production(&id, "racer", "race").await
            } else {
                models.promote_to_active(&id, "racer", "race").await
            }
        };
        let reset = if production {
            store
                .models()
                .promote_to_production(base, "ops", "reset")
                .await?
        } else {
            store
                .models()
                .promote_to_active(base, "ops", "reset")
                .await?
        };
        assert!(
            reset.changed,
            "round {round}: the base must take the slot back"
        );

        let barrier = Arc::new(Barrier::new(2));
        let task_a = tokio::spawn(promote(store.clone(), a.to_owned(), barrier.clone()));
        let task_b = tokio::spawn(promote(store.clone(), b.to_owned(), barrier));
        let (ra, rb) = (task_a.await?, task_b.await?);
        // Sequential semantics: both promotions succeed, one after the other.
        let (ra, rb) = (ra?, rb?);
        assert!(ra.changed && rb.changed, "round {round}");

        let holders = if production {
            production_rows(store.pool(), t).await?
        } else {
            active_rows(store.pool(), t).await?
        };
        assert_eq!(holders.len(), 1, "round {round}: {holders:?}");
        let winner = &holders[0];
        assert!(winner == a || winner == b, "round {round}: {winner}");
        winners[usize::from(winner == b)] += 1;

        // The last four slot events: base left for the first, the first left for the winner.
        let history = store.models().history(Some(t)).await?;
        let tail: Vec<(String, ModelEventKind)> = history[history.len() - 4..]
            .iter()
            .map(|e| (e.model_version_id.clone(), e.event))
            .collect();
        let loser = if winner == a { b } else { a };
        assert_eq!(
            tail,
            [
                (base.to_owned(), left),
                (loser.to_owned(), entered),
                (loser.to_owned(), left),
                (winner.clone(), entered),
            ],
            "round {round}"
        );
        // Both promotions happened; the one that got the lock second replaced the first.
        let (first, last) = if winner == a { (&rb, &ra) } else { (&ra, &rb) };
        assert_eq!(
            first.replaced.as_ref().map(|r| r.version.id.as_str()),
            Some(base)
        );
        assert_eq!(
            last.replaced.as_ref().map(|r| r.version.id.as_str()),
            Some(loser)
        );
    }
    eprintln!(
        "winners over {rounds} rounds: a {}, b {}",
        winners[0], winners[1]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_production_promotions_never_leave_two_production_versions() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let models = db.store().models();
    let t = ModelType::RandomForest;
    let base = register(&models, t).await?;
    let a = register(&models, t).await?;
    let b = register(&models, t).await?;
    race_promotions(db.store(), true, &base, &a, &b, 20).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_active_promotions_never_leave_two_active_versions() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let models = db.store().models();
    let t = ModelType::NeuralNetwork;
    let base = register(&models, t).await?;
    let a = register(&models, t).await?;
    let b = register(&models, t).await?;
    race_promotions(db.store(), false, &base, &a, &b, 10).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_type_get_distinct_numbers() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = db.store().clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .models()
                    .register(&model_version(ModelType::Xgboost, 1), "trainer", "")
                    .await
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await??.version.version);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<i32>>());
    Ok(())
}

/// Overwrites a version's artifact behind the registry's back, as disk or a bad script might.
async fn corrupt(pool: &PgPool, id: &str) -> anyhow::Result<String> {
    sqlx::query("UPDATE model_versions SET artifact = 'tampered'::bytea WHERE id = $1::uuid")
        .bind(id)
        .execute(pool)
        .await?;
    let sha: String = sqlx::query_scalar("SELECT encode(sha256('tampered'::bytea), 'hex')")
        .fetch_one(pool)
        .await?;
    Ok(sha)
}

#[tokio::test]
async fn a_corrupted_artifact_is_refused_on_load_and_on_promotion() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.store().pool();
    let models = db.store().models();
    let t = ModelType::Xgboost;

    let mut new = model_version(t, 1);
    new.artifact = b"the real model".to_vec();
    let v1 = models.register(&new, "trainer", "").await?;
    assert_eq!(
        models.load_artifact(&v1.version.id).await?,
        b"the real model"
    );

    let tampered_sha = corrupt(pool, &v1.version.id).await?;
    let err = models
        .load_artifact(&v1.version.id)
        .await
        .expect_err("the bytes changed after registration");
    match &err {
        Error::CorruptArtifact {
            id,
            expected,
            actual,
        } => {
            assert_eq!(id, &v1.version.id);
            assert_eq!(expected, &v1.artifact_sha256);
            assert_eq!(actual, &tampered_sha);
        }
        other => panic!("expected CorruptArtifact, got {other:?}"),
    }
    assert!(err.to_string().contains("corrupt"), "{err}");

    // A corrupt version cannot be promoted, and the refusal writes nothing.
    let history_before = models.history(Some(t)).await?;
    let err = models
        .promote_to_production(&v1.version.id, "ops", "ship it")
        .await
        .expect_err("corrupt artifact");
    assert!(matches!(err, Error::CorruptArtifact { .. }), "{err:?}");
    assert!(production_rows(pool, t).await?.is_empty());
    assert_eq!(models.history(Some(t)).await?, history_before);

    // Nor restored by a rollback: production stays where it is.
    let v2 = register(&models, t).await?;
    let v3 = register(&models, t).await?;
    models.promote_to_production(&v2, "ops", "good").await?;
    models.promote_to_production(&v3, "ops", "better").await?;
    corrupt(pool, &v2).await?;
    let err = models
        .rollback_to_previous(t, "ops", "bad v3")
        .await
        .expect_err("v2 is corrupt");
    assert!(matches!(err, Error::CorruptArtifact { .. }), "{err:?}");
    assert_eq!(production_rows(pool, t).await?, [v3]);
    Ok(())
}

#[tokio::test]
async fn registry_refuses_bad_requests_with_a_clear_error() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let models = db.store().models();
    let t = ModelType::RandomForest;

    let mut flagged = model_version(t, 1);
    flagged.version.is_production = true;
    let err = models
        .register(&flagged, "trainer", "")
        .await
        .expect_err("slots are taken by promotion");
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");

    let v1 = register(&models, t).await?;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert!(matches!(
        models.promote_to_production(&unknown, "ops", "why").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        models
            .promote_to_production("not-a-uuid", "ops", "why")
            .await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        models.promote_to_production(&v1, "ops", " ").await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        models.promote_to_active(&v1, "", "why").await,
        Err(Error::Invalid(_))
    ));
    assert!(production_rows(db.store().pool(), t).await?.is_empty());
    assert_eq!(models.history(Some(t)).await?.len(), 1);
    Ok(())
}
