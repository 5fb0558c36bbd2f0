//! Loading: defaults -> TOML file -> `VIGIL_*` environment -> `--set key=value` flags, then
//! validation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use vigil_domain::RiskThresholds;

use crate::settings::{
    BrokerSettings, DatabaseSettings, NatsSettings, OrchestratorSettings, PredictorSettings,
    StreamSettings, TelemetrySettings, TrainerSettings,
};

/// Why the configuration could not be loaded.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{origin} sets {key:?}, which cannot be set: {reason}")]
    BadKey {
        origin: String,
        key: String,
        reason: String,
    },
    #[error("{origin} sets {key:?} to a value it cannot take: {reason}")]
    BadValue {
        origin: String,
        key: String,
        reason: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(
        "{key} cannot change while vigil runs: set it in the config file or environment and \
         restart the services (`vigil config list` shows the keys that can)"
    )]
    NotLive { key: String },
}

/// Result of loading configuration.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything any vigil service can be configured with.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The layout of this configuration: a file written for a later vigil (a higher version)
    /// is refused instead of half read.
    pub version: ConfigVersion,
    pub nats: NatsSettings,
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
    pub streams: StreamSettings,
    pub thresholds: RiskThresholds,
    pub broker: BrokerSettings,
    pub orchestrator: OrchestratorSettings,
    pub predictor: PredictorSettings,
    pub trainer: TrainerSettings,
    /// When analysts' verdicts ask the trainer for a run.
    pub feedback: crate::FeedbackSettings,
    /// Assessment, alert routing and channels, remediation, incidents.
    pub soar: crate::SoarSettings,
    /// Heartbeats and the health service's rules.
    pub health: crate::HealthSettings,
}

/// The configuration layout version this vigil reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigVersion(pub u32);

impl ConfigVersion {
    /// The version of the layout of this release.
    pub const CURRENT: ConfigVersion = ConfigVersion(1);
}

impl Default for ConfigVersion {
    fn default() -> Self {
        Self::CURRENT
    }
}

/// Where configuration comes from, lowest priority first after the defaults.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A TOML file.
    pub file: Option<PathBuf>,
    /// Environment variables; only `VIGIL_<SECTION>__<KEY>` names are read.
    pub env: Vec<(String, String)>,
    /// `key.path=value` overrides from the command line.
    pub overrides: Vec<String>,
}

impl Sources {
    /// The file named by `VIGIL_CONFIG` (if any), the process environment, and no overrides.
    pub fn from_process_env() -> Self {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = env
            .iter()
            .find(|(k, _)| k == "VIGIL_CONFIG")
            .map(|(_, v)| PathBuf::from(v));
        Self {
            file,
            env,
            overrides: Vec::new(),
        }
    }
}

impl Config {
    /// The longest one attempt of a workflow can take: the predict deadline, every alert
    /// delivery attempt and every remediation call with their retries (the effects of one
    /// workflow run concurrently per kind, so this is an upper bound).
    pub fn workflow_budget(&self) -> std::time::Duration {
        use std::time::Duration;
        let soar = &self.soar;
        let alerts = soar
            .delivery
            .retry
            .budget(Duration::from_millis(soar.delivery.request_timeout_ms));
        // The fallback channel is tried once its primary has failed for good.
        let alerts = if soar.delivery.fallback.is_some() {
            alerts * 2
        } else {
            alerts
        };
        // Only the webhook executor calls out and retries; the others answer at once.
        let remediation = soar
            .remediation
            .webhook
            .as_ref()
            .map_or(Duration::ZERO, |webhook| {
                webhook
                    .retry
                    .budget(Duration::from_millis(webhook.timeout_ms))
                    .saturating_mul(soar.remediation.actions.most_per_event())
            });
        Duration::from_millis(self.orchestrator.predict_timeout_ms) + alerts + remediation
    }

    /// How long after an effect was recorded as intended no attempt of its workflow can still
    /// be running: every delivery of the work message (`streams.max_deliver`), each run for at
    /// most [`workflow_budget`](Self::workflow_budget) and redelivered after the consumer's
    /// backoff (`streams.ack_wait_secs`, doubling: together less than `ack_wait × 2^max_deliver`).
    /// An alert or remediation still `pending` after that was left by a workflow that will
    /// never finish it, and the orchestrator's sweeper does.
    pub fn effects_settled_after(&self) -> std::time::Duration {
        // Unlimited deliveries (0 or less) are counted as 16: past that, the backoff alone
        // spans days.
        let attempts = match self.streams.max_deliver {
            n if n <= 0 => 16,
            n => u32::try_from(n.min(16)).unwrap_or(16),
        };
        let waits = std::time::Duration::from_secs(self.streams.ack_wait_secs)
            .saturating_mul(1u32 << attempts);
        waits + self.workflow_budget().saturating_mul(attempts)
    }

    /// Layers the sources over the defaults and validates the result.
    pub fn load(sources: &Sources) -> Result<Self> {
        let mut root = toml::Table::new();
        if let Some(path) = &sources.file {
            root = read_file(path)?;
        }
        // Which source set each key last, so that a value of the wrong type names its source.
        let mut origins: Vec<(String, String)> = Vec::new();
        for (name, value) in &sources.env {
            let Some(path) = env_key(name) else { continue };
            let origin = format!("environment variable {name}");
            set_path(&mut root, &path, parse_scalar(value))
                .map_err(|reason| bad_key(origin.clone(), &path, reason))?;
            origins.push((path.join("."), origin));
        }
        for item in &sources.overrides {
            let (key, value) = item.split_once('=').ok_or_else(|| Error::BadKey {
                origin: "--set".into(),
                key: shortened(item.clone()),
                reason: "expected KEY=VALUE, e.g. thresholds.high=6.5".into(),
            })?;
            let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
            set_path(&mut root, &path, parse_scalar(value))
                .map_err(|reason| bad_key("--set".into(), &path, reason))?;
            origins.push((path.join("."), format!("--set {}", key.trim())));
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
                let key = e.path().to_string();
                let reason = e.inner().message().to_owned();
                let origin = origins
                    .iter()
                    .rev()
                    // The key itself, or an element or field inside a value it set.
                    .find(|(k, _)| {
                        key.strip_prefix(k.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
                    })
                    .map(|(_, origin)| origin.clone())
                    .or_else(|| {
                        let file = sources.file.as_ref()?;
                        Some(format!("config file {}", file.display()))
                    });
                match origin {
                    Some(origin) if reason.starts_with("unknown field") => Error::BadKey {
                        origin,
                        key,
                        reason,
                    },
                    Some(origin) => Error::BadValue {
                        origin,
                        key,
                        reason,
                    },
                    None => Error::Invalid(format!("{key}: {reason}")),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense together.
    pub fn validate(&self) -> Result<()> {
        let invalid = |msg: String| Err(Error::Invalid(msg));
        if self.version != ConfigVersion::CURRENT {
            return invalid(format!(
                "version = {} is not a configuration layout this vigil reads (it reads version {})",
                self.version.0,
                ConfigVersion::CURRENT.0
            ));
        }
        if self.nats.url.trim().is_empty() {
            return invalid("nats.url must not be empty".into());
        }
        if self.nats.password.is_some() && self.nats.user.is_none() {
            return invalid("nats.password is set but nats.user is not".into());
        }
        if self.nats.tls.cert_file.is_some() != self.nats.tls.key_file.is_some() {
            return invalid("nats.tls.cert_file and nats.tls.key_file must be set together".into());
        }
        if !self
            .nats
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return invalid(format!(
                "nats.prefix {:?} may only hold letters, digits, '_' and '-'",
                self.nats.prefix
            ));
        }
        let inbox = &self.nats.inbox_prefix;
        if inbox.is_empty()
            || inbox.starts_with('.')
            || inbox.ends_with('.')
            || inbox.contains("..")
            || !inbox
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return invalid(format!(
                "nats.inbox_prefix {inbox:?} must be a subject of letters, digits, '_', '-' and \
                 '.' between tokens (no wildcard), such as _INBOX_broker"
            ));
        }
        if !self.database.url.starts_with("postgres://")
            && !self.database.url.starts_with("postgresql://")
        {
            return invalid("database.url must start with postgres:// or postgresql://".into());
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1".into());
        }
        self.thresholds
            .validate()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        if self.streams.dedup_window_secs == 0 {
            return invalid("streams.dedup_window_secs must be at least 1".into());
        }
        if self.streams.work_max_messages < 1 {
            return invalid("streams.work_max_messages must be at least 1".into());
        }
        if self.streams.ingest_max_per_subject < 1 {
            return invalid("streams.ingest_max_per_subject must be at least 1".into());
        }
        if !(1..=5).contains(&self.streams.replicas) {
            return invalid(format!(
                "streams.replicas must be between 1 and 5 (JetStream's limit), got {}",
                self.streams.replicas
            ));
        }
        if self.streams.max_deliver < 1 {
            return invalid("streams.max_deliver must be at least 1".into());
        }
        if self.orchestrator.max_workflows == 0 {
            return invalid("orchestrator.max_workflows must be at least 1".into());
        }
        if self.orchestrator.commit_batch_max == 0 || self.orchestrator.commit_concurrency == 0 {
            return invalid(
                "orchestrator.commit_batch_max and orchestrator.commit_concurrency must be at least 1"
                    .into(),
            );
        }
        if self.broker.batch_size == 0 {
            return invalid("broker.batch_size must be at least 1".into());
        }
        self.soar
            .validate()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        if !(0.0..=1.0).contains(&self.trainer.promotion_margin) {
            return invalid("trainer.promotion_margin must be within 0..=1".into());
        }
        crate::Schedule::parse(&self.trainer.schedule).map_err(Error::Invalid)?;
        if self.trainer.check_interval_secs == 0 {
            return invalid("trainer.check_interval_secs must be at least 1".into());
        }
        if self.trainer.max_examples == 0 {
            return invalid("trainer.max_examples must be at least 1".into());
        }
        if !(self.trainer.feedback_weight.is_finite() && self.trainer.feedback_weight > 0.0) {
            return invalid(format!(
                "trainer.feedback_weight must be a positive number, got {}",
                self.trainer.feedback_weight
            ));
        }
        if self.trainer.cross_val_folds == 1 {
            return invalid(
                "trainer.cross_val_folds must be 0 (off) or at least 2 (k-fold needs two folds)"
                    .into(),
            );
        }
        if self.trainer.max_requested_runs_per_hour > TrainerSettings::MAX_REQUESTED_RUNS_PER_HOUR {
            return invalid(format!(
                "trainer.max_requested_runs_per_hour must be at most {} \
                 (one a second), got {}",
                TrainerSettings::MAX_REQUESTED_RUNS_PER_HOUR,
                self.trainer.max_requested_runs_per_hour
            ));
        }
        if !(0.0..=1.0).contains(&self.predictor.min_coverage) {
            return invalid(format!(
                "predictor.min_coverage must be within 0..=1 (a share of the model's inputs), got {}",
                self.predictor.min_coverage
            ));
        }
        self.validate_grpc_tls()?;
        self.feedback.validate().map_err(Error::Invalid)?;
        self.health.validate().map_err(Error::Invalid)?;
        Ok(())
    }

    /// TLS keys that only make sense together; whether the files can be read is checked when
    /// the server or client is built.
    fn validate_grpc_tls(&self) -> Result<()> {
        let server = &self.predictor.tls;
        if server.cert_file.is_some() != server.key_file.is_some() {
            return Err(Error::Invalid(
                "predictor.tls.cert_file and predictor.tls.key_file must be set together".into(),
            ));
        }
        if server.client_ca_file.is_some() && server.cert_file.is_none() {
            return Err(Error::Invalid(
                "predictor.tls.client_ca_file (mutual TLS) needs TLS: set predictor.tls.cert_file \
                 and predictor.tls.key_file too"
                    .into(),
            ));
        }
        let client = &self.orchestrator.predictor_tls;
        if client.cert_file.is_some() != client.key_file.is_some() {
            return Err(Error::Invalid(
                "orchestrator.predictor_tls.cert_file and orchestrator.predictor_tls.key_file \
                 must be set together"
                    .into(),
            ));
        }
        if let Some(url) = &self.orchestrator.predictor_url
            && client.enabled()
            && !url.trim().starts_with("https://")
        {
            return Err(Error::Invalid(format!(
                "orchestrator.predictor_tls is set but orchestrator.predictor_url {url:?} is not \
                 https://: the connection would be plaintext; use https://HOST:PORT"
            )));
        }
        Ok(())
    }

    /// The effective configuration as TOML, with every secret redacted.
    pub fn dump(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

fn read_file(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|source| Error::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

fn bad_key(origin: String, path: &[String], reason: String) -> Error {
    Error::BadKey {
        origin,
        key: shortened(path.join(".")),
        reason,
    }
}

/// Longest key or flag quoted whole in a message.
const MAX_QUOTED_CHARS: usize = 120;

/// `text`, cut short (on a character boundary) when too long to quote in a message.
fn shortened(text: String) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// `VIGIL_NATS__TLS__CA_FILE` -> `["nats", "tls", "ca_file"]`. Names without `__` (such as
/// `VIGIL_CONFIG`) are not config keys.
fn env_key(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix("VIGIL_")?;
    if !rest.contains("__") {
        return None;
    }
    Some(rest.split("__").map(|p| p.to_ascii_lowercase()).collect())
}

/// A value as TOML would read it (`5`, `true`, `["a","b"]`, `"quoted"`); anything that is not
/// valid TOML is taken as a plain string.
pub(crate) fn parse_scalar(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

/// The most dot-separated parts a key may have.
pub(crate) const MAX_KEY_DEPTH: usize = 8;

pub(crate) fn set_path(
    root: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    if path.iter().any(|p| p.is_empty()) {
        return Err("empty key segment".into());
    }
    // A key of thousands of segments would build as many nested tables (and drop them
    // recursively); no vigil key comes close to this depth.
    if path.len() > MAX_KEY_DEPTH {
        return Err(format!(
            "a key has at most {MAX_KEY_DEPTH} dot-separated parts, this one {}",
            path.len()
        ));
    }
    let mut table = root;
    for part in parents {
        let entry = table
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("{part} is a value, not a section"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}
