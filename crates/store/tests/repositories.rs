//! Repositories store domain values and give them back unchanged.

mod common;

use common::{model_version, new_id, now, production, running_workflow};
use vigil_domain::{ModelType, StepOutcome, WorkflowStatus, WorkflowStep};
use vigil_store::{Error, InsertOutcome, ModelEventKind};
use vigil_testkit::TestDatabase;

#[tokio::test]
async fn a_workflow_round_trips_and_is_completed_in_place() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let workflows = db.store().workflows();
    assert_eq!(workflows.count().await?, 0);
    assert_eq!(workflows.get_by_event_id("evt-7").await?, None);

    let mut workflow = running_workflow("evt-7");
    assert!(workflows.insert_if_absent(&workflow).await?.is_new());
    assert_eq!(
        workflows.get_by_event_id("evt-7").await?.as_ref(),
        Some(&workflow)
    );
    assert_eq!(workflows.get(&workflow.id).await?.as_ref(), Some(&workflow));

    workflow.status = WorkflowStatus::Success;
    workflow.completed_at = Some(now());
    workflow.duration_seconds = 0.042;
    workflow.steps.push(WorkflowStep {
        name: "predict".into(),
        outcome: StepOutcome::Skipped,
        detail: Some("predictor unavailable".into()),
        duration_ms: 0.0,
    });
    workflows.update(&workflow).await?;
    assert_eq!(
        workflows.get_by_event_id("evt-7").await?.as_ref(),
        Some(&workflow)
    );
    assert_eq!(workflows.count().await?, 1);
    Ok(())
}

#[tokio::test]
async fn workflow_writes_refuse_what_the_domain_refuses() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let workflows = db.store().workflows();

    let mut not_uuid = running_workflow("evt-1");
    not_uuid.id = "wf-1".into();
    assert!(matches!(
        workflows.insert_if_absent(&not_uuid).await,
        Err(Error::Invalid(_))
    ));

    let mut failed_without_reason = running_workflow("evt-2");
    failed_without_reason.status = WorkflowStatus::Failed;
    assert!(matches!(
        workflows.insert_if_absent(&failed_without_reason).await,
        Err(Error::Invalid(_))
    ));

    let missing = running_workflow("evt-never-seen");
    match workflows.update(&missing).await {
        Err(Error::NotFound { key, .. }) => assert_eq!(key, "evt-never-seen"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(workflows.count().await?, 0);
    Ok(())
}

#[tokio::test]
async fn concurrent_deliveries_of_one_event_create_one_workflow() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = db.store().clone();
            tokio::spawn(async move {
                store
                    .workflows()
                    .insert_if_absent(&running_workflow("evt-race"))
                    .await
            })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        if task.await?? == InsertOutcome::Inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1);
    assert_eq!(db.store().workflows().count().await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_model_version_round_trips_with_its_artifact_and_history() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let models = db.store().models();
    assert_eq!(models.next_version(ModelType::RandomForest).await?, 1);
    assert_eq!(models.production(ModelType::RandomForest).await?, None);

    let mut new = production(model_version(ModelType::RandomForest, 1));
    new.artifact = b"abc".to_vec();
    let record = models.insert(&new, "trainer").await?;
    assert_eq!(
        record.artifact_sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(record.artifact_bytes, 3);

    let stored = models.get(&new.version.id).await?.expect("stored");
    assert_eq!(stored, record);
    assert_eq!(stored.version, new.version);
    assert_eq!(stored.feature_spec, new.feature_spec);
    assert_eq!(
        models.get_version(ModelType::RandomForest, 1).await?,
        Some(record.clone())
    );
    assert_eq!(
        models.production(ModelType::RandomForest).await?,
        Some(record)
    );
    assert_eq!(models.load_artifact(&new.version.id).await?, b"abc");
    assert!(matches!(
        models.load_artifact(&new_id()).await,
        Err(Error::NotFound { .. })
    ));

    models
        .insert(&model_version(ModelType::RandomForest, 2), "trainer")
        .await?;
    assert_eq!(models.next_version(ModelType::RandomForest).await?, 3);
    let versions: Vec<i32> = models
        .list(Some(ModelType::RandomForest))
        .await?
        .iter()
        .map(|r| r.version.version)
        .collect();
    assert_eq!(versions, [2, 1]);
    assert!(models.list(Some(ModelType::Xgboost)).await?.is_empty());

    // Inserting v1 as production is recorded as such, so the history explains the flag.
    let events = models.history(Some(ModelType::RandomForest)).await?;
    let summary: Vec<(i32, ModelEventKind)> = events.iter().map(|e| (e.version, e.event)).collect();
    assert_eq!(
        summary,
        [
            (1, ModelEventKind::Registered),
            (1, ModelEventKind::PromotedProduction),
            (2, ModelEventKind::Registered),
        ]
    );
    assert!(events.iter().all(|e| e.actor == "trainer"));
    assert_eq!(events[0].model_version_id, new.version.id);
    Ok(())
}

#[tokio::test]
async fn model_inserts_refuse_bad_input_before_the_database() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let models = db.store().models();
    let zero = model_version(ModelType::Xgboost, 0);
    assert!(matches!(
        models.insert(&zero, "trainer").await,
        Err(Error::Invalid(_))
    ));
    let ok = model_version(ModelType::Xgboost, 1);
    assert!(matches!(
        models.insert(&ok, " ").await,
        Err(Error::Invalid(_))
    ));
    let mut huge = model_version(ModelType::Xgboost, 1);
    huge.version.training_samples = u64::MAX;
    assert!(matches!(
        models.insert(&huge, "trainer").await,
        Err(Error::Invalid(_))
    ));
    assert!(models.list(Some(ModelType::Xgboost)).await?.is_empty());
    Ok(())
}
