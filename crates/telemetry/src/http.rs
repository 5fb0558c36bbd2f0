use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

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

    /// Whether the check `name` is ready; `None` when there is no such check.
    pub fn is_ready(&self, name: &str) -> Option<bool> {
        let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.get(name).copied()
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

/// The JSON a `/status` request is answered with, rendered on each request.
pub type StatusFuture = Pin<Box<dyn Future<Output = String> + Send>>;
type StatusProvider = Arc<dyn Fn() -> StatusFuture + Send + Sync>;

/// The optional `/status` route: empty (404) until a service in the process, the health
/// service, installs what renders it; cheap to clone, shared by a process's services.
#[derive(Clone, Default)]
pub struct StatusEndpoint {
    provider: Arc<RwLock<Option<StatusProvider>>>,
}

impl std::fmt::Debug for StatusEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusEndpoint")
            .field("installed", &self.is_installed())
            .finish()
    }
}

impl StatusEndpoint {
    /// No provider: `/status` answers 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `/status` with the JSON text `render` produces.
    pub fn install<F, Fut>(&self, render: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = String> + Send + 'static,
    {
        let provider: StatusProvider = Arc::new(move || Box::pin(render()));
        *self.provider.write().unwrap_or_else(|p| p.into_inner()) = Some(provider);
    }

    /// Back to 404, e.g. when the health service stops.
    pub fn remove(&self) {
        *self.provider.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether a provider is installed.
    pub fn is_installed(&self) -> bool {
        self.provider
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn render(&self) -> Option<StatusFuture> {
        let provider = self
            .provider
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(provider())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Readiness,
    status: StatusEndpoint,
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
        Self::start_with_status(addr, metrics, readiness, StatusEndpoint::new(), shutdown).await
    }

    /// [`start`](Self::start), also serving `/status` from `status` once a provider is
    /// installed in it.
    pub async fn start_with_status(
        addr: &str,
        metrics: Metrics,
        readiness: Readiness,
        status: StatusEndpoint,
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
            .route("/status", get(status_handler))
            .with_state(AppState {
                metrics,
                readiness,
                status,
            });
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%error, "telemetry http server stopped");
            }
        });
        tracing::info!(%local_addr, "serving /metrics, /healthz, /readyz and /status");
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

async fn status_handler(State(state): State<AppState>) -> impl IntoResponse {
    match state.status.render() {
        Some(rendering) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            rendering.await,
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no health service runs in this process\n".to_owned(),
        ),
    }
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
