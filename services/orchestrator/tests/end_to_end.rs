//! The event path end to end: broker + orchestrator against the real NATS and PostgreSQL, with
//! HTTP receivers on loopback standing in for Slack, PagerDuty and a webhook.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use prost::Message;
use vigil_bus::{Bus, StreamKind};
use vigil_config::{Config, Sources};
use vigil_proto::v1;
use vigil_store::test_util::TestDatabase;

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, serde_json::Value)>>>);

impl Received {
    fn paths(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
    fn body(&self, path: &str) -> Option<serde_json::Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
    }
}

/// One loopback server for every channel: it records each request and answers 200.
async fn receivers() -> (String, Received) {
    let received = Received::default();
    async fn record(
        State(r): State<Received>,
        uri: Uri,
        _headers: HeaderMap,
        body: String,
    ) -> &'static str {
        let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        r.0.lock().unwrap().push((uri.path().to_owned(), json));
        "ok"
    }
    let app = Router::new()
        .route("/slack", post(record))
        .route("/v2/enqueue", post(record))
        .route("/hook", post(record))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

fn config(db: &TestDatabase, base: &str) -> Config {
    let prefix = format!("to{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut overrides = vec![
        format!("nats.prefix=\"{prefix}\""),
        "telemetry.http_addr=\"127.0.0.1:0\"".to_string(),
        format!("soar.channels.slack.webhook_url=\"{base}/slack\""),
        "soar.channels.pagerduty.routing_key=\"R0UTINGKEY\"".to_string(),
        format!("soar.channels.pagerduty.api_url=\"{base}\""),
        format!("soar.channels.webhook.url=\"{base}/hook\""),
        "soar.channels.webhook.secret=\"0123456789abcdef0123\"".to_string(),
        "soar.routing.rules.critical=[\"pagerduty\",\"slack\",\"webhook\"]".to_string(),
        "soar.routing.rules.high=[\"pagerduty\",\"slack\",\"webhook\"]".to_string(),
        "soar.assessment.known_bad=[\"203.0.113.0/24\",\"10.1.2.0/24\"]".to_string(),
        "soar.remediation.allow_list=[\"127.0.0.0/8\",\"10.0.0.0/8\"]".to_string(),
        "soar.remediation.max_actions_per_minute=100000".to_string(),
        "streams.ack_wait_secs=3".to_string(),
    ];
    if let Ok(url) = std::env::var("NATS_URL") {
        overrides.push(format!("nats.url=\"{url}\""));
    }
    let mut config = Config::load(&Sources {
        overrides,
        ..Default::default()
    })
    .expect("valid test config");
    config.database = db.settings();
    config
}

struct Service {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stops")
            .expect("joins");
    }
}

fn start_broker(config: &Config) -> Service {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = config.clone();
    let task = tokio::spawn(async move {
        vigil_broker::run(config, async {
            let _ = stopped.await;
        })
        .await
        .expect("broker runs");
    });
    Service { stop, task }
}

fn start_orchestrator(config: &Config) -> Service {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = config.clone();
    let task = tokio::spawn(async move {
        vigil_orchestrator::run(config, async {
            let _ = stopped.await;
        })
        .await
        .expect("orchestrator runs");
    });
    Service { stop, task }
}

async fn bus(config: &Config) -> Bus {
    let bus = Bus::connect(&config.nats, vigil_runtime::topology(config))
        .await
        .unwrap();
    bus.declare().await.unwrap();
    bus
}

fn signal(id: &str, source_ip: &str) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id: id.into(),
        threat_type: "port_scan".into(),
        source_ip: source_ip.into(),
        destination_ip: "192.0.2.10".into(),
        destination_port: 22,
        protocol: "tcp".into(),
        confidence: 0.95,
        severity: v1::Severity::Critical as i32,
        sensor: "e2e".into(),
        timestamp: Some(chrono::Utc::now().into()),
        ..Default::default()
    }
}

async fn publish(bus: &Bus, signal: &v1::ThreatSignal) {
    let subject = bus.topology().ingest_subject("e2e").unwrap();
    bus.jetstream()
        .publish(subject, signal.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(db.store().pool())
        .await
        .unwrap()
}

async fn wait_for(db: &TestDatabase, sql: &str, want: i64, within: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = count(db, sql).await;
        if n >= want || tokio::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn event_subjects(bus: &Bus) -> Vec<String> {
    let stream = bus
        .jetstream()
        .get_stream(bus.topology().stream_name(StreamKind::Events))
        .await
        .unwrap();
    let mut subjects = Vec::new();
    let mut seq = 1;
    while let Ok(msg) = stream.get_raw_message(seq).await {
        subjects.push(
            msg.subject
                .to_string()
                .rsplit('.')
                .next()
                .unwrap()
                .to_owned(),
        );
        seq += 1;
    }
    subjects
}

#[tokio::test]
async fn a_high_risk_signal_runs_one_complete_workflow() {
    let db = TestDatabase::new().await.unwrap();
    let (base, received) = receivers().await;
    let mut config = config(&db, &base);
    // A predictor that is down: the predict step is skipped, the workflow still succeeds.
    config.orchestrator.predictor_url = Some("http://127.0.0.1:9".into());
    let bus = bus(&config).await;
    let broker = start_broker(&config);
    let orchestrator = start_orchestrator(&config);

    let s = signal("e2e-high-1", "203.0.113.7");
    publish(&bus, &s).await;
    publish(&bus, &s).await; // the same signal again, inside the dedup window
    // A malformed message: it is dead-lettered and processing goes on.
    bus.jetstream()
        .publish(
            bus.topology().ingest_subject("e2e").unwrap(),
            vec![0xff, 0x01, 0x02].into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // An allow-listed source that is also a known-bad indicator: high risk, never blocked.
    publish(&bus, &signal("e2e-allowed-1", "10.1.2.3")).await;

    let done = wait_for(
        &db,
        "SELECT count(*) FROM workflows WHERE status = 'SUCCESS'",
        2,
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(done, 2, "one workflow per distinct signal");
    assert_eq!(count(&db, "SELECT count(*) FROM workflows").await, 2);

    let wf: (String, serde_json::Value) =
        sqlx::query_as("SELECT status, steps FROM workflows WHERE event_id = 'e2e-high-1'")
            .fetch_one(db.store().pool())
            .await
            .unwrap();
    assert_eq!(wf.0, "SUCCESS");
    let steps: Vec<String> =
        wf.1.as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(
        steps,
        ["assess", "predict", "route_alerts", "remediate", "incident"]
    );

    // Alerts: one per configured channel, delivered, with the channels' wire shapes.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM alerts WHERE event_id = 'e2e-high-1' AND status = 'delivered'"
        )
        .await,
        3
    );
    let pd = received
        .body("/v2/enqueue")
        .expect("pagerduty got the alert");
    assert_eq!(pd["routing_key"], "R0UTINGKEY");
    assert_eq!(pd["event_action"], "trigger");
    assert!(
        pd["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("port_scan"),
        "{pd}"
    );
    assert!(received.body("/slack").is_some());
    assert!(received.body("/hook").is_some());

    // One remediation for the high-risk source; none for the allow-listed one.
    assert_eq!(count(&db, "SELECT count(*) FROM remediations WHERE event_id = 'e2e-high-1' AND target = '203.0.113.7'").await, 1);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM remediations WHERE target = '10.1.2.3' AND status <> 'refused'"
        )
        .await,
        0,
        "an allow-listed address is never acted upon"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM remediations WHERE target = '10.1.2.3' AND status = 'refused'"
        )
        .await,
        1,
        "the refusal is recorded with its reason"
    );
    // One incident per threat.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM incidents WHERE threat_key = 'port_scan:203.0.113.7'"
        )
        .await,
        1
    );

    // The six domain events of the high-risk signal (prediction skipped: no predictor).
    let subjects = event_subjects(&bus).await;
    for expected in [
        "threat_detected",
        "assessment_complete",
        "alert_routed",
        "remediation_executed",
        "incident_created",
        "workflow_completed",
    ] {
        let n = subjects.iter().filter(|s| s.as_str() == expected).count();
        assert_eq!(n, 2, "{expected} once per distinct signal: {subjects:?}");
    }

    // The malformed message is a dead letter.
    let dlq = bus
        .jetstream()
        .get_stream(bus.topology().stream_name(StreamKind::DeadLetter))
        .await
        .unwrap();
    let dead = dlq
        .get_raw_message(1)
        .await
        .expect("malformed message dead-lettered");
    assert!(dead.headers.get("Vigil-Dlq-Reason").is_some());

    assert_eq!(
        received.paths().len(),
        6,
        "three channels x two signals, nothing twice"
    );
    orchestrator.stop().await;
    broker.stop().await;
    // Leave the shared NATS server as we found it.
    bus.topology().delete(bus.jetstream()).await.unwrap();
}

#[tokio::test]
async fn a_thousand_signals_survive_an_orchestrator_restart_exactly_once() {
    let db = TestDatabase::new().await.unwrap();
    let (base, _received) = receivers().await;
    let mut config = config(&db, &base);
    // Low-risk signals: no alert channels, only the workflow path under test.
    config.orchestrator.max_workflows = 32;
    let bus = bus(&config).await;
    let broker = start_broker(&config);
    let orchestrator = start_orchestrator(&config);

    for i in 0..1000 {
        let mut s = signal(&format!("restart-{i}"), "198.51.100.9");
        s.severity = v1::Severity::Low as i32;
        s.confidence = 0.2;
        publish(&bus, &s).await;
    }
    wait_for(
        &db,
        "SELECT count(*) FROM workflows",
        500,
        Duration::from_secs(60),
    )
    .await;
    // Killed half-way: in-flight work is not acked and comes back after ack_wait.
    orchestrator.task.abort();
    let _ = orchestrator.task.await;
    let at_kill = count(&db, "SELECT count(*) FROM workflows").await;
    assert!(
        at_kill < 1000,
        "the restart must happen mid-stream (had {at_kill})"
    );

    let orchestrator = start_orchestrator(&config);
    let done = wait_for(
        &db,
        "SELECT count(*) FROM workflows WHERE status = 'SUCCESS'",
        1000,
        Duration::from_secs(120),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await; // a late redelivery would show up here
    assert_eq!(done, 1000);
    assert_eq!(
        count(&db, "SELECT count(*) FROM workflows").await,
        1000,
        "exactly one workflow per signal"
    );
    assert_eq!(
        count(&db, "SELECT count(DISTINCT event_id) FROM workflows").await,
        1000
    );
    orchestrator.stop().await;
    broker.stop().await;
    // Leave the shared NATS server as we found it.
    bus.topology().delete(bus.jetstream()).await.unwrap();
}
