//! The identity of a signal for deduplication: the sensor's id when it sets one, else a hash of
//! the signal's canonical content without receive-time fields.

use vigil_domain::ThreatSignal;
use vigil_domain::fingerprint::content_hash;

pub use vigil_domain::fingerprint::FINGERPRINT_FIELDS;

/// Checks that every configured field is one a fingerprint can cover.
pub fn validate_fields(fields: &[String]) -> Result<(), String> {
    match fields
        .iter()
        .find(|f| !FINGERPRINT_FIELDS.contains(&f.as_str()))
    {
        Some(bad) => Err(format!(
            "broker.fingerprint_fields: unknown field {bad:?}; choose from {}",
            FINGERPRINT_FIELDS.join(", ")
        )),
        None => Ok(()),
    }
}

/// `signal.id` when set, else `fp-` + the first 32 hex digits of SHA-256 over the chosen fields
/// (all of [`FINGERPRINT_FIELDS`] when `fields` is empty).
pub fn fingerprint(signal: &ThreatSignal, fields: &[String]) -> String {
    if !signal.id.trim().is_empty() {
        return signal.id.trim().to_owned();
    }
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    format!("fp-{}", content_hash(signal, &fields))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::*;

    fn signal() -> ThreatSignal {
        let mut s = ThreatSignal::new("port_scan", 0.8, Utc::now());
        s.source_ip = Some("203.0.113.7".parse().unwrap());
        s.numeric.insert("count".into(), 3.0);
        s
    }

    #[test]
    fn the_sensor_id_wins() {
        let mut s = signal();
        s.id = "ids-42".into();
        assert_eq!(fingerprint(&s, &[]), "ids-42");
    }

    #[test]
    fn receive_time_does_not_change_the_fingerprint_but_content_does() {
        let a = signal();
        let mut b = a.clone();
        b.timestamp = a.timestamp + Duration::seconds(30);
        assert_eq!(fingerprint(&a, &[]), fingerprint(&b, &[]));
        b.numeric.insert("count".into(), 4.0);
        assert_ne!(fingerprint(&a, &[]), fingerprint(&b, &[]));
    }

    #[test]
    fn narrowed_fields_ignore_the_rest() {
        let a = signal();
        let mut b = a.clone();
        b.confidence = 0.1;
        let fields = vec!["threat_type".to_string(), "source_ip".to_string()];
        assert_eq!(fingerprint(&a, &fields), fingerprint(&b, &fields));
        assert_ne!(fingerprint(&a, &[]), fingerprint(&b, &[]));
        assert!(validate_fields(&["colour".to_string()]).is_err());
    }
}
