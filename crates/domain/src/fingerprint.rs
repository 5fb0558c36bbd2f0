//! What identifies a signal's content: a hash over its fields without the receive-time ones.
//! The broker names signals without an id by it, and the orchestrator tells a redelivered or
//! replayed signal (same id, same content) from an id reused for another signal.

use sha2::{Digest, Sha256};

use crate::ThreatSignal;

/// Fields a fingerprint can cover; `timestamp` is deliberately absent (a sensor repeating the
/// same observation later is the duplicate we want to catch).
pub const FINGERPRINT_FIELDS: &[&str] = &[
    "threat_type",
    "source_ip",
    "destination_ip",
    "source_port",
    "destination_port",
    "protocol",
    "confidence",
    "severity",
    "sensor",
    "bytes",
    "packets",
    "duration_seconds",
    "numeric",
    "categorical",
];

/// The first 32 hex digits of SHA-256 over `fields` of `signal` (all of
/// [`FINGERPRINT_FIELDS`] when empty), in canonical JSON.
pub fn content_hash(signal: &ThreatSignal, fields: &[&str]) -> String {
    let value = match serde_json::to_value(signal) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let chosen = if fields.is_empty() {
        FINGERPRINT_FIELDS
    } else {
        fields
    };
    let mut hasher = Sha256::new();
    for field in chosen {
        // serde_json maps are sorted (BTreeMap), so the text is canonical.
        let text = value.get(*field).map(|v| v.to_string()).unwrap_or_default();
        hasher.update(field.as_bytes());
        hasher.update([0x1f]);
        hasher.update(text.as_bytes());
        hasher.update([0x1e]);
    }
    let digest = hex::encode(hasher.finalize());
    digest[..32].to_owned()
}

impl ThreatSignal {
    /// [`content_hash`] over every field: equal for a redelivery or a replay of the signal,
    /// different for another signal that reuses its id (another sensor, other content).
    pub fn content_digest(&self) -> String {
        content_hash(self, &[])
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    #[test]
    fn the_digest_ignores_receive_time_and_sees_the_sensor_and_content() {
        let mut a = ThreatSignal::new("port_scan", 0.9, DateTime::<Utc>::UNIX_EPOCH);
        a.id = "alert-1".into();
        a.sensor = "ids-1".into();
        let mut later = a.clone();
        later.timestamp = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::hours(1);
        assert_eq!(a.content_digest(), later.content_digest());
        let mut other_sensor = a.clone();
        other_sensor.sensor = "ids-2".into();
        assert_ne!(a.content_digest(), other_sensor.content_digest());
        let mut other_type = a.clone();
        other_type.threat_type = "malware".into();
        assert_ne!(a.content_digest(), other_type.content_digest());
        assert_eq!(a.content_digest().len(), 32);
    }
}
