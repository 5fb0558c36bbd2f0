//! `[soar.channels]`: Slack, PagerDuty, Opsgenie, Teams, email and webhook settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vigil_domain::ValidationError;

use super::{ChannelKind, Result, invalid, require_http_url};
use crate::secret::Secret;

/// The configured channels; a channel without a section is not configured and is skipped.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelSettings {
    pub slack: Option<SlackSettings>,
    pub pagerduty: Option<PagerDutySettings>,
    pub opsgenie: Option<OpsgenieSettings>,
    pub teams: Option<TeamsSettings>,
    pub email: Option<EmailSettings>,
    pub webhook: Option<WebhookSettings>,
}

impl ChannelSettings {
    /// Whether a channel has a section.
    pub fn is_configured(&self, channel: ChannelKind) -> bool {
        match channel {
            ChannelKind::Slack => self.slack.is_some(),
            ChannelKind::PagerDuty => self.pagerduty.is_some(),
            ChannelKind::Opsgenie => self.opsgenie.is_some(),
            ChannelKind::Teams => self.teams.is_some(),
            ChannelKind::Email => self.email.is_some(),
            ChannelKind::Webhook => self.webhook.is_some(),
        }
    }

    /// The channels that have a section.
    pub fn configured(&self) -> Vec<ChannelKind> {
        ChannelKind::ALL
            .into_iter()
            .filter(|c| self.is_configured(*c))
            .collect()
    }

    /// Validates each configured channel.
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = &self.slack {
            s.validate()?;
        }
        if let Some(s) = &self.pagerduty {
            s.validate()?;
        }
        if let Some(s) = &self.opsgenie {
            s.validate()?;
        }
        if let Some(s) = &self.teams {
            s.validate()?;
        }
        if let Some(s) = &self.email {
            s.validate()?;
        }
        if let Some(s) = &self.webhook {
            s.validate()?;
        }
        Ok(())
    }
}

/// Slack incoming webhook.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSettings {
    /// `https://hooks.slack.com/services/...`; secret, since the URL is the credential.
    pub webhook_url: Secret,
}

impl SlackSettings {
    /// The webhook URL is an http(s) URL.
    pub fn validate(&self) -> Result<()> {
        require_http_url("soar.channels.slack.webhook_url", self.webhook_url.expose())
    }
}

/// PagerDuty Events API v2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerDutySettings {
    /// Integration (routing) key of the PagerDuty service.
    pub routing_key: Secret,
    /// Base URL; events go to `<api_url>/v2/enqueue`.
    pub api_url: String,
}

impl Default for PagerDutySettings {
    fn default() -> Self {
        Self {
            routing_key: Secret::default(),
            api_url: "https://events.pagerduty.com".into(),
        }
    }
}

impl PagerDutySettings {
    /// A routing key and an http(s) base URL.
    pub fn validate(&self) -> Result<()> {
        if self.routing_key.expose().trim().is_empty() {
            return Err(ValidationError::Empty {
                field: "soar.channels.pagerduty.routing_key",
            });
        }
        require_http_url("soar.channels.pagerduty.api_url", &self.api_url)
    }
}

/// Opsgenie Alert API v2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsgenieSettings {
    /// Key of an API integration (sent as `Authorization: GenieKey <key>`).
    pub api_key: Secret,
    /// Base URL (`https://api.eu.opsgenie.com` for EU accounts); alerts go to `<api_url>/v2/alerts`.
    pub api_url: String,
    /// Tags added to every alert.
    pub tags: Vec<String>,
}

impl Default for OpsgenieSettings {
    fn default() -> Self {
        Self {
            api_key: Secret::default(),
            api_url: "https://api.opsgenie.com".into(),
            tags: vec!["vigil".into()],
        }
    }
}

impl OpsgenieSettings {
    /// An API key and an http(s) base URL.
    pub fn validate(&self) -> Result<()> {
        if self.api_key.expose().trim().is_empty() {
            return Err(ValidationError::Empty {
                field: "soar.channels.opsgenie.api_key",
            });
        }
        require_http_url("soar.channels.opsgenie.api_url", &self.api_url)
    }
}

/// Card format posted to a Microsoft Teams webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamsFormat {
    /// Adaptive Card in a message attachment (Workflows webhooks).
    #[default]
    AdaptiveCard,
    /// Legacy Office 365 connector MessageCard.
    MessageCard,
}

/// Microsoft Teams incoming webhook.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamsSettings {
    /// Secret, since the URL is the credential.
    pub webhook_url: Secret,
    pub format: TeamsFormat,
}

impl TeamsSettings {
    /// The webhook URL is an http(s) URL.
    pub fn validate(&self) -> Result<()> {
        require_http_url("soar.channels.teams.webhook_url", self.webhook_url.expose())
    }
}

/// Transport security towards the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plaintext; only for a relay on localhost or a trusted network.
    None,
    /// STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Email over SMTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `Vigil <vigil@example.com>` or a bare address.
    pub from: String,
    pub to: Vec<String>,
    pub timeout_ms: u64,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            from: String::new(),
            to: Vec::new(),
            timeout_ms: 10_000,
        }
    }
}

impl EmailSettings {
    /// A host, a sender, at least one recipient, credentials given together.
    pub fn validate(&self) -> Result<()> {
        if self.host.trim().is_empty() {
            return Err(ValidationError::Empty {
                field: "soar.channels.email.host",
            });
        }
        if self.port == 0 {
            return Err(invalid("soar.channels.email.port", "must not be 0"));
        }
        if !self.from.contains('@') {
            return Err(invalid(
                "soar.channels.email.from",
                format!("{:?} is not an email address", self.from),
            ));
        }
        if self.to.is_empty() {
            return Err(ValidationError::Empty {
                field: "soar.channels.email.to",
            });
        }
        if let Some(bad) = self.to.iter().find(|a| !a.contains('@')) {
            return Err(invalid(
                "soar.channels.email.to",
                format!("{bad:?} is not an email address"),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(invalid(
                "soar.channels.email.username",
                "username and password must be given together",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(invalid(
                "soar.channels.email.timeout_ms",
                "must be positive",
            ));
        }
        Ok(())
    }
}

/// Generic webhook: JSON signed with HMAC-SHA256.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    pub url: String,
    /// HMAC-SHA256 key; the receiver verifies `X-Vigil-Signature` with it.
    pub secret: Secret,
    /// Extra headers sent with every request.
    pub headers: BTreeMap<String, String>,
}

impl WebhookSettings {
    /// An http(s) URL and a signing secret of at least 16 bytes.
    pub fn validate(&self) -> Result<()> {
        require_http_url("soar.channels.webhook.url", &self.url)?;
        if self.secret.expose().len() < 16 {
            return Err(invalid(
                "soar.channels.webhook.secret",
                "must be at least 16 bytes long",
            ));
        }
        Ok(())
    }
}
