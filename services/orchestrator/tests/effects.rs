//! Effects happen once even when they are slower than the consumer's `ack_wait`: a workflow
//! keeps its message in progress while it runs, so JetStream does not hand the signal to a
//! second attempt that would call the firewall API again. Counted where the effect lands: at
//! the API.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use vigil_proto::v1;
use vigil_testkit::{Sandbox, eventually};

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
