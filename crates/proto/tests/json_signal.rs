//! The JSON every entry point accepts as a threat signal: the seed design's own example, aliases,
//! severities as people write them, and refusals that name the field, the value and what would
//! be accepted.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeZone, Utc};
use vigil_domain as d;
use vigil_proto::signal_json::{decode, decode_checked};
use vigil_proto::{ConversionError, v1};

/// The example signal of the seed design, verbatim.
const SEED_SIGNAL: &str = r#"{"id": "threat_12345", "type": "suspicious_traffic", "protocol": "tcp", "port": 8080, "confidence": 0.85}"#;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn refusal(json: &str) -> String {
    decode_checked(json.as_bytes(), now())
        .unwrap_err()
        .to_string()
}

fn severity_of(json_value: &str) -> i32 {
    let json = format!(r#"{{"type": "x", "confidence": 0.5, "severity": {json_value}}}"#);
    decode(json.as_bytes()).unwrap().severity
}

#[test]
fn the_seed_designs_example_signal_is_accepted() {
    let wire = decode_checked(SEED_SIGNAL.as_bytes(), now()).unwrap();
    let signal = d::ThreatSignal::try_from(wire).unwrap();
    assert_eq!(signal.id, "threat_12345");
    assert_eq!(signal.threat_type, "suspicious_traffic");
    assert_eq!(signal.protocol.as_deref(), Some("tcp"));
    assert_eq!(signal.destination_port, Some(8080));
    assert_eq!(signal.confidence, 0.85);
    assert_eq!(signal.timestamp, now(), "no timestamp means now");
}

#[test]
fn aliases_read_as_their_canonical_fields() {
    let canonical = decode(
        br#"{"id": "threat_12345", "threatType": "suspicious_traffic", "protocol": "tcp",
             "destinationPort": 8080, "confidence": 0.85}"#,
    )
    .unwrap();
    assert_eq!(decode(SEED_SIGNAL.as_bytes()).unwrap(), canonical);
    let snake = decode(
        br#"{"id": "threat_12345", "threat_type": "suspicious_traffic", "protocol": "tcp",
             "destination_port": 8080, "confidence": 0.85}"#,
    )
    .unwrap();
    assert_eq!(snake, canonical);
}

#[test]
fn an_alias_and_its_field_must_agree() {
    let same = decode(
        br#"{"type": "port_scan", "threatType": "port_scan", "port": 22, "destinationPort": 22}"#,
    )
    .unwrap();
    assert_eq!(same.threat_type, "port_scan");
    assert_eq!(same.destination_port, 22);

    assert_eq!(
        refusal(r#"{"type": "port_scan", "threatType": "neptune", "confidence": 0.5}"#),
        r#"fields "type" and "threatType" name the same field but disagree ("port_scan" vs "neptune"); give only one of them"#
    );
    let err = refusal(r#"{"threatType": "x", "destination_port": 22, "port": 8080}"#);
    assert!(
        err.starts_with(r#"fields "destination_port" and "port" name the same field"#),
        "{err}"
    );
}

#[test]
fn severity_is_read_in_any_case_with_or_without_its_prefix() {
    let critical = v1::Severity::Critical as i32;
    for written in [
        r#""critical""#,
        r#""Critical""#,
        r#""CRITICAL""#,
        r#""SEVERITY_CRITICAL""#,
        r#""severity_critical""#,
        r#"" critical ""#,
        "4",
    ] {
        assert_eq!(severity_of(written), critical, "{written}");
    }
    assert_eq!(severity_of(r#""HIGH""#), v1::Severity::High as i32);
    assert_eq!(severity_of(r#""medium""#), v1::Severity::Medium as i32);
    assert_eq!(severity_of(r#""severity_low""#), v1::Severity::Low as i32);
    assert_eq!(
        severity_of(r#""SEVERITY_MEDIUM""#),
        v1::Severity::Medium as i32
    );
    assert_eq!(severity_of("null"), v1::Severity::Unspecified as i32);

    let wire = decode_checked(
        br#"{"type": "x", "confidence": 0.5, "severity": "critical"}"#,
        now(),
    )
    .unwrap();
    assert_eq!(
        d::ThreatSignal::try_from(wire).unwrap().severity,
        Some(d::Severity::Critical)
    );
}

#[test]
fn an_unknown_severity_names_the_accepted_ones() {
    assert_eq!(
        refusal(r#"{"type": "x", "confidence": 0.5, "severity": "urgent"}"#),
        r#"field "severity": "urgent" is not a severity; expected one of critical, high, medium, low (any case, SEVERITY_ prefix optional)"#
    );
    for bad in ["9", "-1", "2.5", "true", r#""SEVERITY_""#] {
        let err = refusal(&format!(
            r#"{{"type": "x", "confidence": 0.5, "severity": {bad}}}"#
        ));
        assert!(
            err.starts_with(&format!(r#"field "severity": {bad} is not a severity"#)),
            "{bad}: {err}"
        );
    }
}

#[test]
fn out_of_range_values_say_what_is_accepted() {
    assert_eq!(
        refusal(r#"{"type": "x", "confidence": 1.7}"#),
        r#"field "confidence": 1.7 is out of range; expected 0 to 1"#
    );
    assert_eq!(
        refusal(r#"{"type": "x", "confidence": 0.5, "port": 70000}"#),
        r#"field "destination_port": 70000 is out of range; expected a port number 1 to 65535 (0 for none)"#
    );
    assert_eq!(
        refusal(r#"{"type": "x", "confidence": 0.5, "sourceIp": "10.0.0.300"}"#),
        r#"field "source_ip": "10.0.0.300" is not an IP address; expected an IPv4 or IPv6 address such as 203.0.113.7 (empty for none)"#
    );
    assert_eq!(
        refusal(r#"{"type": "x", "confidence": 0.5, "durationSeconds": -2}"#),
        r#"field "duration_seconds": -2 is out of range; expected 0 or more"#
    );
    assert_eq!(
        refusal(r#"{"type": "x", "confidence": 0.5, "numeric": {"srv_count": "NaN"}}"#),
        r#"field "numeric.srv_count": NaN is not a finite number; expected a finite number"#
    );
    assert!(
        refusal(r#"{"confidence": 0.5}"#)
            .starts_with(r#"field "threat_type" is missing or empty; expected a threat type"#)
    );
}

#[test]
fn a_value_of_the_wrong_kind_is_named_as_written() {
    assert_eq!(
        refusal(r#"{"type": "x", "confidence": "high"}"#),
        r#"field "confidence": "high" is not a number; expected a number from 0 to 1"#
    );
    assert_eq!(
        refusal(r#"{"type": "x", "confidence": 0.5, "port": "http"}"#),
        r#"field "port": "http" is not a port number; expected a whole number 1 to 65535 (0 for none)"#
    );
    assert_eq!(
        refusal(r#"{"type": "x", "confidence": 0.5, "bytes": -5}"#),
        r#"field "bytes": -5 is not a count; expected a whole number 0 or more"#
    );
    assert!(
        refusal(r#"{"type": "x", "confidence": 0.5, "timestamp": "yesterday"}"#).starts_with(
            r#"field "timestamp": "yesterday" is not a timestamp; expected an RFC 3339 string"#
        )
    );
    assert!(
        refusal(r#"{"type": 7, "confidence": 0.5}"#)
            .starts_with(r#"field "type": 7 is not a string"#)
    );
}

#[test]
fn an_unknown_field_lists_the_known_ones() {
    let err = refusal(r#"{"type": "x", "confidence": 0.5, "colour": "red"}"#);
    assert!(
        err.starts_with(
            r#"unknown field "colour"; expected one of id, threatType (alias type), sourceIp, destinationIp, sourcePort, destinationPort (alias port), protocol, confidence, severity, "#
        ),
        "{err}"
    );
    assert!(err.contains("categorical"), "{err}");
}

#[test]
fn broken_json_gets_serdes_line_and_column() {
    assert_eq!(
        refusal("{\"type\": \"x\",\n \"confidence\": }"),
        "invalid JSON: expected value at line 2 column 16"
    );
    assert!(refusal("[1, 2]").contains("expected a JSON object with the signal's fields"));
    assert!(refusal("").starts_with("invalid JSON: EOF"));
    assert_eq!(
        refusal(r#"{"confidence": 0.1, "confidence": 0.9}"#),
        r#"invalid JSON: field "confidence" is given twice at line 1 column 32"#
    );
}

#[test]
fn null_means_not_set() {
    let wire =
        decode(br#"{"type": "x", "confidence": 0.5, "sourceIp": null, "port": null}"#).unwrap();
    assert_eq!(wire.source_ip, "");
    assert_eq!(wire.destination_port, 0);
}

#[test]
fn canonical_proto3_json_reads_as_the_generated_reader_reads_it() {
    let json = br#"{
        "id": "threat_12345", "threatType": "port_scan",
        "sourceIp": "203.0.113.7", "destinationIp": "2001:db8::1",
        "sourcePort": 51515, "destinationPort": 8080, "protocol": "tcp",
        "confidence": 0.85, "severity": "SEVERITY_HIGH", "sensor": "suricata-eu-1",
        "timestamp": "2026-09-21T14:13:20.123Z", "bytes": "4096", "packets": "12",
        "durationSeconds": 1.5,
        "numeric": {"srv_count": 17, "serror_rate": 0.25},
        "categorical": {"service": "http"}
    }"#;
    let generated: v1::ThreatSignal = serde_json::from_slice(json).unwrap();
    assert_eq!(decode(json).unwrap(), generated);
    assert!(matches!(
        decode(br#"{"colour": 1}"#),
        Err(ConversionError::UnknownField { .. })
    ));
}
