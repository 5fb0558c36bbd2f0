//! The telemetry HTTP server answers what an orchestrator (Kubernetes, Prometheus) asks.

#![allow(clippy::unwrap_used)]

use prometheus_client::metrics::counter::Counter;
use vigil_telemetry::{HttpServer, Metrics, Readiness, StatusEndpoint};

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let metrics = Metrics::new();
    let received: Counter = metrics.register(
        "test_signals_received",
        "Signals received",
        Counter::default(),
    );
    received.inc_by(3);
    let readiness = Readiness::new();
    readiness.set("nats", true);
    readiness.set("postgres", false);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = HttpServer::start("127.0.0.1:0", metrics, readiness.clone(), async {
        let _ = stopped.await;
    })
    .await
    .expect("binds");
    let base = format!("http://{}", server.local_addr);
    let client = reqwest::Client::new();

    let body = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("vigil_test_signals_received_total 3"),
        "{body}"
    );

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("postgres"));

    readiness.set("postgres", true);
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server.wait())
        .await
        .expect("server stops on shutdown");
}

#[tokio::test]
async fn status_is_served_only_while_a_provider_is_installed() {
    let status = StatusEndpoint::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = HttpServer::start_with_status(
        "127.0.0.1:0",
        Metrics::new(),
        Readiness::new(),
        status.clone(),
        async {
            let _ = stopped.await;
        },
    )
    .await
    .expect("binds");
    let url = format!("http://{}/status", server.local_addr);

    let none = reqwest::get(&url).await.unwrap();
    assert_eq!(none.status(), 404);
    assert!(none.text().await.unwrap().contains("no health service"));

    status.install(|| async { r#"{"state":"healthy"}"#.to_owned() });
    let served = reqwest::get(&url).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(served.text().await.unwrap(), r#"{"state":"healthy"}"#);

    status.remove();
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);

    stop.send(()).unwrap();
    server.wait().await;
}

#[test]
fn bad_log_filter_is_a_clear_error() {
    let settings = vigil_config::TelemetrySettings {
        log_filter: "info,[".into(),
        ..Default::default()
    };
    if std::env::var("RUST_LOG").is_ok() {
        return;
    }
    let err = vigil_telemetry::init(&settings, "test")
        .err()
        .expect("refused");
    assert!(err.to_string().contains("invalid log filter"), "{err}");
}
