//! Effects happen once, whatever stops a workflow on the way: counted where they land, at a
//! firewall API and a pager on loopback that apply each idempotency key once.
//!
//! - slower than the consumer's `ack_wait`: the workflow keeps its message in progress;
//! - killed while an alert or a firewall call is in flight: the next attempt sends the alert
//!   (same id, same bytes) or calls again with the same key;
//! - the commit fails after the effects: the next attempt finds their outcomes and does not
//!   act again;
//! - two replicas share the remediation cap;
//! - a workflow abandoned for good (its message dead-lettered): the sweeper finishes what it
//!   left pending.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use vigil_proto::v1;
use vigil_testkit::{EffectCall, EffectReceiver, Hold, Sandbox, Service, eventually};

const PATIENCE: Duration = Duration::from_secs(180);

/// How long the firewall API takes to answer: twice the consumer's `ack_wait` below.
const SLOW_ANSWER: Duration = Duration::from_secs(6);

/// A firewall API that answers every call after [`SLOW_ANSWER`], counting the calls.
async fn slow_firewall() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/v1/actions",
            post(|State(calls): State<Arc<AtomicUsize>>| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(SLOW_ANSWER).await;
                StatusCode::ACCEPTED
            }),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1/actions"), calls)
}

#[tokio::test]
async fn a_remediation_slower_than_ack_wait_is_called_once() {
    let (url, calls) = slow_firewall().await;
    let sandbox = Sandbox::with(&[
        "streams.ack_wait_secs=3".to_string(),
        "soar.remediation.executor=\"webhook\"".to_string(),
        format!("soar.remediation.webhook.url=\"{url}\""),
        "soar.remediation.webhook.timeout_ms=30000".to_string(),
        "soar.assessment.known_bad=[\"203.0.113.0/24\"]".to_string(),
    ])
    .await;
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    let mut orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    broker.ready(PATIENCE).await;
    orchestrator.ready(PATIENCE).await;

    let signal = v1::ThreatSignal {
        id: "slow-effect-1".into(),
        threat_type: "port_scan".into(),
        source_ip: "203.0.113.50".into(),
        destination_ip: "192.0.2.10".into(),
        destination_port: 22,
        protocol: "tcp".into(),
        confidence: 0.95,
        severity: v1::Severity::Critical as i32,
        sensor: "effects".into(),
        timestamp: Some(chrono::Utc::now().into()),
        ..Default::default()
    };
    sandbox.publish_signal("effects", &signal).await;

    // Done means: the workflow committed and the work queue is empty, so no delivery of the
    // signal is pending that could still call the API.
    eventually(PATIENCE, "the workflow committed and acked", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        let queued = sandbox.stream_messages(vigil_bus::StreamKind::Work).await;
        if done == 1 && queued == 0 {
            Ok(())
        } else {
            Err(format!("{done} workflows, {queued} queued"))
        }
    })
    .await;
    let applied: String =
        sqlx::query_scalar("SELECT status FROM remediations WHERE event_id = 'slow-effect-1'")
            .fetch_one(sandbox.store().pool())
            .await
            .unwrap();
    assert_eq!(applied, "applied");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one firewall call for one effect (a redelivery during the slow call would make two)"
    );

    orchestrator.stop().await;
    broker.stop().await;
}

/// A sandbox whose remediation executor is a webhook to `firewall` and whose critical alerts
/// go to a webhook at `pager`; `ack_wait` is short so that a killed attempt's signal comes
/// back soon.
async fn effects_sandbox(
    firewall: &EffectReceiver,
    pager: &EffectReceiver,
    extra: &[&str],
) -> Sandbox {
    let mut overrides = vec![
        "streams.ack_wait_secs=2".to_string(),
        "soar.remediation.executor=\"webhook\"".to_string(),
        format!(
            "soar.remediation.webhook.url=\"{}\"",
            firewall.url("/v1/actions")
        ),
        // A held call is ended by the kill, never by the client giving up.
        "soar.remediation.webhook.timeout_ms=60000".to_string(),
        format!("soar.channels.webhook.url=\"{}\"", pager.url("/hook")),
        "soar.channels.webhook.secret=\"0123456789abcdef0123\"".to_string(),
        "soar.delivery.request_timeout_ms=60000".to_string(),
        "soar.routing.rules.critical=[\"webhook\"]".to_string(),
        "soar.assessment.known_bad=[\"203.0.113.0/24\"]".to_string(),
    ];
    overrides.extend(extra.iter().map(|o| (*o).to_owned()));
    Sandbox::with(&overrides).await
}

fn critical(id: &str, source_ip: &str) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id: id.into(),
        threat_type: "port_scan".into(),
        source_ip: source_ip.into(),
        destination_ip: "192.0.2.10".into(),
        destination_port: 22,
        protocol: "tcp".into(),
        confidence: 0.95,
        severity: v1::Severity::Critical as i32,
        sensor: "effects".into(),
        timestamp: Some(chrono::Utc::now().into()),
        ..Default::default()
    }
}

/// Every workflow committed and nothing left on the work queue that could run another attempt.
async fn settled(sandbox: &Sandbox, workflows: i64) {
    eventually(PATIENCE, "every workflow committed and acked", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        let queued = sandbox.stream_messages(vigil_bus::StreamKind::Work).await;
        if done == workflows && queued == 0 {
            Ok(())
        } else {
            Err(format!("{done} workflows, {queued} queued"))
        }
    })
    .await;
}

/// The broker and an orchestrator, both ready.
async fn event_path(sandbox: &Sandbox) -> (Service, Service) {
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    let mut orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    broker.ready(PATIENCE).await;
    orchestrator.ready(PATIENCE).await;
    (broker, orchestrator)
}

/// The status of the one row of `table` (alerts, remediations) for `event_id`.
async fn status(sandbox: &Sandbox, table: &str, event_id: &str) -> String {
    sqlx::query_scalar(&format!("SELECT status FROM {table} WHERE event_id = $1"))
        .bind(event_id)
        .fetch_one(sandbox.store().pool())
        .await
        .unwrap()
}

/// The event and target of a remediation call (its body names both).
fn action_identity(call: &EffectCall) -> String {
    format!("{}/{}", call.body["event_id"], call.body["target"])
}

#[tokio::test]
async fn an_alert_a_killed_attempt_left_unsent_is_sent_by_the_next_with_the_same_id() {
    let firewall = EffectReceiver::remediation_api().await;
    let pager = EffectReceiver::alert_webhook().await;
    // The first alert call never arrives at the pager's end: the process dies while sending.
    pager.hold_next(&[Hold::BeforeApplying]);
    let sandbox = effects_sandbox(&firewall, &pager, &[]).await;
    let (broker, orchestrator) = event_path(&sandbox).await;

    sandbox
        .publish_signal("effects", &critical("pending-alert-1", "203.0.113.61"))
        .await;
    pager.wait_held(1, PATIENCE).await;
    orchestrator.kill().await;
    let orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    settled(&sandbox, 1).await;

    let calls = pager.calls();
    assert_eq!(calls.len(), 2, "the lost call and its resend: {calls:?}");
    assert!(!calls[0].key.is_empty());
    assert_eq!(
        calls[1].key, calls[0].key,
        "the resend keeps the alert's id"
    );
    assert_eq!(calls[1].body, calls[0].body, "and its bytes");
    assert_eq!(pager.applied_keys().len(), 1, "the alert arrived once");
    assert_eq!(
        status(&sandbox, "alerts", "pending-alert-1").await,
        "delivered"
    );
    assert_eq!(firewall.calls().len(), 1, "the remediation ran once");

    orchestrator.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_remediation_a_killed_attempt_was_waiting_on_is_called_again_with_the_same_key() {
    let firewall = EffectReceiver::remediation_api().await;
    let pager = EffectReceiver::alert_webhook().await;
    // The firewall applies the first call, but its answer never reaches the process.
    firewall.hold_next(&[Hold::AfterApplying]);
    let sandbox = effects_sandbox(&firewall, &pager, &[]).await;
    let (broker, orchestrator) = event_path(&sandbox).await;

    sandbox
        .publish_signal("effects", &critical("pending-block-1", "203.0.113.62"))
        .await;
    firewall.wait_held(1, PATIENCE).await;
    assert_eq!(
        status(&sandbox, "remediations", "pending-block-1").await,
        "pending",
        "the intent is recorded before the call"
    );
    orchestrator.kill().await;
    let orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    settled(&sandbox, 1).await;

    let calls = firewall.calls();
    assert_eq!(
        calls.len(),
        2,
        "the unanswered call and its repeat: {calls:?}"
    );
    assert_eq!(
        calls[1].key, calls[0].key,
        "the repeat carries the same key"
    );
    assert_eq!(firewall.applied_keys().len(), 1);
    assert_eq!(firewall.duplicates(action_identity), 0);
    assert_eq!(
        status(&sandbox, "remediations", "pending-block-1").await,
        "applied"
    );
    assert_eq!(
        pager.calls().len(),
        1,
        "the delivered alert is not sent again"
    );

    orchestrator.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn effects_done_before_a_failed_commit_are_not_done_again() {
    let firewall = EffectReceiver::remediation_api().await;
    let pager = EffectReceiver::alert_webhook().await;
    let sandbox = effects_sandbox(&firewall, &pager, &[]).await;
    // The first two attempts to write the workflow fail (a sequence is not rolled back with
    // the transaction it is used in), after every effect of the workflow happened.
    sqlx::raw_sql(
        "CREATE SEQUENCE failed_commits; \
         CREATE FUNCTION fail_two_commits() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF nextval('failed_commits') <= 2 THEN \
             RAISE EXCEPTION 'injected: the commit fails'; \
           END IF; \
           RETURN NEW; \
         END $$; \
         CREATE TRIGGER fail_two_commits BEFORE INSERT ON workflows \
           FOR EACH ROW EXECUTE FUNCTION fail_two_commits();",
    )
    .execute(sandbox.store().pool())
    .await
    .unwrap();
    let (broker, orchestrator) = event_path(&sandbox).await;

    sandbox
        .publish_signal("effects", &critical("failed-commit-1", "203.0.113.63"))
        .await;
    settled(&sandbox, 1).await;

    let failures: i64 = sqlx::query_scalar("SELECT last_value FROM failed_commits")
        .fetch_one(sandbox.store().pool())
        .await
        .unwrap();
    assert!(
        failures >= 3,
        "the workflow was committed only after failing: {failures}"
    );
    assert_eq!(
        firewall.calls().len(),
        1,
        "one firewall call for every attempt"
    );
    assert_eq!(pager.calls().len(), 1, "one alert for every attempt");

    orchestrator.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn the_remediation_cap_holds_across_two_orchestrators() {
    let firewall = EffectReceiver::remediation_api().await;
    let pager = EffectReceiver::alert_webhook().await;
    // Every firewall call is applied and never answered, so each replica can be waiting on
    // at most two (its workflows in flight): three calls waiting means both replicas acted.
    firewall.hold_all(Hold::AfterApplying);
    let sandbox = effects_sandbox(
        &firewall,
        &pager,
        &[
            "soar.remediation.max_actions_per_minute=3",
            "orchestrator.max_workflows=2",
        ],
    )
    .await;
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    let mut first = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    let mut second = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    broker.ready(PATIENCE).await;
    first.ready(PATIENCE).await;
    second.ready(PATIENCE).await;

    for i in 0..12 {
        let source = format!("203.0.113.{}", 100 + i);
        sandbox
            .publish_signal("effects", &critical(&format!("capped-{i}"), &source))
            .await;
    }
    // Each signal either waits at the firewall or was refused by the cap and is done.
    eventually(PATIENCE, "every signal called out or refused", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        let waiting = i64::try_from(firewall.held()).unwrap();
        if done + waiting == 12 {
            Ok(())
        } else {
            Err(format!("{done} done, {waiting} waiting"))
        }
    })
    .await;
    assert_eq!(
        firewall.held(),
        3,
        "the cap of 3 holds across both replicas"
    );
    let refused = sandbox
        .count("SELECT count(*) FROM remediations WHERE status = 'refused' AND details->>'refused' LIKE '%shared by every replica%'")
        .await;
    assert_eq!(refused, 9);

    // Both die waiting; one comes back and finishes the three with the keys recorded.
    first.kill().await;
    second.kill().await;
    firewall.stop_holding();
    let orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    settled(&sandbox, 12).await;
    assert_eq!(firewall.applied_keys().len(), 3);
    assert_eq!(firewall.duplicates(action_identity), 0);
    assert_eq!(
        sandbox
            .count("SELECT count(*) FROM remediations WHERE status = 'applied'")
            .await,
        3
    );

    orchestrator.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn the_sweeper_finishes_effects_an_abandoned_workflow_left_pending() {
    let firewall = EffectReceiver::remediation_api().await;
    let pager = EffectReceiver::alert_webhook().await;
    // Short budgets, so the time after which no attempt can still be running is seconds.
    let sandbox = effects_sandbox(
        &firewall,
        &pager,
        &[
            "streams.max_deliver=1",
            "soar.delivery.request_timeout_ms=1000",
            "soar.delivery.retry.max_attempts=1",
            "soar.remediation.webhook.timeout_ms=1000",
            "soar.remediation.webhook.retry.max_attempts=1",
        ],
    )
    .await;
    // What a workflow whose message was then dead-lettered left an hour ago: an alert recorded
    // but never sent, and a remediation recorded as intended whose answer never came.
    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let alert = vigil_domain::Alert {
        id: uuid::Uuid::now_v7().to_string(),
        event_id: "abandoned-1".into(),
        threat_key: "port_scan:203.0.113.64".into(),
        channel: "webhook".into(),
        severity: vigil_domain::Severity::Critical,
        title: "abandoned".into(),
        body: "left pending".into(),
        status: vigil_domain::AlertStatus::Pending,
        attempts: 0,
        last_error: None,
        created_at: an_hour_ago,
        delivered_at: None,
    };
    let payload =
        serde_json::json!({ "type": "vigil.alert", "id": alert.id, "event_id": "abandoned-1" });
    sandbox
        .store()
        .alerts()
        .insert_if_absent(&alert, &payload)
        .await
        .unwrap();
    // The action as the orchestrator records it: prepared by the remediator of this config.
    let remediator =
        vigil_soar::Remediator::from_settings(sandbox.config().soar.remediation.clone()).unwrap();
    let planned = vigil_soar::PlannedAction {
        kind: vigil_domain::ActionKind::BlockAddress,
        target: "203.0.113.64".into(),
        reason: "test".into(),
    };
    let vigil_soar::Prepared::Ready(action) =
        remediator.prepare("abandoned-1", &planned, 9.5, an_hour_ago)
    else {
        panic!("a public address is a target");
    };
    let intent = sandbox
        .store()
        .remediations()
        .record_intent(&action, 10)
        .await
        .unwrap();
    assert_eq!(intent, vigil_store::Intent::Recorded);

    let mut orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    orchestrator.ready(PATIENCE).await;
    eventually(PATIENCE, "both effects finished", || async {
        let pending = sandbox
            .count(
                "SELECT (SELECT count(*) FROM alerts WHERE status = 'pending') \
                      + (SELECT count(*) FROM remediations WHERE status = 'pending')",
            )
            .await;
        if pending == 0 { Ok(()) } else { Err(pending) }
    })
    .await;

    assert_eq!(pager.applied_keys(), BTreeSet::from([alert.id.clone()]));
    assert_eq!(pager.calls()[0].body, payload, "the bytes recorded then");
    assert_eq!(firewall.applied_keys(), BTreeSet::from([action.id.clone()]));
    let statuses: (String, String) = sqlx::query_as(
        "SELECT (SELECT status FROM alerts WHERE event_id = 'abandoned-1'), \
                (SELECT status FROM remediations WHERE event_id = 'abandoned-1')",
    )
    .fetch_one(sandbox.store().pool())
    .await
    .unwrap();
    assert_eq!(statuses, ("delivered".to_string(), "applied".to_string()));

    orchestrator.stop().await;
}
