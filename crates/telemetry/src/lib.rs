//! Tracing, OpenTelemetry export, Prometheus metrics and health endpoints.
