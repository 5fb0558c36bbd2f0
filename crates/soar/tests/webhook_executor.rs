//! The webhook executor against a real HTTP server on loopback.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::Value;
use vigil_config::{ExecutorKind, RemediationSettings, RemediationWebhookSettings, Secret};
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
            timeout_ms: 10_000,
        }),
        ..RemediationSettings::default()
    })
    .unwrap()
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
