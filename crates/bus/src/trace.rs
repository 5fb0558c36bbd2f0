//! W3C trace-context `traceparent` values carried in message headers.
//!
//! Parsing and printing are OpenTelemetry's own (`TraceContextPropagator`), so the bus, the
//! gRPC metadata and the tracing spans read the header one way; ids come from the SDK's
//! `RandomIdGenerator`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

use crate::error::{Error, Result};

/// The header name the W3C trace-context recommendation gives.
const HEADER: &str = "traceparent";
/// Length of a version-00 traceparent.
const LEN: usize = 55;

/// A W3C `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`).
///
/// It travels in the `traceparent` header of every message so that one trace covers a signal
/// from ingest to incident.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceParent(SpanContext);

impl TraceParent {
    /// A fresh, sampled trace with a random trace id and span id.
    pub fn generate() -> Self {
        let ids = RandomIdGenerator::default();
        Self(SpanContext::new(
            ids.new_trace_id(),
            ids.new_span_id(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
    }

    /// Parses and validates a `traceparent` header value.
    ///
    /// The propagator reads the fields; the lengths and digits of the ids are checked here
    /// first, because the propagator takes a short id as one with leading zeros and a `+`
    /// before it as a sign, which the W3C format forbids.
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidTraceParent {
            value: value.chars().take(128).collect(),
            reason,
        };
        let fields: Vec<&str> = value.split('-').collect();
        if !value.is_ascii() || fields.len() < 4 {
            return Err(invalid("expected version-traceid-parentid-flags"));
        }
        if value.len() < LEN || fields[1].len() != 32 || fields[2].len() != 16 {
            return Err(invalid(
                "trace id must be 32 and parent id 16 lowercase hex digits",
            ));
        }
        // The propagator reads ids with `from_str_radix`, which also takes a leading `+`.
        let lower_hex = |f: &str| f.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !lower_hex(fields[1]) || !lower_hex(fields[2]) {
            return Err(invalid("trace id and parent id must be lowercase hex"));
        }
        if fields[0] == "00" && value.len() != LEN {
            return Err(invalid("version 00 must be exactly 55 characters"));
        }
        let carrier = HashMap::from([(HEADER.to_owned(), value.to_owned())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        let span = context.span().span_context().clone();
        if !span.is_valid() {
            return Err(invalid(
                "not a valid W3C traceparent (lowercase hex, non-zero ids, version below ff)",
            ));
        }
        Ok(Self(span))
    }

    /// The same trace with a new span id: what a service puts on the messages it sends on.
    pub fn child(&self) -> Self {
        Self(SpanContext::new(
            self.0.trace_id(),
            RandomIdGenerator::default().new_span_id(),
            self.0.trace_flags(),
            true,
            self.0.trace_state().clone(),
        ))
    }

    /// The OpenTelemetry span context: what a tracing span is parented from.
    pub fn span_context(&self) -> &SpanContext {
        &self.0
    }

    /// The value of a span context, when it is valid (a span of a recorded trace).
    pub fn from_span_context(span: SpanContext) -> Option<Self> {
        span.is_valid().then_some(Self(span))
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> String {
        self.0.trace_id().to_string()
    }

    /// The 16-hex-digit span (parent) id.
    pub fn span_id(&self) -> String {
        self.0.span_id().to_string()
    }

    /// Whether the caller asked for this trace to be recorded.
    pub fn is_sampled(&self) -> bool {
        self.0.is_sampled()
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = opentelemetry::Context::new().with_remote_span_context(self.0.clone());
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        f.write_str(carrier.get(HEADER).map_or("", String::as_str))
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

impl std::hash::Hash for TraceParent {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.trace_id().hash(state);
        self.0.span_id().hash(state);
    }
}

impl FromStr for TraceParent {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_w3c_example() {
        let tp = TraceParent::parse(EXAMPLE).expect("valid example");
        assert_eq!(tp.to_string(), EXAMPLE);
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.span_id(), "00f067aa0ba902b7");
        assert!(tp.is_sampled());
    }

    #[test]
    fn generated_values_are_valid_and_distinct() {
        let a = TraceParent::generate();
        let b = TraceParent::generate();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 55);
        assert!(text.starts_with("00-") && text.ends_with("-01"));
        assert_eq!(TraceParent::parse(&text).expect("round trip"), a);
    }

    #[test]
    fn child_keeps_the_trace_and_changes_the_span() {
        let parent = TraceParent::parse(EXAMPLE).expect("valid example");
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
    }

    #[test]
    fn rejects_malformed_values() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            // Short ids, which the propagator alone would take as zero-padded.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0f067aa0ba902b7-01x",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for value in bad {
            assert!(
                TraceParent::parse(value).is_err(),
                "{value:?} should be rejected"
            );
        }
    }

    #[test]
    fn accepts_future_versions_with_extra_fields() {
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(TraceParent::parse(future).is_ok());
    }
}
