//! [`Receiver`]: an HTTP server on loopback that records every request and answers 200, standing
//! in for Slack, PagerDuty, a webhook or any other endpoint vigil delivers to.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// Header names in lowercase, with their values.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ReceivedRequest {
    /// The body as JSON (a JSON string holding the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| serde_json::Value::String(self.body.clone()))
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP server on a free port; it records every request, whatever the path, and
/// answers `200 ok`. It stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct Receiver {
    base: String,
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
}

impl Receiver {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(record).with_state(requests.clone());
        Self {
            base: serve(app, "receiver").await,
            requests,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`) on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The paths of every request so far, in arrival order.
    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }

    /// The JSON body of the first request to `path`, if there was one.
    pub fn body(&self, path: &str) -> Option<serde_json::Value> {
        self.requests()
            .into_iter()
            .find(|r| r.path == path)
            .map(|r| r.json())
    }
}

/// Serves `app` on a free loopback port until the test's runtime ends; returns
/// `http://127.0.0.1:<port>`. `what` names it in the message should it stop.
pub(crate) async fn serve(app: Router, what: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("vigil-testkit: the {what} on {addr} stopped: {error}");
        }
    });
    format!("http://{addr}")
}

async fn record(
    State(requests): State<Arc<Mutex<Vec<ReceivedRequest>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let request = ReceivedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(request);
    "ok"
}
