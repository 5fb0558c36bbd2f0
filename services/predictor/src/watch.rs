//! Keeping the serving model equal to the registry's production ensemble: on every
//! `model_promoted` event, and every `refresh_secs` in case an event was missed.
//!
//! The registry is the truth: an event only says "look now". A new version is read (its
//! checksum verified by the registry), parsed and checked completely before it is swapped in;
//! one that fails is refused with a logged error and the previous model keeps serving.

use std::path::Path;

use futures::StreamExt;
use prost::Message;
use vigil_bus::headers::{APPLICATION_JSON, CONTENT_TYPE, header_value};
use vigil_domain::{EventType, ModelType};
use vigil_ml::ModelArtifact;
use vigil_proto::v1;
use vigil_store::{ModelRecord, Store};

use crate::error::{Error, Result};
use crate::model::{ModelSlot, ModelSource, ServingModel};

/// Why the registry version could not be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error(transparent)]
    Store(#[from] vigil_store::Error),
    #[error(transparent)]
    Artifact(#[from] vigil_ml::Error),
    #[error("loading task failed: {0}")]
    Task(String),
}

/// Reads and checks an artifact off the async threads (parsing a large model takes a while).
async fn parse_artifact(bytes: Vec<u8>) -> Result<ModelArtifact, LoadError> {
    tokio::task::spawn_blocking(move || ModelArtifact::from_bytes(&bytes))
        .await
        .map_err(|e| LoadError::Task(e.to_string()))?
        .map_err(LoadError::from)
}

/// Loads an artifact file for `predictor.model_file`.
pub(crate) async fn load_file(path: &Path) -> Result<ServingModel> {
    let error = |message: String| Error::ModelFile {
        path: path.to_owned(),
        message,
    };
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| error(e.to_string()))?;
    let artifact = parse_artifact(bytes)
        .await
        .map_err(|e| error(e.to_string()))?;
    Ok(ServingModel::from_artifact(
        artifact,
        ModelSource::File(path.to_owned()),
    ))
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// The production version is already serving (or the registry has none).
    Unchanged,
    /// A new version was swapped in.
    Swapped(String),
    /// The production version could not be loaded; the previous model keeps serving.
    Refused(String),
    /// The registry could not be read.
    RegistryUnavailable,
}

/// Follows the registry's production ensemble into the model slot.
#[derive(Debug)]
pub(crate) struct RegistryFollower {
    store: Store,
    models: ModelSlot,
    /// The last version refused, so periodic refreshes do not retry (and log) it every time;
    /// a `model_promoted` event always retries.
    refused: Option<String>,
}

impl RegistryFollower {
    pub(crate) fn new(store: Store, models: ModelSlot) -> Self {
        Self {
            store,
            models,
            refused: None,
        }
    }

    /// Swaps in the registry's production ensemble if it is not the one serving.
    pub(crate) async fn refresh(&mut self, retry_refused: bool) -> Refresh {
        let production = match self.store.models().production(ModelType::Ensemble).await {
            Ok(Some(record)) => record,
            Ok(None) => return Refresh::Unchanged,
            Err(error) => {
                tracing::warn!(%error, "cannot read the production model from the registry");
                return Refresh::RegistryUnavailable;
            }
        };
        let id = production.version.id.clone();
        if self.models.current_id().as_deref() == Some(id.as_str()) {
            return Refresh::Unchanged;
        }
        if !retry_refused && self.refused.as_deref() == Some(id.as_str()) {
            return Refresh::Unchanged;
        }
        match self.load(production).await {
            Ok(model) => {
                self.models.install(model).await;
                self.refused = None;
                Refresh::Swapped(id)
            }
            Err(error) => {
                self.models.metrics().load_failures.inc();
                tracing::error!(
                    model_version_id = %id,
                    %error,
                    serving = ?self.models.current_id(),
                    "refusing model version, the previous model keeps serving"
                );
                self.refused = Some(id.clone());
                Refresh::Refused(id)
            }
        }
    }

    async fn load(&self, record: ModelRecord) -> Result<ServingModel, LoadError> {
        let bytes = self
            .store
            .models()
            .load_artifact(&record.version.id)
            .await?;
        let artifact = parse_artifact(bytes).await?;
        Ok(ServingModel::from_registry(record.version, artifact))
    }
}

/// The `model_id` a `model_promoted` message names, for the logs; `None` when it cannot be
/// decoded (the registry is consulted either way).
pub(crate) fn promoted_model_id(message: &vigil_bus::async_nats::Message) -> Option<String> {
    let json = header_value(message.headers.as_ref(), CONTENT_TYPE)
        .is_some_and(|ct| ct.starts_with(APPLICATION_JSON));
    let event = if json {
        serde_json::from_slice::<v1::SecurityEvent>(&message.payload).ok()?
    } else {
        v1::SecurityEvent::decode(message.payload.as_ref()).ok()?
    };
    let data = vigil_proto::convert::struct_to_json(event.data);
    data.get("model_id")?.as_str().map(str::to_owned)
}

/// Subscribes to `model_promoted` events with a plain core-NATS subscription: every replica
/// sees every event (a shared durable consumer would split them between replicas).
pub(crate) async fn subscribe_promotions(
    bus: &vigil_bus::Bus,
) -> Result<(String, vigil_bus::async_nats::Subscriber)> {
    let subject = bus
        .topology()
        .event_subject(EventType::ModelPromoted.as_str())?;
    let subscriber =
        bus.client()
            .subscribe(subject.clone())
            .await
            .map_err(|e| Error::Subscribe {
                subject: subject.clone(),
                message: e.to_string(),
            })?;
    Ok((subject, subscriber))
}

/// The next `model_promoted` message, or `None` when the subscription ended.
pub(crate) async fn next_promotion(
    subscriber: &mut vigil_bus::async_nats::Subscriber,
) -> Option<vigil_bus::async_nats::Message> {
    subscriber.next().await
}
