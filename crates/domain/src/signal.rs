use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError, require_in_range, require_non_empty};
use crate::severity::Severity;

/// One observation from a sensor that something may be a threat.
///
/// The well-known fields cover what most sensors report; anything else goes into the open
/// `numeric` and `categorical` maps, so any sensor's data fits (an NSL-KDD row maps onto it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreatSignal {
    /// The sensor's own id for the signal; the broker fingerprints the content when it is empty.
    #[serde(default)]
    pub id: String,
    /// What the sensor thinks it saw, e.g. `port_scan`, `suspicious_traffic`, `neptune`.
    pub threat_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
    /// Transport protocol, lowercase (`tcp`, `udp`, `icmp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The sensor's confidence that this is a threat, 0-1.
    pub confidence: f64,
    /// The sensor's own severity, when it assigns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Which sensor sent it (`suricata-eu-1`, `nsl-kdd-replay`).
    #[serde(default)]
    pub sensor: String,
    /// When the sensor observed it.
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub packets: u64,
    #[serde(default)]
    pub duration_seconds: f64,
    /// Open numeric attributes (counts, rates); values must be finite.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub numeric: BTreeMap<String, f64>,
    /// Open categorical attributes (service, flag, user).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categorical: BTreeMap<String, String>,
}

impl ThreatSignal {
    /// A signal with the required fields set and everything else empty.
    pub fn new(threat_type: impl Into<String>, confidence: f64, timestamp: DateTime<Utc>) -> Self {
        Self {
            id: String::new(),
            threat_type: threat_type.into(),
            source_ip: None,
            destination_ip: None,
            source_port: None,
            destination_port: None,
            protocol: None,
            confidence,
            severity: None,
            sensor: String::new(),
            timestamp,
            bytes: 0,
            packets: 0,
            duration_seconds: 0.0,
            numeric: BTreeMap::new(),
            categorical: BTreeMap::new(),
        }
    }

    /// Checks the rules every consumer relies on: a threat type, confidence in 0-1, finite
    /// non-negative duration and finite numeric attributes.
    pub fn validate(&self) -> Result<()> {
        require_non_empty("threat_type", &self.threat_type)?;
        require_in_range("confidence", self.confidence, 0.0, 1.0)?;
        if !self.duration_seconds.is_finite() || self.duration_seconds < 0.0 {
            return Err(ValidationError::Invalid {
                field: "duration_seconds",
                reason: format!(
                    "must be a finite, non-negative number, got {}",
                    self.duration_seconds
                ),
            });
        }
        for (name, value) in &self.numeric {
            if name.trim().is_empty() {
                return Err(ValidationError::Empty {
                    field: "numeric attribute name",
                });
            }
            if !value.is_finite() {
                return Err(ValidationError::Invalid {
                    field: "numeric",
                    reason: format!("attribute {name:?} must be finite, got {value}"),
                });
            }
        }
        if self.categorical.keys().any(|name| name.trim().is_empty()) {
            return Err(ValidationError::Empty {
                field: "categorical attribute name",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal() -> ThreatSignal {
        ThreatSignal::new("port_scan", 0.8, DateTime::<Utc>::UNIX_EPOCH)
    }

    #[test]
    fn a_plain_signal_is_valid() {
        assert_eq!(signal().validate(), Ok(()));
    }

    #[test]
    fn confidence_outside_unit_interval_is_refused() {
        let mut s = signal();
        s.confidence = 1.5;
        let err = s.validate().unwrap_err();
        assert!(err.to_string().contains("confidence"), "{err}");
    }

    #[test]
    fn nan_attribute_is_refused_with_its_name() {
        let mut s = signal();
        s.numeric.insert("srv_count".into(), f64::NAN);
        let err = s.validate().unwrap_err();
        assert!(err.to_string().contains("srv_count"), "{err}");
    }

    #[test]
    fn json_round_trips_and_rejects_unknown_fields() {
        let mut s = signal();
        s.source_ip = Some("10.0.0.1".parse().unwrap());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ThreatSignal>(&json).unwrap(), s);
        let bad = json.replacen('{', "{\"colour\":\"red\",", 1);
        assert!(serde_json::from_str::<ThreatSignal>(&bad).is_err());
    }
}
