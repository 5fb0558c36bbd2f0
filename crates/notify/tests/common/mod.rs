//! Real receivers on loopback: an HTTP server that records requests and answers from a script,
//! and a minimal SMTP server that captures messages.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use vigil_config::RetryPolicy;
use vigil_domain::{Alert, AlertStatus, Severity};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

impl Captured {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

/// A scripted answer: status, headers, body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Clone)]
struct ReceiverState {
    requests: Arc<Mutex<Vec<Captured>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    then: Answer,
}

/// An HTTP server on 127.0.0.1 answering from `script`, then always `then`.
pub struct Receiver {
    pub base: String,
    requests: Arc<Mutex<Vec<Captured>>>,
}

impl Receiver {
    pub async fn start(script: Vec<Answer>, then: Answer) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            requests: requests.clone(),
            script: Arc::new(Mutex::new(script.into())),
            then,
        };
        let app = axum::Router::new().fallback(record).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{addr}"),
            requests,
        }
    }

    /// Always answers `status` with `body`.
    pub async fn answering(status: u16, body: &str) -> Self {
        Self::start(Vec::new(), Answer::status(status, body)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }
}

async fn record(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.lock().unwrap().push(Captured {
        path: uri.path().to_owned(),
        headers,
        body,
        at: std::time::Instant::now(),
    });
    let answer = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| state.then.clone());
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A message the SMTP sink accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server: 220 greeting, 250 to EHLO/HELO/MAIL/RCPT/RSET/NOOP, 354 to DATA then
/// 250 after the terminating dot, 221 to QUIT.
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sink = mails.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let sink = sink.clone();
                tokio::spawn(async move {
                    let _ = session(stream, sink).await;
                });
            }
        });
        Self { port, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    sink: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                write
                    .write_all(b"250-sink.test\r\n250 8BITMIME\r\n")
                    .await?
            }
            "MAIL" => {
                mail_from = command.clone();
                write.write_all(b"250 OK\r\n").await?;
            }
            "RCPT" => {
                rcpt_to.push(command.clone());
                write.write_all(b"250 OK\r\n").await?;
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                sink.lock().unwrap().push(Mail {
                    mail_from: mail_from.clone(),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                });
                write.write_all(b"250 OK queued\r\n").await?;
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => write.write_all(b"250 OK\r\n").await?,
        }
    }
}

/// A pending alert as the router makes them.
pub fn alert(channel: &str) -> Alert {
    Alert {
        id: "alert-0001".into(),
        event_id: "event-42".into(),
        threat_key: "brute_force:203.0.113.7".into(),
        channel: channel.into(),
        severity: Severity::Critical,
        title: "[CRITICAL] brute_force from 203.0.113.7 (risk 9.4/10)".into(),
        body: "Risk 9.4/10 (critical), confidence 95%\nThreat: brute_force 203.0.113.7 -> 10.0.0.5:22/tcp\nWhy:\n- type_weight +3.00: threat type \"brute_force\" weighs 3".into(),
        status: AlertStatus::Pending,
        attempts: 0,
        last_error: None,
        created_at: DateTime::<Utc>::UNIX_EPOCH,
        delivered_at: None,
    }
}

/// Details as the router makes them.
pub fn details() -> Value {
    serde_json::json!({
        "event_id": "event-42",
        "threat_id": "threat-7",
        "threat_key": "brute_force:203.0.113.7",
        "threat_type": "brute_force",
        "source_ip": "203.0.113.7",
        "destination_ip": "10.0.0.5",
        "destination_port": 22,
        "sensor": "suricata-1",
        "risk_score": 9.4,
        "risk_level": "critical",
        "rule_score": 9.4,
        "ml_score": null,
        "confidence": 0.95,
        "factors": [{"name": "type_weight", "contribution": 3.0, "detail": "brute force"}],
    })
}

/// Fast retries for tests (Retry-After still wins).
pub fn quick_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff_ms: 10,
        max_backoff_ms: 50,
        multiplier: 2.0,
        max_retry_after_seconds: 30,
    }
}
