//! Observability every vigil service shares: structured logs (human or JSON), OpenTelemetry trace
//! export over OTLP when an endpoint is configured, W3C trace-context propagation, and one small
//! HTTP server for `/metrics` (Prometheus text), `/healthz`, `/readyz` and, where the health
//! service runs, `/status`.

mod http;
mod metrics;
mod propagation;
mod tracing_setup;

pub use http::{HttpServer, Readiness, StatusEndpoint, StatusFuture};
pub use metrics::Metrics;
pub use propagation::{current_traceparent, set_parent_from_traceparent};
pub use tracing_setup::{TelemetryGuard, init};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind the telemetry HTTP server on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid log filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("cannot set up OTLP export to {endpoint}: {reason}")]
    Otlp { endpoint: String, reason: String },
}

/// Result of a telemetry operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
