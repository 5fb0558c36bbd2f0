//! Layered settings for every vigil service: defaults, then a TOML file, then `VIGIL_*`
//! environment variables (`__` separates nesting levels), then command-line flags; the result is
//! validated before any service starts.

mod feedback;
mod health;
mod live;
mod loader;
mod schedule;
mod secret;
mod settings;
pub mod soar;

pub use feedback::FeedbackSettings;
pub use health::HealthSettings;
pub use live::{LIVE_KEYS, LiveKey, live_key, parse_value, render_value, value_at};
pub use loader::{Config, ConfigVersion, Error, Result, Sources};
pub use schedule::Schedule;
pub use secret::{Secret, redact_url_password};
pub use settings::{
    BrokerSettings, DatabaseSettings, GrpcClientTlsSettings, GrpcServerTlsSettings, LogFormat,
    NatsSettings, OrchestratorSettings, PredictorSettings, StreamSettings, TelemetrySettings,
    TlsSettings, TrainerSettings,
};
pub use soar::{
    ActionRules, AssessmentSettings, ChannelKind, ChannelRateLimits, ChannelSettings,
    DeliverySettings, EmailSettings, ExecutorKind, IncidentSettings, NftablesSettings,
    OpsgenieSettings, PagerDutySettings, RateLimit, RemediationSettings,
    RemediationWebhookSettings, RetryPolicy, RoutingRules, RoutingSettings, SlackSettings, SmtpTls,
    SoarSettings, TeamsFormat, TeamsSettings, VolumeThresholds, WebhookSettings, parse_network,
};
