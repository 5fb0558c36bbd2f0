//! The workflow batch: many workflows' records in one transaction, all or nothing.

mod common;

use common::{new_id, now, running_workflow};
use vigil_domain::{
    ActionKind, ActionStatus, RemediationAction, Severity, ThreatSignal, WorkflowStatus,
};
use vigil_store::{ExampleSource, IncidentEvent, NewExample, Store};
use vigil_testkit::TestDatabase;

fn action(event_id: &str, target: &str) -> RemediationAction {
    RemediationAction {
        id: new_id(),
        event_id: event_id.to_owned(),
        kind: ActionKind::BlockAddress,
        target: target.to_owned(),
        executor: "dry-run".into(),
        status: ActionStatus::Simulated,
        details: serde_json::json!({ "command": "nft add element ..." }),
        undo: serde_json::json!({ "command": "nft delete element ..." }),
        expires_at: Some(now()),
        created_at: now(),
    }
}

fn succeeded(event_id: &str) -> vigil_domain::WorkflowExecution {
    let mut workflow = running_workflow(event_id);
    workflow.status = WorkflowStatus::Success;
    workflow.completed_at = Some(now());
    workflow
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .expect("count query")
}

#[tokio::test]
async fn a_batch_records_every_workflow_at_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let store = db.store();
    let signal = ThreatSignal::new("port_scan", 0.9, now());
    let events = ["evt-1", "evt-2", "evt-3"];

    let mut batch = store.begin_batch().await?;
    let examples: Vec<NewExample<'_>> = events
        .iter()
        .map(|id| NewExample {
            signal: &signal,
            label: true,
            source: ExampleSource::Dataset,
            source_ref: id,
            weight: 1.0,
        })
        .collect();
    assert_eq!(batch.record_examples(&examples).await?, 3);
    let actions = [
        action("evt-1", "198.51.100.7"),
        action("evt-2", "198.51.100.7"),
    ];
    assert_eq!(batch.record_actions(&actions).await?, 2);
    // Two events of one threat share an incident; the third opens its own.
    let incident = |key: &'static str, severity, event_id: &'static str, actions| IncidentEvent {
        threat_key: key,
        title: "port scan",
        severity,
        event_id,
        action_ids: actions,
        window: None,
    };
    let blocked = [actions[0].id.clone()];
    let attached = batch
        .open_or_attach_incidents(&[
            incident("port_scan:198.51.100.7", Severity::High, "evt-1", &blocked),
            incident("port_scan:198.51.100.7", Severity::Critical, "evt-2", &[]),
            incident("port_scan:198.51.100.9", Severity::High, "evt-3", &[]),
        ])
        .await?;
    let (first, second, other) = (&attached[0], &attached[1], &attached[2]);
    assert!(first.created && !second.created && other.created);
    assert_eq!(first.incident_id, second.incident_id);
    assert_ne!(first.incident_id, other.incident_id);
    assert!(attached.iter().all(|a| !a.already_attached));
    let workflows: Vec<_> = events.iter().map(|id| succeeded(id)).collect();
    batch
        .save_workflows(&workflows.iter().collect::<Vec<_>>())
        .await?;

    // Nothing is visible before the commit.
    assert_eq!(count(store, "SELECT count(*) FROM workflows").await, 0);
    batch.commit().await?;

    assert_eq!(count(store, "SELECT count(*) FROM workflows").await, 3);
    assert_eq!(
        count(store, "SELECT count(*) FROM training_examples").await,
        3
    );
    assert_eq!(count(store, "SELECT count(*) FROM remediations").await, 2);
    assert_eq!(count(store, "SELECT count(*) FROM incidents").await, 2);
    // Three events and one action on the timelines.
    assert_eq!(
        count(store, "SELECT count(*) FROM incident_timeline").await,
        4
    );
    let incident = store.incidents().get(&first.incident_id).await?;
    assert_eq!(
        incident.severity,
        Severity::Critical,
        "raised by the second event"
    );
    for workflow in &workflows {
        let stored = store
            .workflows()
            .get_by_event_id(&workflow.event_id)
            .await?;
        assert_eq!(stored.as_ref(), Some(workflow));
    }
    Ok(())
}

#[tokio::test]
async fn a_batch_dropped_before_commit_writes_nothing() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let store = db.store();
    let mut batch = store.begin_batch().await?;
    batch
        .record_actions(&[action("evt-1", "198.51.100.7")])
        .await?;
    batch
        .open_or_attach_incidents(&[IncidentEvent {
            threat_key: "port_scan:198.51.100.7",
            title: "port scan",
            severity: Severity::High,
            event_id: "evt-1",
            action_ids: &[],
            window: None,
        }])
        .await?;
    batch.save_workflows(&[&succeeded("evt-1")]).await?;
    drop(batch);

    for table in [
        "workflows",
        "remediations",
        "incidents",
        "incident_timeline",
    ] {
        let n = count(store, &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(n, 0, "{table} after a rollback");
    }
    Ok(())
}

#[tokio::test]
async fn saving_again_completes_an_earlier_attempt_and_skips_recorded_effects() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let store = db.store();
    let mut failed = running_workflow("evt-1");
    failed.status = WorkflowStatus::Failed;
    failed.completed_at = Some(now());
    failed.error_message = Some("predictor exploded".into());
    store.workflows().insert_if_absent(&failed).await?;
    let recorded = action("evt-1", "198.51.100.7");
    store.remediations().insert_if_absent(&recorded).await?;

    let mut retry = succeeded("evt-1");
    retry.id = new_id();
    let mut batch = store.begin_batch().await?;
    // The same (event, action, target) under a new id is the action already taken.
    assert_eq!(
        batch
            .record_actions(&[action("evt-1", "198.51.100.7")])
            .await?,
        0
    );
    batch.save_workflows(&[&retry]).await?;
    batch.commit().await?;

    let stored = store
        .workflows()
        .get_by_event_id("evt-1")
        .await?
        .expect("recorded");
    assert_eq!(stored.status, WorkflowStatus::Success);
    assert_eq!(stored.error_message, None);
    assert_eq!(stored.id, failed.id, "the first attempt's id is kept");
    assert_eq!(stored.started_at, failed.started_at);
    let actions = store.remediations().for_event("evt-1").await?;
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].id, recorded.id);

    let found = store
        .workflows()
        .get_by_event_ids(&["evt-1", "evt-unknown"])
        .await?;
    assert_eq!(found.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_later_batch_attaches_to_the_open_incident_once() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let store = db.store();
    let event = |event_id, severity| IncidentEvent {
        threat_key: "brute_force:203.0.113.5",
        title: "brute force",
        severity,
        event_id,
        action_ids: &[],
        window: None,
    };
    let opened = store
        .incidents()
        .open_or_attach(
            "brute_force:203.0.113.5",
            "brute force",
            Severity::Medium,
            "evt-1",
        )
        .await?;
    assert!(opened.created);

    let mut batch = store.begin_batch().await?;
    let attached = batch
        .open_or_attach_incidents(&[
            event("evt-1", Severity::Medium),
            event("evt-2", Severity::High),
        ])
        .await?;
    batch.commit().await?;
    assert!(
        attached
            .iter()
            .all(|a| a.incident_id == opened.incident_id && !a.created)
    );
    assert!(
        attached[0].already_attached,
        "a redelivered event is not added twice"
    );
    assert!(!attached[1].already_attached);
    let incident = store.incidents().get(&opened.incident_id).await?;
    assert_eq!(incident.severity, Severity::High);
    assert_eq!(incident.title, "brute force");
    assert_eq!(count(store, "SELECT count(*) FROM incidents").await, 1);
    assert_eq!(
        count(store, "SELECT count(*) FROM incident_timeline").await,
        2
    );
    Ok(())
}

#[tokio::test]
async fn an_incident_quiet_for_longer_than_the_window_is_resolved_and_a_new_one_opens()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let store = db.store();
    let key = "ddos:198.51.100.77";
    let event = |event_id, window: u64| IncidentEvent {
        threat_key: key,
        title: "ddos",
        severity: Severity::High,
        event_id,
        action_ids: &[],
        window: Some(std::time::Duration::from_secs(window)),
    };
    let mut batch = store.begin_batch().await?;
    let first = batch
        .open_or_attach_incidents(&[event("evt-1", 3_600)])
        .await?;
    batch.commit().await?;
    // Two hours without an event.
    sqlx::query("UPDATE incidents SET updated_at = now() - interval '2 hours'")
        .execute(store.pool())
        .await?;

    // Within a wider window the event still joins it.
    let mut batch = store.begin_batch().await?;
    let joined = batch
        .open_or_attach_incidents(&[event("evt-2", 3 * 3_600)])
        .await?;
    batch.commit().await?;
    assert_eq!(joined[0].incident_id, first[0].incident_id);
    assert!(!joined[0].created);

    sqlx::query("UPDATE incidents SET updated_at = now() - interval '2 hours'")
        .execute(store.pool())
        .await?;
    // Past a one-hour window it is resolved, with the reason, and the event opens a new one.
    let mut batch = store.begin_batch().await?;
    let reopened = batch
        .open_or_attach_incidents(&[event("evt-3", 3_600)])
        .await?;
    batch.commit().await?;
    assert!(reopened[0].created);
    assert_ne!(reopened[0].incident_id, first[0].incident_id);
    let old = store.incidents().get(&first[0].incident_id).await?;
    assert_eq!(old.status, vigil_domain::IncidentStatus::Resolved);
    let reason: String = sqlx::query_scalar(
        "SELECT details->>'reason' FROM incident_timeline \
         WHERE incident_id = $1::uuid AND kind = 'status' AND ref_id = 'resolved'",
    )
    .bind(&first[0].incident_id)
    .fetch_one(store.pool())
    .await?;
    assert_eq!(reason, "no event within the incident window");
    Ok(())
}

#[tokio::test]
async fn in_one_batch_a_stale_incident_is_replaced_while_a_fresh_one_is_joined()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let store = db.store();
    let event = |threat_key, event_id, window: Option<u64>| IncidentEvent {
        threat_key,
        title: "scan",
        severity: Severity::High,
        event_id,
        action_ids: &[],
        window: window.map(std::time::Duration::from_secs),
    };
    let (stale_key, fresh_key) = ("scan:192.0.2.1", "scan:192.0.2.2");
    let mut batch = store.begin_batch().await?;
    let first = batch
        .open_or_attach_incidents(&[
            event(stale_key, "evt-1", Some(3_600)),
            event(fresh_key, "evt-2", Some(3_600)),
        ])
        .await?;
    batch.commit().await?;
    sqlx::query(
        "UPDATE incidents SET updated_at = now() - interval '2 hours' WHERE threat_key = $1",
    )
    .bind(stale_key)
    .execute(store.pool())
    .await?;

    // One window for the whole batch (the usual case), and two events of the stale key.
    let mut batch = store.begin_batch().await?;
    let second = batch
        .open_or_attach_incidents(&[
            event(stale_key, "evt-3", Some(3_600)),
            event(fresh_key, "evt-4", Some(3_600)),
            event(stale_key, "evt-5", Some(3_600)),
        ])
        .await?;
    batch.commit().await?;
    assert!(
        second[0].created,
        "the stale incident's key opens a new one"
    );
    assert_ne!(second[0].incident_id, first[0].incident_id);
    assert_eq!(second[2].incident_id, second[0].incident_id);
    assert!(!second[2].created);
    assert_eq!(
        second[1].incident_id, first[1].incident_id,
        "the fresh one is joined"
    );
    assert!(!second[1].created);
    let old = store.incidents().get(&first[0].incident_id).await?;
    assert_eq!(old.status, vigil_domain::IncidentStatus::Resolved);

    // Windows that disagree within a batch (one event never resolves): each key by its own.
    sqlx::query("UPDATE incidents SET updated_at = now() - interval '2 hours'")
        .execute(store.pool())
        .await?;
    let mut batch = store.begin_batch().await?;
    let third = batch
        .open_or_attach_incidents(&[
            event(stale_key, "evt-6", Some(3_600)),
            event(fresh_key, "evt-7", None),
        ])
        .await?;
    batch.commit().await?;
    assert!(third[0].created, "past its one-hour window");
    assert_ne!(third[0].incident_id, second[0].incident_id);
    assert_eq!(
        third[1].incident_id, first[1].incident_id,
        "no window: never resolved"
    );
    assert_eq!(
        count(
            store,
            "SELECT count(*) FROM incidents WHERE status <> 'resolved'"
        )
        .await,
        2
    );
    Ok(())
}
