//! `[soar.remediation]`: automatic remediation, its safety rails and its executors.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use vigil_domain::{ActionKind, ValidationError};

use super::{Result, RetryPolicy, invalid, network_list, require_finite_range, require_http_url};
use crate::secret::Secret;

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
    /// Internal networks (private, link-local, shared CGNAT, unique-local) remediation may act
    /// on. Any other internal address is refused by default, as loopback, multicast,
    /// unspecified and broadcast addresses always are: a signal from anyone on the bus must not
    /// get vigil to block its own infrastructure.
    #[serde(with = "network_list")]
    pub internal_targets: Vec<IpNet>,
    /// Cap on actions carried out per minute, shared by every orchestrator replica using the
    /// same database; 0 refuses every action.
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
            internal_targets: Vec::new(),
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

impl ActionRules {
    /// The most actions one event can get (its threat type's list, or the default one).
    pub fn most_per_event(&self) -> u32 {
        let most = self
            .by_type
            .values()
            .map(Vec::len)
            .chain([self.default.len()])
            .max()
            .unwrap_or(0);
        u32::try_from(most).unwrap_or(u32::MAX)
    }
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
    /// When set, every call is signed like the alert webhook's: `X-Vigil-Timestamp` and
    /// `X-Vigil-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`, so the
    /// API can check that vigil sent it (docs/api.md).
    pub secret: Option<Secret>,
    pub timeout_ms: u64,
    /// Retries of a transient failure (no connection, timeout, HTTP 408/425/429/5xx), each
    /// with the same `Idempotency-Key`.
    pub retry: RetryPolicy,
}

impl RemediationWebhookSettings {
    /// An http(s) URL and a sane retry policy.
    pub fn validate(&self) -> Result<()> {
        require_http_url("soar.remediation.webhook.url", &self.url)?;
        self.retry
            .validate()
            .map_err(|e| invalid("soar.remediation.webhook.retry", e.to_string()))
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
