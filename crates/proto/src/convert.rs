//! Conversions between the wire types (`v1::*`) and the domain types (`vigil_domain::*`).
//!
//! Wire -> domain is `TryFrom` and validates: a score outside 0-10, a confidence outside 0-1, an
//! empty id, a malformed address or a missing timestamp is a [`ConversionError`] whose message
//! names the field (by its proto name), the value and what would be accepted. Domain -> wire is
//! `From` and cannot fail.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use pbjson_types::{ListValue, Struct, Timestamp, Value, value::Kind};
use thiserror::Error;
use vigil_domain as domain;
use vigil_domain::ValidationError;

use crate::v1;

/// What a severity may be written as, in JSON and in messages.
pub const SEVERITY_EXPECTED: &str =
    "one of critical, high, medium, low (any case, SEVERITY_ prefix optional)";

/// Why a wire message (protobuf or JSON) could not become a domain value; every message names
/// the field, the value and what is expected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConversionError {
    /// A domain rule refused the value.
    #[error("{}", Refusal(.0))]
    Invalid(ValidationError),
    #[error("field {field:?} is missing; expected a value")]
    Missing { field: &'static str },
    #[error("field {field:?} is missing or empty; expected {expected}")]
    Empty {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field {field:?}: {value} is not a known value; expected {expected}")]
    UnknownEnum {
        field: &'static str,
        value: i32,
        expected: &'static str,
    },
    #[error(
        "field {field:?}: {value:?} is not an IP address; expected an IPv4 or IPv6 address such \
         as 203.0.113.7 (empty for none)"
    )]
    BadAddress { field: &'static str, value: String },
    #[error(
        "field {field:?}: {value} is out of range; expected a port number 1 to 65535 (0 for none)"
    )]
    BadPort { field: &'static str, value: u32 },
    #[error(
        "field {field:?} is not a valid timestamp; expected seconds and nanos (0 to 999999999) \
         of a representable time"
    )]
    BadTimestamp { field: &'static str },
    /// A value of the wrong kind, e.g. a string where a number belongs (`field` as written).
    #[error("field {field:?}: {value} is not {kind}; expected {expected}")]
    BadValue {
        field: String,
        value: String,
        kind: &'static str,
        expected: &'static str,
    },
    /// A JSON object key that names no field.
    #[error("unknown field {field:?}; expected one of {expected}")]
    UnknownField { field: String, expected: String },
    /// Two spellings of one field (an alias and its canonical name) with different values.
    #[error(
        "fields {first:?} and {second:?} name the same field but disagree ({first_value} vs \
         {second_value}); give only one of them"
    )]
    Conflict {
        first: String,
        second: String,
        first_value: String,
        second_value: String,
    },
    /// Not JSON, or not a JSON object; the message is serde's, with line and column.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A map with more entries than a signal may carry.
    #[error(
        "field {field:?} has {count} entries; a signal carries at most {max} (put bulk data \
         elsewhere and reference it)"
    )]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
    /// A text longer than a signal's texts may be (`field` as written, e.g. `numeric.<name>`).
    #[error("field {field:?} is {len} bytes long; expected at most {max}")]
    TooLong {
        field: String,
        len: usize,
        max: usize,
    },
}

/// Most entries in each attribute map (`numeric`, `categorical`) of a threat signal: far
/// above what a sensor reports (an NSL-KDD row has 41), low enough that a stranger cannot make
/// every consumer carry, store and hash an arbitrarily large map.
pub const MAX_ATTRIBUTES: usize = 1_024;
/// Longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 256;
/// Longest text field of a threat signal (id, type, protocol, sensor, categorical value).
pub const MAX_TEXT_BYTES: usize = 4_096;

// Not `#[from]`: that would make the domain error the source as well, and a chain-printing
// caller (`{err:#}`) would say everything twice.
impl From<ValidationError> for ConversionError {
    fn from(error: ValidationError) -> Self {
        ConversionError::Invalid(error)
    }
}

/// A domain refusal in the field / value / expected form of the other messages.
struct Refusal<'a>(&'a ValidationError);

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ValidationError::Empty { field } => {
                write!(
                    f,
                    "field {field:?} is missing or empty; expected a non-empty value"
                )
            }
            ValidationError::OutOfRange {
                field,
                min,
                max,
                value,
            } if *max == f64::MAX => {
                write!(
                    f,
                    "field {field:?}: {value} is out of range; expected {min} or more"
                )
            }
            ValidationError::OutOfRange {
                field,
                min,
                max,
                value,
            } => write!(
                f,
                "field {field:?}: {value} is out of range; expected {min} to {max}"
            ),
            ValidationError::NotFinite { field, value } => write!(
                f,
                "field {field:?}: {value} is not a finite number; expected a finite number"
            ),
            ValidationError::Invalid { field, reason } => {
                write!(f, "field {field:?} is invalid: {reason}")
            }
        }
    }
}

/// Result of a wire -> domain conversion.
pub type Result<T, E = ConversionError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Scalars and helpers

fn timestamp(field: &'static str, ts: Option<Timestamp>) -> Result<DateTime<Utc>> {
    let ts = ts.ok_or(ConversionError::Missing { field })?;
    DateTime::<Utc>::try_from(ts).map_err(|_| ConversionError::BadTimestamp { field })
}

fn optional_timestamp(field: &'static str, ts: Option<Timestamp>) -> Result<Option<DateTime<Utc>>> {
    ts.map(|ts| timestamp(field, Some(ts))).transpose()
}

fn address(field: &'static str, value: String) -> Result<Option<IpAddr>> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|_| ConversionError::BadAddress { field, value })
}

fn port(field: &'static str, value: u32) -> Result<Option<u16>> {
    match value {
        0 => Ok(None),
        v => u16::try_from(v)
            .map(Some)
            .map_err(|_| ConversionError::BadPort { field, value }),
    }
}

fn non_empty(field: &'static str, value: String) -> Result<String> {
    if value.trim().is_empty() {
        return Err(ValidationError::Empty { field }.into());
    }
    Ok(value)
}

fn attribute_name(field: &'static str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(ConversionError::BadValue {
            field: field.to_owned(),
            value: format!("{name:?}"),
            kind: "an attribute name",
            expected: "a non-empty name",
        });
    }
    Ok(())
}

fn within(field: String, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        return Err(ConversionError::TooLong {
            field,
            len: text.len(),
            max,
        });
    }
    Ok(())
}

/// The first characters of a long text, for naming it in a message.
fn truncated(text: &str) -> &str {
    match text.char_indices().nth(32) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

fn optional_string(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn in_range(field: &'static str, value: f64, min: f64, max: f64) -> Result<f64> {
    if !value.is_finite() {
        return Err(ValidationError::NotFinite { field, value }.into());
    }
    if value < min || value > max {
        return Err(ValidationError::OutOfRange {
            field,
            min,
            max,
            value,
        }
        .into());
    }
    Ok(value)
}

/// Converts a protobuf `Struct` to a JSON object.
pub fn struct_to_json(s: Option<Struct>) -> serde_json::Value {
    match s {
        None => serde_json::Value::Null,
        Some(s) => serde_json::Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, value_to_json(v)))
                .collect(),
        ),
    }
}

fn value_to_json(v: Value) -> serde_json::Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::StructValue(s)) => struct_to_json(Some(s)),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.into_iter().map(value_to_json).collect())
        }
    }
}

/// Converts a JSON value to a protobuf `Struct`; anything but an object becomes `None`
/// (an object is the only thing a `Struct` can hold).
pub fn json_to_struct(v: &serde_json::Value) -> Option<Struct> {
    match v {
        serde_json::Value::Object(map) => Some(Struct {
            fields: map
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        }),
        _ => None,
    }
}

fn json_to_value(v: &serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        // JSON numbers travel as doubles in a Struct, as the proto3 mapping defines.
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(_) => match json_to_struct(v) {
            Some(s) => Kind::StructValue(s),
            None => Kind::NullValue(0),
        },
    };
    Value { kind: Some(kind) }
}

// ---------------------------------------------------------------------------------------------
// Enums

fn unknown(field: &'static str, value: i32) -> ConversionError {
    ConversionError::UnknownEnum {
        field,
        value,
        expected: "a value the .proto defines, other than the UNSPECIFIED one",
    }
}

fn unknown_severity(field: &'static str, value: i32) -> ConversionError {
    ConversionError::UnknownEnum {
        field,
        value,
        expected: SEVERITY_EXPECTED,
    }
}

/// `SEVERITY_UNSPECIFIED` means "no severity given".
fn optional_severity(field: &'static str, value: i32) -> Result<Option<domain::Severity>> {
    match v1::Severity::try_from(value).map_err(|_| unknown_severity(field, value))? {
        v1::Severity::Unspecified => Ok(None),
        v1::Severity::Low => Ok(Some(domain::Severity::Low)),
        v1::Severity::Medium => Ok(Some(domain::Severity::Medium)),
        v1::Severity::High => Ok(Some(domain::Severity::High)),
        v1::Severity::Critical => Ok(Some(domain::Severity::Critical)),
    }
}

fn severity(field: &'static str, value: i32) -> Result<domain::Severity> {
    optional_severity(field, value)?.ok_or(unknown_severity(field, value))
}

impl From<domain::Severity> for v1::Severity {
    fn from(s: domain::Severity) -> Self {
        match s {
            domain::Severity::Low => v1::Severity::Low,
            domain::Severity::Medium => v1::Severity::Medium,
            domain::Severity::High => v1::Severity::High,
            domain::Severity::Critical => v1::Severity::Critical,
        }
    }
}

fn severity_i32(s: Option<domain::Severity>) -> i32 {
    s.map(v1::Severity::from)
        .unwrap_or(v1::Severity::Unspecified) as i32
}

impl TryFrom<v1::EventType> for domain::EventType {
    type Error = ConversionError;

    fn try_from(t: v1::EventType) -> Result<Self> {
        use domain::EventType as D;
        use v1::EventType as W;
        Ok(match t {
            W::Unspecified => return Err(unknown("event_type", t as i32)),
            W::ThreatDetected => D::ThreatDetected,
            W::AssessmentComplete => D::AssessmentComplete,
            W::PredictionComplete => D::PredictionComplete,
            W::AlertRouted => D::AlertRouted,
            W::RemediationExecuted => D::RemediationExecuted,
            W::IncidentCreated => D::IncidentCreated,
            W::WorkflowCompleted => D::WorkflowCompleted,
            W::FeedbackReceived => D::FeedbackReceived,
            W::ModelPromoted => D::ModelPromoted,
            W::HealthChanged => D::HealthChanged,
        })
    }
}

impl From<domain::EventType> for v1::EventType {
    fn from(t: domain::EventType) -> Self {
        use domain::EventType as D;
        use v1::EventType as W;
        match t {
            D::ThreatDetected => W::ThreatDetected,
            D::AssessmentComplete => W::AssessmentComplete,
            D::PredictionComplete => W::PredictionComplete,
            D::AlertRouted => W::AlertRouted,
            D::RemediationExecuted => W::RemediationExecuted,
            D::IncidentCreated => W::IncidentCreated,
            D::WorkflowCompleted => W::WorkflowCompleted,
            D::FeedbackReceived => W::FeedbackReceived,
            D::ModelPromoted => W::ModelPromoted,
            D::HealthChanged => W::HealthChanged,
        }
    }
}

fn model_type(value: i32) -> Result<domain::ModelType> {
    use v1::ModelType as W;
    match W::try_from(value).map_err(|_| unknown("model_type", value))? {
        W::Unspecified => Err(unknown("model_type", value)),
        W::RandomForest => Ok(domain::ModelType::RandomForest),
        W::Xgboost => Ok(domain::ModelType::Xgboost),
        W::NeuralNetwork => Ok(domain::ModelType::NeuralNetwork),
        W::Ensemble => Ok(domain::ModelType::Ensemble),
    }
}

impl From<domain::ModelType> for v1::ModelType {
    fn from(t: domain::ModelType) -> Self {
        match t {
            domain::ModelType::RandomForest => v1::ModelType::RandomForest,
            domain::ModelType::Xgboost => v1::ModelType::Xgboost,
            domain::ModelType::NeuralNetwork => v1::ModelType::NeuralNetwork,
            domain::ModelType::Ensemble => v1::ModelType::Ensemble,
        }
    }
}

fn workflow_status(value: i32) -> Result<domain::WorkflowStatus> {
    use v1::WorkflowStatus as W;
    match W::try_from(value).map_err(|_| unknown("status", value))? {
        W::Unspecified => Err(unknown("status", value)),
        W::Pending => Ok(domain::WorkflowStatus::Pending),
        W::Running => Ok(domain::WorkflowStatus::Running),
        W::Success => Ok(domain::WorkflowStatus::Success),
        W::Failed => Ok(domain::WorkflowStatus::Failed),
    }
}

impl From<domain::WorkflowStatus> for v1::WorkflowStatus {
    fn from(s: domain::WorkflowStatus) -> Self {
        match s {
            domain::WorkflowStatus::Pending => v1::WorkflowStatus::Pending,
            domain::WorkflowStatus::Running => v1::WorkflowStatus::Running,
            domain::WorkflowStatus::Success => v1::WorkflowStatus::Success,
            domain::WorkflowStatus::Failed => v1::WorkflowStatus::Failed,
        }
    }
}

fn step_outcome(value: i32) -> Result<domain::StepOutcome> {
    use v1::StepOutcome as W;
    match W::try_from(value).map_err(|_| unknown("outcome", value))? {
        W::Unspecified => Err(unknown("outcome", value)),
        W::Succeeded => Ok(domain::StepOutcome::Succeeded),
        W::Skipped => Ok(domain::StepOutcome::Skipped),
        W::Failed => Ok(domain::StepOutcome::Failed),
    }
}

impl From<domain::StepOutcome> for v1::StepOutcome {
    fn from(o: domain::StepOutcome) -> Self {
        match o {
            domain::StepOutcome::Succeeded => v1::StepOutcome::Succeeded,
            domain::StepOutcome::Skipped => v1::StepOutcome::Skipped,
            domain::StepOutcome::Failed => v1::StepOutcome::Failed,
        }
    }
}

fn alert_status(value: i32) -> Result<domain::AlertStatus> {
    use v1::AlertStatus as W;
    match W::try_from(value).map_err(|_| unknown("status", value))? {
        W::Unspecified => Err(unknown("status", value)),
        W::Pending => Ok(domain::AlertStatus::Pending),
        W::Delivered => Ok(domain::AlertStatus::Delivered),
        W::Grouped => Ok(domain::AlertStatus::Grouped),
        W::RateLimited => Ok(domain::AlertStatus::RateLimited),
        W::Failed => Ok(domain::AlertStatus::Failed),
    }
}

impl From<domain::AlertStatus> for v1::AlertStatus {
    fn from(s: domain::AlertStatus) -> Self {
        match s {
            domain::AlertStatus::Pending => v1::AlertStatus::Pending,
            domain::AlertStatus::Delivered => v1::AlertStatus::Delivered,
            domain::AlertStatus::Grouped => v1::AlertStatus::Grouped,
            domain::AlertStatus::RateLimited => v1::AlertStatus::RateLimited,
            domain::AlertStatus::Failed => v1::AlertStatus::Failed,
        }
    }
}

fn action_kind(value: i32) -> Result<domain::ActionKind> {
    use v1::ActionKind as W;
    match W::try_from(value).map_err(|_| unknown("kind", value))? {
        W::Unspecified => Err(unknown("kind", value)),
        W::BlockAddress => Ok(domain::ActionKind::BlockAddress),
        W::IsolateHost => Ok(domain::ActionKind::IsolateHost),
        W::DisableAccount => Ok(domain::ActionKind::DisableAccount),
        W::RateLimit => Ok(domain::ActionKind::RateLimit),
    }
}

impl From<domain::ActionKind> for v1::ActionKind {
    fn from(k: domain::ActionKind) -> Self {
        match k {
            domain::ActionKind::BlockAddress => v1::ActionKind::BlockAddress,
            domain::ActionKind::IsolateHost => v1::ActionKind::IsolateHost,
            domain::ActionKind::DisableAccount => v1::ActionKind::DisableAccount,
            domain::ActionKind::RateLimit => v1::ActionKind::RateLimit,
        }
    }
}

fn action_status(value: i32) -> Result<domain::ActionStatus> {
    use v1::ActionStatus as W;
    match W::try_from(value).map_err(|_| unknown("status", value))? {
        W::Unspecified => Err(unknown("status", value)),
        W::Simulated => Ok(domain::ActionStatus::Simulated),
        W::Applied => Ok(domain::ActionStatus::Applied),
        W::Refused => Ok(domain::ActionStatus::Refused),
        W::Failed => Ok(domain::ActionStatus::Failed),
        W::Undone => Ok(domain::ActionStatus::Undone),
        W::Expired => Ok(domain::ActionStatus::Expired),
        W::Pending => Ok(domain::ActionStatus::Pending),
    }
}

impl From<domain::ActionStatus> for v1::ActionStatus {
    fn from(s: domain::ActionStatus) -> Self {
        match s {
            domain::ActionStatus::Simulated => v1::ActionStatus::Simulated,
            domain::ActionStatus::Applied => v1::ActionStatus::Applied,
            domain::ActionStatus::Refused => v1::ActionStatus::Refused,
            domain::ActionStatus::Failed => v1::ActionStatus::Failed,
            domain::ActionStatus::Undone => v1::ActionStatus::Undone,
            domain::ActionStatus::Expired => v1::ActionStatus::Expired,
            domain::ActionStatus::Pending => v1::ActionStatus::Pending,
        }
    }
}

fn incident_status(value: i32) -> Result<domain::IncidentStatus> {
    use v1::IncidentStatus as W;
    match W::try_from(value).map_err(|_| unknown("status", value))? {
        W::Unspecified => Err(unknown("status", value)),
        W::Open => Ok(domain::IncidentStatus::Open),
        W::Acknowledged => Ok(domain::IncidentStatus::Acknowledged),
        W::Resolved => Ok(domain::IncidentStatus::Resolved),
    }
}

impl From<domain::IncidentStatus> for v1::IncidentStatus {
    fn from(s: domain::IncidentStatus) -> Self {
        match s {
            domain::IncidentStatus::Open => v1::IncidentStatus::Open,
            domain::IncidentStatus::Acknowledged => v1::IncidentStatus::Acknowledged,
            domain::IncidentStatus::Resolved => v1::IncidentStatus::Resolved,
        }
    }
}

fn health_state(value: i32) -> Result<domain::HealthState> {
    use v1::HealthState as W;
    match W::try_from(value).map_err(|_| unknown("state", value))? {
        W::Unspecified => Err(unknown("state", value)),
        W::Healthy => Ok(domain::HealthState::Healthy),
        W::Degraded => Ok(domain::HealthState::Degraded),
        W::Critical => Ok(domain::HealthState::Critical),
    }
}

impl From<domain::HealthState> for v1::HealthState {
    fn from(s: domain::HealthState) -> Self {
        match s {
            domain::HealthState::Healthy => v1::HealthState::Healthy,
            domain::HealthState::Degraded => v1::HealthState::Degraded,
            domain::HealthState::Critical => v1::HealthState::Critical,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

impl TryFrom<v1::ThreatSignal> for domain::ThreatSignal {
    type Error = ConversionError;

    /// The id may be empty (the broker fingerprints such signals); the rest is validated.
    fn try_from(w: v1::ThreatSignal) -> Result<Self> {
        if w.threat_type.trim().is_empty() {
            return Err(ConversionError::Empty {
                field: "threat_type",
                expected: "a threat type such as \"port_scan\" (JSON: threatType or type)",
            });
        }
        for (field, text) in [
            ("id", &w.id),
            ("threat_type", &w.threat_type),
            ("protocol", &w.protocol),
            ("sensor", &w.sensor),
        ] {
            within(field.to_owned(), text, MAX_TEXT_BYTES)?;
        }
        for (field, count) in [
            ("numeric", w.numeric.len()),
            ("categorical", w.categorical.len()),
        ] {
            if count > MAX_ATTRIBUTES {
                return Err(ConversionError::TooMany {
                    field,
                    count,
                    max: MAX_ATTRIBUTES,
                });
            }
        }
        for name in w.numeric.keys().chain(w.categorical.keys()) {
            within(
                format!("attribute name starting {:?}", truncated(name)),
                name,
                MAX_ATTRIBUTE_NAME_BYTES,
            )?;
        }
        for (name, value) in &w.categorical {
            within(format!("categorical.{name}"), value, MAX_TEXT_BYTES)?;
        }
        // The domain checks these too (below); checked here first so that the message has the
        // attribute's name and the accepted values.
        for (name, value) in &w.numeric {
            attribute_name("numeric", name)?;
            if !value.is_finite() {
                return Err(ConversionError::BadValue {
                    field: format!("numeric.{name}"),
                    value: value.to_string(),
                    kind: "a finite number",
                    expected: "a finite number",
                });
            }
        }
        for name in w.categorical.keys() {
            attribute_name("categorical", name)?;
        }
        let signal = domain::ThreatSignal {
            id: w.id,
            threat_type: w.threat_type,
            source_ip: address("source_ip", w.source_ip)?,
            destination_ip: address("destination_ip", w.destination_ip)?,
            source_port: port("source_port", w.source_port)?,
            destination_port: port("destination_port", w.destination_port)?,
            protocol: optional_string(w.protocol.trim().to_ascii_lowercase()),
            confidence: in_range("confidence", w.confidence, 0.0, 1.0)?,
            severity: optional_severity("severity", w.severity)?,
            sensor: w.sensor,
            timestamp: timestamp("timestamp", w.timestamp)?,
            bytes: w.bytes,
            packets: w.packets,
            duration_seconds: in_range("duration_seconds", w.duration_seconds, 0.0, f64::MAX)?,
            numeric: w.numeric.into_iter().collect(),
            categorical: w.categorical.into_iter().collect(),
        };
        signal.validate()?;
        Ok(signal)
    }
}

impl From<domain::ThreatSignal> for v1::ThreatSignal {
    fn from(d: domain::ThreatSignal) -> Self {
        Self {
            id: d.id,
            threat_type: d.threat_type,
            source_ip: d.source_ip.map(|a| a.to_string()).unwrap_or_default(),
            destination_ip: d.destination_ip.map(|a| a.to_string()).unwrap_or_default(),
            source_port: d.source_port.map(u32::from).unwrap_or_default(),
            destination_port: d.destination_port.map(u32::from).unwrap_or_default(),
            protocol: d.protocol.unwrap_or_default(),
            confidence: d.confidence,
            severity: severity_i32(d.severity),
            sensor: d.sensor,
            timestamp: Some(d.timestamp.into()),
            bytes: d.bytes,
            packets: d.packets,
            duration_seconds: d.duration_seconds,
            numeric: d.numeric.into_iter().collect(),
            categorical: d.categorical.into_iter().collect(),
        }
    }
}

impl TryFrom<v1::SecurityEvent> for domain::SecurityEvent {
    type Error = ConversionError;

    fn try_from(w: v1::SecurityEvent) -> Result<Self> {
        let event_type = v1::EventType::try_from(w.event_type)
            .map_err(|_| unknown("event_type", w.event_type))?;
        let event = domain::SecurityEvent {
            id: w.id,
            event_type: event_type.try_into()?,
            timestamp: timestamp("timestamp", w.timestamp)?,
            source: w.source,
            correlation_id: w.correlation_id,
            severity: optional_severity("severity", w.severity)?,
            data: struct_to_json(w.data),
        };
        event.validate()?;
        Ok(event)
    }
}

impl From<domain::SecurityEvent> for v1::SecurityEvent {
    fn from(d: domain::SecurityEvent) -> Self {
        Self {
            id: d.id,
            event_type: v1::EventType::from(d.event_type) as i32,
            timestamp: Some(d.timestamp.into()),
            source: d.source,
            correlation_id: d.correlation_id,
            severity: severity_i32(d.severity),
            data: json_to_struct(&d.data),
        }
    }
}

fn json_text(field: &'static str, text: String) -> Result<Option<serde_json::Value>> {
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text).map(Some).map_err(|e| {
        ConversionError::Invalid(ValidationError::Invalid {
            field,
            reason: format!("not valid JSON: {e}"),
        })
    })
}

impl TryFrom<v1::ConfigChange> for domain::ConfigChange {
    type Error = ConversionError;

    fn try_from(w: v1::ConfigChange) -> Result<Self> {
        Ok(domain::ConfigChange {
            key: non_empty("key", w.key)?,
            old_value: json_text("old_value_json", w.old_value_json)?,
            new_value: json_text("new_value_json", w.new_value_json)?,
            actor: w.actor,
            timestamp: timestamp("timestamp", w.timestamp)?,
        })
    }
}

impl From<domain::ConfigChange> for v1::ConfigChange {
    fn from(d: domain::ConfigChange) -> Self {
        Self {
            key: d.key,
            old_value_json: d.old_value.map(|v| v.to_string()).unwrap_or_default(),
            new_value_json: d.new_value.map(|v| v.to_string()).unwrap_or_default(),
            actor: d.actor,
            timestamp: Some(d.timestamp.into()),
        }
    }
}

impl TryFrom<v1::RiskFactor> for domain::RiskFactor {
    type Error = ConversionError;

    fn try_from(w: v1::RiskFactor) -> Result<Self> {
        Ok(domain::RiskFactor {
            name: non_empty("factors.name", w.name)?,
            contribution: in_range("factors.contribution", w.contribution, -10.0, 10.0)?,
            detail: w.detail,
        })
    }
}

impl From<domain::RiskFactor> for v1::RiskFactor {
    fn from(d: domain::RiskFactor) -> Self {
        Self {
            name: d.name,
            contribution: d.contribution,
            detail: d.detail,
        }
    }
}

impl TryFrom<v1::Assessment> for domain::Assessment {
    type Error = ConversionError;

    fn try_from(w: v1::Assessment) -> Result<Self> {
        let assessment = domain::Assessment {
            threat_id: w.threat_id,
            risk_score: w.risk_score,
            risk_level: severity("risk_level", w.risk_level)?,
            confidence: w.confidence,
            rule_score: w.rule_score,
            ml_score: w.ml_score,
            factors: w
                .factors
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
            assessed_at: timestamp("assessed_at", w.assessed_at)?,
        };
        assessment.validate()?;
        Ok(assessment)
    }
}

impl From<domain::Assessment> for v1::Assessment {
    fn from(d: domain::Assessment) -> Self {
        Self {
            threat_id: d.threat_id,
            risk_score: d.risk_score,
            risk_level: v1::Severity::from(d.risk_level) as i32,
            confidence: d.confidence,
            rule_score: d.rule_score,
            ml_score: d.ml_score,
            factors: d.factors.into_iter().map(Into::into).collect(),
            assessed_at: Some(d.assessed_at.into()),
        }
    }
}

impl TryFrom<v1::ModelMetrics> for domain::ModelMetrics {
    type Error = ConversionError;

    fn try_from(w: v1::ModelMetrics) -> Result<Self> {
        Ok(domain::ModelMetrics {
            accuracy: in_range("metrics.accuracy", w.accuracy, 0.0, 1.0)?,
            precision: in_range("metrics.precision", w.precision, 0.0, 1.0)?,
            recall: in_range("metrics.recall", w.recall, 0.0, 1.0)?,
            f1: in_range("metrics.f1", w.f1, 0.0, 1.0)?,
            auc_roc: in_range("metrics.auc_roc", w.auc_roc, 0.0, 1.0)?,
            cross_val_score: w
                .cross_val_score
                .map(|v| in_range("metrics.cross_val_score", v, 0.0, 1.0))
                .transpose()?,
        })
    }
}

impl From<domain::ModelMetrics> for v1::ModelMetrics {
    fn from(d: domain::ModelMetrics) -> Self {
        Self {
            accuracy: d.accuracy,
            precision: d.precision,
            recall: d.recall,
            f1: d.f1,
            auc_roc: d.auc_roc,
            cross_val_score: d.cross_val_score,
        }
    }
}

impl TryFrom<v1::ModelVersion> for domain::ModelVersion {
    type Error = ConversionError;

    fn try_from(w: v1::ModelVersion) -> Result<Self> {
        Ok(domain::ModelVersion {
            id: non_empty("id", w.id)?,
            model_type: model_type(w.model_type)?,
            version: w.version,
            trained_at: timestamp("trained_at", w.trained_at)?,
            metrics: w.metrics.unwrap_or_default().try_into()?,
            hyperparameters: struct_to_json(w.hyperparameters),
            training_samples: w.training_samples,
            features_used: w.features_used,
            is_active: w.is_active,
            is_production: w.is_production,
        })
    }
}

impl From<domain::ModelVersion> for v1::ModelVersion {
    fn from(d: domain::ModelVersion) -> Self {
        Self {
            id: d.id,
            model_type: v1::ModelType::from(d.model_type) as i32,
            version: d.version,
            trained_at: Some(d.trained_at.into()),
            metrics: Some(d.metrics.into()),
            hyperparameters: json_to_struct(&d.hyperparameters),
            training_samples: d.training_samples,
            features_used: d.features_used,
            is_active: d.is_active,
            is_production: d.is_production,
        }
    }
}

impl TryFrom<v1::PredictionResult> for domain::PredictionResult {
    type Error = ConversionError;

    fn try_from(w: v1::PredictionResult) -> Result<Self> {
        let member_probabilities = w
            .member_probabilities
            .into_iter()
            .map(|(name, p)| {
                let model =
                    name.parse::<domain::ModelType>()
                        .map_err(|_| ConversionError::BadValue {
                            field: "member_probabilities".into(),
                            value: format!("{name:?}"),
                            kind: "a member model",
                            expected: "random_forest, xgboost or neural_network",
                        })?;
                Ok((model, p))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        let abstention = match w.abstention {
            None => None,
            Some(a) => Some(domain::Abstention {
                reason: abstain_reason(a.reason)?,
                detail: a.detail,
            }),
        };
        let result = domain::PredictionResult {
            threat_id: w.threat_id,
            risk_score: w.risk_score,
            risk_level: severity("risk_level", w.risk_level)?,
            confidence: w.confidence,
            model_version_id: w.model_version_id,
            features_used: w.features_used.into_iter().collect::<BTreeMap<_, _>>(),
            prediction_time_ms: w.prediction_time_ms,
            created_at: timestamp("created_at", w.created_at)?,
            coverage: w.coverage,
            missing_inputs: w.missing_inputs,
            in_domain: w.in_domain,
            probability: w.probability,
            decision_threshold: w.decision_threshold,
            member_probabilities,
            novelty: w.novelty,
            abstention,
        };
        result.validate()?;
        Ok(result)
    }
}

fn abstain_reason(value: i32) -> Result<domain::AbstainReason> {
    match v1::AbstainReason::try_from(value) {
        Ok(v1::AbstainReason::LowCoverage) => Ok(domain::AbstainReason::LowCoverage),
        _ => Err(ConversionError::UnknownEnum {
            field: "abstention.reason",
            value,
            expected: "ABSTAIN_REASON_LOW_COVERAGE",
        }),
    }
}

impl From<domain::PredictionResult> for v1::PredictionResult {
    fn from(d: domain::PredictionResult) -> Self {
        Self {
            threat_id: d.threat_id,
            risk_score: d.risk_score,
            risk_level: v1::Severity::from(d.risk_level) as i32,
            confidence: d.confidence,
            model_version_id: d.model_version_id,
            features_used: d.features_used.into_iter().collect(),
            prediction_time_ms: d.prediction_time_ms,
            created_at: Some(d.created_at.into()),
            coverage: d.coverage,
            missing_inputs: d.missing_inputs,
            in_domain: d.in_domain,
            probability: d.probability,
            decision_threshold: d.decision_threshold,
            member_probabilities: d
                .member_probabilities
                .into_iter()
                .map(|(model, p)| (model.as_str().to_owned(), p))
                .collect(),
            novelty: d.novelty,
            abstention: d.abstention.map(|a| v1::Abstention {
                reason: match a.reason {
                    domain::AbstainReason::LowCoverage => v1::AbstainReason::LowCoverage,
                } as i32,
                detail: a.detail,
            }),
        }
    }
}

impl TryFrom<v1::WorkflowStep> for domain::WorkflowStep {
    type Error = ConversionError;

    fn try_from(w: v1::WorkflowStep) -> Result<Self> {
        Ok(domain::WorkflowStep {
            name: non_empty("steps.name", w.name)?,
            outcome: step_outcome(w.outcome)?,
            detail: optional_string(w.detail),
            duration_ms: in_range("steps.duration_ms", w.duration_ms, 0.0, f64::MAX)?,
        })
    }
}

impl From<domain::WorkflowStep> for v1::WorkflowStep {
    fn from(d: domain::WorkflowStep) -> Self {
        Self {
            name: d.name,
            outcome: v1::StepOutcome::from(d.outcome) as i32,
            detail: d.detail.unwrap_or_default(),
            duration_ms: d.duration_ms,
        }
    }
}

impl TryFrom<v1::WorkflowExecution> for domain::WorkflowExecution {
    type Error = ConversionError;

    fn try_from(w: v1::WorkflowExecution) -> Result<Self> {
        let workflow = domain::WorkflowExecution {
            id: w.id,
            event_id: w.event_id,
            workflow_type: w.workflow_type,
            status: workflow_status(w.status)?,
            started_at: timestamp("started_at", w.started_at)?,
            completed_at: optional_timestamp("completed_at", w.completed_at)?,
            steps: w
                .steps
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
            results: struct_to_json(w.results),
            error_message: optional_string(w.error_message),
            duration_seconds: w.duration_seconds,
        };
        workflow.validate()?;
        Ok(workflow)
    }
}

impl From<domain::WorkflowExecution> for v1::WorkflowExecution {
    fn from(d: domain::WorkflowExecution) -> Self {
        Self {
            id: d.id,
            event_id: d.event_id,
            workflow_type: d.workflow_type,
            status: v1::WorkflowStatus::from(d.status) as i32,
            started_at: Some(d.started_at.into()),
            completed_at: d.completed_at.map(Into::into),
            steps: d.steps.into_iter().map(Into::into).collect(),
            results: json_to_struct(&d.results),
            error_message: d.error_message.unwrap_or_default(),
            duration_seconds: d.duration_seconds,
        }
    }
}

impl TryFrom<v1::Alert> for domain::Alert {
    type Error = ConversionError;

    fn try_from(w: v1::Alert) -> Result<Self> {
        Ok(domain::Alert {
            id: non_empty("id", w.id)?,
            event_id: non_empty("event_id", w.event_id)?,
            threat_key: w.threat_key,
            channel: non_empty("channel", w.channel)?,
            severity: severity("severity", w.severity)?,
            title: w.title,
            body: w.body,
            status: alert_status(w.status)?,
            attempts: w.attempts,
            last_error: optional_string(w.last_error),
            created_at: timestamp("created_at", w.created_at)?,
            delivered_at: optional_timestamp("delivered_at", w.delivered_at)?,
        })
    }
}

impl From<domain::Alert> for v1::Alert {
    fn from(d: domain::Alert) -> Self {
        Self {
            id: d.id,
            event_id: d.event_id,
            threat_key: d.threat_key,
            channel: d.channel,
            severity: v1::Severity::from(d.severity) as i32,
            title: d.title,
            body: d.body,
            status: v1::AlertStatus::from(d.status) as i32,
            attempts: d.attempts,
            last_error: d.last_error.unwrap_or_default(),
            created_at: Some(d.created_at.into()),
            delivered_at: d.delivered_at.map(Into::into),
        }
    }
}

impl TryFrom<v1::RemediationAction> for domain::RemediationAction {
    type Error = ConversionError;

    fn try_from(w: v1::RemediationAction) -> Result<Self> {
        Ok(domain::RemediationAction {
            id: non_empty("id", w.id)?,
            event_id: non_empty("event_id", w.event_id)?,
            kind: action_kind(w.kind)?,
            target: non_empty("target", w.target)?,
            executor: non_empty("executor", w.executor)?,
            status: action_status(w.status)?,
            details: struct_to_json(w.details),
            undo: struct_to_json(w.undo),
            expires_at: optional_timestamp("expires_at", w.expires_at)?,
            created_at: timestamp("created_at", w.created_at)?,
        })
    }
}

impl From<domain::RemediationAction> for v1::RemediationAction {
    fn from(d: domain::RemediationAction) -> Self {
        Self {
            id: d.id,
            event_id: d.event_id,
            kind: v1::ActionKind::from(d.kind) as i32,
            target: d.target,
            executor: d.executor,
            status: v1::ActionStatus::from(d.status) as i32,
            details: json_to_struct(&d.details),
            undo: json_to_struct(&d.undo),
            expires_at: d.expires_at.map(Into::into),
            created_at: Some(d.created_at.into()),
        }
    }
}

impl TryFrom<v1::Incident> for domain::Incident {
    type Error = ConversionError;

    fn try_from(w: v1::Incident) -> Result<Self> {
        Ok(domain::Incident {
            id: non_empty("id", w.id)?,
            threat_key: non_empty("threat_key", w.threat_key)?,
            title: w.title,
            severity: severity("severity", w.severity)?,
            status: incident_status(w.status)?,
            event_ids: w.event_ids,
            created_at: timestamp("created_at", w.created_at)?,
            updated_at: timestamp("updated_at", w.updated_at)?,
        })
    }
}

impl From<domain::Incident> for v1::Incident {
    fn from(d: domain::Incident) -> Self {
        Self {
            id: d.id,
            threat_key: d.threat_key,
            title: d.title,
            severity: v1::Severity::from(d.severity) as i32,
            status: v1::IncidentStatus::from(d.status) as i32,
            event_ids: d.event_ids,
            created_at: Some(d.created_at.into()),
            updated_at: Some(d.updated_at.into()),
        }
    }
}

impl TryFrom<v1::Heartbeat> for domain::Heartbeat {
    type Error = ConversionError;

    fn try_from(w: v1::Heartbeat) -> Result<Self> {
        Ok(domain::Heartbeat {
            service: non_empty("service", w.service)?,
            instance: non_empty("instance", w.instance)?,
            timestamp: timestamp("timestamp", w.timestamp)?,
            version: w.version,
            ready: w.ready,
            uptime_ms: w.uptime_ms,
            interval_ms: w.interval_ms,
            operations: w.operations,
            errors: w.errors,
            latency: w
                .latency
                .map(|l| {
                    Ok::<_, ConversionError>(domain::LatencyPercentiles {
                        p50_ms: in_range("latency.p50_ms", l.p50_ms, 0.0, f64::MAX)?,
                        p95_ms: in_range("latency.p95_ms", l.p95_ms, 0.0, f64::MAX)?,
                        p99_ms: in_range("latency.p99_ms", l.p99_ms, 0.0, f64::MAX)?,
                    })
                })
                .transpose()?,
            dependencies: w
                .dependencies
                .into_iter()
                .map(|(name, d)| {
                    (
                        name,
                        domain::DependencyStatus {
                            ok: d.ok,
                            detail: d.detail,
                        },
                    )
                })
                .collect(),
        })
    }
}

impl From<domain::Heartbeat> for v1::Heartbeat {
    fn from(d: domain::Heartbeat) -> Self {
        Self {
            service: d.service,
            instance: d.instance,
            timestamp: Some(d.timestamp.into()),
            version: d.version,
            ready: d.ready,
            uptime_ms: d.uptime_ms,
            interval_ms: d.interval_ms,
            operations: d.operations,
            errors: d.errors,
            latency: d.latency.map(|l| v1::LatencyPercentiles {
                p50_ms: l.p50_ms,
                p95_ms: l.p95_ms,
                p99_ms: l.p99_ms,
            }),
            dependencies: d
                .dependencies
                .into_iter()
                .map(|(name, d)| {
                    (
                        name,
                        v1::DependencyStatus {
                            ok: d.ok,
                            detail: d.detail,
                        },
                    )
                })
                .collect(),
        }
    }
}

impl TryFrom<v1::ComponentHealth> for domain::ComponentHealth {
    type Error = ConversionError;

    fn try_from(w: v1::ComponentHealth) -> Result<Self> {
        Ok(domain::ComponentHealth {
            component: non_empty("component", w.component)?,
            state: health_state(w.state)?,
            operations: w.operations,
            errors: w.errors,
            avg_latency_ms: in_range("avg_latency_ms", w.avg_latency_ms, 0.0, f64::MAX)?,
            p99_latency_ms: in_range("p99_latency_ms", w.p99_latency_ms, 0.0, f64::MAX)?,
            last_seen: optional_timestamp("last_seen", w.last_seen)?,
        })
    }
}

impl From<domain::ComponentHealth> for v1::ComponentHealth {
    fn from(d: domain::ComponentHealth) -> Self {
        Self {
            component: d.component,
            state: v1::HealthState::from(d.state) as i32,
            operations: d.operations,
            errors: d.errors,
            avg_latency_ms: d.avg_latency_ms,
            p99_latency_ms: d.p99_latency_ms,
            last_seen: d.last_seen.map(Into::into),
        }
    }
}

impl TryFrom<v1::SystemStatus> for domain::SystemStatus {
    type Error = ConversionError;

    fn try_from(w: v1::SystemStatus) -> Result<Self> {
        Ok(domain::SystemStatus {
            state: health_state(w.state)?,
            components: w
                .components
                .into_iter()
                .map(|c| domain::ComponentHealth::try_from(c).map(|c| (c.component.clone(), c)))
                .collect::<Result<_>>()?,
            events_processed: w.events_processed,
            feedback_accuracy: w
                .feedback_accuracy
                .map(|v| in_range("feedback_accuracy", v, 0.0, 1.0))
                .transpose()?,
            timestamp: timestamp("timestamp", w.timestamp)?,
        })
    }
}

impl From<domain::SystemStatus> for v1::SystemStatus {
    fn from(d: domain::SystemStatus) -> Self {
        Self {
            state: v1::HealthState::from(d.state) as i32,
            components: d.components.into_values().map(Into::into).collect(),
            events_processed: d.events_processed,
            feedback_accuracy: d.feedback_accuracy,
            timestamp: Some(d.timestamp.into()),
        }
    }
}
