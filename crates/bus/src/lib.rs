//! NATS JetStream topology, typed publish/consume, dead letters and the live config bucket.
//!
//! ```no_run
//! # async fn demo(
//! #     settings: &vigil_config::NatsSettings,
//! #     signal: &impl prost::Message,
//! # ) -> vigil_bus::Result<()> {
//! use vigil_bus::{Bus, PublishOptions, TopologyConfig};
//!
//! let bus = Bus::connect(settings, TopologyConfig::default()).await?;
//! bus.declare().await?;
//! let subject = bus.topology().ingest_subject("ids")?;
//! let ack = bus
//!     .publisher()
//!     .publish(&subject, signal, PublishOptions::new("sensor-event-1"))
//!     .await?;
//! assert!(!ack.duplicate);
//! # Ok(())
//! # }
//! ```

mod config_bucket;
mod connect;
mod consume;
mod error;
mod exhausted;
pub mod headers;
mod publish;
mod topology;
mod trace;

use std::sync::Arc;

use async_nats::Client;
use async_nats::jetstream;
use vigil_config::NatsSettings;

pub use async_nats;
pub use config_bucket::{ConfigBucket, ConfigEntry, ConfigOperation, ConfigWatch};
pub use connect::connect;
pub use consume::{
    ConsumerStats, Delivery, DeliveryMeta, JsonDecoder, Payload, RetryOutcome, TypedConsumer,
};
pub use error::{BoxError, Error, Result};
pub use exhausted::ExhaustedRescuer;
pub use headers::ContentType;
pub use publish::{PubAck, PublishOptions, Publisher};
pub use topology::{
    ConsumerKind, ConsumerPolicy, StreamKind, Topology, TopologyConfig, WorkPriority, subject_token,
};
pub use trace::TraceParent;

/// A connection to NATS together with vigil's topology: the one handle a service keeps.
#[derive(Clone, Debug)]
pub struct Bus {
    client: Client,
    jetstream: jetstream::Context,
    topology: Arc<Topology>,
}

impl Bus {
    /// Connects with `settings` (URL, auth, TLS) and names everything under `settings.prefix`.
    pub async fn connect(settings: &NatsSettings, config: TopologyConfig) -> Result<Self> {
        let topology = Topology::new(settings.prefix.clone(), config)?;
        let client = connect(settings).await?;
        Ok(Self::from_client(client, topology))
    }

    /// Wraps an existing connection.
    pub fn from_client(client: Client, topology: Topology) -> Self {
        let jetstream = jetstream::new(client.clone());
        Self {
            client,
            jetstream,
            topology: Arc::new(topology),
        }
    }

    /// Creates or updates every stream, consumer and the config bucket (idempotent).
    pub async fn declare(&self) -> Result<()> {
        self.topology.declare(&self.jetstream).await
    }

    /// Sets the duplicate window of the ingest and work streams: a `Nats-Msg-Id` seen within
    /// it is stored once. The broker applies the live `streams.dedup_window_secs` with it.
    pub async fn set_dedup_window(&self, window: std::time::Duration) -> Result<()> {
        for kind in [StreamKind::Ingest, StreamKind::Work] {
            let name = self.topology.stream_name(kind);
            let declare_error = |source: BoxError| Error::Declare {
                what: format!("the duplicate window of stream {name}"),
                source,
            };
            let stream = self
                .jetstream
                .get_stream(&name)
                .await
                .map_err(|e| declare_error(Box::new(e)))?;
            let mut config = stream.cached_info().config.clone();
            if config.duplicate_window == window {
                continue;
            }
            config.duplicate_window = window;
            self.jetstream
                .update_stream(config)
                .await
                .map_err(|e| declare_error(Box::new(e)))?;
            tracing::info!(stream = %name, ?window, "duplicate window changed");
        }
        Ok(())
    }

    /// The names and limits.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The core NATS client (heartbeats, request/reply).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// A publisher of protobuf messages.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.jetstream.clone())
    }

    /// Binds to one of the durable consumers, decoding messages as `T`.
    pub async fn consumer<T: Payload>(&self, kind: ConsumerKind) -> Result<TypedConsumer<T>> {
        TypedConsumer::bind(&self.jetstream, &self.topology, kind).await
    }

    /// Opens the live config bucket.
    pub async fn config_bucket(&self) -> Result<ConfigBucket> {
        ConfigBucket::open(&self.jetstream, &self.topology).await
    }
}
