//! W3C trace-context `traceparent` values carried in message headers.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::error::{Error, Result};

/// A W3C `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`).
///
/// It travels in the `traceparent` header of every message so that one trace covers a signal
/// from ingest to incident.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

const SAMPLED: u8 = 0x01;
/// Length of a version-00 traceparent.
const LEN: usize = 55;

impl TraceParent {
    /// A fresh, sampled trace with a random trace id and span id.
    pub fn generate() -> Self {
        Self {
            trace_id: random_non_zero(),
            span_id: random_non_zero(),
            flags: SAMPLED,
        }
    }

    /// Parses and validates a `traceparent` header value.
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidTraceParent {
            value: value.chars().take(128).collect(),
            reason,
        };
        if !value.is_ascii() {
            return Err(invalid("not ASCII"));
        }
        if value.len() < LEN {
            return Err(invalid("too short"));
        }
        let version =
            decode_hex::<1>(&value[0..2]).ok_or(invalid("version is not lowercase hex"))?[0];
        if version == 0xff {
            return Err(invalid("version ff is forbidden"));
        }
        // Version 00 has exactly four fields; later versions may append more after a dash.
        if version == 0 && value.len() != LEN {
            return Err(invalid("version 00 must be exactly 55 characters"));
        }
        if value.len() > LEN && value.as_bytes()[LEN] != b'-' {
            return Err(invalid("unexpected data after the flags"));
        }
        let bytes = value.as_bytes();
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(invalid("fields must be separated by '-'"));
        }
        let trace_id = decode_hex::<16>(&value[3..35])
            .ok_or(invalid("trace id is not 32 lowercase hex digits"))?;
        let span_id = decode_hex::<8>(&value[36..52])
            .ok_or(invalid("parent id is not 16 lowercase hex digits"))?;
        let flags = decode_hex::<1>(&value[53..55])
            .ok_or(invalid("flags are not 2 lowercase hex digits"))?[0];
        if trace_id == [0; 16] {
            return Err(invalid("trace id is all zeros"));
        }
        if span_id == [0; 8] {
            return Err(invalid("parent id is all zeros"));
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The same trace with a new span id: what a service puts on the messages it sends on.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: random_non_zero(),
            flags: self.flags,
        }
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> String {
        encode_hex(&self.trace_id)
    }

    /// The 16-hex-digit span (parent) id.
    pub fn span_id(&self) -> String {
        encode_hex(&self.span_id)
    }

    /// Whether the caller asked for this trace to be recorded.
    pub fn is_sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            encode_hex(&self.trace_id),
            encode_hex(&self.span_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

impl FromStr for TraceParent {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

fn random_non_zero<const N: usize>() -> [u8; N] {
    let mut rng = rand::thread_rng();
    loop {
        let mut bytes = [0u8; N];
        rng.fill(&mut bytes[..]);
        if bytes.iter().any(|b| *b != 0) {
            return bytes;
        }
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes exactly `N` bytes of lowercase hex; W3C forbids uppercase.
fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
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
