//! Property tests of what a stranger can send as a threat signal: protobuf bytes (NATS ingest,
//! gRPC `Predict`) and JSON (ingest with `Content-Type: application/json`, the Open Inference
//! `signals` tensor). Whatever the input, decoding and conversion answer `Ok` or an error with
//! a reason, never panic; NaN and infinities, bad addresses, huge maps and long texts are
//! refused by name.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use pbjson_types::Timestamp;
use proptest::prelude::*;
use prost::Message;
use vigil_domain::ThreatSignal;
use vigil_proto::convert::{MAX_ATTRIBUTE_NAME_BYTES, MAX_ATTRIBUTES, MAX_TEXT_BYTES};
use vigil_proto::{ConversionError, signal_json, v1};

/// Few cases each: together with the other crates' properties they stay well under a minute in
/// a debug build on two cores.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    }
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MAX),
        0.0..=1.0f64,
        any::<f64>(),
    ]
}

/// Addresses as sensors write them, and as they should not.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<std::net::IpAddr>().prop_map(|a| a.to_string()),
        "[0-9.:a-f]{0,40}",
        Just("999.1.1.1".to_owned()),
        Just("::ffff:1.2.3.4%eth0".to_owned()),
        any::<String>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,12}",
        any::<String>(),
        (0..3usize).prop_map(|extra| "x".repeat(MAX_TEXT_BYTES + extra)),
    ]
}

fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    prop_oneof![
        Just(None),
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
        (0..4_000_000_000i64, 0..1_000_000_000i32)
            .prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
    ]
}

fn wire_signal() -> impl Strategy<Value = v1::ThreatSignal> {
    (
        (
            text(),
            text(),
            address(),
            address(),
            any::<u32>(),
            any::<u32>(),
        ),
        (text(), any_f64(), any::<i32>(), text(), timestamp()),
        (any::<u64>(), any::<u64>(), any_f64()),
        prop::collection::hash_map("[a-z ]{0,6}", any_f64(), 0..8),
        prop::collection::hash_map("[a-z ]{0,6}", text(), 0..4),
    )
        .prop_map(
            |(
                (id, threat_type, source_ip, destination_ip, source_port, destination_port),
                (protocol, confidence, severity, sensor, timestamp),
                (bytes, packets, duration_seconds),
                numeric,
                categorical,
            )| v1::ThreatSignal {
                id,
                threat_type,
                source_ip,
                destination_ip,
                source_port,
                destination_port,
                protocol,
                confidence,
                severity,
                sensor,
                timestamp,
                bytes,
                packets,
                duration_seconds,
                numeric,
                categorical,
            },
        )
}

/// JSON values of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON signal's field names, canonical, proto and alias spellings, and some that are not.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "id",
            "threatType",
            "threat_type",
            "type",
            "sourceIp",
            "destination_ip",
            "sourcePort",
            "port",
            "protocol",
            "confidence",
            "severity",
            "sensor",
            "timestamp",
            "bytes",
            "packets",
            "durationSeconds",
            "numeric",
            "categorical",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

/// What a successful conversion promises every consumer.
fn holds_the_domain_rules(signal: &ThreatSignal) {
    signal.validate().unwrap();
    assert!(signal.confidence.is_finite() && (0.0..=1.0).contains(&signal.confidence));
    assert!(signal.duration_seconds.is_finite() && signal.duration_seconds >= 0.0);
    assert!(signal.numeric.values().all(|v| v.is_finite()));
    assert!(signal.numeric.len() <= MAX_ATTRIBUTES && signal.categorical.len() <= MAX_ATTRIBUTES);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn protobuf_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(wire) = v1::ThreatSignal::decode(bytes.as_slice())
            && let Ok(signal) = ThreatSignal::try_from(wire)
        {
            holds_the_domain_rules(&signal);
        }
    }

    #[test]
    fn any_wire_signal_converts_or_is_refused_with_a_reason(wire in wire_signal()) {
        let encoded = wire.encode_to_vec();
        let decoded = v1::ThreatSignal::decode(encoded.as_slice()).unwrap();
        match ThreatSignal::try_from(decoded) {
            Ok(signal) => holds_the_domain_rules(&signal),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
        let bad_confidence = !wire.confidence.is_finite();
        let bad_address = [&wire.source_ip, &wire.destination_ip]
            .iter()
            .any(|a| !a.trim().is_empty() && a.trim().parse::<std::net::IpAddr>().is_err());
        if bad_confidence || bad_address {
            let error = ThreatSignal::try_from(wire).unwrap_err().to_string();
            prop_assert!(error.contains("field"), "{}", error);
        }
    }

    #[test]
    fn any_bytes_as_json_are_a_signal_or_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Err(error) = signal_json::decode(&bytes) {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn any_json_object_is_a_signal_or_a_reason(
        fields in prop::collection::vec((field_name(), json_value()), 0..8),
    ) {
        let object: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
        let json = serde_json::to_vec(&object).unwrap();
        match signal_json::decode(&json) {
            Ok(wire) => {
                if let Ok(signal) = ThreatSignal::try_from(wire) {
                    holds_the_domain_rules(&signal);
                }
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
        let _ = signal_json::decode_checked(&json, chrono::Utc::now());
    }

    #[test]
    fn json_of_any_shape_is_refused_or_read(value in json_value()) {
        let json = serde_json::to_vec(&value).unwrap();
        let _ = signal_json::decode(&json);
    }
}

fn signal_with(numeric: usize, categorical: usize) -> v1::ThreatSignal {
    v1::ThreatSignal {
        threat_type: "port_scan".into(),
        confidence: 0.5,
        timestamp: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        numeric: (0..numeric).map(|i| (format!("n{i}"), 1.0)).collect(),
        categorical: (0..categorical)
            .map(|i| (format!("c{i}"), "v".to_owned()))
            .collect(),
        ..Default::default()
    }
}

#[test]
fn huge_maps_are_refused_with_the_limit() {
    assert!(ThreatSignal::try_from(signal_with(MAX_ATTRIBUTES, MAX_ATTRIBUTES)).is_ok());
    for (numeric, categorical, field) in [
        (MAX_ATTRIBUTES + 1, 0, "numeric"),
        (0, 100_000, "categorical"),
    ] {
        let error = ThreatSignal::try_from(signal_with(numeric, categorical)).unwrap_err();
        assert!(
            matches!(error, ConversionError::TooMany { field: f, .. } if f == field),
            "{error}"
        );
        assert!(error.to_string().contains("at most 1024"), "{error}");
    }
    // The same through JSON and protobuf bytes.
    let json = serde_json::json!({
        "type": "port_scan",
        "confidence": 0.5,
        "timestamp": "2024-05-01T12:00:00Z",
        "numeric": (0..5_000).map(|i| (format!("n{i}"), 1.0)).collect::<HashMap<_, _>>(),
    });
    let wire = signal_json::decode(json.to_string().as_bytes()).unwrap();
    let error = ThreatSignal::try_from(wire.clone())
        .unwrap_err()
        .to_string();
    assert!(error.contains("\"numeric\" has 5000 entries"), "{error}");
    let decoded = v1::ThreatSignal::decode(wire.encode_to_vec().as_slice()).unwrap();
    assert!(ThreatSignal::try_from(decoded).is_err());
}

#[test]
fn long_texts_and_names_are_refused_by_field() {
    let mut wire = signal_with(0, 0);
    wire.sensor = "s".repeat(MAX_TEXT_BYTES + 1);
    let error = ThreatSignal::try_from(wire).unwrap_err().to_string();
    assert!(
        error.contains("\"sensor\"") && error.contains("at most 4096"),
        "{error}"
    );

    let mut wire = signal_with(0, 0);
    wire.numeric
        .insert("n".repeat(MAX_ATTRIBUTE_NAME_BYTES + 1), 1.0);
    let error = ThreatSignal::try_from(wire).unwrap_err().to_string();
    assert!(
        error.contains("attribute name") && error.contains("at most 256"),
        "{error}"
    );

    let mut wire = signal_with(0, 0);
    wire.categorical
        .insert("user".into(), "u".repeat(MAX_TEXT_BYTES + 1));
    let error = ThreatSignal::try_from(wire).unwrap_err().to_string();
    assert!(error.contains("categorical.user"), "{error}");
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    for depth in [200, 100_000] {
        let json = format!(
            "{{\"type\": \"x\", \"numeric\": {}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let error = signal_json::decode(json.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid JSON"), "{error}");
    }
}

#[test]
fn invalid_utf8_and_non_finite_numbers_in_json_are_refused() {
    let mut bytes = br#"{"type": "port_scan", "sensor": "x"#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(br#"", "confidence": 0.5}"#);
    let error = signal_json::decode(&bytes).unwrap_err().to_string();
    assert!(error.contains("invalid JSON"), "{error}");

    for number in ["NaN", "Infinity", "-Infinity", "1e999"] {
        let json = format!(r#"{{"type": "port_scan", "confidence": {number}}}"#);
        let refused = signal_json::decode_checked(json.as_bytes(), chrono::Utc::now());
        assert!(refused.is_err(), "{number} was read as {refused:?}");
    }
    // proto3 JSON writes them as strings; they are still not a confidence.
    for number in ["\"NaN\"", "\"Infinity\"", "\"-Infinity\""] {
        let json = format!(r#"{{"type": "port_scan", "confidence": {number}}}"#);
        let error = signal_json::decode_checked(json.as_bytes(), chrono::Utc::now())
            .unwrap_err()
            .to_string();
        assert!(error.contains("confidence"), "{number}: {error}");
    }
}
