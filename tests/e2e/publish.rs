//! A signal from `vigil publish` to a finished workflow, as a user of `vigil up` sees it: the
//! domain events on the bus, the alert at a real HTTP endpoint, the dry-run remediation in
//! `vigil remediation list`, the incident.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Events, Up};
use vigil_testkit::{Receiver, Sandbox, eventually};

/// The seed design's example signal, exactly as a sensor would send it.
const SEED_SIGNAL: &str = r#"{"id": "threat_12345", "type": "suspicious_traffic", "protocol": "tcp", "port": 8080, "confidence": 0.85}"#;

/// A high-risk signal with a source address to act on: it comes from a known-bad network.
const SOURCE_SIGNAL: &str = r#"{"id": "threat_12346", "threatType": "suspicious_traffic", "protocol": "tcp", "sourceIp": "203.0.113.7", "destinationPort": 8080, "confidence": 0.85}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_signal_is_assessed_alerted_remediated_in_dry_run_and_opens_an_incident() {
    let sandbox = Sandbox::start().await;
    // Stands in for Slack and for a webhook receiver.
    let receiver = Receiver::start().await;
    let sets = vec![
        format!(
            "soar.channels.slack.webhook_url=\"{}\"",
            receiver.url("/slack")
        ),
        format!("soar.channels.webhook.url=\"{}\"", receiver.url("/hook")),
        "soar.channels.webhook.secret=\"0123456789abcdef0123\"".to_string(),
        "soar.routing.rules.medium=[\"slack\",\"webhook\"]".to_string(),
        "soar.routing.rules.high=[\"slack\",\"webhook\"]".to_string(),
        "soar.routing.rules.critical=[\"slack\",\"webhook\"]".to_string(),
        "soar.assessment.known_bad=[\"203.0.113.0/24\"]".to_string(),
    ];
    let mut events = Events::subscribe(&sandbox).await;
    let mut up = Up::start(&sandbox, &sets).await;
    let cli = up.cli.clone();

    let published = cli.ok(&["publish", SEED_SIGNAL]).await;
    assert_eq!(published.trim(), "published 1, duplicates 0, refused 0");

    let completed = events.wait_for("workflow_completed", "threat_12345").await;
    up.assert_running();
    assert_eq!(completed.data["status"], "SUCCESS", "{}", completed.data);
    let steps = &completed.data["steps"];
    for step in ["assess", "route_alerts", "incident"] {
        assert_eq!(steps[step], "succeeded", "{step}: {steps}");
    }
    // The workflow's events, each once, in the order the steps ran.
    let types = events.types_for("threat_12345");
    let expected = [
        "assessment_complete",
        "alert_routed",
        "incident_created",
        "workflow_completed",
    ];
    let in_order: Vec<&String> = types
        .iter()
        .filter(|t| expected.contains(&t.as_str()))
        .collect();
    assert_eq!(in_order, expected, "events for threat_12345: {types:?}");
    let assessed = events.wait_for("assessment_complete", "threat_12345").await;
    let score = assessed.data["risk_score"].as_f64().unwrap();
    assert!(
        (4.0..7.0).contains(&score),
        "medium risk: {}",
        assessed.data
    );

    // The alert reached both endpoints, naming the threat.
    let delivered = eventually(common::PATIENCE, "the alert at /slack and /hook", || {
        let requests = receiver.requests();
        let at = |path: &str| requests.iter().find(|r| r.path == path).cloned();
        std::future::ready(match (at("/slack"), at("/hook")) {
            (Some(slack), Some(hook)) => Ok((slack, hook)),
            _ => Err(receiver.paths()),
        })
    })
    .await;
    let (slack, hook) = delivered;
    assert!(slack.body.contains("suspicious_traffic"), "{}", slack.body);
    assert!(hook.body.contains("threat_12345"), "{}", hook.body);
    assert!(
        hook.header("x-vigil-signature")
            .is_some_and(|s| s.starts_with("sha256=")),
        "a signed webhook: {:?}",
        hook.headers
    );
    let incident = events.wait_for("incident_created", "threat_12345").await;
    assert!(
        incident.data.to_string().contains("suspicious_traffic"),
        "{}",
        incident.data
    );

    // A high-risk signal with a source address is blocked, in dry run (the default).
    let published = cli.ok(&["publish", SOURCE_SIGNAL]).await;
    assert_eq!(published.trim(), "published 1, duplicates 0, refused 0");
    let completed = events.wait_for("workflow_completed", "threat_12346").await;
    assert_eq!(completed.data["status"], "SUCCESS", "{}", completed.data);
    assert_eq!(completed.data["steps"]["remediate"], "succeeded");
    events
        .wait_for("remediation_executed", "threat_12346")
        .await;
    let listed = cli.ok(&["remediation", "list"]).await;
    let line = listed
        .lines()
        .find(|l| l.contains("event threat_12346"))
        .unwrap_or_else(|| panic!("no remediation of threat_12346 listed:\n{listed}"));
    for expected in ["block_address", "203.0.113.7", "dry-run", "simulated"] {
        assert!(line.contains(expected), "{expected} in {line}");
    }
    assert!(
        !listed.contains("event threat_12345"),
        "nothing to act on for a signal without an address:\n{listed}"
    );
    events.wait_for("incident_created", "threat_12346").await;

    // Publishing the same signal again changes nothing: it is a duplicate.
    let again = cli.ok(&["publish", SEED_SIGNAL]).await;
    assert_eq!(again.trim(), "published 0, duplicates 1, refused 0");
    up.assert_running();
}
