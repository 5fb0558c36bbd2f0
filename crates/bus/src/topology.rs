//! Every stream, subject, consumer and bucket name vigil uses, derived from one prefix, and the
//! idempotent declaration of all of them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, ReplayPolicy, pull};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use tracing::{debug, info};

use crate::error::{Error, Result};

/// Base name of the stream sensors publish threat signals to.
pub const INGEST_STREAM: &str = "VIGIL_INGEST";
/// Base name of the prioritised work queue between broker and orchestrator.
pub const WORK_STREAM: &str = "VIGIL_WORK";
/// Base name of the stream of domain events.
pub const EVENTS_STREAM: &str = "VIGIL_EVENTS";
/// Base name of the dead-letter stream.
pub const DLQ_STREAM: &str = "VIGIL_DLQ";
/// Base name of the live configuration key-value bucket.
pub const CONFIG_BUCKET: &str = "vigil_config";
/// Durable consumer of the broker on the ingest stream.
pub const BROKER_CONSUMER: &str = "broker";
/// Durable consumers of the orchestrator start with this, followed by `-<priority>`.
pub const ORCHESTRATOR_CONSUMER_PREFIX: &str = "orchestrator";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// One of vigil's four streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `VIGIL_INGEST`: raw signals from sensors (work queue).
    Ingest,
    /// `VIGIL_WORK`: deduplicated, prioritised signals (bounded work queue).
    Work,
    /// `VIGIL_EVENTS`: domain events (limits retention).
    Events,
    /// `VIGIL_DLQ`: messages vigil gave up on, with the reason in headers.
    DeadLetter,
}

impl StreamKind {
    /// All streams, in declaration order.
    pub const ALL: [StreamKind; 4] = [
        StreamKind::Ingest,
        StreamKind::Work,
        StreamKind::Events,
        StreamKind::DeadLetter,
    ];

    /// The stream name without prefix, e.g. `VIGIL_INGEST`.
    pub fn base_name(self) -> &'static str {
        match self {
            StreamKind::Ingest => INGEST_STREAM,
            StreamKind::Work => WORK_STREAM,
            StreamKind::Events => EVENTS_STREAM,
            StreamKind::DeadLetter => DLQ_STREAM,
        }
    }

    /// The subject root the stream stores, without prefix, e.g. `vigil.ingest`.
    pub fn subject_root(self) -> &'static str {
        match self {
            StreamKind::Ingest => "vigil.ingest",
            StreamKind::Work => "vigil.work",
            StreamKind::Events => "vigil.events",
            StreamKind::DeadLetter => "vigil.dlq",
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base_name())
    }
}

/// A priority lane of the work stream; the orchestrator pulls them in [`WorkPriority::ALL`]
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkPriority {
    /// `vigil.work.critical`
    Critical,
    /// `vigil.work.high`
    High,
    /// `vigil.work.medium`
    Medium,
    /// `vigil.work.low`
    Low,
}

impl WorkPriority {
    /// All priorities, most urgent first.
    pub const ALL: [WorkPriority; 4] = [
        WorkPriority::Critical,
        WorkPriority::High,
        WorkPriority::Medium,
        WorkPriority::Low,
    ];

    /// The subject token: `critical`, `high`, `medium` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkPriority::Critical => "critical",
            WorkPriority::High => "high",
            WorkPriority::Medium => "medium",
            WorkPriority::Low => "low",
        }
    }
}

impl fmt::Display for WorkPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkPriority {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        WorkPriority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| Error::InvalidName {
                what: "work priority",
                value: s.to_owned(),
                reason: "expected one of critical, high, medium, low".into(),
            })
    }
}

/// One of vigil's durable pull consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerKind {
    /// `broker` on `VIGIL_INGEST`.
    Broker,
    /// `orchestrator-<priority>` on `VIGIL_WORK`, filtered to `vigil.work.<priority>`.
    Orchestrator(WorkPriority),
}

impl ConsumerKind {
    /// All durable consumers vigil declares.
    pub const ALL: [ConsumerKind; 5] = [
        ConsumerKind::Broker,
        ConsumerKind::Orchestrator(WorkPriority::Critical),
        ConsumerKind::Orchestrator(WorkPriority::High),
        ConsumerKind::Orchestrator(WorkPriority::Medium),
        ConsumerKind::Orchestrator(WorkPriority::Low),
    ];

    /// The stream the consumer reads.
    pub fn stream(self) -> StreamKind {
        match self {
            ConsumerKind::Broker => StreamKind::Ingest,
            ConsumerKind::Orchestrator(_) => StreamKind::Work,
        }
    }

    /// The durable name, e.g. `broker` or `orchestrator-critical`. Consumer names live inside
    /// their (prefixed) stream, so they carry no prefix.
    pub fn durable_name(self) -> String {
        match self {
            ConsumerKind::Broker => BROKER_CONSUMER.to_owned(),
            ConsumerKind::Orchestrator(priority) => {
                format!("{ORCHESTRATOR_CONSUMER_PREFIX}-{priority}")
            }
        }
    }
}

/// Redelivery behaviour of a durable consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerPolicy {
    /// How long the server waits for an ack before redelivering. When `backoff` is set the
    /// server uses its steps instead, so `ack_wait` should equal `backoff[0]`.
    pub ack_wait: Duration,
    /// Deliveries before the server stops redelivering; the last one is dead-lettered by
    /// [`Delivery::retry_or_dead_letter`](crate::Delivery::retry_or_dead_letter). Must be >= 1.
    pub max_deliver: i64,
    /// Redelivery delays after an ack timeout, one per delivery; fewer steps than
    /// `max_deliver`. Empty means a fixed `ack_wait`.
    pub backoff: Vec<Duration>,
    /// Unacknowledged messages the server hands out at once, across all replicas.
    pub max_ack_pending: i64,
}

impl ConsumerPolicy {
    /// A policy whose backoff doubles from `ack_wait` for each redelivery.
    pub fn exponential(ack_wait: Duration, max_deliver: i64) -> Self {
        let steps = usize::try_from(max_deliver.saturating_sub(1)).unwrap_or(0);
        let backoff = (0..steps)
            .map(|i| ack_wait.saturating_mul(1u32 << i.min(16)))
            .collect();
        Self {
            ack_wait,
            max_deliver,
            backoff,
            max_ack_pending: 1_000,
        }
    }

    fn validate(&self, who: &str) -> Result<()> {
        if self.max_deliver < 1 {
            return Err(Error::TopologyConfig(format!(
                "{who}: max_deliver must be at least 1, got {}",
                self.max_deliver
            )));
        }
        if self.ack_wait.is_zero() {
            return Err(Error::TopologyConfig(format!(
                "{who}: ack_wait must be positive"
            )));
        }
        let steps = i64::try_from(self.backoff.len()).unwrap_or(i64::MAX);
        if steps >= self.max_deliver {
            return Err(Error::TopologyConfig(format!(
                "{who}: {steps} backoff steps need max_deliver > {steps}, got {}",
                self.max_deliver
            )));
        }
        if self.backoff.iter().any(Duration::is_zero) {
            return Err(Error::TopologyConfig(format!(
                "{who}: backoff steps must be positive"
            )));
        }
        if self.max_ack_pending < 1 {
            return Err(Error::TopologyConfig(format!(
                "{who}: max_ack_pending must be at least 1"
            )));
        }
        Ok(())
    }
}

impl Default for ConsumerPolicy {
    /// 30 s ack wait, five deliveries, backoff 30 s, 60 s, 120 s, 240 s.
    fn default() -> Self {
        Self::exponential(Duration::from_secs(30), 5)
    }
}

/// Limits and policies of the topology; the defaults are the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyConfig {
    /// Duplicate window of the ingest and work streams: a `Nats-Msg-Id` seen within it is
    /// stored once. Default 300 s.
    pub dedup_window: Duration,
    /// Duplicate window of the events stream: an event republished by a later attempt of its
    /// workflow (a redelivery after a crash) within it is stored once. Derived from the retry
    /// budget (`Config::effects_settled_after`). Default 2 minutes (JetStream's own).
    pub events_dedup_window: Duration,
    /// Capacity of the work queue; when full, publishes are refused ([`Error::StreamFull`]).
    /// Default 10,000.
    pub work_max_messages: i64,
    /// Most messages waiting in the ingest stream per subject (per sensor, when each sensor
    /// publishes on its own `vigil.ingest.<kind>`); beyond it that subject's publishes are
    /// refused ([`Error::StreamFull`]) while the other subjects still have room. Default 100,000.
    pub ingest_max_per_subject: i64,
    /// How long domain events are kept. Default 7 days.
    pub events_max_age: Duration,
    /// How long dead letters are kept. Default 30 days.
    pub dlq_max_age: Duration,
    /// Revisions kept per key in the config bucket. Default 5.
    pub config_history: i64,
    /// Copies of every stream (and of the config bucket) a JetStream cluster keeps: 1 on a
    /// single server, 3 on a three-node cluster so that losing a node loses nothing.
    /// Default 1.
    pub replicas: usize,
    /// Redelivery policy of the `broker` consumer.
    pub broker: ConsumerPolicy,
    /// Redelivery policy of the `orchestrator-*` consumers.
    pub orchestrator: ConsumerPolicy,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            dedup_window: Duration::from_secs(300),
            events_dedup_window: Duration::from_secs(120),
            work_max_messages: 10_000,
            ingest_max_per_subject: 100_000,
            events_max_age: 7 * DAY,
            dlq_max_age: 30 * DAY,
            config_history: 5,
            replicas: 1,
            broker: ConsumerPolicy::default(),
            orchestrator: ConsumerPolicy::default(),
        }
    }
}

impl TopologyConfig {
    fn validate(&self) -> Result<()> {
        if self.dedup_window.is_zero() {
            return Err(Error::TopologyConfig(
                "dedup_window must be positive".into(),
            ));
        }
        if self.work_max_messages < 1 {
            return Err(Error::TopologyConfig(
                "work_max_messages must be at least 1".into(),
            ));
        }
        if self.ingest_max_per_subject < 1 {
            return Err(Error::TopologyConfig(
                "ingest_max_per_subject must be at least 1".into(),
            ));
        }
        if self.events_max_age.is_zero() || self.dlq_max_age.is_zero() {
            return Err(Error::TopologyConfig(
                "events_max_age and dlq_max_age must be positive".into(),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(Error::TopologyConfig(format!(
                "replicas must be between 1 and 5 (JetStream's limit), got {}",
                self.replicas
            )));
        }
        if !(1..=64).contains(&self.config_history) {
            return Err(Error::TopologyConfig(
                "config_history must be between 1 and 64".into(),
            ));
        }
        self.broker.validate("broker")?;
        self.orchestrator.validate("orchestrator")
    }
}

/// The names and configurations of every stream, consumer and bucket, derived from a prefix
/// (empty in production; random in tests so that they do not collide).
///
/// With prefix `t1a2b` the ingest stream is `t1a2b_VIGIL_INGEST` storing `t1a2b.vigil.ingest.>`
/// and the bucket is `t1a2b_vigil_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    config: TopologyConfig,
}

impl Topology {
    /// A topology under `prefix` (letters, digits, `_` and `-` only; may be empty).
    pub fn new(prefix: impl Into<String>, config: TopologyConfig) -> Result<Self> {
        let prefix = prefix.into();
        if let Some(bad) = prefix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(Error::InvalidName {
                what: "prefix",
                value: prefix.clone(),
                reason: format!("character {bad:?} is not allowed; use letters, digits, _ and -"),
            });
        }
        config.validate()?;
        Ok(Self { prefix, config })
    }

    /// The prefix, possibly empty.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The limits and policies.
    pub fn config(&self) -> &TopologyConfig {
        &self.config
    }

    fn prefixed_name(&self, base: &str) -> String {
        if self.prefix.is_empty() {
            base.to_owned()
        } else {
            format!("{}_{base}", self.prefix)
        }
    }

    fn prefixed_subject(&self, subject: &str) -> String {
        if self.prefix.is_empty() {
            subject.to_owned()
        } else {
            format!("{}.{subject}", self.prefix)
        }
    }

    /// The stream's name on the server, e.g. `VIGIL_INGEST`.
    pub fn stream_name(&self, kind: StreamKind) -> String {
        self.prefixed_name(kind.base_name())
    }

    /// The wildcard subject a stream stores, e.g. `vigil.ingest.>`.
    pub fn stream_subjects(&self, kind: StreamKind) -> String {
        self.prefixed_subject(&format!("{}.>", kind.subject_root()))
    }

    /// The name of the live configuration bucket, e.g. `vigil_config`.
    pub fn config_bucket_name(&self) -> String {
        self.prefixed_name(CONFIG_BUCKET)
    }

    /// Where sensors publish signals of one kind: `vigil.ingest.<kind>`.
    pub fn ingest_subject(&self, kind: &str) -> Result<String> {
        check_token("ingest kind", kind)?;
        Ok(self.prefixed_subject(&format!("vigil.ingest.{kind}")))
    }

    /// The work-queue lane of a priority: `vigil.work.<critical|high|medium|low>`.
    pub fn work_subject(&self, priority: &str) -> Result<String> {
        let priority: WorkPriority = priority.parse()?;
        Ok(self.work_subject_for(priority))
    }

    /// [`Topology::work_subject`] for an already-parsed priority.
    pub fn work_subject_for(&self, priority: WorkPriority) -> String {
        self.prefixed_subject(&format!("vigil.work.{priority}"))
    }

    /// Where domain events of one type go: `vigil.events.<event_type>`.
    pub fn event_subject(&self, event_type: &str) -> Result<String> {
        check_token("event type", event_type)?;
        Ok(self.prefixed_subject(&format!("vigil.events.{event_type}")))
    }

    /// Where dead letters from a stream go: `vigil.dlq.<STREAM>` (base stream name).
    pub fn dlq_subject(&self, stream: StreamKind) -> String {
        self.prefixed_subject(&format!("vigil.dlq.{}", stream.base_name()))
    }

    /// Where a service instance sends heartbeats: `vigil.health.heartbeat.<service>.<instance>`
    /// (core NATS; no stream stores them). See [`subject_token`] to clean up host names.
    pub fn heartbeat_subject(&self, service: &str, instance: &str) -> Result<String> {
        check_token("service name", service)?;
        check_token("instance id", instance)?;
        Ok(self.prefixed_subject(&format!("vigil.health.heartbeat.{service}.{instance}")))
    }

    /// Wildcard matching every heartbeat: `vigil.health.heartbeat.>`.
    pub fn heartbeat_wildcard(&self) -> String {
        self.prefixed_subject("vigil.health.heartbeat.>")
    }

    /// Where the health service answers status requests: `vigil.health.status` (core NATS
    /// request/reply; replicas share it as a queue group).
    pub fn health_status_subject(&self) -> String {
        self.prefixed_subject("vigil.health.status")
    }

    /// Where analysts submit feedback: `vigil.feedback.submit` (core NATS request/reply).
    pub fn feedback_submit_subject(&self) -> String {
        self.prefixed_subject("vigil.feedback.submit")
    }

    /// Where analysts ask what to judge next: `vigil.feedback.review` (core NATS
    /// request/reply).
    pub fn feedback_review_subject(&self) -> String {
        self.prefixed_subject("vigil.feedback.review")
    }

    /// Where analysts ask what the verdicts say about vigil: `vigil.feedback.insights` (core
    /// NATS request/reply).
    pub fn feedback_insights_subject(&self) -> String {
        self.prefixed_subject("vigil.feedback.insights")
    }

    /// The server-side configuration of a stream.
    pub fn stream_config(&self, kind: StreamKind) -> stream::Config {
        let base = stream::Config {
            name: self.stream_name(kind),
            subjects: vec![self.stream_subjects(kind)],
            storage: StorageType::File,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        match kind {
            StreamKind::Ingest => stream::Config {
                description: Some("threat signals from sensors, consumed by the broker".into()),
                retention: RetentionPolicy::WorkQueue,
                // Fairness between sensors: one subject's backlog is bounded, so a flood on it
                // is pushed back to its publisher instead of queueing ahead of everyone else.
                max_messages_per_subject: self.config.ingest_max_per_subject,
                discard: DiscardPolicy::New,
                discard_new_per_subject: true,
                duplicate_window: self.config.dedup_window,
                ..base
            },
            StreamKind::Work => stream::Config {
                description: Some(
                    "deduplicated, prioritised signals for the orchestrator; full means back off"
                        .into(),
                ),
                retention: RetentionPolicy::WorkQueue,
                max_messages: self.config.work_max_messages,
                discard: DiscardPolicy::New,
                duplicate_window: self.config.dedup_window,
                ..base
            },
            StreamKind::Events => stream::Config {
                description: Some("domain events".into()),
                retention: RetentionPolicy::Limits,
                max_age: self.config.events_max_age,
                duplicate_window: self
                    .config
                    .events_dedup_window
                    .min(self.config.events_max_age),
                ..base
            },
            StreamKind::DeadLetter => stream::Config {
                description: Some("messages vigil gave up on; headers say why".into()),
                retention: RetentionPolicy::Limits,
                max_age: self.config.dlq_max_age,
                ..base
            },
        }
    }

    /// The redelivery policy of a consumer.
    pub fn consumer_policy(&self, kind: ConsumerKind) -> &ConsumerPolicy {
        match kind {
            ConsumerKind::Broker => &self.config.broker,
            ConsumerKind::Orchestrator(_) => &self.config.orchestrator,
        }
    }

    /// The server-side configuration of a durable pull consumer.
    pub fn consumer_config(&self, kind: ConsumerKind) -> pull::Config {
        let policy = self.consumer_policy(kind);
        let (filter_subject, description) = match kind {
            ConsumerKind::Broker => (
                self.stream_subjects(StreamKind::Ingest),
                "broker: decode, validate, deduplicate and prioritise signals".to_owned(),
            ),
            ConsumerKind::Orchestrator(priority) => (
                self.work_subject_for(priority),
                format!("orchestrator: {priority} work"),
            ),
        };
        pull::Config {
            durable_name: Some(kind.durable_name()),
            description: Some(description),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            // The server takes the first backoff step as the ack wait; say so up front so that
            // the declared and the stored configuration agree.
            ack_wait: policy.backoff.first().copied().unwrap_or(policy.ack_wait),
            max_deliver: policy.max_deliver,
            backoff: policy.backoff.clone(),
            max_ack_pending: policy.max_ack_pending,
            filter_subject,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        }
    }

    /// The stream behind the live config bucket (`KV_<bucket>`), laid out the way every NATS
    /// client expects a key-value bucket to be.
    ///
    /// The bucket is declared as a plain stream because the client's own bucket creation first
    /// reads account information in a shape older servers (2.9) do not send.
    pub fn config_bucket_stream_config(&self) -> stream::Config {
        let bucket = self.config_bucket_name();
        stream::Config {
            name: format!("KV_{bucket}"),
            description: Some("live vigil configuration (thresholds, routing, switches)".into()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: self.config.config_history,
            storage: StorageType::File,
            num_replicas: self.config.replicas,
            discard: DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Creates or updates every stream, consumer and the config bucket. Running it again with
    /// the same configuration changes nothing, so every service calls it at start-up.
    pub async fn declare(&self, js: &jetstream::Context) -> Result<()> {
        for kind in StreamKind::ALL {
            let mut config = self.stream_config(kind);
            let name = config.name.clone();
            // The duplicate window of an existing stream is the broker's to set (it follows the
            // live `streams.dedup_window_secs`, see `Bus::set_dedup_window`): another service
            // starting with its own start-up value leaves it alone.
            if matches!(kind, StreamKind::Ingest | StreamKind::Work)
                && let Ok(existing) = js.get_stream(&name).await
            {
                config.duplicate_window = existing.cached_info().config.duplicate_window;
            }
            let info = js
                .create_or_update_stream(config)
                .await
                .map_err(|err| Error::Declare {
                    what: format!("stream {name}"),
                    source: Box::new(err),
                })?;
            debug!(stream = %name, messages = info.state.messages, "declared stream");
        }
        for kind in ConsumerKind::ALL {
            let stream = self.stream_name(kind.stream());
            let name = kind.durable_name();
            js.create_consumer_on_stream(self.consumer_config(kind), &stream)
                .await
                .map_err(|err| Error::Declare {
                    what: format!("consumer {name} on stream {stream}"),
                    source: Box::new(err),
                })?;
            debug!(%stream, consumer = %name, "declared consumer");
        }
        let bucket = self.config_bucket_name();
        js.create_or_update_stream(self.config_bucket_stream_config())
            .await
            .map_err(|err| Error::Declare {
                what: format!("key-value bucket {bucket}"),
                source: Box::new(err),
            })?;
        info!(prefix = %self.prefix, "declared jetstream topology");
        Ok(())
    }

    /// Deletes every stream (with its consumers and messages) and the config bucket. Meant for
    /// tests and for wiping a scratch deployment; missing ones are skipped.
    pub async fn delete(&self, js: &jetstream::Context) -> Result<()> {
        for kind in StreamKind::ALL {
            let name = self.stream_name(kind);
            delete_stream_if_present(js, &name, format!("stream {name}")).await?;
        }
        let bucket = self.config_bucket_name();
        delete_stream_if_present(
            js,
            &format!("KV_{bucket}"),
            format!("key-value bucket {bucket}"),
        )
        .await
    }
}

async fn delete_stream_if_present(js: &jetstream::Context, name: &str, what: String) -> Result<()> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::DeleteStreamErrorKind;
    match js.delete_stream(name).await {
        Ok(_) => Ok(()),
        Err(err) => match err.kind() {
            DeleteStreamErrorKind::JetStream(js_err)
                if js_err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(())
            }
            _ => Err(Error::Delete {
                what,
                source: Box::new(err),
            }),
        },
    }
}

/// Replaces characters that cannot appear in a subject token (`.`, `*`, `>`, whitespace,
/// control characters) with `_`, e.g. for host names used as instance ids.
pub fn subject_token(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if is_token_char(c) { c } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    }
}

fn is_token_char(c: char) -> bool {
    !(c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control())
}

fn check_token(what: &'static str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        Some("must not be empty".to_owned())
    } else {
        value
            .chars()
            .find(|c| !is_token_char(*c))
            .map(|c| format!("character {c:?} is not allowed in a subject token"))
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(prefix: &str) -> Topology {
        Topology::new(prefix, TopologyConfig::default()).expect("valid topology")
    }

    #[test]
    fn production_names_have_no_prefix() {
        let t = topology("");
        assert_eq!(t.stream_name(StreamKind::Ingest), "VIGIL_INGEST");
        assert_eq!(t.stream_subjects(StreamKind::Work), "vigil.work.>");
        assert_eq!(t.config_bucket_name(), "vigil_config");
        assert_eq!(t.ingest_subject("ids").expect("valid"), "vigil.ingest.ids");
        assert_eq!(
            t.work_subject("critical").expect("valid"),
            "vigil.work.critical"
        );
        assert_eq!(
            t.event_subject("assessment_complete").expect("valid"),
            "vigil.events.assessment_complete"
        );
        assert_eq!(t.dlq_subject(StreamKind::Ingest), "vigil.dlq.VIGIL_INGEST");
        assert_eq!(
            t.heartbeat_subject("broker", "pod-1").expect("valid"),
            "vigil.health.heartbeat.broker.pod-1"
        );
        assert_eq!(t.feedback_submit_subject(), "vigil.feedback.submit");
        assert_eq!(t.health_status_subject(), "vigil.health.status");
        assert_eq!(t.heartbeat_wildcard(), "vigil.health.heartbeat.>");
        assert_eq!(t.feedback_review_subject(), "vigil.feedback.review");
        assert_eq!(t.feedback_insights_subject(), "vigil.feedback.insights");
    }

    #[test]
    fn a_prefix_applies_to_streams_subjects_and_the_bucket() {
        let t = topology("t1a2b");
        assert_eq!(t.stream_name(StreamKind::Ingest), "t1a2b_VIGIL_INGEST");
        assert_eq!(
            t.stream_subjects(StreamKind::Ingest),
            "t1a2b.vigil.ingest.>"
        );
        assert_eq!(t.config_bucket_name(), "t1a2b_vigil_config");
        assert_eq!(
            t.dlq_subject(StreamKind::Work),
            "t1a2b.vigil.dlq.VIGIL_WORK"
        );
        assert_eq!(t.feedback_submit_subject(), "t1a2b.vigil.feedback.submit");
        assert_eq!(t.health_status_subject(), "t1a2b.vigil.health.status");
        assert_eq!(
            t.heartbeat_subject("broker", "pod-1").expect("valid"),
            "t1a2b.vigil.health.heartbeat.broker.pod-1"
        );
        assert_eq!(t.feedback_review_subject(), "t1a2b.vigil.feedback.review");
        assert_eq!(
            t.feedback_insights_subject(),
            "t1a2b.vigil.feedback.insights"
        );
        let critical = t.consumer_config(ConsumerKind::Orchestrator(WorkPriority::Critical));
        assert_eq!(
            critical.durable_name.as_deref(),
            Some("orchestrator-critical")
        );
        assert_eq!(critical.filter_subject, "t1a2b.vigil.work.critical");
        assert_eq!(
            t.consumer_config(ConsumerKind::Broker).filter_subject,
            "t1a2b.vigil.ingest.>"
        );
    }

    #[test]
    fn rejects_names_that_would_break_subjects() {
        assert!(Topology::new("a.b", TopologyConfig::default()).is_err());
        assert!(Topology::new("a b", TopologyConfig::default()).is_err());
        let t = topology("");
        assert!(t.ingest_subject("").is_err());
        assert!(t.ingest_subject("a.b").is_err());
        assert!(t.ingest_subject("*").is_err());
        assert!(t.event_subject(">").is_err());
        assert!(t.work_subject("urgent").is_err());
        assert!(t.work_subject("Critical").is_err());
        assert!(t.heartbeat_subject("broker", "host.example.com").is_err());
        assert_eq!(subject_token("host.example com"), "host_example_com");
    }

    #[test]
    fn the_work_queue_is_bounded_and_refuses_when_full() {
        let config = topology("").stream_config(StreamKind::Work);
        assert_eq!(config.retention, RetentionPolicy::WorkQueue);
        assert_eq!(config.discard, DiscardPolicy::New);
        assert_eq!(config.max_messages, 10_000);
        assert_eq!(config.duplicate_window, Duration::from_secs(300));
    }

    #[test]
    fn each_ingest_subject_has_a_bounded_backlog_of_its_own() {
        let config = topology("").stream_config(StreamKind::Ingest);
        assert_eq!(config.retention, RetentionPolicy::WorkQueue);
        assert!(
            config.max_messages <= 0,
            "the stream as a whole is unbounded"
        );
        assert_eq!(config.max_messages_per_subject, 100_000);
        assert_eq!(config.discard, DiscardPolicy::New);
        assert!(config.discard_new_per_subject);
    }

    #[test]
    fn default_backoff_doubles_and_stays_below_max_deliver() {
        let policy = ConsumerPolicy::default();
        assert_eq!(policy.max_deliver, 5);
        assert_eq!(
            policy.backoff,
            [30, 60, 120, 240].map(Duration::from_secs).to_vec()
        );
    }

    #[test]
    fn rejects_inconsistent_policies() {
        let too_many_steps = TopologyConfig {
            broker: ConsumerPolicy {
                max_deliver: 2,
                backoff: vec![Duration::from_secs(1); 2],
                ..ConsumerPolicy::default()
            },
            ..TopologyConfig::default()
        };
        assert!(Topology::new("", too_many_steps).is_err());
        let no_delivery = TopologyConfig {
            orchestrator: ConsumerPolicy {
                max_deliver: 0,
                backoff: Vec::new(),
                ..ConsumerPolicy::default()
            },
            ..TopologyConfig::default()
        };
        assert!(Topology::new("", no_delivery).is_err());
    }
}
