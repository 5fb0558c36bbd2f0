//! The feedback service against the real NATS and PostgreSQL: workflows made by the real broker
//! and orchestrator, verdicts submitted as an analyst's tools do, and what a user then sees:
//! the reply, the stored history, the labelled training example, FEEDBACK_RECEIVED, and the
//! trainer being asked for a run.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use vigil_bus::StreamKind;
use vigil_domain::{EventType, FeedbackSubmission, FeedbackType, SecurityEvent, TrueLabel};
use vigil_feedback::{SubmitOutcome, SubmitReply};
use vigil_proto::v1;
use vigil_store::ExampleSource;
use vigil_testkit::{Sandbox, Service, eventually, next_message, stream_subjects};
use vigil_trainer::RunRequest;

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(180);

/// Rated critical by the rules (a known-bad source, confident, critical): vigil says attack,
/// and blocks the source (dry run).
const LOUD: &str = "fb-loud";
/// Rated low: vigil says benign.
const QUIET: &str = "fb-quiet";

fn signal(id: &str, source_ip: &str, confidence: f64, severity: v1::Severity) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id: id.into(),
        threat_type: "port_scan".into(),
        source_ip: source_ip.into(),
        destination_ip: "192.0.2.10".into(),
        destination_port: 22,
        protocol: "tcp".into(),
        confidence,
        severity: severity as i32,
        sensor: "feedback-test".into(),
        timestamp: Some(chrono::Utc::now().into()),
        ..Default::default()
    }
}

/// A sandbox with two completed workflows (LOUD, QUIET) made by the real broker and
/// orchestrator, which are stopped again; `extra` configures the feedback service.
async fn with_workflows(extra: &[&str]) -> Sandbox {
    let mut overrides = vec![
        "soar.assessment.known_bad=[\"203.0.113.0/24\"]".to_string(),
        "soar.remediation.max_actions_per_minute=100000".to_string(),
        // The trigger stays quiet unless a test turns it on.
        "feedback.retrain_after_labels=0".to_string(),
        "feedback.accuracy_floor=0".to_string(),
    ];
    overrides.extend(extra.iter().map(|o| (*o).to_owned()));
    let sandbox = Sandbox::with(&overrides).await;
    let broker = sandbox.spawn("broker", vigil_broker::run_in);
    let orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    let subject = sandbox.bus().topology().ingest_subject("test").unwrap();
    for s in [
        signal(LOUD, "203.0.113.7", 0.95, v1::Severity::Critical),
        signal(QUIET, "198.51.100.20", 0.1, v1::Severity::Low),
    ] {
        sandbox
            .bus()
            .jetstream()
            .publish(subject.clone(), s.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually(PATIENCE, "both workflows completed", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        if done == 2 { Ok(()) } else { Err(done) }
    })
    .await;
    broker.stop().await;
    orchestrator.stop().await;
    sandbox
}

async fn feedback_service(sandbox: &Sandbox) -> Service {
    let mut service = sandbox.spawn("feedback", vigil_feedback::run_in);
    service.ready(PATIENCE).await;
    service
}

fn verdict(
    workflow: &str,
    feedback_type: FeedbackType,
    label: Option<TrueLabel>,
) -> FeedbackSubmission {
    FeedbackSubmission {
        workflow: workflow.into(),
        action_id: String::new(),
        feedback_type,
        label,
        attack_type: None,
        confidence: 0.9,
        correction: None,
        analyst: "alice".into(),
    }
}

async fn submit(sandbox: &Sandbox, submission: &FeedbackSubmission) -> SubmitReply {
    vigil_feedback::submit(sandbox.nats(), sandbox.prefix(), submission, PATIENCE)
        .await
        .unwrap()
}

/// Sends raw bytes as a submission, as any NATS client could, and reads the JSON reply.
async fn submit_raw(sandbox: &Sandbox, body: Vec<u8>, content_type: Option<&str>) -> SubmitReply {
    let subject = vigil_feedback::submit_subject(sandbox.prefix()).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    if let Some(content_type) = content_type {
        headers.insert("Content-Type", content_type);
    }
    let reply = sandbox
        .nats()
        .send_request(
            subject,
            async_nats::Request::new()
                .payload(Bytes::from(body))
                .headers(headers)
                .timeout(Some(PATIENCE)),
        )
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

async fn workflow_id(sandbox: &Sandbox, event_id: &str) -> String {
    sandbox
        .store()
        .workflows()
        .get_by_event_id(event_id)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// FEEDBACK_RECEIVED events stored in the events stream.
async fn feedback_events(sandbox: &Sandbox) -> usize {
    stream_subjects(sandbox.bus(), StreamKind::Events)
        .await
        .iter()
        .filter(|s| s.ends_with(".feedback_received"))
        .count()
}

fn decode_event(message: &async_nats::Message) -> SecurityEvent {
    SecurityEvent::try_from(v1::SecurityEvent::decode(message.payload.as_ref()).unwrap()).unwrap()
}

#[tokio::test]
async fn a_verdict_labels_the_workflows_signal_and_is_announced() {
    let sandbox = with_workflows(&[]).await;
    let mut events = sandbox
        .subscribe(&sandbox.subject("vigil.events.feedback_received"))
        .await;
    let feedback = feedback_service(&sandbox).await;
    let training = sandbox.store().training();
    assert!(
        training.load(100).await.unwrap().is_empty(),
        "processing traffic labels nothing"
    );

    // vigil called LOUD an attack; the analyst says it was benign.
    let reply = submit(
        &sandbox,
        &verdict(LOUD, FeedbackType::Incorrect, Some(TrueLabel::Benign)),
    )
    .await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.outcome, Some(SubmitOutcome::Stored));
    assert_eq!(reply.system_label, Some(TrueLabel::Attack));
    assert_eq!(reply.label, Some(TrueLabel::Benign));
    assert!(reply.training_example && reply.event_published);
    assert_eq!(
        reply.workflow_id.as_deref(),
        Some(workflow_id(&sandbox, LOUD).await.as_str())
    );

    let examples = training.load(100).await.unwrap();
    assert_eq!(examples.len(), 1, "{examples:?}");
    assert_eq!(examples[0].source, ExampleSource::Feedback);
    assert_eq!(examples[0].source_ref, LOUD);
    assert_eq!(examples[0].signal.id, LOUD);
    assert!(!examples[0].label, "the analyst's label, not vigil's");

    let event = decode_event(&next_message(&mut events, PATIENCE, "feedback_received").await);
    assert_eq!(event.event_type, EventType::FeedbackReceived);
    assert_eq!(event.correlation_id, LOUD);
    assert_eq!(
        event.data["feedback_id"],
        reply.feedback_id.clone().unwrap()
    );
    assert_eq!(event.data["label"], "benign");
    assert_eq!(event.data["system_label"], "attack");
    assert_eq!(event.data["feedback_type"], "incorrect");

    // Proto3 JSON works as well; `correct` confirms vigil's own verdict (benign for QUIET),
    // and the workflow can be named by its id.
    let quiet_id = workflow_id(&sandbox, QUIET).await;
    let json = serde_json::json!({
        "workflowExecutionId": quiet_id,
        "feedbackType": "FEEDBACK_TYPE_CORRECT",
        "confidence": 0.7,
        "analyst": "bob",
        "correction": "just a scanner we run",
    });
    let reply = submit_raw(
        &sandbox,
        serde_json::to_vec(&json).unwrap(),
        Some("application/json"),
    )
    .await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.label, Some(TrueLabel::Benign));
    let event = decode_event(&next_message(&mut events, PATIENCE, "second event").await);
    assert_eq!(event.data["analyst"], "bob");

    let history = sandbox.store().feedback().list(None, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    let bobs = history.iter().find(|r| r.analyst == "bob").unwrap();
    assert_eq!(bobs.workflow_execution_id, quiet_id);
    assert_eq!(bobs.confidence, 0.7);
    assert_eq!(bobs.correction.as_deref(), Some("just a scanner we run"));
    let labels: Vec<(String, bool)> = training
        .load(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.source_ref, e.label))
        .collect();
    assert_eq!(
        labels,
        vec![(LOUD.to_string(), false), (QUIET.to_string(), false)]
    );
    feedback.stop().await;
}

#[tokio::test]
async fn every_refusal_says_what_is_wrong_and_stores_nothing() {
    let sandbox = with_workflows(&[]).await;
    let feedback = feedback_service(&sandbox).await;

    // Each refusal: the reply, and words its one message must hold.
    let mut cases: Vec<(Vec<&str>, SubmitReply)> = Vec::new();
    let unknown = verdict("no-such-workflow", FeedbackType::Correct, None);
    cases.push((
        vec!["unknown workflow \"no-such-workflow\""],
        submit(&sandbox, &unknown).await,
    ));
    let action = FeedbackSubmission {
        action_id: "not-an-action".into(),
        ..verdict(LOUD, FeedbackType::Correct, None)
    };
    cases.push((
        vec!["unknown action \"not-an-action\"", "its actions are"],
        submit(&sandbox, &action).await,
    ));
    // The client library validates too; raw bytes reach the service as any sender's would.
    let wire = |edit: fn(&mut v1::FeedbackRecord)| {
        let mut w = v1::FeedbackRecord::from(verdict(
            LOUD,
            FeedbackType::Incorrect,
            Some(TrueLabel::Benign),
        ));
        edit(&mut w);
        w.encode_to_vec()
    };
    for (expected, body) in [
        (
            vec!["confidence", "NaN"],
            wire(|w| w.confidence = Some(f64::NAN)),
        ),
        (
            vec!["confidence", "1.5"],
            wire(|w| w.confidence = Some(1.5)),
        ),
        (vec!["unknown verdict 7"], wire(|w| w.feedback_type = 7)),
        (
            vec!["a verdict of incorrect needs the true label"],
            wire(|w| w.label = 0),
        ),
        (
            vec!["a verdict of partial needs the true label"],
            wire(|w| {
                w.feedback_type = v1::FeedbackType::Partial as i32;
                w.label = 0;
            }),
        ),
        (
            vec![
                "contradicts the workflow's own verdict attack",
                "submit incorrect",
            ],
            wire(|w| w.feedback_type = v1::FeedbackType::Correct as i32),
        ),
        (
            vec!["not a vigil.v1.FeedbackRecord in protobuf"],
            vec![0xff, 0xff, 0x01],
        ),
    ] {
        cases.push((expected, submit_raw(&sandbox, body, None).await));
    }
    cases.push((
        vec!["not a vigil.v1.FeedbackRecord in JSON"],
        submit_raw(
            &sandbox,
            br#"{"workflowExecutionId":"fb-loud","feedbackType":"FEEDBACK_TYPE_MAYBE"}"#.to_vec(),
            Some("application/json"),
        )
        .await,
    ));
    cases.push((
        vec!["unsupported content type \"text/plain\""],
        submit_raw(&sandbox, b"correct".to_vec(), Some("text/plain")).await,
    ));

    for (expected, reply) in &cases {
        assert!(!reply.ok, "{expected:?}: {reply:?}");
        let error = reply.error.as_deref().unwrap_or_default();
        for words in expected {
            assert!(error.contains(words), "expected {words:?} in {error:?}");
        }
        assert!(reply.feedback_id.is_none());
    }
    assert_eq!(sandbox.count("SELECT count(*) FROM feedback").await, 0);
    assert_eq!(
        sandbox
            .count("SELECT count(*) FROM training_examples")
            .await,
        0
    );
    assert_eq!(
        feedback.counter("vigil_feedback_submissions_refused"),
        cases.len() as u64
    );
    assert_eq!(feedback_events(&sandbox).await, 0);

    // And the service goes on: a good verdict right after is stored, on one of the actions.
    let actions = sandbox.store().feedback().action_ids(LOUD).await.unwrap();
    assert!(!actions.is_empty(), "LOUD was remediated (dry run)");
    let on_action = FeedbackSubmission {
        action_id: actions[0].clone(),
        ..verdict(LOUD, FeedbackType::Correct, None)
    };
    let reply = submit(&sandbox, &on_action).await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.label, Some(TrueLabel::Attack));
    feedback.stop().await;
}

#[tokio::test]
async fn a_repeated_verdict_is_stored_once_and_a_different_one_supersedes_it() {
    let sandbox = with_workflows(&[]).await;
    let feedback = feedback_service(&sandbox).await;
    let first = verdict(QUIET, FeedbackType::Correct, None);

    let stored = submit(&sandbox, &first).await;
    let again = submit(&sandbox, &first).await;
    assert_eq!(stored.outcome, Some(SubmitOutcome::Stored), "{stored:?}");
    assert_eq!(again.outcome, Some(SubmitOutcome::Duplicate), "{again:?}");
    assert_eq!(again.feedback_id, stored.feedback_id);
    assert_eq!(sandbox.count("SELECT count(*) FROM feedback").await, 1);
    eventually(PATIENCE, "one FEEDBACK_RECEIVED", || async {
        let n = feedback_events(&sandbox).await;
        if n == 1 { Ok(()) } else { Err(n) }
    })
    .await;

    // The analyst changes their mind: QUIET was an attack after all.
    let changed = FeedbackSubmission {
        attack_type: Some("portsweep".into()),
        ..verdict(QUIET, FeedbackType::Incorrect, Some(TrueLabel::Attack))
    };
    let superseding = submit(&sandbox, &changed).await;
    assert_eq!(
        superseding.outcome,
        Some(SubmitOutcome::Superseded),
        "{superseding:?}"
    );
    assert_eq!(superseding.superseded_id, stored.feedback_id);
    // Sending the new verdict again changes nothing either.
    assert_eq!(
        submit(&sandbox, &changed).await.outcome,
        Some(SubmitOutcome::Duplicate)
    );
    // Another analyst's verdict is their own, not a replacement.
    let bobs = FeedbackSubmission {
        analyst: "bob".into(),
        ..first.clone()
    };
    assert_eq!(
        submit(&sandbox, &bobs).await.outcome,
        Some(SubmitOutcome::Stored)
    );

    let quiet_id = workflow_id(&sandbox, QUIET).await;
    let history = sandbox
        .store()
        .feedback()
        .list(Some(&quiet_id), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    let old = history
        .iter()
        .find(|r| Some(&r.id) == stored.feedback_id.as_ref())
        .unwrap();
    assert_eq!(
        old.superseded_by, superseding.feedback_id,
        "the old verdict is kept, marked"
    );
    let new = history
        .iter()
        .find(|r| Some(&r.id) == superseding.feedback_id.as_ref())
        .unwrap();
    assert_eq!(new.superseded_by, None);
    assert_eq!(new.label, Some(TrueLabel::Attack));
    assert_eq!(new.attack_type.as_deref(), Some("portsweep"));

    // The example follows the latest verdict on the workflow (bob's: benign).
    let examples = sandbox.store().training().load(10).await.unwrap();
    assert_eq!(examples.len(), 1);
    assert!(!examples[0].label);
    eventually(PATIENCE, "three FEEDBACK_RECEIVED", || async {
        let n = feedback_events(&sandbox).await;
        if n == 3 { Ok(()) } else { Err(n) }
    })
    .await;
    feedback.stop().await;
}

/// The next run request a (fake) trainer subscribed with `requests` receives.
async fn next_run_request(requests: &mut async_nats::Subscriber) -> RunRequest {
    let message = next_message(requests, PATIENCE, "a run request on the trainer subject").await;
    // No reply: a real trainer answers only when its run is over.
    serde_json::from_slice(&message.payload).unwrap()
}

#[tokio::test]
async fn the_trigger_asks_the_trainer_once_per_crossing_across_replicas_and_restarts() {
    let sandbox =
        with_workflows(&["feedback.retrain_after_labels=3", "feedback.retry_secs=1"]).await;
    // Two replicas share the submissions.
    let first = feedback_service(&sandbox).await;
    let second = feedback_service(&sandbox).await;
    let trainer_subject = vigil_trainer::run_subject(sandbox.prefix());
    let mut trainer = sandbox.subscribe(&trainer_subject).await;
    let requests = || async {
        sandbox
            .store()
            .feedback()
            .retrain_requests(10)
            .await
            .unwrap()
    };

    let by = |analyst: &str| FeedbackSubmission {
        analyst: analyst.into(),
        ..verdict(LOUD, FeedbackType::Correct, None)
    };
    for analyst in ["a1", "a2", "a3"] {
        assert!(submit(&sandbox, &by(analyst)).await.ok);
    }
    let request = next_run_request(&mut trainer).await;
    assert!(request.requested_by.starts_with("feedback"), "{request:?}");
    assert!(
        request
            .reason
            .contains("3 labelled verdicts since the last run"),
        "{}",
        request.reason
    );
    let made = requests().await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].labels, 3, "it fired at the count, not before");
    eventually(PATIENCE, "the request noted as delivered", || async {
        requests().await[0].delivered_at.is_some()
    })
    .await;

    // Two more verdicts do not cross again.
    for analyst in ["a4", "a5"] {
        assert!(submit(&sandbox, &by(analyst)).await.ok);
    }
    // The trainer goes away; the third verdict crosses: the request waits, undelivered.
    trainer.unsubscribe().await.unwrap();
    sandbox.nats().flush().await.unwrap();
    assert!(submit(&sandbox, &by("a6")).await.ok);
    let waiting = eventually(PATIENCE, "a second, undelivered request", || async {
        match requests().await.as_slice() {
            [newest, _] if newest.last_error.is_some() => Ok(newest.clone()),
            other => Err(other.len()),
        }
    })
    .await;
    assert_eq!(waiting.labels, 3);
    assert!(
        waiting
            .last_error
            .as_deref()
            .unwrap()
            .contains("no trainer listens"),
        "{waiting:?}"
    );
    // Verdicts made while it waits make no new requests: the waiting one will cover them.
    for analyst in ["a7", "a8", "a9", "a10"] {
        assert!(submit(&sandbox, &by(analyst)).await.ok);
    }

    // Every replica restarts and a trainer comes back: the waiting request reaches it.
    first.stop().await;
    second.stop().await;
    let mut trainer = sandbox.subscribe(&trainer_subject).await;
    let restarted = feedback_service(&sandbox).await;
    let request = next_run_request(&mut trainer).await;
    assert!(
        request.reason.contains("3 labelled verdicts"),
        "{}",
        request.reason
    );
    eventually(PATIENCE, "the waiting request delivered", || async {
        requests().await.iter().all(|r| r.delivered_at.is_some())
    })
    .await;
    let made = requests().await;
    assert_eq!(made.len(), 2, "no storm: {made:?}");
    restarted.stop().await;
}
