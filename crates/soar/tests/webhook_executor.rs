//! The webhook executor against a real HTTP server on loopback.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::Value;
use vigil_config::{
    ExecutorKind, RemediationSettings, RemediationWebhookSettings, RetryPolicy, Secret,
};
use vigil_domain::{ActionStatus, Assessment, Severity, ThreatSignal};
use vigil_soar::Remediator;

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn firewall(
    State(seen): State<(Seen, StatusCode)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    seen.0.lock().unwrap().push((headers, body));
    seen.1
}

async fn serve(status: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/v1/actions", post(firewall))
        .with_state((seen.clone(), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1/actions"), seen)
}

fn remediator(url: String) -> Remediator {
    Remediator::from_settings(RemediationSettings {
        executor: ExecutorKind::Webhook,
        webhook: Some(RemediationWebhookSettings {
            url,
            token: Some(Secret::new("edr-token")),
            secret: Some(Secret::new("shared-signing-secret")),
            timeout_ms: 10_000,
            retry: fast_retry(),
        }),
        ..RemediationSettings::default()
    })
    .unwrap()
}

/// Three attempts, 10 ms apart, so a test of retries takes no time.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff_ms: 10,
        max_backoff_ms: 10,
        multiplier: 1.0,
        max_retry_after_seconds: 1,
    }
}

fn signal() -> ThreatSignal {
    let mut s = ThreatSignal::new("ddos", 0.9, DateTime::<Utc>::UNIX_EPOCH);
    s.source_ip = Some("198.51.100.23".parse().unwrap());
    s
}

fn assessment() -> Assessment {
    Assessment {
        threat_id: "t".into(),
        risk_score: 8.0,
        risk_level: Severity::High,
        confidence: 0.9,
        rule_score: 8.0,
        ml_score: None,
        factors: Vec::new(),
        assessed_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

#[tokio::test]
async fn the_api_receives_the_action_and_later_its_undo() {
    let (url, seen) = serve(StatusCode::ACCEPTED).await;
    let r = remediator(url);
    assert!(!r.executor().expires_by_itself());
    let out = r
        .remediate("ev-9", &signal(), &assessment(), Utc::now())
        .await;
    let action = &out.actions[0];
    assert_eq!(action.status, ActionStatus::Applied, "{action:?}");
    r.undo(action).await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let (headers, body) = &seen[0];
    assert_eq!(headers["authorization"], "Bearer edr-token");
    // Signed over the exact body, as a receiver checks it.
    let raw = serde_json::to_vec(body).unwrap();
    let signed = |secret: &[u8]| {
        vigil_notify::webhook::verify(
            secret,
            headers["x-vigil-timestamp"].to_str().unwrap(),
            &raw,
            headers["x-vigil-signature"].to_str().unwrap(),
            Utc::now().timestamp(),
            std::time::Duration::from_secs(300),
        )
    };
    assert!(signed(b"shared-signing-secret"), "the signature verifies");
    assert!(
        !signed(b"another-secret"),
        "and only with the shared secret"
    );
    assert_eq!(headers["idempotency-key"], action.id.as_str());
    assert_eq!(body["operation"], "apply");
    assert_eq!(body["action"], "rate_limit"); // the default rule for ddos
    assert_eq!(body["target"], "198.51.100.23");
    assert_eq!(body["duration_seconds"], 3600);
    assert_eq!(body["event_id"], "ev-9");
    assert_eq!(body["action_id"], action.id.as_str());
    let (headers, body) = &seen[1];
    assert_eq!(body["operation"], "undo");
    assert_eq!(
        headers["idempotency-key"],
        format!("{}:undo", action.id).as_str()
    );
}

#[tokio::test]
async fn an_error_status_fails_the_action_with_the_reason() {
    let (url, _seen) = serve(StatusCode::INTERNAL_SERVER_ERROR).await;
    let out = remediator(url)
        .remediate("ev-1", &signal(), &assessment(), Utc::now())
        .await;
    let action = &out.actions[0];
    assert_eq!(action.status, ActionStatus::Failed);
    assert!(
        action.details["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{action:?}"
    );
    assert_eq!(action.details["request"]["body"]["operation"], "apply");
}

/// A firewall API that answers `failures` calls with 503, then 202, counting every call with
/// its `Idempotency-Key`.
async fn flaky(failures: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let keys: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/actions",
            post(
                move |State(keys): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap| async move {
                    let mut keys = keys.lock().unwrap();
                    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                    keys.push(key);
                    if keys.len() <= failures {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::ACCEPTED
                    }
                },
            ),
        )
        .with_state(keys.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1/actions"), keys)
}

#[tokio::test]
async fn a_transient_failure_is_retried_with_the_same_key_and_a_redelivery_keeps_it() {
    let (url, keys) = flaky(2).await;
    let r = remediator(url);
    let first = r
        .remediate("ev-7", &signal(), &assessment(), Utc::now())
        .await;
    let action = &first.actions[0];
    assert_eq!(action.status, ActionStatus::Applied, "{action:?}");
    // The same event handled again (a redelivery after a crash): same action, same key.
    let again = r
        .remediate("ev-7", &signal(), &assessment(), Utc::now())
        .await;
    assert_eq!(again.actions[0].id, action.id);
    let keys = keys.lock().unwrap();
    assert_eq!(
        keys.len(),
        4,
        "two 503s, the success, the redelivery's call"
    );
    assert!(
        keys.iter().all(|k| *k == action.id),
        "one key for every call of one effect: {keys:?}"
    );
    // Another event on the same target is another effect.
    assert_ne!(
        vigil_soar::action_id("ev-8", action.kind, &action.target),
        action.id
    );
}

#[tokio::test]
async fn retries_end_with_the_budget_and_a_refused_request_is_not_retried() {
    let (url, keys) = flaky(usize::MAX).await;
    let out = remediator(url)
        .remediate("ev-3", &signal(), &assessment(), Utc::now())
        .await;
    let action = &out.actions[0];
    assert_eq!(action.status, ActionStatus::Failed);
    let error = action.details["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 503") && error.contains("after 3 attempts"),
        "{error}"
    );
    assert_eq!(keys.lock().unwrap().len(), 3, "max_attempts calls in all");

    let (url, seen) = serve(StatusCode::BAD_REQUEST).await;
    let out = remediator(url)
        .remediate("ev-4", &signal(), &assessment(), Utc::now())
        .await;
    assert_eq!(out.actions[0].status, ActionStatus::Failed);
    assert_eq!(seen.lock().unwrap().len(), 1, "a 400 is final");
}

#[tokio::test]
async fn an_unreachable_api_is_retried_and_its_url_credentials_never_reach_the_error() {
    // A port nothing listens on; the URL carries a credential, as some APIs take one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/v1/actions?api_key=s3cr3t-in-url");
    let out = remediator(url)
        .remediate("ev-5", &signal(), &assessment(), Utc::now())
        .await;
    let action = &out.actions[0];
    assert_eq!(action.status, ActionStatus::Failed);
    let error = action.details["error"].as_str().unwrap();
    assert!(error.contains("after 3 attempts"), "{error}");
    assert!(!error.contains("s3cr3t-in-url"), "the URL leaked: {error}");
}
