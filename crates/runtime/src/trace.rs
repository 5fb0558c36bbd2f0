//! One trace per event: a span per delivery (or request), parented from the `traceparent` the
//! message or call carried, and the `traceparent` of what the service sends on, taken from that
//! span, so one trace shows ingest, broker, orchestrator, predictor and the events of a signal.
//!
//! Without an OpenTelemetry exporter (no `telemetry.otlp_endpoint`) spans are local to the
//! logs; messages then carry the trace context they came with, as before.

use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use vigil_bus::TraceParent;

/// The W3C header name, in NATS headers and in gRPC metadata alike.
pub const TRACEPARENT: &str = "traceparent";

/// Makes `span` the child of the remote span `parent` (the sender's), when there is one.
pub fn follow(span: Span, parent: Option<&TraceParent>) -> Span {
    if let Some(parent) = parent {
        let context =
            opentelemetry::Context::new().with_remote_span_context(parent.span_context().clone());
        let _ = span.set_parent(context);
    }
    span
}

/// The trace context to send on from inside the current span: the span's own when it is
/// recorded by OpenTelemetry, else `fallback`.
pub fn outgoing(fallback: Option<TraceParent>) -> Option<TraceParent> {
    let context = Span::current().context();
    TraceParent::from_span_context(context.span().span_context().clone()).or(fallback)
}

/// [`follow`] for a `traceparent` read from a header or gRPC metadata; a missing or malformed
/// value starts a new trace.
pub fn follow_header(span: Span, traceparent: Option<&str>) -> Span {
    let parent = traceparent.and_then(|value| TraceParent::parse(value).ok());
    follow(span, parent.as_ref())
}
