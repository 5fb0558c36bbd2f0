//! Labels from people and data sets against the real PostgreSQL: workflow signals stay
//! unlabelled, the trainer's cap keeps analyst labels first, verdicts are recorded once and
//! superseded with their history, and the retraining rule fires once per crossing.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{new_id, now, running_workflow};
use vigil_domain::{FeedbackType, Severity, ThreatSignal, TrueLabel, WorkflowStatus};
use vigil_store::{
    EVICTION_ORDER, ExampleSource, NewExample, NewFeedback, Recorded, RetrainRule, Store,
};
use vigil_testkit::TestDatabase;

fn signal(id: &str, port: u16) -> ThreatSignal {
    let mut signal = ThreatSignal::new("port_scan", 0.8, now());
    signal.id = id.to_owned();
    signal.destination_port = Some(port);
    signal
}

/// A completed workflow that vigil rated `level`, recorded with its signal as the
/// orchestrator records it; returns the workflow id.
async fn workflow(store: &Store, event_id: &str, level: &str) -> anyhow::Result<String> {
    let mut workflow = running_workflow(event_id);
    workflow.status = WorkflowStatus::Success;
    workflow.completed_at = Some(now());
    workflow.results = serde_json::json!({ "risk_score": 8.0, "risk_level": level });
    let signal = signal(event_id, 22);
    let mut batch = store.begin_batch().await?;
    batch.save_workflows(&[&workflow]).await?;
    assert_eq!(batch.record_signals(&[(event_id, &signal)]).await?, 1);
    batch.commit().await?;
    Ok(workflow.id)
}

fn verdict<'a>(workflow_id: &'a str, analyst: &'a str, label: TrueLabel) -> NewFeedback<'a> {
    NewFeedback {
        workflow_id,
        action_id: "",
        feedback_type: if label == TrueLabel::Attack {
            FeedbackType::Correct
        } else {
            FeedbackType::Incorrect
        },
        label,
        system_label: TrueLabel::Attack,
        attack_type: None,
        confidence: 0.9,
        correction: None,
        analyst,
    }
}

#[tokio::test]
async fn workflow_signals_are_kept_unlabelled_and_no_source_is_vigils_own() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let store = db.store();
    workflow(store, "evt-1", "critical").await?;
    let kept = store.workflow_signals().get("evt-1").await?.expect("kept");
    assert_eq!(kept.id, "evt-1");
    assert!(store.training().load(100).await?.is_empty(), "not a label");

    // The schema itself refuses a label made by vigil.
    let refused = sqlx::query(
        "INSERT INTO training_examples (id, features, label, source, source_ref) \
         VALUES ($1, '{}', true, 'assessment', 'evt-1')",
    )
    .bind(uuid::Uuid::new_v4())
    .execute(store.pool())
    .await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("training_examples_source_check")
    );
    Ok(())
}

#[tokio::test]
async fn the_cap_keeps_analyst_labels_and_drops_the_oldest_data_set_rows() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let training = db.store().training();
    let analysts: Vec<ThreatSignal> = (0..2).map(|i| signal(&format!("fb-{i}"), i)).collect();
    for s in &analysts {
        training
            .record(&NewExample {
                signal: s,
                label: true,
                source: ExampleSource::Feedback,
                source_ref: &s.id,
                weight: 1.0,
            })
            .await?;
    }
    // Data-set rows imported later, one batch after another: newer than the analysts' labels.
    for batch in 0..3u16 {
        let rows: Vec<ThreatSignal> = (0..2)
            .map(|i| signal(&format!("ds-{batch}-{i}"), 100 + batch * 2 + i))
            .collect();
        let examples: Vec<NewExample<'_>> = rows
            .iter()
            .map(|s| NewExample {
                signal: s,
                label: false,
                source: ExampleSource::Dataset,
                source_ref: &s.id,
                weight: 1.0,
            })
            .collect();
        training.record_batch(&examples).await?;
    }

    let kept: Vec<String> = training
        .load(4)
        .await?
        .into_iter()
        .map(|e| e.source_ref)
        .collect();
    assert_eq!(
        kept,
        ["ds-2-0", "ds-2-1", "fb-0", "fb-1"],
        "newest data set rows only"
    );
    assert_eq!(
        training.resolved_by_source().await?,
        vec![(ExampleSource::Dataset, 6), (ExampleSource::Feedback, 2)]
    );
    assert!(EVICTION_ORDER[0].starts_with("dataset"));
    // A cap smaller than the analysts' labels keeps analyst labels only.
    let kept = training.load(1).await?;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].source, ExampleSource::Feedback);
    Ok(())
}

#[tokio::test]
async fn a_verdict_is_stored_once_superseded_with_history_and_labels_the_signal()
-> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let store = db.store();
    let id = workflow(store, "evt-1", "high").await?;
    let feedback = store.feedback();

    let first = feedback
        .record(&verdict(&id, "alice", TrueLabel::Attack))
        .await?;
    assert_eq!(first.outcome, Recorded::Stored);
    assert!(first.example);
    let again = feedback
        .record(&verdict(&id, "alice", TrueLabel::Attack))
        .await?;
    assert_eq!(again.outcome, Recorded::Duplicate);
    assert_eq!(again.record.id, first.record.id);
    assert_eq!(feedback.count().await?, 1);

    let changed = feedback
        .record(&verdict(&id, "alice", TrueLabel::Benign))
        .await?;
    assert_eq!(
        changed.outcome,
        Recorded::Superseded {
            previous: first.record.id.clone()
        }
    );
    let history = feedback.list(Some(&id), 10).await?;
    assert_eq!(history.len(), 2);
    let old = history.iter().find(|r| r.id == first.record.id).unwrap();
    assert_eq!(
        old.superseded_by.as_deref(),
        Some(changed.record.id.as_str())
    );
    let examples = store.training().load(10).await?;
    assert_eq!(examples.len(), 1);
    assert_eq!(examples[0].source, ExampleSource::Feedback);
    assert!(!examples[0].label, "the newest verdict's label");

    // Unknown workflows and bad ids are refused before anything is written.
    assert!(matches!(
        feedback
            .record(&verdict(&new_id(), "alice", TrueLabel::Attack))
            .await,
        Err(vigil_store::Error::NotFound { .. })
    ));
    assert!(
        feedback
            .record(&verdict("not-a-uuid", "alice", TrueLabel::Attack))
            .await
            .is_err()
    );
    assert_eq!(feedback.count().await?, 2);
    Ok(())
}

#[tokio::test]
async fn the_retraining_rule_fires_once_per_crossing_and_waits_for_delivery() -> anyhow::Result<()>
{
    let db = TestDatabase::new().await?;
    let store = db.store();
    let id = workflow(store, "evt-1", "critical").await?;
    let feedback = store.feedback();
    let rule = RetrainRule {
        after_labels: 2,
        accuracy_floor: 0.0,
        accuracy_window: 0,
    };

    feedback
        .record(&verdict(&id, "a1", TrueLabel::Attack))
        .await?;
    assert_eq!(feedback.check_retrain(&rule).await?, None, "one label");
    feedback
        .record(&verdict(&id, "a2", TrueLabel::Attack))
        .await?;
    // Replicas checking at once: one request between them.
    let (a, b) = tokio::join!(feedback.check_retrain(&rule), feedback.check_retrain(&rule));
    let made: Vec<_> = [a?, b?].into_iter().flatten().collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].labels, 2);
    assert_eq!(made[0].trigger, "labels");

    // Undelivered, it blocks new requests, and one sender at a time holds it.
    feedback
        .record(&verdict(&id, "a3", TrueLabel::Attack))
        .await?;
    feedback
        .record(&verdict(&id, "a4", TrueLabel::Attack))
        .await?;
    assert_eq!(feedback.check_retrain(&rule).await?, None);
    let lease = Duration::from_secs(3600);
    let claimed = feedback
        .claim_retrain(None, lease)
        .await?
        .expect("claimable");
    assert_eq!(claimed.attempts, 1);
    assert_eq!(feedback.claim_retrain(None, lease).await?, None, "leased");
    feedback
        .retrain_failed(&claimed.id, "no trainer listens")
        .await?;
    feedback.retrain_delivered(&claimed.id).await?;
    // Verdicts accepted before it reached a trainer are in its run.
    assert_eq!(feedback.check_retrain(&rule).await?, None);

    // The accuracy rule: vigil said attack, the analysts say benign.
    let accuracy = RetrainRule {
        after_labels: 0,
        accuracy_floor: 0.5,
        accuracy_window: 2,
    };
    feedback
        .record(&verdict(&id, "b1", TrueLabel::Benign))
        .await?;
    assert_eq!(
        feedback.check_retrain(&accuracy).await?,
        None,
        "window not full"
    );
    feedback
        .record(&verdict(&id, "b2", TrueLabel::Benign))
        .await?;
    let fired = feedback
        .check_retrain(&accuracy)
        .await?
        .expect("accuracy 0 < 0.5");
    assert_eq!(fired.trigger, "accuracy");
    assert_eq!(fired.accuracy, Some(0.0));
    assert!(fired.reason.contains("0 of the last 2"), "{}", fired.reason);
    Ok(())
}

#[tokio::test]
async fn review_candidates_are_the_newest_unjudged_successful_workflows() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let store = db.store();
    let start = now();
    let mut ids = Vec::new();
    for (i, event_id) in ["evt-old", "evt-judged", "evt-action", "evt-new"]
        .into_iter()
        .enumerate()
    {
        let mut w = running_workflow(event_id);
        w.status = WorkflowStatus::Success;
        w.started_at = start + chrono::Duration::seconds(i as i64);
        w.completed_at = Some(w.started_at);
        w.results = serde_json::json!({ "risk_score": 8.0, "risk_level": "high" });
        let mut batch = store.begin_batch().await?;
        batch.save_workflows(&[&w]).await?;
        if event_id != "evt-old" {
            batch
                .record_signals(&[(event_id, &signal(event_id, 22))])
                .await?;
        }
        batch.commit().await?;
        ids.push(w.id);
    }
    let mut failed = running_workflow("evt-failed");
    failed.status = WorkflowStatus::Failed;
    failed.error_message = Some("predictor exploded".into());
    failed.started_at = start + chrono::Duration::seconds(10);
    store.workflows().insert_if_absent(&failed).await?;

    let feedback = store.feedback();
    feedback
        .record(&verdict(&ids[1], "alice", TrueLabel::Attack))
        .await?;
    // A verdict on one action of a workflow judges it too.
    feedback
        .record(&NewFeedback {
            action_id: "alert-1",
            ..verdict(&ids[2], "bob", TrueLabel::Benign)
        })
        .await?;

    let candidates = feedback.review_candidates(10).await?;
    let events: Vec<&str> = candidates.iter().map(|c| c.event_id.as_str()).collect();
    assert_eq!(
        events,
        ["evt-new", "evt-old"],
        "newest first, judged and failed left out"
    );
    assert_eq!(candidates[0].id, ids[3]);
    assert_eq!(candidates[0].results["risk_level"], "high");
    assert_eq!(
        candidates[0].signal.as_ref().map(|s| s.id.as_str()),
        Some("evt-new")
    );
    assert!(
        candidates[1].signal.is_none(),
        "recorded without its signal"
    );
    let window: Vec<String> = feedback
        .review_candidates(1)
        .await?
        .into_iter()
        .map(|c| c.event_id)
        .collect();
    assert_eq!(window, ["evt-new"], "the window bounds the candidates");
    Ok(())
}

#[tokio::test]
async fn judged_outcomes_take_each_workflows_newest_current_verdict() -> anyhow::Result<()> {
    let db = TestDatabase::new().await?;
    let store = db.store();
    let high = workflow(store, "evt-high", "high").await?;
    let medium = workflow(store, "evt-medium", "medium").await?;
    workflow(store, "evt-unjudged", "critical").await?;
    let feedback = store.feedback();
    feedback
        .record(&verdict(&high, "alice", TrueLabel::Attack))
        .await?;
    // Bob's later verdict is the newest current one on the workflow.
    feedback
        .record(&verdict(&high, "bob", TrueLabel::Benign))
        .await?;
    feedback
        .record(&verdict(&medium, "alice", TrueLabel::Benign))
        .await?;
    // Alice changes her mind: her first verdict on it is superseded.
    feedback
        .record(&verdict(&medium, "alice", TrueLabel::Attack))
        .await?;

    let mut judged = feedback.judged_outcomes().await?;
    judged.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
    let mut expected = vec![
        (
            high.clone(),
            Severity::High,
            TrueLabel::Benign,
            TrueLabel::Attack,
        ),
        (
            medium.clone(),
            Severity::Medium,
            TrueLabel::Attack,
            TrueLabel::Benign,
        ),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<_> = judged
        .iter()
        .map(|j| {
            (
                j.workflow_id.clone(),
                j.risk_level,
                j.label,
                j.system_label(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(judged.iter().all(|j| j.risk_score == 8.0));
    assert!(
        judged
            .iter()
            .all(|j| j.threat_type.as_deref() == Some("port_scan"))
    );
    Ok(())
}
