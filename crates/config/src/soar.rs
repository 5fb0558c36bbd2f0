//! Settings of the threat assessment, alert routing, channels, remediation and incidents (owned by
//! the soar/notify work).
//!
//! Everything lives under one [`SoarSettings`] value; each section has defaults that run out of the
//! box (remediation in dry-run, no channel configured) and a `validate()` that names the offending
//! key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use vigil_domain::{ActionKind, Severity, ValidationError};

use crate::secret::Secret;

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

// ---------------------------------------------------------------------------------------------
// Component 1: assessment
// ---------------------------------------------------------------------------------------------

/// How the rule-based assessor scores a signal (0-10) and blends in the ML prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssessmentSettings {
    /// Points (0-10) a threat type adds; keys are matched case-insensitively, with `-` and spaces
    /// read as `_`. Replaces the built-in table when set.
    pub type_weights: BTreeMap<String, f64>,
    /// Points for a threat type missing from `type_weights`.
    pub default_type_weight: f64,
    /// Destination ports that are high-risk (remote shells, databases, file sharing).
    pub high_risk_ports: Vec<u16>,
    /// Points for a high-risk destination port.
    pub high_risk_port_points: f64,
    /// Points for any other privileged (< 1024) destination port.
    pub privileged_port_points: f64,
    /// Points at sensor confidence 1.0 (scaled linearly).
    pub sensor_confidence_points: f64,
    /// Points when the sensor itself rated the signal critical (high 2/3, medium 1/3, low 0).
    pub sensor_severity_points: f64,
    /// Known-bad addresses and networks (threat-intel indicators), e.g. `203.0.113.0/24`.
    #[serde(with = "network_list")]
    pub known_bad: Vec<IpNet>,
    /// Points when the source or destination matches a known-bad indicator.
    pub indicator_points: f64,
    pub volume: VolumeThresholds,
    /// The largest weight of the ML score in the final score (0 = rules only, 1 = ML only):
    /// the weight used is this times the prediction's coverage (share of the model's inputs
    /// the signal carried) times its confidence. An abstaining model has no weight.
    pub ml_weight: f64,
}

impl Default for AssessmentSettings {
    fn default() -> Self {
        Self {
            type_weights: default_type_weights(),
            default_type_weight: 2.0,
            high_risk_ports: vec![
                21, 22, 23, 25, 135, 137, 138, 139, 445, 1433, 1521, 2375, 3306, 3389, 5432, 5900,
                5985, 5986, 6379, 9200, 11211, 27017,
            ],
            high_risk_port_points: 1.5,
            privileged_port_points: 0.5,
            sensor_confidence_points: 2.5,
            sensor_severity_points: 1.0,
            known_bad: Vec::new(),
            indicator_points: 3.0,
            volume: VolumeThresholds::default(),
            ml_weight: 0.5,
        }
    }
}

fn default_type_weights() -> BTreeMap<String, f64> {
    [
        // generic categories
        ("ransomware", 4.0),
        ("malware", 3.5),
        ("command_and_control", 3.5),
        ("c2", 3.5),
        ("data_exfiltration", 3.5),
        ("exfiltration", 3.5),
        ("exploit", 3.5),
        ("privilege_escalation", 3.5),
        ("lateral_movement", 3.5),
        ("ddos", 3.0),
        ("dos", 3.0),
        ("brute_force", 3.0),
        ("credential_stuffing", 3.0),
        ("sql_injection", 3.0),
        ("web_attack", 2.5),
        ("phishing", 2.5),
        ("suspicious_traffic", 2.5),
        ("anomaly", 2.0),
        ("port_scan", 1.5),
        ("reconnaissance", 1.5),
        ("policy_violation", 1.0),
        ("normal", 0.0),
        // NSL-KDD attack names, by their category (dos, probe, r2l, u2r)
        ("neptune", 3.0),
        ("smurf", 3.0),
        ("back", 3.0),
        ("teardrop", 3.0),
        ("pod", 3.0),
        ("land", 3.0),
        ("satan", 1.5),
        ("ipsweep", 1.5),
        ("nmap", 1.5),
        ("portsweep", 1.5),
        ("guess_passwd", 3.0),
        ("ftp_write", 3.0),
        ("imap", 3.0),
        ("phf", 3.0),
        ("multihop", 3.0),
        ("warezmaster", 3.0),
        ("warezclient", 2.5),
        ("spy", 3.0),
        ("buffer_overflow", 4.0),
        ("loadmodule", 4.0),
        ("perl", 4.0),
        ("rootkit", 4.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl AssessmentSettings {
    /// Points are finite and within 0-10, the ML weight within 0-1.
    pub fn validate(&self) -> Result<()> {
        for (name, weight) in &self.type_weights {
            if name.trim().is_empty() {
                return Err(ValidationError::Empty {
                    field: "soar.assessment.type_weights key",
                });
            }
            if !weight.is_finite() || !(0.0..=10.0).contains(weight) {
                return Err(invalid(
                    "soar.assessment.type_weights",
                    format!("weight of {name:?} must be within 0..=10, got {weight}"),
                ));
            }
        }
        for (field, value) in [
            (
                "soar.assessment.default_type_weight",
                self.default_type_weight,
            ),
            (
                "soar.assessment.high_risk_port_points",
                self.high_risk_port_points,
            ),
            (
                "soar.assessment.privileged_port_points",
                self.privileged_port_points,
            ),
            (
                "soar.assessment.sensor_confidence_points",
                self.sensor_confidence_points,
            ),
            (
                "soar.assessment.sensor_severity_points",
                self.sensor_severity_points,
            ),
            ("soar.assessment.indicator_points", self.indicator_points),
        ] {
            require_finite_range(field, value, 0.0, 10.0)?;
        }
        require_finite_range("soar.assessment.ml_weight", self.ml_weight, 0.0, 1.0)?;
        self.volume.validate()
    }
}

/// Traffic volumes above which a signal counts as anomalous; 0 turns a metric off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeThresholds {
    pub bytes: u64,
    pub packets: u64,
    pub bytes_per_second: f64,
    pub packets_per_second: f64,
    /// Points for each metric above its threshold.
    pub points_per_metric: f64,
    /// Cap on the points all volume metrics add together.
    pub max_points: f64,
}

impl Default for VolumeThresholds {
    fn default() -> Self {
        Self {
            bytes: 50_000_000,
            packets: 100_000,
            bytes_per_second: 10_000_000.0,
            packets_per_second: 10_000.0,
            points_per_metric: 0.75,
            max_points: 2.0,
        }
    }
}

impl VolumeThresholds {
    /// Rates are finite and non-negative, points within 0-10.
    pub fn validate(&self) -> Result<()> {
        require_finite_range(
            "soar.assessment.volume.bytes_per_second",
            self.bytes_per_second,
            0.0,
            f64::MAX,
        )?;
        require_finite_range(
            "soar.assessment.volume.packets_per_second",
            self.packets_per_second,
            0.0,
            f64::MAX,
        )?;
        require_finite_range(
            "soar.assessment.volume.points_per_metric",
            self.points_per_metric,
            0.0,
            10.0,
        )?;
        require_finite_range(
            "soar.assessment.volume.max_points",
            self.max_points,
            0.0,
            10.0,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Component 2: alert routing and delivery
// ---------------------------------------------------------------------------------------------

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

/// How alerts are delivered: retries, the fallback channel, HTTP timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    pub retry: RetryPolicy,
    /// Receives the alert once when a routed channel fails for good.
    pub fallback: Option<ChannelKind>,
    /// Timeout of one HTTP request to a channel.
    pub request_timeout_ms: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            fallback: None,
            request_timeout_ms: 10_000,
        }
    }
}

impl DeliverySettings {
    /// Positive timeout and a sane retry policy.
    pub fn validate(&self) -> Result<()> {
        if self.request_timeout_ms == 0 {
            return Err(invalid(
                "soar.delivery.request_timeout_ms",
                "must be positive",
            ));
        }
        self.retry.validate()
    }
}

/// Exponential backoff with a bounded number of attempts; HTTP 429 `Retry-After` wins over the
/// computed delay (capped at `max_retry_after_seconds`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub multiplier: f64,
    pub max_retry_after_seconds: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            multiplier: 2.0,
            max_retry_after_seconds: 300,
        }
    }
}

impl RetryPolicy {
    /// At least one attempt, at most 20; multiplier within 1-10; max backoff >= initial.
    pub fn validate(&self) -> Result<()> {
        if !(1..=20).contains(&self.max_attempts) {
            return Err(invalid(
                "soar.delivery.retry.max_attempts",
                format!("must be within 1..=20, got {}", self.max_attempts),
            ));
        }
        require_finite_range("soar.delivery.retry.multiplier", self.multiplier, 1.0, 10.0)?;
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err(invalid(
                "soar.delivery.retry.max_backoff_ms",
                format!(
                    "must be >= initial_backoff_ms ({}), got {}",
                    self.initial_backoff_ms, self.max_backoff_ms
                ),
            ));
        }
        Ok(())
    }
}

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

// ---------------------------------------------------------------------------------------------
// Component 3: remediation
// ---------------------------------------------------------------------------------------------

/// Which executor carries remediations out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    /// Records what it would do; changes nothing.
    #[default]
    DryRun,
    /// nftables set elements with a timeout (rendered only unless `nftables.apply`).
    Nftables,
    /// An external firewall / EDR API.
    Webhook,
}

impl ExecutorKind {
    /// The name stored in `RemediationAction::executor`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::DryRun => "dry-run",
            ExecutorKind::Nftables => "nftables",
            ExecutorKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutorKind {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "dry-run" | "dryrun" => Ok(ExecutorKind::DryRun),
            "nftables" | "nft" => Ok(ExecutorKind::Nftables),
            "webhook" => Ok(ExecutorKind::Webhook),
            other => Err(invalid(
                "executor",
                format!("unknown executor {other:?}; expected dry-run, nftables or webhook"),
            )),
        }
    }
}

/// Automatic remediation and its safety rails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationSettings {
    pub enabled: bool,
    /// Act only when the risk score is strictly above this (0-10).
    pub threshold: f64,
    pub executor: ExecutorKind,
    /// Networks never acted upon (bare addresses allowed).
    #[serde(with = "network_list")]
    pub allow_list: Vec<IpNet>,
    /// Host names and accounts never acted upon (case-insensitive).
    pub protected_names: Vec<String>,
    /// Cap on actions carried out per minute (per process); 0 refuses every action.
    pub max_actions_per_minute: u32,
    /// How long a block or rate limit lasts before it expires by itself.
    pub block_duration_seconds: u64,
    pub actions: ActionRules,
    pub nftables: NftablesSettings,
    pub webhook: Option<RemediationWebhookSettings>,
}

impl Default for RemediationSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 7.0,
            executor: ExecutorKind::DryRun,
            allow_list: ["127.0.0.0/8", "::1/128"]
                .into_iter()
                .map(|n| n.parse().expect("a literal network parses"))
                .collect(),
            protected_names: Vec::new(),
            max_actions_per_minute: 10,
            block_duration_seconds: 3_600,
            actions: ActionRules::default(),
            nftables: NftablesSettings::default(),
            webhook: None,
        }
    }
}

impl RemediationSettings {
    /// Threshold within 0-10, positive block duration, executor settings present and sane.
    pub fn validate(&self) -> Result<()> {
        require_finite_range("soar.remediation.threshold", self.threshold, 0.0, 10.0)?;
        if self.block_duration_seconds == 0 {
            return Err(invalid(
                "soar.remediation.block_duration_seconds",
                "must be positive",
            ));
        }
        self.actions.validate()?;
        self.nftables.validate()?;
        match (&self.executor, &self.webhook) {
            (ExecutorKind::Webhook, None) => {
                return Err(invalid(
                    "soar.remediation.webhook",
                    "executor = \"webhook\" needs a [soar.remediation.webhook] section with a url",
                ));
            }
            (_, Some(w)) => w.validate()?,
            _ => {}
        }
        Ok(())
    }
}

/// Which actions a threat type gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionRules {
    /// For threat types without an entry in `by_type`.
    pub default: Vec<ActionKind>,
    /// Per threat type (matched like `type_weights`).
    pub by_type: BTreeMap<String, Vec<ActionKind>>,
}

impl Default for ActionRules {
    fn default() -> Self {
        let by_type = [
            ("ransomware", vec![ActionKind::IsolateHost]),
            ("malware", vec![ActionKind::IsolateHost]),
            ("command_and_control", vec![ActionKind::BlockAddress]),
            (
                "brute_force",
                vec![ActionKind::BlockAddress, ActionKind::DisableAccount],
            ),
            (
                "credential_stuffing",
                vec![ActionKind::BlockAddress, ActionKind::DisableAccount],
            ),
            ("ddos", vec![ActionKind::RateLimit]),
            ("dos", vec![ActionKind::RateLimit]),
            ("normal", Vec::new()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            default: vec![ActionKind::BlockAddress],
            by_type,
        }
    }
}

impl ActionRules {
    /// No empty threat type keys.
    pub fn validate(&self) -> Result<()> {
        if self.by_type.keys().any(|k| k.trim().is_empty()) {
            return Err(ValidationError::Empty {
                field: "soar.remediation.actions.by_type key",
            });
        }
        Ok(())
    }
}

/// The nftables executor. It expects a table with timeout sets (see the soar crate's
/// `nftables::ruleset`): block, rate-limit and isolate sets, and `<name>6` for IPv6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NftablesSettings {
    /// Run `nft`; when false the commands are only rendered (status `simulated`).
    pub apply: bool,
    pub nft_path: String,
    pub family: String,
    pub table: String,
    pub block_set: String,
    pub rate_limit_set: String,
    pub isolate_set: String,
    pub timeout_ms: u64,
}

impl Default for NftablesSettings {
    fn default() -> Self {
        Self {
            apply: false,
            nft_path: "nft".into(),
            family: "inet".into(),
            table: "vigil".into(),
            block_set: "blocklist".into(),
            rate_limit_set: "ratelimit".into(),
            isolate_set: "isolated".into(),
            timeout_ms: 5_000,
        }
    }
}

fn require_nft_identifier(field: &'static str, value: &str) -> Result<()> {
    let ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && value.len() <= 63
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(invalid(
            field,
            format!("{value:?} must be a letter followed by letters, digits or _ (at most 63)"),
        ));
    }
    Ok(())
}

impl NftablesSettings {
    /// A known family, identifier-like names (they end up on a command line), a positive timeout.
    pub fn validate(&self) -> Result<()> {
        if !["ip", "ip6", "inet", "bridge", "netdev"].contains(&self.family.as_str()) {
            return Err(invalid(
                "soar.remediation.nftables.family",
                format!(
                    "{:?} is not one of ip, ip6, inet, bridge, netdev",
                    self.family
                ),
            ));
        }
        require_nft_identifier("soar.remediation.nftables.table", &self.table)?;
        require_nft_identifier("soar.remediation.nftables.block_set", &self.block_set)?;
        require_nft_identifier(
            "soar.remediation.nftables.rate_limit_set",
            &self.rate_limit_set,
        )?;
        require_nft_identifier("soar.remediation.nftables.isolate_set", &self.isolate_set)?;
        if self.nft_path.trim().is_empty() {
            return Err(ValidationError::Empty {
                field: "soar.remediation.nftables.nft_path",
            });
        }
        if self.timeout_ms == 0 {
            return Err(invalid(
                "soar.remediation.nftables.timeout_ms",
                "must be positive",
            ));
        }
        Ok(())
    }
}

/// The webhook executor: JSON to an external firewall / EDR API.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationWebhookSettings {
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<Secret>,
    pub timeout_ms: u64,
}

impl RemediationWebhookSettings {
    /// An http(s) URL.
    pub fn validate(&self) -> Result<()> {
        require_http_url("soar.remediation.webhook.url", &self.url)
    }

    /// The timeout, 10 s when unset.
    pub fn timeout_ms_or_default(&self) -> u64 {
        if self.timeout_ms == 0 {
            10_000
        } else {
            self.timeout_ms
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Component 4: incidents
// ---------------------------------------------------------------------------------------------

/// When events open or join incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentSettings {
    /// An event joins the open incident of its threat key when that incident was updated within
    /// this many seconds; after that the old one is resolved and a new one opened.
    pub window_seconds: u64,
    /// Events below this level do not open an incident (they still join an open one).
    pub min_severity: Severity,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            window_seconds: 3_600,
            min_severity: Severity::Medium,
        }
    }
}

impl IncidentSettings {
    /// A positive window.
    pub fn validate(&self) -> Result<()> {
        if self.window_seconds == 0 {
            return Err(invalid("soar.incidents.window_seconds", "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
