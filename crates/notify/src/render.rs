//! Pieces of an alert that several channel formats show.

use serde_json::Value;
use vigil_domain::{Alert, Severity};

/// A detail as text (strings as they are, numbers printed, null and absent as `None`).
pub(crate) fn detail(details: &Value, key: &str) -> Option<String> {
    match &details[key] {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Where the threat came from: the source address, else the sensor, else `vigil`.
pub(crate) fn source(details: &Value) -> String {
    detail(details, "source_ip")
        .or_else(|| detail(details, "sensor"))
        .unwrap_or_else(|| "vigil".to_owned())
}

/// Label / value pairs for fact lists and fields.
pub(crate) fn facts(alert: &Alert, details: &Value) -> Vec<(&'static str, String)> {
    let mut out = vec![("Severity", alert.severity.as_str().to_owned())];
    if let Some(score) = details["risk_score"].as_f64() {
        out.push(("Risk", format!("{score:.1}/10")));
    }
    out.push(("Source", source(details)));
    if let Some(dst) = detail(details, "destination_ip") {
        let port = detail(details, "destination_port")
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        out.push(("Destination", format!("{dst}{port}")));
    }
    out.push(("Threat key", alert.threat_key.clone()));
    out
}

/// A colour per level (hex RGB without `#`).
pub(crate) fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "B00020",
        Severity::High => "D83B01",
        Severity::Medium => "FFB900",
        Severity::Low => "0078D4",
    }
}
