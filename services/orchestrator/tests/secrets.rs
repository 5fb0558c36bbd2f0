//! Secrets never leave where they are configured: a full run with every kind of credential set
//! (channel URLs and keys, the webhook signing secret, the remediation API's token and URL key,
//! the database password), with the receivers failing so that errors are recorded too, leaves
//! none of them in the logs, the database rows or the events.
//!
//! It installs the process's global tracing subscriber, so it is the only test in this file.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use vigil_bus::StreamKind;
use vigil_proto::v1;
use vigil_testkit::{Sandbox, eventually};

const PATIENCE: Duration = Duration::from_secs(180);

const SECRETS: [&str; 7] = [
    "SLACKPATHSECRET1",
    "PDROUTINGSECRET2",
    "HOOKHMACSECRET3abcdef",
    "HOOKQUERYSECRET4",
    "EDRBEARERSECRET5",
    "EDRQUERYSECRET6",
    "DBPASSWORDSECRET7",
];

/// Everything the process logs, at every level vigil logs at.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A server that fails every request, so every channel and the remediation API record errors.
async fn failing_server() -> String {
    let app = axum::Router::new().fallback(post(|| async { StatusCode::SERVICE_UNAVAILABLE }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_rows_or_events() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let base = failing_server().await;
    let mut sandbox = Sandbox::with(&[
        format!(
            "soar.channels.slack.webhook_url=\"{base}/services/T0/B0/{}\"",
            SECRETS[0]
        ),
        format!("soar.channels.pagerduty.routing_key=\"{}\"", SECRETS[1]),
        format!("soar.channels.pagerduty.api_url=\"{base}\""),
        format!(
            "soar.channels.webhook.url=\"{base}/hook?token={}\"",
            SECRETS[3]
        ),
        format!("soar.channels.webhook.secret=\"{}\"", SECRETS[2]),
        "soar.routing.rules.critical=[\"pagerduty\",\"slack\",\"webhook\"]".to_string(),
        "soar.routing.rules.high=[\"pagerduty\",\"slack\",\"webhook\"]".to_string(),
        "soar.remediation.executor=\"webhook\"".to_string(),
        format!(
            "soar.remediation.webhook.url=\"{base}/edr?api_key={}\"",
            SECRETS[5]
        ),
        format!("soar.remediation.webhook.token=\"{}\"", SECRETS[4]),
        "soar.remediation.webhook.timeout_ms=2000".to_string(),
        "soar.assessment.known_bad=[\"203.0.113.0/24\"]".to_string(),
        "soar.delivery.retry.max_attempts=2".to_string(),
        "soar.delivery.retry.initial_backoff_ms=10".to_string(),
        "soar.delivery.retry.max_backoff_ms=10".to_string(),
    ])
    .await;
    // The database URL carries a password too (trust authentication ignores it).
    let url = format!("{}?password={}", sandbox.config().database.url, SECRETS[6]);
    sandbox.config_mut().database.url = url;
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    let mut orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    broker.ready(PATIENCE).await;
    orchestrator.ready(PATIENCE).await;

    let signal = v1::ThreatSignal {
        id: "secrets-1".into(),
        threat_type: "brute_force".into(),
        source_ip: "203.0.113.90".into(),
        destination_port: 22,
        confidence: 0.95,
        severity: v1::Severity::Critical as i32,
        sensor: "secrets".into(),
        ..Default::default()
    };
    sandbox.publish_signal("secrets", &signal).await;
    eventually(PATIENCE, "the workflow done, alerts and remediation failed", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        let failed_alerts = sandbox
            .count("SELECT count(*) FROM alerts WHERE status = 'failed'")
            .await;
        let failed_actions = sandbox
            .count("SELECT count(*) FROM remediations WHERE status = 'failed'")
            .await;
        if done == 1 && failed_alerts >= 3 && failed_actions >= 1 {
            Ok(())
        } else {
            Err(format!("{done} workflows, {failed_alerts} failed alerts, {failed_actions} failed actions"))
        }
    })
    .await;
    orchestrator.stop().await;
    broker.stop().await;

    // Every row of every table, as JSON text.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(sandbox.store().pool())
    .await
    .unwrap();
    let mut rows = String::new();
    for table in &tables {
        let dump: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t"))
                .fetch_all(sandbox.store().pool())
                .await
                .unwrap();
        for row in dump {
            rows.push_str(&format!("{table}: {row}\n"));
        }
    }
    // Every message of the events and dead-letter streams, headers and payload.
    let mut events = String::new();
    for kind in [StreamKind::Events, StreamKind::DeadLetter] {
        let name = sandbox.bus().topology().stream_name(kind);
        let mut stream = sandbox.bus().jetstream().get_stream(&name).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                events.push_str(&format!(
                    "{:?} {}\n",
                    message.headers,
                    String::from_utf8_lossy(&message.payload)
                ));
            }
        }
    }
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        rows.contains("failed") && !events.is_empty() && logs.contains("failed"),
        "the run recorded its failures (else the scan proves nothing)"
    );
    let mut leaks = Vec::new();
    for secret in SECRETS {
        for (place, text) in [("logs", &logs), ("rows", &rows), ("events", &events)] {
            if let Some(at) = text.find(secret) {
                let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                leaks.push(format!(
                    "{secret} in {place}: {}",
                    &text[start..end.min(start + 400)]
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}
