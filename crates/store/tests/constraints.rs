//! The schema's unique keys and CHECK constraints hold, whichever code path writes the rows.

mod common;

use common::{active, model_version, new_id, now, production, running_workflow};
use sqlx::PgPool;
use uuid::Uuid;
use vigil_domain::ModelType;
use vigil_store::{Error, InsertOutcome};
use vigil_testkit::TestDatabase;

fn expect_already_exists<T: std::fmt::Debug>(result: Result<T, Error>, constraint: &str) {
    match result {
        Err(Error::AlreadyExists { constraint: c, .. }) => assert_eq!(c, constraint),
        other => panic!("expected AlreadyExists on {constraint}, got {other:?}"),
    }
}

fn expect_check_violation<T: std::fmt::Debug>(result: Result<T, Error>, constraint: &str) {
    match result {
        Err(Error::CheckViolation { constraint: c, .. }) => assert_eq!(c, constraint),
        other => panic!("expected CheckViolation on {constraint}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_second_production_model_per_type_is_refused() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let models = db.store().models();
    models
        .insert(&production(model_version(ModelType::Xgboost, 1)), "test")
        .await?;

    let second = models
        .insert(&production(model_version(ModelType::Xgboost, 2)), "test")
        .await;
    expect_already_exists(second, "model_versions_one_production_per_type");

    // Other types keep their own production slot.
    models
        .insert(
            &production(model_version(ModelType::RandomForest, 1)),
            "test",
        )
        .await?;

    // A promotion written directly, without demoting first, is refused too.
    let v2 = models
        .insert(&model_version(ModelType::Xgboost, 2), "test")
        .await?;
    let promote = sqlx::query("UPDATE model_versions SET is_production = true WHERE id = $1")
        .bind(Uuid::parse_str(&v2.version.id)?)
        .execute(db.store().pool())
        .await
        .map_err(Error::from);
    expect_already_exists(promote, "model_versions_one_production_per_type");

    let current = models.production(ModelType::Xgboost).await?.expect("v1");
    assert_eq!(current.version.version, 1);
    Ok(())
}

#[tokio::test]
async fn a_second_active_model_per_type_is_refused() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let models = db.store().models();
    models
        .insert(&active(model_version(ModelType::NeuralNetwork, 1)), "test")
        .await?;
    let second = models
        .insert(&active(model_version(ModelType::NeuralNetwork, 2)), "test")
        .await;
    expect_already_exists(second, "model_versions_one_active_per_type");

    // Active and production are separate slots: another version may hold production.
    models
        .insert(
            &production(model_version(ModelType::NeuralNetwork, 3)),
            "test",
        )
        .await?;
    assert_eq!(models.list(Some(ModelType::NeuralNetwork)).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_model_version_number_is_taken_once_per_type() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let models = db.store().models();
    models
        .insert(&model_version(ModelType::Ensemble, 1), "test")
        .await?;
    let again = models
        .insert(&model_version(ModelType::Ensemble, 1), "test")
        .await;
    expect_already_exists(again, "model_versions_type_version_key");
    // The refused insert left no history behind (one transaction).
    assert_eq!(models.history(Some(ModelType::Ensemble)).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_model_artifact_must_arrive_with_its_own_checksum() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let insert = |checksum: &'static str| {
        sqlx::query(
            "INSERT INTO model_versions (id, model_type, version, trained_at, training_samples, \
                                         artifact, artifact_sha256) \
             VALUES ($1, 'xgboost', 1, now(), 1, 'abc', $2)",
        )
        .bind(Uuid::new_v4())
        .bind(checksum)
        .execute(db.store().pool())
    };
    // SHA-256 of "abcd", not of the "abc" that is stored.
    let wrong = insert("88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589").await;
    expect_check_violation(
        wrong.map_err(Error::from),
        "model_versions_artifact_sha256_matches",
    );
    insert("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").await?;
    Ok(())
}

#[tokio::test]
async fn a_second_workflow_for_an_event_is_refused() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let workflows = db.store().workflows();
    let first = running_workflow("evt-1");
    assert_eq!(
        workflows.insert_if_absent(&first).await?,
        InsertOutcome::Inserted
    );

    // A redelivery creates a new workflow value with a new id; it must not be stored.
    let mut redelivered = running_workflow("evt-1");
    redelivered.workflow_type = "something_else".into();
    assert_eq!(
        workflows.insert_if_absent(&redelivered).await?,
        InsertOutcome::AlreadyPresent
    );
    let stored = workflows.get_by_event_id("evt-1").await?.expect("stored");
    assert_eq!(stored.id, first.id);
    assert_eq!(stored.workflow_type, "threat_response");
    assert_eq!(workflows.count().await?, 1);

    // A plain INSERT that bypasses the repository hits the unique key.
    let raw = sqlx::query(
        "INSERT INTO workflows (id, event_id, workflow_type, status, started_at) \
         VALUES ($1, 'evt-1', 'threat_response', 'RUNNING', now())",
    )
    .bind(Uuid::new_v4())
    .execute(db.store().pool())
    .await
    .map_err(Error::from);
    expect_already_exists(raw, "workflows_event_id_key");
    assert!(
        raw_error_is_already_exists(db.store().pool()).await,
        "Error::is_already_exists"
    );
    Ok(())
}

async fn raw_error_is_already_exists(pool: &PgPool) -> bool {
    let err = sqlx::query(
        "INSERT INTO workflows (id, event_id, workflow_type, status, started_at) \
         VALUES ($1, 'evt-1', 't', 'RUNNING', now())",
    )
    .bind(Uuid::new_v4())
    .execute(pool)
    .await
    .map_err(Error::from)
    .expect_err("duplicate");
    err.is_already_exists()
}

async fn open_incident(pool: &PgPool, threat_key: &str) -> Result<Uuid, Error> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO incidents (id, threat_key, title, severity, status) \
         VALUES ($1, $2, 'port scan from 10.0.0.5', 'high', 'open')",
    )
    .bind(id)
    .bind(threat_key)
    .execute(pool)
    .await?;
    Ok(id)
}

#[tokio::test]
async fn one_unresolved_incident_per_threat_key() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.store().pool();
    let first = open_incident(pool, "port_scan:10.0.0.5").await?;

    expect_already_exists(
        open_incident(pool, "port_scan:10.0.0.5").await,
        "incidents_one_unresolved_per_threat_key",
    );
    // Another threat gets its own incident.
    open_incident(pool, "brute_force:10.0.0.9").await?;

    // Acknowledged is still unresolved: a second one is still refused.
    sqlx::query("UPDATE incidents SET status = 'acknowledged' WHERE id = $1")
        .bind(first)
        .execute(pool)
        .await?;
    expect_already_exists(
        open_incident(pool, "port_scan:10.0.0.5").await,
        "incidents_one_unresolved_per_threat_key",
    );

    // Once resolved, a recurrence opens a new incident.
    sqlx::query("UPDATE incidents SET status = 'resolved', resolved_at = now() WHERE id = $1")
        .bind(first)
        .execute(pool)
        .await?;
    let second = open_incident(pool, "port_scan:10.0.0.5").await?;
    assert_ne!(first, second);

    // Resolving without saying when is refused.
    let bad = sqlx::query("UPDATE incidents SET status = 'resolved' WHERE id = $1")
        .bind(second)
        .execute(pool)
        .await
        .map_err(Error::from);
    expect_check_violation(bad, "incidents_resolved_at_iff_resolved");
    Ok(())
}

#[tokio::test]
async fn an_incident_timeline_entry_is_recorded_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.store().pool();
    let incident = open_incident(pool, "port_scan:10.0.0.5").await?;
    let add = |ref_id: &'static str| {
        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, kind, ref_id) VALUES ($1, 'event', $2)",
        )
        .bind(incident)
        .bind(ref_id)
        .execute(pool)
    };
    add("evt-1").await?;
    add("evt-2").await?;
    expect_already_exists(
        add("evt-1").await.map_err(Error::from),
        "incident_timeline_entry_key",
    );
    Ok(())
}

async fn insert_feedback(pool: &PgPool, workflow_id: &str, confidence: f64) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO feedback (id, workflow_id, feedback_type, confidence, analyst) \
         VALUES ($1, $2, 'incorrect', $3, 'alice')",
    )
    .bind(Uuid::new_v4())
    .bind(Uuid::parse_str(workflow_id).expect("uuid"))
    .bind(confidence)
    .execute(pool)
    .await?;
    Ok(())
}

#[tokio::test]
async fn feedback_confidence_outside_zero_to_one_is_refused() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.store().pool();
    let workflow = running_workflow("evt-fb");
    db.store().workflows().insert_if_absent(&workflow).await?;

    for ok in [0.0, 0.5, 1.0] {
        insert_feedback(pool, &workflow.id, ok).await?;
    }
    for bad in [1.5, -0.1, f64::NAN, f64::INFINITY] {
        match insert_feedback(pool, &workflow.id, bad).await {
            Err(Error::CheckViolation { constraint, .. }) => {
                assert_eq!(constraint, "feedback_confidence_check", "confidence {bad}")
            }
            other => panic!("confidence {bad} should be refused, got {other:?}"),
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM feedback")
        .fetch_one(pool)
        .await?;
    assert_eq!(stored, 3);

    // Feedback on a workflow that does not exist is refused as a missing reference.
    match insert_feedback(pool, &new_id(), 0.5).await {
        Err(Error::MissingReference { constraint, .. }) => {
            assert_eq!(constraint, "feedback_workflow_id_fkey")
        }
        other => panic!("expected MissingReference, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn enum_columns_refuse_unknown_names() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.store().pool();
    let workflow = sqlx::query(
        "INSERT INTO workflows (id, event_id, workflow_type, status, started_at) \
         VALUES ($1, 'evt-x', 't', 'DONE', now())",
    )
    .bind(Uuid::new_v4())
    .execute(pool)
    .await
    .map_err(Error::from);
    expect_check_violation(workflow, "workflows_status_check");

    let feedback_type = sqlx::query(
        "INSERT INTO training_examples (id, features, label, source, source_ref) \
         VALUES ($1, '{}', true, 'guess', 'x')",
    )
    .bind(Uuid::new_v4())
    .execute(pool)
    .await
    .map_err(Error::from);
    expect_check_violation(feedback_type, "training_examples_source_check");
    Ok(())
}

#[tokio::test]
async fn alerts_remediations_and_examples_are_idempotent_by_source() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let pool = db.store().pool();

    let alert = |channel: &'static str| {
        sqlx::query(
            "INSERT INTO alerts (id, event_id, threat_key, channel, severity, status) \
             VALUES ($1, 'evt-1', 'port_scan:10.0.0.5', $2, 'high', 'pending')",
        )
        .bind(Uuid::new_v4())
        .bind(channel)
        .execute(pool)
    };
    alert("slack").await?;
    alert("email").await?;
    expect_already_exists(
        alert("slack").await.map_err(Error::from),
        "alerts_event_channel_key",
    );

    let remediation = |target: &'static str| {
        sqlx::query(
            "INSERT INTO remediations (id, event_id, action_kind, target, executor, status) \
             VALUES ($1, 'evt-1', 'block_address', $2, 'dry-run', 'simulated')",
        )
        .bind(Uuid::new_v4())
        .bind(target)
        .execute(pool)
    };
    remediation("10.0.0.5").await?;
    remediation("10.0.0.6").await?;
    expect_already_exists(
        remediation("10.0.0.5").await.map_err(Error::from),
        "remediations_event_kind_target_key",
    );

    let example = |source: &'static str| {
        sqlx::query(
            "INSERT INTO training_examples (id, features, label, source, source_ref, created_at) \
             VALUES ($1, '{\"duration\": 0}', true, $2, 'evt-1', $3)",
        )
        .bind(Uuid::new_v4())
        .bind(source)
        .bind(now())
        .execute(pool)
    };
    example("dataset").await?;
    example("feedback").await?;
    expect_already_exists(
        example("dataset").await.map_err(Error::from),
        "training_examples_source_ref_key",
    );
    Ok(())
}
