//! `[soar]`: settings of the threat assessment, alert routing, delivery, channels, remediation
//! and incidents, one module per section of the TOML file (`soar.routing.rules.high` lives in
//! `soar/routing.rs`).
//!
//! Everything lives under one [`SoarSettings`] value; each section has defaults that run out of the
//! box (remediation in dry-run, no channel configured) and a `validate()` that names the offending
//! key.

mod assessment;
mod channels;
mod delivery;
mod incidents;
mod remediation;
mod routing;

pub use assessment::{AssessmentSettings, VolumeThresholds};
pub use channels::{
    ChannelSettings, EmailSettings, OpsgenieSettings, PagerDutySettings, SlackSettings, SmtpTls,
    TeamsFormat, TeamsSettings, WebhookSettings,
};
pub use delivery::{DeliverySettings, RetryPolicy};
pub use incidents::IncidentSettings;
pub use remediation::{
    ActionRules, ExecutorKind, NftablesSettings, RemediationSettings, RemediationWebhookSettings,
};
pub use routing::{ChannelKind, ChannelRateLimits, RateLimit, RoutingRules, RoutingSettings};

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use vigil_domain::ValidationError;

type Result<T, E = ValidationError> = std::result::Result<T, E>;

fn invalid(field: &'static str, reason: impl Into<String>) -> ValidationError {
    ValidationError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn require_finite_range(field: &'static str, value: f64, min: f64, max: f64) -> Result<()> {
    if !value.is_finite() {
        return Err(ValidationError::NotFinite { field, value });
    }
    if value < min || value > max {
        return Err(ValidationError::OutOfRange {
            field,
            min,
            max,
            value,
        });
    }
    Ok(())
}

fn require_http_url(field: &'static str, url: &str) -> Result<()> {
    let url = url.trim();
    if url.is_empty() {
        return Err(ValidationError::Empty { field });
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        // The URL may carry a credential (Slack, Teams): never echo it.
        return Err(invalid(field, "must start with http:// or https://"));
    }
    Ok(())
}

/// Parses `203.0.113.0/24` or a bare address (`198.51.100.7`, taken as a single host).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if text.contains('/') {
        text.parse::<IpNet>()
            .map_err(|e| format!("{text:?} is not a network: {e}"))
    } else {
        text.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|e| format!("{text:?} is not an address or network: {e}"))
    }
}

/// Serde for lists of networks that also accept bare addresses.
mod network_list {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(nets: &[IpNet], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(nets.iter().map(|n| n.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|s| super::parse_network(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// All settings of components 1-4 and the alert channels (`[soar]` in the TOML file).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoarSettings {
    pub assessment: AssessmentSettings,
    pub routing: RoutingSettings,
    pub delivery: DeliverySettings,
    pub channels: ChannelSettings,
    pub remediation: RemediationSettings,
    pub incidents: IncidentSettings,
}

impl SoarSettings {
    /// Validates every section, and that the fallback channel is configured.
    pub fn validate(&self) -> Result<()> {
        self.assessment.validate()?;
        self.routing.validate()?;
        self.delivery.validate()?;
        self.channels.validate()?;
        self.remediation.validate()?;
        self.incidents.validate()?;
        if let Some(fallback) = self.delivery.fallback
            && !self.channels.is_configured(fallback)
        {
            return Err(invalid(
                "soar.delivery.fallback",
                format!(
                    "channel {fallback} is the fallback but [soar.channels.{fallback}] is not configured"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use vigil_domain::{ActionKind, Severity};

    use super::*;
    use crate::secret::Secret;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let s = SoarSettings::default();
        s.validate().unwrap();
        let text = toml::to_string(&s).unwrap();
        let back: SoarSettings = toml::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(s.remediation.threshold, 7.0);
        assert_eq!(s.remediation.executor, ExecutorKind::DryRun);
        assert!(!s.remediation.nftables.apply);
        assert!(
            s.remediation
                .allow_list
                .iter()
                .any(|n| n.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()))
        );
    }

    #[test]
    fn a_full_toml_section_parses() {
        let text = r#"
            [assessment]
            ml_weight = 0.3
            known_bad = ["203.0.113.0/24", "198.51.100.7"]
            [assessment.type_weights]
            port_scan = 2.0
            [assessment.volume]
            bytes = 1000

            [routing]
            group_window_seconds = 60
            [routing.rules]
            critical = ["pagerduty", "opsgenie"]
            low = ["webhook"]
            [routing.rate_limits.slack]
            per_minute = 5
            burst = 1

            [delivery]
            fallback = "email"
            [delivery.retry]
            max_attempts = 3

            [channels.slack]
            webhook_url = "https://hooks.slack.com/services/T/B/X"
            [channels.pagerduty]
            routing_key = "R0UT1NG"
            [channels.email]
            host = "smtp.example.com"
            from = "Vigil <vigil@example.com>"
            to = ["soc@example.com"]
            username = "vigil"
            password = "pw"

            [remediation]
            executor = "nftables"
            threshold = 8.0
            allow_list = ["10.0.0.0/8", "192.0.2.1"]
            [remediation.actions.by_type]
            port_scan = ["rate_limit"]
            [remediation.nftables]
            apply = true

            [incidents]
            window_seconds = 600
            min_severity = "high"
        "#;
        let s: SoarSettings = toml::from_str(text).unwrap();
        s.validate().unwrap();
        assert_eq!(s.assessment.known_bad.len(), 2);
        assert_eq!(s.assessment.known_bad[1].prefix_len(), 32);
        assert_eq!(
            s.routing.rules.critical,
            vec![ChannelKind::PagerDuty, ChannelKind::Opsgenie]
        );
        assert_eq!(s.routing.rules.high, RoutingRules::default().high);
        assert_eq!(s.routing.rate_limits.slack, RateLimit::new(5, 1));
        assert_eq!(s.delivery.fallback, Some(ChannelKind::Email));
        assert_eq!(s.channels.configured().len(), 3);
        assert_eq!(s.remediation.executor, ExecutorKind::Nftables);
        assert_eq!(
            s.remediation.actions.by_type.get("port_scan"),
            Some(&vec![ActionKind::RateLimit])
        );
        assert_eq!(s.incidents.min_severity, Severity::High);
        // Secrets never print.
        assert!(!format!("{s:?}").contains("R0UT1NG"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key() {
        assert!(toml::from_str::<SoarSettings>("[routing]\ngroup_windw = 3").is_err());
        let err = toml::from_str::<SoarSettings>("[assessment]\nknown_bad = [\"10.0.0.300\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.300"), "{err}");
        assert!(toml::from_str::<SoarSettings>("[routing.rules]\nhigh = [\"pager\"]").is_err());

        let mut s = SoarSettings::default();
        s.delivery.fallback = Some(ChannelKind::Email);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("soar.delivery.fallback"), "{err}");

        let mut s = SoarSettings::default();
        s.assessment.ml_weight = 1.5;
        assert!(s.validate().unwrap_err().to_string().contains("ml_weight"));

        let mut s = SoarSettings::default();
        s.remediation.executor = ExecutorKind::Webhook;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("soar.remediation.webhook")
        );

        let mut s = SoarSettings::default();
        s.remediation.nftables.table = "vigil; rm -rf /".into();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("nftables.table")
        );

        let mut s = SoarSettings::default();
        s.routing.rules.high = vec![ChannelKind::Slack, ChannelKind::Slack];
        assert!(s.validate().unwrap_err().to_string().contains("twice"));

        let mut s = SoarSettings::default();
        s.channels.slack = Some(SlackSettings {
            webhook_url: Secret::new("ftp://secret-token"),
        });
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("slack.webhook_url") && !err.contains("secret-token"),
            "{err}"
        );
    }

    #[test]
    fn channel_and_executor_names_parse() {
        assert_eq!(
            "PagerDuty".parse::<ChannelKind>(),
            Ok(ChannelKind::PagerDuty)
        );
        assert!("sms".parse::<ChannelKind>().is_err());
        assert_eq!("dry_run".parse::<ExecutorKind>(), Ok(ExecutorKind::DryRun));
        assert_eq!(ExecutorKind::Nftables.to_string(), "nftables");
    }
}
