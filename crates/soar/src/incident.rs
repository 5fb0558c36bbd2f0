//! Component 4: incidents. Pure helpers: the threat key that ties repeats of one threat together,
//! titles and the severity merge.
//!
//! The decision to join the open incident of a threat key or open a new one is made in one place,
//! in the transaction that commits the workflow (`vigil_store::WorkflowBatch::open_or_attach_incidents`):
//! at most one unresolved incident per key (a partial unique index), resolved first when it was
//! not updated within `soar.incidents.window_seconds`.

use vigil_domain::{Severity, ThreatSignal};

/// The key shared by repeats of one threat: `<threat type>:<source>`, lowercase.
///
/// The source is the source address, else the `host` / `source` attribute, else the sensor, else
/// `unknown`.
pub fn threat_key(signal: &ThreatSignal) -> String {
    let threat_type = signal
        .threat_type
        .trim()
        .to_ascii_lowercase()
        .replace(['-', ' '], "_");
    let source = signal
        .source_ip
        .map(|ip| ip.to_string())
        .or_else(|| {
            ["host", "hostname", "source"]
                .iter()
                .find_map(|k| signal.categorical.get(*k))
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| {
            let sensor = signal.sensor.trim();
            (!sensor.is_empty()).then(|| format!("sensor/{}", sensor.to_ascii_lowercase()))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{threat_type}:{source}")
}

/// A short title: `High port_scan from 203.0.113.7`.
pub fn incident_title(signal: &ThreatSignal, level: Severity) -> String {
    let mut level_name = level.as_str().to_owned();
    if let Some(first) = level_name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let subject = match (signal.source_ip, signal.destination_ip) {
        (Some(src), Some(dst)) => format!(" from {src} to {dst}"),
        (Some(src), None) => format!(" from {src}"),
        (None, Some(dst)) => format!(" against {dst}"),
        (None, None) => String::new(),
    };
    format!("{level_name} {}{subject}", signal.threat_type.trim())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn signal() -> ThreatSignal {
        let mut s = ThreatSignal::new("Port-Scan", 0.9, DateTime::<Utc>::UNIX_EPOCH);
        s.source_ip = Some("203.0.113.7".parse().unwrap());
        s
    }

    #[test]
    fn threat_keys_combine_type_and_source() {
        assert_eq!(threat_key(&signal()), "port_scan:203.0.113.7");
        let mut s = ThreatSignal::new("malware", 0.9, DateTime::<Utc>::UNIX_EPOCH);
        s.categorical.insert("host".into(), "WS-042".into());
        assert_eq!(threat_key(&s), "malware:ws-042");
        s.categorical.clear();
        s.sensor = "edr-1".into();
        assert_eq!(threat_key(&s), "malware:sensor/edr-1");
        s.sensor.clear();
        assert_eq!(threat_key(&s), "malware:unknown");
    }

    #[test]
    fn titles_name_level_type_and_addresses() {
        assert_eq!(
            incident_title(&signal(), Severity::High),
            "High Port-Scan from 203.0.113.7"
        );
    }
}
