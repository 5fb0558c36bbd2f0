//! Component 2: alert routing. Which channels an assessment goes to, grouping of repeats, and
//! per-channel rate limits; the result is a list of [`Alert`]s for `vigil-notify` to deliver.
//!
//! Grouping is backed by the caller: [`AlertRouter::route`] takes the last alert *sent* for the
//! threat key (the orchestrator reads it from the `alerts` table), so it holds across replicas
//! and restarts. Rate limits are token buckets in this process's memory (per replica).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use vigil_config::{ChannelKind, ChannelRateLimits, RateLimit, RoutingRules, RoutingSettings};
use vigil_domain::{Alert, AlertStatus, Assessment, Severity, ThreatSignal};

use crate::incident::threat_key;

/// The last alert sent (not grouped) for a threat key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreviousAlert {
    pub sent_at: DateTime<Utc>,
    pub severity: Severity,
}

/// What the router decided for one assessed event.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingDecision {
    pub threat_key: String,
    /// One alert per routed channel: `Pending` (to deliver), `Grouped` or `RateLimited` (to
    /// record only). Empty when the level routes nowhere.
    pub alerts: Vec<Alert>,
    /// Structured context for the channels (scores, factors, addresses); also worth storing.
    pub details: Value,
    /// Channels a rule named that have no settings; nothing was sent to them.
    pub unconfigured: Vec<ChannelKind>,
    /// The event repeats a recent alert of the same threat key and did not escalate.
    pub grouped: bool,
}

impl RoutingDecision {
    /// The alerts to deliver now.
    pub fn pending(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Pending)
    }
}

/// A token bucket: refills `per_minute / 60` tokens a second up to `burst`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Option<DateTime<Utc>>,
}

impl TokenBucket {
    /// A full bucket for this limit (`per_minute = 0` never runs dry).
    pub fn new(limit: RateLimit) -> Self {
        let capacity = f64::from(limit.burst.max(1));
        Self {
            capacity,
            per_second: f64::from(limit.per_minute) / 60.0,
            tokens: capacity,
            last: None,
        }
    }

    fn unlimited(&self) -> bool {
        self.per_second == 0.0
    }

    /// Takes a token at `now` if one is there. Time going backwards refills nothing.
    pub fn try_take(&mut self, now: DateTime<Utc>) -> bool {
        if self.unlimited() {
            return true;
        }
        if let Some(last) = self.last {
            let elapsed = now.signed_duration_since(last);
            if elapsed > Duration::zero() {
                let secs = elapsed.num_milliseconds() as f64 / 1_000.0;
                self.tokens = (self.tokens + secs * self.per_second).min(self.capacity);
                self.last = Some(now);
            }
        } else {
            self.last = Some(now);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Routes assessed events to channels.
#[derive(Debug)]
pub struct AlertRouter {
    /// The rules and grouping window, swapped by [`AlertRouter::reconfigure`].
    rules: RwLock<Arc<(RoutingRules, Duration)>>,
    limits: ChannelRateLimits,
    available: BTreeSet<ChannelKind>,
    buckets: Mutex<BTreeMap<ChannelKind, TokenBucket>>,
}

fn rules_of(settings: &RoutingSettings) -> (RoutingRules, Duration) {
    let secs = i64::try_from(settings.group_window_seconds).unwrap_or(i64::MAX / 1_000);
    (
        settings.rules.clone(),
        Duration::try_seconds(secs).unwrap_or(Duration::MAX),
    )
}

impl AlertRouter {
    /// A router with these settings, sending only to the `available` (configured) channels.
    pub fn new(
        settings: &RoutingSettings,
        available: impl IntoIterator<Item = ChannelKind>,
    ) -> Self {
        Self {
            rules: RwLock::new(Arc::new(rules_of(settings))),
            limits: settings.rate_limits.clone(),
            available: available.into_iter().collect(),
            buckets: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes new rules and grouping window from a live configuration change; the channels and
    /// their token buckets stay.
    pub fn reconfigure(&self, settings: &RoutingSettings) {
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rules_of(settings));
    }

    fn current(&self) -> Arc<(RoutingRules, Duration)> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The configured channels that `level` routes to; empty when its rule names none, or names
    /// only channels without settings.
    pub fn channels_for(&self, level: Severity) -> Vec<ChannelKind> {
        self.current()
            .0
            .for_level(level)
            .iter()
            .copied()
            .filter(|c| self.available.contains(c))
            .collect()
    }

    /// Decides the alerts for one assessed event.
    ///
    /// `previous` is the last alert sent (status pending, delivered or failed; not grouped or
    /// rate-limited) for the same threat key. A repeat within the grouping window is `Grouped`
    /// on every channel unless its level is higher than the previous alert's. Otherwise each
    /// channel takes a token from its bucket, or the alert is `RateLimited`.
    pub fn route(
        &self,
        event_id: &str,
        signal: &ThreatSignal,
        assessment: &Assessment,
        previous: Option<PreviousAlert>,
        now: DateTime<Utc>,
    ) -> RoutingDecision {
        let key = threat_key(signal);
        let level = assessment.risk_level;
        let current = self.current();
        let (rules, window) = (&current.0, current.1);
        let (channels, unconfigured): (Vec<ChannelKind>, Vec<ChannelKind>) = rules
            .for_level(level)
            .iter()
            .partition(|c| self.available.contains(c));
        if !unconfigured.is_empty() {
            tracing::debug!(?unconfigured, %level, "routing rule names channels without settings");
        }
        let grouped = previous.is_some_and(|p| {
            window > Duration::zero()
                && now.signed_duration_since(p.sent_at) < window
                && level <= p.severity
        });
        let title = alert_title(signal, assessment);
        let body = alert_body(event_id, signal, assessment);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let alerts = channels
            .into_iter()
            .map(|channel| {
                let status = if grouped {
                    AlertStatus::Grouped
                } else if buckets
                    .entry(channel)
                    .or_insert_with(|| TokenBucket::new(self.limits.for_channel(channel)))
                    .try_take(now)
                {
                    AlertStatus::Pending
                } else {
                    AlertStatus::RateLimited
                };
                Alert {
                    id: uuid::Uuid::now_v7().to_string(),
                    event_id: event_id.to_owned(),
                    threat_key: key.clone(),
                    channel: channel.as_str().to_owned(),
                    severity: level,
                    title: title.clone(),
                    body: body.clone(),
                    status,
                    attempts: 0,
                    last_error: None,
                    created_at: now,
                    delivered_at: None,
                }
            })
            .collect();
        RoutingDecision {
            details: alert_details(event_id, &key, signal, assessment),
            threat_key: key,
            alerts,
            unconfigured,
            grouped,
        }
    }
}

fn alert_title(signal: &ThreatSignal, assessment: &Assessment) -> String {
    let source = signal
        .source_ip
        .map(|ip| format!(" from {ip}"))
        .unwrap_or_default();
    format!(
        "[{}] {}{source} (risk {:.1}/10)",
        assessment.risk_level.as_str().to_ascii_uppercase(),
        signal.threat_type.trim(),
        assessment.risk_score
    )
}

fn endpoint(ip: Option<std::net::IpAddr>, port: Option<u16>) -> String {
    match (ip, port) {
        (Some(ip @ std::net::IpAddr::V6(_)), Some(port)) => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.to_string(),
        (None, Some(port)) => format!("port {port}"),
        (None, None) => "?".to_owned(),
    }
}

fn alert_body(event_id: &str, signal: &ThreatSignal, a: &Assessment) -> String {
    let mut lines = vec![format!(
        "Risk {:.1}/10 ({}), confidence {:.0}%",
        a.risk_score,
        a.risk_level,
        a.confidence * 100.0
    )];
    if let Some(ml) = a.ml_score {
        lines.push(format!("Rule score {:.1}, ML score {ml:.1}", a.rule_score));
    }
    let protocol = signal
        .protocol
        .as_deref()
        .map(|p| format!("/{p}"))
        .unwrap_or_default();
    lines.push(format!(
        "Threat: {} {} -> {}{protocol}",
        signal.threat_type.trim(),
        endpoint(signal.source_ip, signal.source_port),
        endpoint(signal.destination_ip, signal.destination_port),
    ));
    lines.push(format!(
        "Sensor: {}, observed {}",
        if signal.sensor.is_empty() {
            "?"
        } else {
            &signal.sensor
        },
        signal.timestamp.to_rfc3339()
    ));
    lines.push("Why:".to_owned());
    for f in &a.factors {
        lines.push(format!("- {} {:+.2}: {}", f.name, f.contribution, f.detail));
    }
    lines.push(format!("Event {event_id}, threat {}", a.threat_id));
    lines.join("\n")
}

fn alert_details(event_id: &str, key: &str, signal: &ThreatSignal, a: &Assessment) -> Value {
    json!({
        "event_id": event_id,
        "threat_id": a.threat_id,
        "threat_key": key,
        "threat_type": signal.threat_type,
        "source_ip": signal.source_ip,
        "source_port": signal.source_port,
        "destination_ip": signal.destination_ip,
        "destination_port": signal.destination_port,
        "protocol": signal.protocol,
        "sensor": signal.sensor,
        "observed_at": signal.timestamp,
        "risk_score": a.risk_score,
        "risk_level": a.risk_level,
        "rule_score": a.rule_score,
        "ml_score": a.ml_score,
        "confidence": a.confidence,
        "factors": a.factors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_domain::RiskFactor;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(secs)
    }

    fn signal() -> ThreatSignal {
        let mut s = ThreatSignal::new("brute_force", 0.9, at(0));
        s.source_ip = Some("203.0.113.7".parse().unwrap());
        s.destination_ip = Some("10.0.0.5".parse().unwrap());
        s.destination_port = Some(22);
        s.protocol = Some("tcp".into());
        s.sensor = "suricata-1".into();
        s
    }

    fn assessment(level: Severity, score: f64) -> Assessment {
        Assessment {
            threat_id: "threat-1".into(),
            risk_score: score,
            risk_level: level,
            confidence: 0.9,
            rule_score: score,
            ml_score: None,
            factors: vec![RiskFactor {
                name: "type_weight".into(),
                contribution: score,
                detail: "brute force".into(),
            }],
            assessed_at: at(0),
        }
    }

    fn router(settings: RoutingSettings) -> AlertRouter {
        AlertRouter::new(&settings, ChannelKind::ALL)
    }

    fn statuses(d: &RoutingDecision) -> Vec<(String, AlertStatus)> {
        d.alerts
            .iter()
            .map(|a| (a.channel.clone(), a.status))
            .collect()
    }

    #[test]
    fn rules_pick_channels_per_level_and_alerts_carry_the_story() {
        let r = router(RoutingSettings::default());
        let d = r.route(
            "ev-1",
            &signal(),
            &assessment(Severity::Critical, 9.5),
            None,
            at(0),
        );
        assert_eq!(
            statuses(&d),
            [
                ("pagerduty".to_owned(), AlertStatus::Pending),
                ("slack".to_owned(), AlertStatus::Pending),
                ("email".to_owned(), AlertStatus::Pending),
            ]
        );
        let a = &d.alerts[0];
        assert_eq!(a.threat_key, "brute_force:203.0.113.7");
        assert_eq!(a.event_id, "ev-1");
        assert_eq!(
            a.title,
            "[CRITICAL] brute_force from 203.0.113.7 (risk 9.5/10)"
        );
        assert!(
            a.body.contains("203.0.113.7 -> 10.0.0.5:22/tcp"),
            "{}",
            a.body
        );
        assert!(
            a.body.contains("- type_weight +9.50: brute force"),
            "{}",
            a.body
        );
        assert_eq!(d.details["risk_level"], "critical");
        assert_eq!(d.details["factors"][0]["name"], "type_weight");

        let d = r.route(
            "ev-2",
            &signal(),
            &assessment(Severity::Low, 1.0),
            None,
            at(0),
        );
        assert!(d.alerts.is_empty());
    }

    #[test]
    fn unconfigured_channels_are_reported_not_alerted() {
        let r = AlertRouter::new(&RoutingSettings::default(), [ChannelKind::Slack]);
        let d = r.route(
            "ev",
            &signal(),
            &assessment(Severity::High, 8.0),
            None,
            at(0),
        );
        assert_eq!(statuses(&d), [("slack".to_owned(), AlertStatus::Pending)]);
        assert_eq!(d.unconfigured, [ChannelKind::PagerDuty]);
    }

    #[test]
    fn a_repeat_within_the_window_is_grouped_unless_it_escalates() {
        let r = router(RoutingSettings::default()); // 300 s window
        let high = assessment(Severity::High, 8.0);
        let previous = PreviousAlert {
            sent_at: at(0),
            severity: Severity::High,
        };
        let d = r.route("ev-2", &signal(), &high, Some(previous), at(120));
        assert!(d.grouped);
        assert!(
            d.alerts.iter().all(|a| a.status == AlertStatus::Grouped),
            "{:?}",
            statuses(&d)
        );
        assert_eq!(d.pending().count(), 0);

        // After the window it is sent again.
        let d = r.route("ev-3", &signal(), &high, Some(previous), at(300));
        assert!(!d.grouped);
        assert_eq!(d.pending().count(), 2);

        // A higher level breaks through the window.
        let d = r.route(
            "ev-4",
            &signal(),
            &assessment(Severity::Critical, 9.5),
            Some(previous),
            at(10),
        );
        assert!(!d.grouped);
        assert_eq!(d.pending().count(), 3);

        // A window of 0 turns grouping off.
        let r = router(RoutingSettings {
            group_window_seconds: 0,
            ..RoutingSettings::default()
        });
        let d = r.route("ev-5", &signal(), &high, Some(previous), at(0));
        assert!(!d.grouped);
    }

    #[test]
    fn the_rate_limit_holds_per_channel_and_refills() {
        let mut settings = RoutingSettings::default();
        settings.rules.high = vec![ChannelKind::Slack, ChannelKind::Webhook];
        settings.rate_limits.slack = RateLimit::new(2, 2);
        settings.rate_limits.webhook = RateLimit::unlimited();
        let r = router(settings);
        let high = assessment(Severity::High, 8.0);
        let slack_status = |d: &RoutingDecision| d.alerts[0].status;
        let mut sent = 0;
        for i in 0..10 {
            let d = r.route(&format!("ev-{i}"), &signal(), &high, None, at(i));
            assert_eq!(
                d.alerts[1].status,
                AlertStatus::Pending,
                "webhook is unlimited"
            );
            if slack_status(&d) == AlertStatus::Pending {
                sent += 1;
            } else {
                assert_eq!(slack_status(&d), AlertStatus::RateLimited);
            }
        }
        // Burst of 2; 2 a minute refill 9 s * 1/30 per s = 0.3 tokens: nothing more.
        assert_eq!(sent, 2);
        // 30 s later one token is back, and only one.
        let d = r.route("ev-a", &signal(), &high, None, at(40));
        assert_eq!(slack_status(&d), AlertStatus::Pending);
        let d = r.route("ev-b", &signal(), &high, None, at(40));
        assert_eq!(slack_status(&d), AlertStatus::RateLimited);
    }

    #[test]
    fn a_bucket_ignores_time_going_backwards() {
        let mut b = TokenBucket::new(RateLimit::new(60, 1));
        assert!(b.try_take(at(100)));
        assert!(!b.try_take(at(0)));
        assert!(!b.try_take(at(100)));
        assert!(b.try_take(at(101)));
    }
}
