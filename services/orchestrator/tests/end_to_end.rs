//! The event path end to end: broker + orchestrator against the real NATS and PostgreSQL, with
//! HTTP receivers on loopback standing in for Slack, PagerDuty and a webhook.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use vigil_bus::{Bus, StreamKind};
use vigil_proto::v1;
use vigil_testkit::{EffectReceiver, Hold, Receiver, Sandbox, eventually, stream_subjects};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(180);

/// A sandbox whose alert channels all point at the loopback receivers at `base`.
async fn sandbox(base: &str, extra: &[&str]) -> Sandbox {
    let mut overrides = vec![
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
    overrides.extend(extra.iter().map(|o| (*o).to_owned()));
    Sandbox::with(&overrides).await
}

/// Every signal published has been taken off the ingest stream and every queued one has been
/// acked by the orchestrator: nothing is left that could still make a workflow.
async fn drained(sandbox: &Sandbox) -> Result<(), String> {
    let ingest = sandbox.stream_messages(StreamKind::Ingest).await;
    let work = sandbox.stream_messages(StreamKind::Work).await;
    if ingest == 0 && work == 0 {
        Ok(())
    } else {
        Err(format!(
            "{ingest} signals on ingest, {work} on the work queue"
        ))
    }
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

async fn event_subjects(bus: &Bus) -> Vec<String> {
    stream_subjects(bus, StreamKind::Events)
        .await
        .into_iter()
        .map(|subject| subject.rsplit('.').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_high_risk_signal_runs_one_complete_workflow() {
    let received = Receiver::start().await;
    let base = received.base().to_owned();
    // A predictor that is down: the predict step is skipped, the workflow still succeeds.
    let sandbox = sandbox(
        &base,
        &["orchestrator.predictor_url=\"http://127.0.0.1:9\""],
    )
    .await;
    let bus = sandbox.bus();
    let broker = sandbox.spawn("broker", vigil_broker::run_in);
    let orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);

    let s = signal("e2e-high-1", "203.0.113.7");
    sandbox.publish_signal("e2e", &s).await;
    sandbox.publish_signal("e2e", &s).await; // the same signal again, inside the dedup window
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
    sandbox
        .publish_signal("e2e", &signal("e2e-allowed-1", "10.1.2.3"))
        .await;

    eventually(PATIENCE, "every signal handled", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        if done < 2 {
            return Err(format!("{done} workflows done"));
        }
        drained(&sandbox).await
    })
    .await;
    let done = sandbox
        .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
        .await;
    assert_eq!(done, 2, "one workflow per distinct signal");
    assert_eq!(sandbox.count("SELECT count(*) FROM workflows").await, 2);

    let wf: (String, serde_json::Value) =
        sqlx::query_as("SELECT status, steps FROM workflows WHERE event_id = 'e2e-high-1'")
            .fetch_one(sandbox.store().pool())
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
        sandbox
            .count(
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
    assert_eq!(sandbox.count("SELECT count(*) FROM remediations WHERE event_id = 'e2e-high-1' AND target = '203.0.113.7'").await, 1);
    assert_eq!(
        sandbox
            .count(
            "SELECT count(*) FROM remediations WHERE target = '10.1.2.3' AND status <> 'refused'"
        )
        .await,
        0,
        "an allow-listed address is never acted upon"
    );
    assert_eq!(
        sandbox
            .count(
                "SELECT count(*) FROM remediations WHERE target = '10.1.2.3' AND status = 'refused'"
            )
            .await,
        1,
        "the refusal is recorded with its reason"
    );
    // One incident per threat.
    assert_eq!(
        sandbox
            .count("SELECT count(*) FROM incidents WHERE threat_key = 'port_scan:203.0.113.7'")
            .await,
        1
    );

    // The six domain events of the high-risk signal (prediction skipped: no predictor).
    let subjects = event_subjects(bus).await;
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
}

#[tokio::test]
async fn a_thousand_signals_survive_an_orchestrator_restart_exactly_once() {
    // The pager holds every alert call (unanswered, not delivered) until the kill, so the
    // orchestrator is killed with workflows waiting on calls and every critical signal still
    // unfinished, however fast it works: the timing is the test's, not the machine's.
    let pager = EffectReceiver::alert_webhook().await;
    pager.hold_all(Hold::BeforeApplying);
    let sandbox = Sandbox::with(&[
        "orchestrator.max_workflows=32".to_string(),
        format!("soar.channels.webhook.url=\"{}\"", pager.url("/hook")),
        "soar.channels.webhook.secret=\"0123456789abcdef0123\"".to_string(),
        "soar.delivery.request_timeout_ms=60000".to_string(),
        "soar.routing.rules.critical=[\"webhook\"]".to_string(),
        "soar.assessment.known_bad=[\"10.200.0.0/16\"]".to_string(),
        "soar.routing.rate_limits.webhook.per_minute=0".to_string(),
        "soar.routing.rate_limits.webhook.burst=0".to_string(),
        "soar.remediation.enabled=false".to_string(),
        "streams.ack_wait_secs=3".to_string(),
    ])
    .await;
    let broker = sandbox.spawn("broker", vigil_broker::run_in);
    // A hundred low-risk signals (no alert) among nine hundred critical ones (one alert each).
    for i in 0..1000 {
        // A source of its own each: one threat each, never grouped with another.
        let mut s = signal(
            &format!("restart-{i}"),
            &format!("10.200.{}.{}", i / 256, i % 256),
        );
        if i % 10 == 0 {
            s.severity = v1::Severity::Low as i32;
            s.confidence = 0.2;
            s.source_ip = "198.51.100.9".into();
        }
        sandbox.publish_signal("e2e", &s).await;
    }
    eventually(PATIENCE, "1000 signals on the work queue", || async {
        let queued = sandbox.stream_messages(StreamKind::Work).await;
        if queued == 1000 { Ok(()) } else { Err(queued) }
    })
    .await;
    let orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    pager.wait_held(8, PATIENCE).await;
    // Killed mid-stream: in-flight work is not acked and comes back after ack_wait.
    orchestrator.kill().await;
    let at_kill = sandbox.count("SELECT count(*) FROM workflows").await;
    assert!(
        at_kill <= 100,
        "no critical signal can finish while its alert is held (had {at_kill})"
    );
    pager.stop_holding();

    let orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    // Until every signal is acked a redelivery could still add a workflow; after, none can.
    eventually(
        PATIENCE,
        "every signal handled after the restart",
        || async {
            let done = sandbox
                .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
                .await;
            if done < 1000 {
                return Err(format!("{done} workflows done"));
            }
            drained(&sandbox).await
        },
    )
    .await;
    assert_eq!(
        sandbox.count("SELECT count(*) FROM workflows").await,
        1000,
        "exactly one workflow per signal"
    );
    assert_eq!(
        sandbox
            .count("SELECT count(DISTINCT event_id) FROM workflows")
            .await,
        1000
    );
    // Counted at the pager: every critical signal paged once, the 32 interrupted ones too.
    assert_eq!(pager.applied_keys().len(), 900);
    assert_eq!(
        pager.duplicates(|call| call.body["event_id"].to_string()),
        0
    );
    assert_eq!(
        sandbox
            .count("SELECT count(*) FROM alerts WHERE status = 'delivered'")
            .await,
        900
    );
    orchestrator.stop().await;
    broker.stop().await;
}
