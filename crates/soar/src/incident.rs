//! Component 4: incidents. Pure helpers: the threat key that ties repeats of one threat together,
//! titles, severity merge, and the decision to join the open incident or open a new one.
//!
//! The orchestrator reads the unresolved incident of the threat key from PostgreSQL (at most one,
//! by a partial unique index), asks [`IncidentPolicy::decide`], and writes what it says.

use chrono::{DateTime, Duration, Utc};
use vigil_config::IncidentSettings;
use vigil_domain::{Assessment, Incident, IncidentStatus, Severity, ThreatSignal};

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

/// An incident's severity is the highest of its events'.
pub fn merge_severity(current: Severity, event: Severity) -> Severity {
    current.max(event)
}

/// What to do with an incident for one assessed event.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentDecision {
    /// Update the open incident to this (event appended, severity merged, `updated_at` now).
    Attach {
        incident: Incident,
        /// The severity rose with this event.
        escalated: bool,
    },
    /// Insert this new incident; when `supersedes` is set, first resolve that stale incident
    /// (the one-unresolved-per-key index demands it).
    Open {
        incident: Incident,
        supersedes: Option<String>,
    },
    /// No incident: the event is below the minimum level and nothing is open.
    Skip { reason: String },
}

/// When events join the open incident of their threat key and when they open a new one.
#[derive(Debug, Clone)]
pub struct IncidentPolicy {
    window: Duration,
    min_severity: Severity,
}

impl IncidentPolicy {
    /// A policy from the settings.
    pub fn new(settings: &IncidentSettings) -> Self {
        let secs = i64::try_from(settings.window_seconds).unwrap_or(i64::MAX / 1_000);
        Self {
            window: Duration::try_seconds(secs).unwrap_or(Duration::MAX),
            min_severity: settings.min_severity,
        }
    }

    /// Decides for one event, given the unresolved incident of its threat key (if any).
    ///
    /// An open incident updated within the window takes the event (even a low one, so its
    /// timeline is complete). Otherwise an event at or above the minimum level opens a new
    /// incident, superseding the stale one if there is one; a lower event opens nothing. Attaching the same event twice is a no-op
    /// for the event list (redeliveries are safe).
    pub fn decide(
        &self,
        open: Option<&Incident>,
        event_id: &str,
        signal: &ThreatSignal,
        assessment: &Assessment,
        now: DateTime<Utc>,
    ) -> IncidentDecision {
        let level = assessment.risk_level;
        let open = open.filter(|i| i.status != IncidentStatus::Resolved);
        if let Some(current) = open
            && now.signed_duration_since(current.updated_at) <= self.window
        {
            let mut incident = current.clone();
            let severity = merge_severity(incident.severity, level);
            let escalated = severity > incident.severity;
            if escalated {
                incident.title = incident_title(signal, severity);
            }
            incident.severity = severity;
            if !incident.event_ids.iter().any(|e| e == event_id) {
                incident.event_ids.push(event_id.to_owned());
            }
            incident.updated_at = incident.updated_at.max(now);
            return IncidentDecision::Attach {
                incident,
                escalated,
            };
        }
        if level < self.min_severity {
            return IncidentDecision::Skip {
                reason: format!(
                    "level {level} is below the incident minimum {}",
                    self.min_severity
                ),
            };
        }
        IncidentDecision::Open {
            incident: Incident {
                id: uuid::Uuid::now_v7().to_string(),
                threat_key: threat_key(signal),
                title: incident_title(signal, level),
                severity: level,
                status: IncidentStatus::Open,
                event_ids: vec![event_id.to_owned()],
                created_at: now,
                updated_at: now,
            },
            supersedes: open.map(|i| i.id.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal() -> ThreatSignal {
        let mut s = ThreatSignal::new("Port-Scan", 0.9, DateTime::<Utc>::UNIX_EPOCH);
        s.source_ip = Some("203.0.113.7".parse().unwrap());
        s
    }

    fn assessment(level: Severity) -> Assessment {
        Assessment {
            threat_id: "t".into(),
            risk_score: 5.0,
            risk_level: level,
            confidence: 0.9,
            rule_score: 5.0,
            ml_score: None,
            factors: Vec::new(),
            assessed_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(secs)
    }

    fn policy() -> IncidentPolicy {
        IncidentPolicy::new(&IncidentSettings {
            window_seconds: 600,
            min_severity: Severity::Medium,
        })
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

    #[test]
    fn a_first_event_opens_an_incident_and_a_repeat_attaches_and_escalates() {
        let p = policy();
        let IncidentDecision::Open {
            incident,
            supersedes,
        } = p.decide(None, "e1", &signal(), &assessment(Severity::Medium), at(0))
        else {
            panic!("expected a new incident");
        };
        assert_eq!(supersedes, None);
        assert_eq!(incident.threat_key, "port_scan:203.0.113.7");
        assert_eq!(incident.event_ids, ["e1"]);
        assert_eq!(incident.severity, Severity::Medium);

        let d = p.decide(
            Some(&incident),
            "e2",
            &signal(),
            &assessment(Severity::Critical),
            at(300),
        );
        let IncidentDecision::Attach {
            incident: updated,
            escalated,
        } = d
        else {
            panic!("expected attach, got {d:?}");
        };
        assert!(escalated);
        assert_eq!(updated.id, incident.id);
        assert_eq!(updated.severity, Severity::Critical);
        assert!(updated.title.starts_with("Critical"));
        assert_eq!(updated.event_ids, ["e1", "e2"]);
        assert_eq!(updated.updated_at, at(300));

        // A lower event never lowers the severity; a redelivered event is not listed twice.
        let d = p.decide(
            Some(&updated),
            "e2",
            &signal(),
            &assessment(Severity::Low),
            at(400),
        );
        let IncidentDecision::Attach {
            incident: again,
            escalated,
        } = d
        else {
            panic!("expected attach, got {d:?}");
        };
        assert!(!escalated);
        assert_eq!(again.severity, Severity::Critical);
        assert_eq!(again.event_ids, ["e1", "e2"]);
    }

    #[test]
    fn a_stale_incident_is_superseded_and_low_events_alone_open_nothing() {
        let p = policy();
        let IncidentDecision::Open { incident, .. } =
            p.decide(None, "e1", &signal(), &assessment(Severity::High), at(0))
        else {
            panic!("expected a new incident");
        };
        let d = p.decide(
            Some(&incident),
            "e2",
            &signal(),
            &assessment(Severity::High),
            at(601),
        );
        let IncidentDecision::Open {
            incident: fresh,
            supersedes,
        } = d
        else {
            panic!("expected a new incident, got {d:?}");
        };
        assert_eq!(supersedes.as_deref(), Some(incident.id.as_str()));
        assert_ne!(fresh.id, incident.id);

        let d = p.decide(None, "e3", &signal(), &assessment(Severity::Low), at(0));
        assert!(matches!(d, IncidentDecision::Skip { .. }), "{d:?}");
        let d = p.decide(
            Some(&incident),
            "e3",
            &signal(),
            &assessment(Severity::Low),
            at(601),
        );
        assert!(matches!(d, IncidentDecision::Skip { .. }), "{d:?}");

        // A resolved incident handed in by mistake counts as none.
        let mut resolved = incident.clone();
        resolved.status = IncidentStatus::Resolved;
        let d = p.decide(
            Some(&resolved),
            "e4",
            &signal(),
            &assessment(Severity::High),
            at(10),
        );
        assert!(
            matches!(
                d,
                IncidentDecision::Open {
                    supersedes: None,
                    ..
                }
            ),
            "{d:?}"
        );
    }
}
