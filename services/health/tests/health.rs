//! The health service against the real NATS and PostgreSQL: every service started in-process
//! (each with its own context and heartbeat task, as separate processes would be), the status
//! asked over NATS and HTTP, and services stopped and started again. Heartbeats come every
//! 200 ms here; every wait is on the observed status, with a generous deadline.

use std::time::Duration;

use futures::StreamExt;
use prost::Message as _;
use vigil_domain::{EventType, HealthState, SecurityEvent};
use vigil_health::StatusReport;
use vigil_proto::v1;
use vigil_testkit::{Sandbox, Service, eventually};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(60);

async fn sandbox() -> Sandbox {
    sandbox_with(&[]).await
}

async fn sandbox_with(overrides: &[&str]) -> Sandbox {
    let mut all = vec![
        "health.heartbeat_interval_ms=200",
        // No model is trained in these tests; the model rule has unit tests of its own.
        "health.require_production_model=false",
    ];
    all.extend_from_slice(overrides);
    Sandbox::with(&all).await
}

async fn status(sandbox: &Sandbox) -> Result<StatusReport, String> {
    vigil_health::status(sandbox.bus(), Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())
}

/// Waits until `check` holds for the status, and returns that status.
async fn status_where(
    sandbox: &Sandbox,
    what: &str,
    check: impl Fn(&StatusReport) -> bool,
) -> StatusReport {
    eventually(PATIENCE, what, || async {
        match status(sandbox).await {
            Ok(report) if check(&report) => Ok(report),
            Ok(report) => Err(format!("{}: {}", report.state, report.reason)),
            Err(error) => Err(error),
        }
    })
    .await
}

fn healthy_with(report: &StatusReport, component: &str, alive: usize) -> bool {
    report.state == HealthState::Healthy
        && report
            .components
            .get(component)
            .is_some_and(|c| c.alive == alive && c.missing == 0)
}

/// Every service, once each (the broker `brokers` times).
fn start_all(sandbox: &Sandbox, brokers: usize) -> Vec<Service> {
    let mut services: Vec<Service> = (0..brokers)
        .map(|_| sandbox.spawn("broker", vigil_broker::run_in))
        .collect();
    services.push(sandbox.spawn("orchestrator", vigil_orchestrator::run_in));
    services.push(sandbox.spawn("predictor", vigil_predictor::run_in));
    services.push(sandbox.spawn("trainer", vigil_trainer::run_in));
    services.push(sandbox.spawn("feedback", vigil_feedback::run_in));
    services.push(sandbox.spawn("health", vigil_health::run_in));
    services
}

fn take(services: &mut Vec<Service>, name: &str) -> Service {
    let at = services
        .iter()
        .position(|s| s.name() == name)
        .unwrap_or_else(|| panic!("no {name} running"));
    services.remove(at)
}

#[tokio::test]
async fn six_components_report_healthy_over_nats_and_http() {
    let sandbox = sandbox().await;
    let services = start_all(&sandbox, 1);

    let report = status_where(&sandbox, "six healthy components", |r| {
        r.state == HealthState::Healthy
            && r.components.len() == 6
            && r.components.values().all(|c| c.alive == 1)
    })
    .await;
    let names: Vec<&str> = report.components.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "broker",
            "feedback",
            "health",
            "orchestrator",
            "predictor",
            "trainer"
        ]
    );
    assert!(
        report.reason.starts_with("all 6 components healthy"),
        "{}",
        report.reason
    );
    for (name, component) in &report.components {
        let instance = &component.instances[0];
        assert_eq!(instance.version, env!("CARGO_PKG_VERSION"), "{name}");
        let nats = &instance.dependencies["nats"];
        assert!(nats.ok, "{name} sees NATS down: {nats:?}");
        if name != "broker" {
            let postgres = &instance.dependencies["postgres"];
            assert!(postgres.ok, "{name} sees PostgreSQL down: {postgres:?}");
        }
    }
    let model = &report.components["predictor"].instances[0].dependencies["model"];
    assert!(!model.ok, "no model was ever loaded: {model:?}");
    assert!(report.components["broker"].required);
    assert!(!report.components["trainer"].required);
    assert_eq!(report.events_processed, Some(0));
    assert_eq!(report.feedback.accuracy, None);
    assert_eq!(report.models.production, None);
    assert_eq!(report.streams.len(), 4, "{:?}", report.streams);
    assert_eq!(report.dead_letters.stored, Some(0));
    assert!(report.unavailable.is_empty(), "{:?}", report.unavailable);
    assert_eq!(report.config["health"]["heartbeat_interval_ms"], 200);
    assert_eq!(report.config["nats"]["prefix"], sandbox.prefix());

    // The same status on `/status` of the health service's HTTP server.
    let health = services
        .iter()
        .find(|s| s.name() == "health")
        .expect("the health service runs");
    let token = tokio_util::sync::CancellationToken::new();
    let http = vigil_runtime::serve_http(health.ctx(), &token)
        .await
        .expect("the HTTP server starts");
    let url = format!("http://{}/status", http.local_addr);
    let response = reqwest::get(&url).await.expect("GET /status");
    assert_eq!(response.status(), 200);
    let served: StatusReport = response.json().await.expect("a status as JSON");
    assert_eq!(served.state, HealthState::Healthy, "{}", served.reason);
    assert_eq!(served.components.len(), 6);
    token.cancel();
    http.wait().await;

    for service in services {
        service.stop().await;
    }
}

#[tokio::test]
async fn a_stopped_service_degrades_its_component_until_it_is_back() {
    let sandbox = sandbox().await;
    let mut services = start_all(&sandbox, 1);
    status_where(&sandbox, "everything healthy", |r| {
        healthy_with(r, "trainer", 1) && r.components.values().all(|c| c.alive == 1)
    })
    .await;
    let events_subject = sandbox.subject(&format!("vigil.events.{}", EventType::HealthChanged));
    let mut events = sandbox.subscribe(&events_subject).await;

    take(&mut services, "trainer").stop().await;
    // Waiting for the whole picture, so that a heartbeat delayed on a busy machine only delays
    // the test.
    let degraded = status_where(&sandbox, "the trainer degraded, the rest healthy", |r| {
        r.components["trainer"].state == HealthState::Degraded
            && r.state == HealthState::Degraded
            && r.components
                .iter()
                .all(|(name, c)| name == "trainer" || c.state == HealthState::Healthy)
    })
    .await;
    let trainer = &degraded.components["trainer"];
    assert_eq!((trainer.alive, trainer.missing), (0, 1));
    assert!(
        trainer.reasons[0].contains("all 1 instance(s) missing"),
        "{:?}",
        trainer.reasons
    );
    assert!(
        degraded.reason.starts_with("trainer degraded"),
        "the overall status follows: {}",
        degraded.reason
    );

    let changed = next_change(&mut events, "trainer", "degraded").await;
    assert_eq!(changed.event_type, EventType::HealthChanged);
    assert_eq!(changed.source, "health");
    assert_eq!(changed.data["from"], "healthy");

    services.push(sandbox.spawn("trainer", vigil_trainer::run_in));
    status_where(&sandbox, "the trainer healthy again", |r| {
        healthy_with(r, "trainer", 1)
    })
    .await;
    let recovered = next_change(&mut events, "trainer", "healthy").await;
    assert_eq!(recovered.data["from"], "degraded");

    for service in services {
        service.stop().await;
    }
}

#[tokio::test]
async fn one_replica_down_is_degraded_and_a_required_component_gone_is_critical() {
    let sandbox = sandbox().await;
    let mut services = start_all(&sandbox, 2);
    status_where(&sandbox, "two healthy brokers", |r| {
        healthy_with(r, "broker", 2)
    })
    .await;

    // One broker of two crashes.
    take(&mut services, "broker").kill().await;
    let one_down = status_where(&sandbox, "the broker degraded, and so the system", |r| {
        r.components["broker"].state == HealthState::Degraded && r.state == HealthState::Degraded
    })
    .await;
    let broker = &one_down.components["broker"];
    assert_eq!((broker.alive, broker.missing), (1, 1));
    assert!(
        broker.reasons[0].contains("1 of 2 instances missing"),
        "{:?}",
        broker.reasons
    );

    // A replacement starts: the missing one is forgotten.
    services.push(sandbox.spawn("broker", vigil_broker::run_in));
    status_where(&sandbox, "two healthy brokers again", |r| {
        healthy_with(r, "broker", 2)
    })
    .await;

    // The only orchestrator stops: the event path is down.
    take(&mut services, "orchestrator").stop().await;
    let critical = status_where(&sandbox, "the orchestrator critical", |r| {
        r.components["orchestrator"].state == HealthState::Critical
    })
    .await;
    assert_eq!(critical.state, HealthState::Critical, "{}", critical.reason);
    assert!(
        critical.components["orchestrator"].reasons[0].contains("all 1 instance(s) missing"),
        "{:?}",
        critical.components["orchestrator"].reasons
    );

    for service in services {
        service.stop().await;
    }
}

#[tokio::test]
async fn work_shows_in_the_heartbeats_and_a_dead_letter_degrades_the_broker() {
    let sandbox = sandbox_with(&["health.dead_letters_degraded=1"]).await;
    let services = start_all(&sandbox, 1);
    status_where(&sandbox, "everything healthy", |r| {
        r.state == HealthState::Healthy && r.components.values().all(|c| c.alive == 1)
    })
    .await;

    let subject = sandbox.bus().topology().ingest_subject("ids").unwrap();
    for body in [
        r#"{"id":"good-1","threatType":"port_scan","sourceIp":"203.0.113.7","destinationPort":22,"confidence":0.5}"#,
        // Refused: a confidence above 1 is dead-lettered by the broker.
        r#"{"id":"bad-1","threatType":"port_scan","confidence":3.0}"#,
    ] {
        let mut headers = vigil_bus::async_nats::HeaderMap::new();
        headers.insert("Content-Type", "application/json");
        sandbox
            .bus()
            .jetstream()
            .publish_with_headers(subject.clone(), headers, body.to_owned().into())
            .await
            .expect("publishes")
            .await
            .expect("stored");
    }

    let report = status_where(&sandbox, "the work and the dead letter reported", |r| {
        let broker = &r.components["broker"];
        let orchestrator = &r.components["orchestrator"];
        broker.operations == 2
            && broker.errors == 1
            && orchestrator.operations == 1
            && r.events_processed == Some(1)
            && broker.state == HealthState::Degraded
    })
    .await;
    let broker = &report.components["broker"];
    assert!(broker.latency_ms.is_some(), "{broker:?}");
    assert_eq!(broker.reasons, ["1 dead letter(s) in the last 3600 s"]);
    assert_eq!(report.dead_letters.recent.get("VIGIL_INGEST"), Some(&1));
    assert_eq!(report.dead_letters.stored, Some(1));
    assert_eq!(report.workflows.get("SUCCESS"), Some(&1));
    assert_eq!(report.recent.workflows, Some(1));
    assert_eq!(report.components["orchestrator"].errors, 0);
    assert_eq!(report.state, HealthState::Degraded, "{}", report.reason);

    for service in services {
        service.stop().await;
    }
}

/// The next HEALTH_CHANGED event that says `component` became `to`.
async fn next_change(
    events: &mut vigil_bus::async_nats::Subscriber,
    component: &str,
    to: &str,
) -> SecurityEvent {
    loop {
        let message = tokio::time::timeout(PATIENCE, events.next())
            .await
            .unwrap_or_else(|_| panic!("no health_changed event: {component} became {to}"))
            .expect("the subscription is open");
        let wire = v1::SecurityEvent::decode(message.payload.as_ref()).expect("a SecurityEvent");
        let event = SecurityEvent::try_from(wire).expect("a valid event");
        if event.correlation_id == component && event.data["to"] == to {
            return event;
        }
    }
}
