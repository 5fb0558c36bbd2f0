//! The one lenient JSON reader of threat signals, shared by every JSON entry point (broker
//! ingest with `Content-Type: application/json`, `vigil publish`, `vigil predict --signal`, the
//! predictor's Open Inference `signals` tensor).
//!
//! It accepts the proto3 JSON mapping of `vigil.v1.ThreatSignal` (`threatType` or
//! `threat_type`, ...) and, on top of it, what people write by hand, such as the seed design's
//! `{"id": "threat_12345", "type": "suspicious_traffic", "protocol": "tcp", "port": 8080,
//! "confidence": 0.85}`:
//!
//! - `type` for `threatType` and `port` for `destinationPort`; giving an alias and its field
//!   with different values is an error, not a silent pick;
//! - a severity in any case, with or without the `SEVERITY_` prefix (`critical`, `HIGH`,
//!   `severity_low`), or its number as proto3 JSON allows;
//! - `null` for any field, meaning "not set", as proto3 JSON allows.
//!
//! The object is normalised to canonical proto3 JSON, then read by the generated pbjson
//! deserializer. Every refusal is a [`ConversionError`] naming the field, the value and what
//! would be accepted.

use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::convert::{ConversionError, Result, SEVERITY_EXPECTED};
use crate::v1;

/// One field of `ThreatSignal` as JSON may spell it.
struct Field {
    /// The canonical proto3 JSON name.
    json: &'static str,
    /// The proto field name, which proto3 JSON readers accept too.
    proto: &'static str,
    /// A shorter name people use (the seed design's).
    alias: Option<&'static str>,
    /// What a value must be, as a noun phrase: "`x` is not {kind}".
    kind: &'static str,
    /// What would be accepted.
    expected: &'static str,
}

const fn field(
    json: &'static str,
    proto: &'static str,
    kind: &'static str,
    expected: &'static str,
) -> Field {
    Field {
        json,
        proto,
        alias: None,
        kind,
        expected,
    }
}

const STRING: &str = "a string";
const COUNT: &str = "a whole number 0 or more";

/// In `.proto` order, which is the order the "expected one of" list names them in.
const FIELDS: [Field; 16] = [
    field(
        "id",
        "id",
        STRING,
        "a string (empty: the broker fingerprints the content)",
    ),
    Field {
        alias: Some("type"),
        ..field(
            "threatType",
            "threat_type",
            STRING,
            "a threat type such as \"port_scan\"",
        )
    },
    field(
        "sourceIp",
        "source_ip",
        "an IP address",
        "an IPv4 or IPv6 address as a string, such as \"203.0.113.7\"",
    ),
    field(
        "destinationIp",
        "destination_ip",
        "an IP address",
        "an IPv4 or IPv6 address as a string, such as \"203.0.113.7\"",
    ),
    field(
        "sourcePort",
        "source_port",
        "a port number",
        "a whole number 1 to 65535 (0 for none)",
    ),
    Field {
        alias: Some("port"),
        ..field(
            "destinationPort",
            "destination_port",
            "a port number",
            "a whole number 1 to 65535 (0 for none)",
        )
    },
    field(
        "protocol",
        "protocol",
        STRING,
        "a protocol name such as \"tcp\"",
    ),
    field(
        "confidence",
        "confidence",
        "a number",
        "a number from 0 to 1",
    ),
    field("severity", "severity", "a severity", SEVERITY_EXPECTED),
    field("sensor", "sensor", STRING, "a string naming the sensor"),
    field(
        "timestamp",
        "timestamp",
        "a timestamp",
        "an RFC 3339 string such as \"2024-05-01T12:00:00Z\"",
    ),
    field("bytes", "bytes", "a count", COUNT),
    field("packets", "packets", "a count", COUNT),
    field(
        "durationSeconds",
        "duration_seconds",
        "a duration",
        "a number of seconds, 0 or more",
    ),
    field(
        "numeric",
        "numeric",
        "a map of numbers",
        "an object of numbers such as {\"srv_count\": 17}",
    ),
    field(
        "categorical",
        "categorical",
        "a map of strings",
        "an object of strings such as {\"service\": \"http\"}",
    ),
];

impl Field {
    fn by_name(name: &str) -> Option<&'static Field> {
        FIELDS
            .iter()
            .find(|f| f.json == name || f.proto == name || f.alias == Some(name))
    }

    fn bad_value(&self, written: &str, value: &Value) -> ConversionError {
        ConversionError::BadValue {
            field: written.to_owned(),
            value: show(value),
            kind: self.kind,
            expected: self.expected,
        }
    }
}

/// `id, threatType (alias type), ...`: the accepted names, for "unknown field" messages.
fn field_list() -> String {
    let mut list = String::new();
    for (i, field) in FIELDS.iter().enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        list.push_str(field.json);
        if let Some(alias) = field.alias {
            let _ = write!(list, " (alias {alias})");
        }
    }
    list.push_str("; snake_case spellings such as threat_type work too");
    list
}

/// Reads one threat signal from JSON, leniently (see the module documentation). It does not
/// validate values beyond their JSON type: convert the result with `TryFrom` for that, or use
/// [`decode_checked`].
pub fn decode(json: &[u8]) -> Result<v1::ThreatSignal> {
    let TopLevel(entries) =
        serde_json::from_slice(json).map_err(|e| ConversionError::Json(e.to_string()))?;
    let entries = normalise(entries)?;
    let object: Map<String, Value> = entries
        .iter()
        .map(|e| (e.field.json.to_owned(), e.value.clone()))
        .collect();
    match v1::ThreatSignal::deserialize(&Value::Object(object)) {
        Ok(signal) => Ok(signal),
        // Read again one field at a time to say which value is wrong.
        Err(whole) => Err(entries
            .iter()
            .find(|e| {
                let alone = Map::from_iter([(e.field.json.to_owned(), e.value.clone())]);
                v1::ThreatSignal::deserialize(&Value::Object(alone)).is_err()
            })
            .map_or_else(
                || ConversionError::Json(whole.to_string()),
                |e| e.field.bad_value(&e.written, &e.value),
            )),
    }
}

/// [`decode`], then the checks the broker and the predictor make, so that a mistake shows
/// before anything is sent. A signal without a timestamp gets `now`, as the broker would give
/// it.
pub fn decode_checked(json: &[u8], now: DateTime<Utc>) -> Result<v1::ThreatSignal> {
    let mut signal = decode(json)?;
    if signal.timestamp.is_none() {
        signal.timestamp = Some(now.into());
    }
    vigil_domain::ThreatSignal::try_from(signal.clone())?;
    Ok(signal)
}

/// One field of the object, as written and as it will be read.
struct Entry {
    field: &'static Field,
    written: String,
    value: Value,
}

/// Resolves names and aliases, drops nulls, refuses unknown and disagreeing fields, and writes
/// the severity as its enum name.
fn normalise(entries: Vec<(String, Value)>) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for (written, value) in entries {
        let field = Field::by_name(&written).ok_or_else(|| ConversionError::UnknownField {
            field: written.clone(),
            expected: field_list(),
        })?;
        if value.is_null() {
            continue;
        }
        let value = if field.json == "severity" {
            severity(field, &written, value)?
        } else {
            value
        };
        match out.iter().find(|e| std::ptr::eq(e.field, field)) {
            Some(earlier) if earlier.value != value => {
                return Err(ConversionError::Conflict {
                    first: earlier.written.clone(),
                    second: written,
                    first_value: show(&earlier.value),
                    second_value: show(&value),
                });
            }
            Some(_) => {}
            None => out.push(Entry {
                field,
                written,
                value,
            }),
        }
    }
    Ok(out)
}

/// `"critical"`, `"High"`, `"severity_low"`, `"SEVERITY_MEDIUM"` or the enum's number, as the
/// enum name pbjson reads.
fn severity(field: &Field, written: &str, value: Value) -> Result<Value> {
    let known = match &value {
        Value::String(text) => {
            let upper = text.trim().to_ascii_uppercase();
            let level = upper.strip_prefix("SEVERITY_").unwrap_or(&upper);
            let name = format!("SEVERITY_{level}");
            if v1::Severity::from_str_name(&name).is_some() {
                return Ok(Value::String(name));
            }
            false
        }
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .is_some_and(|n| v1::Severity::try_from(n).is_ok()),
        _ => false,
    };
    if known {
        Ok(value)
    } else {
        Err(field.bad_value(written, &value))
    }
}

/// Longest rendering of a refused value in a message.
const MAX_SHOWN_CHARS: usize = 80;

/// A value as JSON, cut short when long.
fn show(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The members of a JSON object in the order written, refusing a name given twice (a plain
/// `serde_json::Map` would keep the last silently).
struct TopLevel(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;

        impl<'de> Visitor<'de> for Members {
            type Value = TopLevel;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with the signal's fields")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut members: Vec<(String, Value)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if members.iter().any(|(seen, _)| *seen == name) {
                        return Err(de::Error::custom(format_args!(
                            "field {name:?} is given twice"
                        )));
                    }
                    let value = map.next_value()?;
                    members.push((name, value));
                }
                Ok(TopLevel(members))
            }
        }

        deserializer.deserialize_map(Members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_the_message_is_in_the_table() {
        // A field added to the .proto but not here would be refused as unknown.
        let full = serde_json::to_value(v1::ThreatSignal {
            timestamp: Some(chrono::DateTime::<Utc>::UNIX_EPOCH.into()),
            numeric: [("a".to_owned(), 1.0)].into(),
            categorical: [("b".to_owned(), "c".to_owned())].into(),
            severity: 1,
            id: "x".into(),
            threat_type: "x".into(),
            source_ip: "x".into(),
            destination_ip: "x".into(),
            source_port: 1,
            destination_port: 1,
            protocol: "x".into(),
            confidence: 1.0,
            sensor: "x".into(),
            bytes: 1,
            packets: 1,
            duration_seconds: 1.0,
        })
        .expect("serialises");
        let names: Vec<&str> = full
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names.len(), FIELDS.len(), "{names:?}");
        for name in names {
            assert!(FIELDS.iter().any(|f| f.json == name), "{name} missing");
        }
    }

    #[test]
    fn long_values_are_cut_short_on_a_character_boundary() {
        let shown = show(&Value::String("é".repeat(200)));
        assert!(shown.ends_with("..."), "{shown}");
        assert_eq!(shown.chars().count(), MAX_SHOWN_CHARS + 3);
    }
}
