//! `[soar.routing]`: which channels each level goes to, grouping, and per-channel rate limits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vigil_domain::{Severity, ValidationError};

use super::{Result, invalid};

/// An alert channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Slack,
    PagerDuty,
    Opsgenie,
    Teams,
    Email,
    Webhook,
}

impl ChannelKind {
    /// Every channel.
    pub const ALL: [ChannelKind; 6] = [
        ChannelKind::Slack,
        ChannelKind::PagerDuty,
        ChannelKind::Opsgenie,
        ChannelKind::Teams,
        ChannelKind::Email,
        ChannelKind::Webhook,
    ];

    /// The name used in config, in `Alert::channel` and in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::PagerDuty => "pagerduty",
            ChannelKind::Opsgenie => "opsgenie",
            ChannelKind::Teams => "teams",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        ChannelKind::ALL
            .into_iter()
            .find(|c| c.as_str() == wanted)
            .ok_or_else(|| {
                invalid(
                    "channel",
                    format!(
                        "unknown channel {s:?}; expected slack, pagerduty, opsgenie, teams, email or webhook"
                    ),
                )
            })
    }
}

/// Which channels an alert of each level goes to, grouping and per-channel rate limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    pub rules: RoutingRules,
    /// Repeats of one threat key within this many seconds of the last alert sent for it are
    /// grouped (recorded, not sent) unless their level is higher; 0 turns grouping off.
    pub group_window_seconds: u64,
    pub rate_limits: ChannelRateLimits,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            rules: RoutingRules::default(),
            group_window_seconds: 300,
            rate_limits: ChannelRateLimits::default(),
        }
    }
}

impl RoutingSettings {
    /// Rules name each channel at most once per level; rate limits are sane.
    pub fn validate(&self) -> Result<()> {
        self.rules.validate()?;
        self.rate_limits.validate()
    }
}

/// Channels per risk level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingRules {
    pub critical: Vec<ChannelKind>,
    pub high: Vec<ChannelKind>,
    pub medium: Vec<ChannelKind>,
    pub low: Vec<ChannelKind>,
}

impl Default for RoutingRules {
    fn default() -> Self {
        Self {
            critical: vec![
                ChannelKind::PagerDuty,
                ChannelKind::Slack,
                ChannelKind::Email,
            ],
            high: vec![ChannelKind::PagerDuty, ChannelKind::Slack],
            medium: vec![ChannelKind::Slack],
            low: Vec::new(),
        }
    }
}

impl RoutingRules {
    /// The channels for one level.
    pub fn for_level(&self, level: Severity) -> &[ChannelKind] {
        match level {
            Severity::Critical => &self.critical,
            Severity::High => &self.high,
            Severity::Medium => &self.medium,
            Severity::Low => &self.low,
        }
    }

    /// No channel listed twice for one level.
    pub fn validate(&self) -> Result<()> {
        for level in Severity::BY_URGENCY {
            let channels = self.for_level(level);
            for (i, c) in channels.iter().enumerate() {
                if channels[..i].contains(c) {
                    return Err(invalid(
                        "soar.routing.rules",
                        format!("level {level} lists channel {c} twice"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A token bucket: `per_minute` tokens a minute, at most `burst` at once; `per_minute = 0` means
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_minute: 30,
            burst: 10,
        }
    }
}

impl RateLimit {
    /// A limit of `per_minute` with room for `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }

    /// No limit at all.
    pub fn unlimited() -> Self {
        Self {
            per_minute: 0,
            burst: 0,
        }
    }

    fn validate(&self, field: &'static str) -> Result<()> {
        if self.per_minute > 0 && self.burst == 0 {
            return Err(invalid(
                field,
                "burst must be at least 1 when per_minute > 0",
            ));
        }
        Ok(())
    }
}

/// Rate limit of each channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelRateLimits {
    pub slack: RateLimit,
    pub pagerduty: RateLimit,
    pub opsgenie: RateLimit,
    pub teams: RateLimit,
    pub email: RateLimit,
    pub webhook: RateLimit,
}

impl Default for ChannelRateLimits {
    fn default() -> Self {
        Self {
            // Slack allows about one message a second per webhook.
            slack: RateLimit::new(30, 5),
            pagerduty: RateLimit::new(60, 10),
            opsgenie: RateLimit::new(60, 10),
            teams: RateLimit::new(30, 5),
            email: RateLimit::new(10, 5),
            webhook: RateLimit::new(120, 20),
        }
    }
}

impl ChannelRateLimits {
    /// The limit of one channel.
    pub fn for_channel(&self, channel: ChannelKind) -> RateLimit {
        match channel {
            ChannelKind::Slack => self.slack,
            ChannelKind::PagerDuty => self.pagerduty,
            ChannelKind::Opsgenie => self.opsgenie,
            ChannelKind::Teams => self.teams,
            ChannelKind::Email => self.email,
            ChannelKind::Webhook => self.webhook,
        }
    }

    /// Every limit with `per_minute > 0` has a burst of at least 1.
    pub fn validate(&self) -> Result<()> {
        self.slack.validate("soar.routing.rate_limits.slack")?;
        self.pagerduty
            .validate("soar.routing.rate_limits.pagerduty")?;
        self.opsgenie
            .validate("soar.routing.rate_limits.opsgenie")?;
        self.teams.validate("soar.routing.rate_limits.teams")?;
        self.email.validate("soar.routing.rate_limits.email")?;
        self.webhook.validate("soar.routing.rate_limits.webhook")
    }
}
