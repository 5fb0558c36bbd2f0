use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::{Error, Result};

/// Named readiness checks; `/readyz` answers 200 only when every registered check is ready.
#[derive(Clone, Default, Debug)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    /// No checks: ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or adds) the check `name`.
    pub fn set(&self, name: &str, ready: bool) {
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.insert(name.to_owned(), ready);
    }

    /// Removes a check, e.g. when its service stops.
    pub fn remove(&self, name: &str) {
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.remove(name);
    }

    /// Whether every check is ready, and the names of those that are not.
    pub fn status(&self) -> (bool, Vec<String>) {
        let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        let pending: Vec<String> = checks
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(name, _)| name.clone())
            .collect();
        (pending.is_empty(), pending)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Readiness,
}

/// The running `/metrics`, `/healthz`, `/readyz` server.
#[derive(Debug)]
pub struct HttpServer {
    /// The address it listens on (useful when the configured port was 0).
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` and serves until `shutdown` completes.
    pub async fn start(
        addr: &str,
        metrics: Metrics,
        readiness: Readiness,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        let app = Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz_handler))
            .with_state(AppState { metrics, readiness });
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%error, "telemetry http server stopped");
            }
        });
        tracing::info!(%local_addr, "serving /metrics, /healthz and /readyz");
        Ok(Self { local_addr, task })
    }

    /// Waits for the server to finish after its shutdown future completed.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn readyz_handler(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness.status() {
        (true, _) => (StatusCode::OK, "ready\n".to_owned()),
        (false, pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", pending.join(", ")),
        ),
    }
}
