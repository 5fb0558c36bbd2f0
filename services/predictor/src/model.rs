//! The model being served and the slot it is swapped into.
//!
//! Requests read the slot without locking ([`ArcSwapOption`]); a new model is fully loaded and
//! checked before it is stored, so a swap never makes a request fail or wait, and requests that
//! started on the old model finish on it.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use vigil_domain::{ModelType, ModelVersion, PredictionResult, RiskThresholds, ThreatSignal};
use vigil_ml::ModelArtifact;
use vigil_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use vigil_proto::v1::predictor_server::PredictorServer as PredictorGrpc;

use crate::inference::InferenceApi;
use crate::metrics::PredictorMetrics;
use crate::predictor::PredictorApi;

/// Where a serving model came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The model registry (PostgreSQL); the id is the registry's.
    Registry,
    /// An artifact file (`predictor.model_file`).
    File(PathBuf),
    /// An artifact handed over in memory (tests, benchmarks, embedding).
    Memory,
}

/// A loaded, checked ensemble with the registry record that describes it.
#[derive(Debug)]
pub struct ServingModel {
    /// The ensemble version: the registry's record, or one derived from the artifact.
    pub version: ModelVersion,
    /// The versions of the members inside it.
    pub components: Vec<ModelVersion>,
    /// Where it came from.
    pub source: ModelSource,
    artifact: ModelArtifact,
}

impl ServingModel {
    /// A model described by its registry record.
    pub fn from_registry(record: ModelVersion, artifact: ModelArtifact) -> Self {
        let components = members(&artifact, record.version);
        Self {
            version: record,
            components,
            source: ModelSource::Registry,
            artifact,
        }
    }

    /// A model described by its own metadata (id `ens-...`, version 1).
    pub fn from_artifact(artifact: ModelArtifact, source: ModelSource) -> Self {
        let version = artifact
            .model_versions(1)
            .into_iter()
            .find(|v| v.model_type == ModelType::Ensemble)
            .unwrap_or_else(|| ModelVersion {
                id: artifact.metadata.model_version_id.clone(),
                model_type: ModelType::Ensemble,
                version: 1,
                trained_at: artifact.metadata.trained_at,
                metrics: Default::default(),
                hyperparameters: artifact.metadata.hyperparameters.clone(),
                training_samples: artifact.metadata.training_samples,
                features_used: artifact.metadata.feature_names.clone(),
                is_active: false,
                is_production: false,
            });
        Self {
            components: members(&artifact, 1),
            version,
            source,
            artifact,
        }
    }

    /// The id predictions carry: the registry id for registry models, else the artifact's.
    pub fn id(&self) -> &str {
        &self.version.id
    }

    /// The artifact being served.
    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    /// Scores one signal.
    pub fn predict(
        &self,
        signal: &ThreatSignal,
        thresholds: &RiskThresholds,
    ) -> vigil_ml::Result<PredictionResult> {
        let mut result = self.artifact.predict(signal, thresholds)?;
        self.stamp(&mut result);
        Ok(result)
    }

    /// Scores many signals; each keeps its own result.
    pub fn predict_batch(
        &self,
        signals: &[ThreatSignal],
        thresholds: &RiskThresholds,
    ) -> Vec<vigil_ml::Result<PredictionResult>> {
        let mut results = self.artifact.predict_batch(signals, thresholds);
        for result in results.iter_mut().flatten() {
            self.stamp(result);
        }
        results
    }

    fn stamp(&self, result: &mut PredictionResult) {
        if result.model_version_id != self.version.id {
            result.model_version_id.clone_from(&self.version.id);
        }
    }
}

impl From<ModelArtifact> for ServingModel {
    fn from(artifact: ModelArtifact) -> Self {
        ServingModel::from_artifact(artifact, ModelSource::Memory)
    }
}

fn members(artifact: &ModelArtifact, version: i32) -> Vec<ModelVersion> {
    artifact
        .model_versions(version)
        .into_iter()
        .filter(|v| v.model_type != ModelType::Ensemble)
        .collect()
}

/// The gRPC service names whose health follows the model: the server as a whole (`""`), the
/// typed API and the Open Inference Protocol API.
fn health_names() -> [&'static str; 3] {
    [
        "",
        <PredictorGrpc<PredictorApi> as NamedService>::NAME,
        <GrpcInferenceServiceServer<InferenceApi> as NamedService>::NAME,
    ]
}

/// The slot holding the serving model; cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct ModelSlot {
    current: Arc<ArcSwapOption<ServingModel>>,
    health: HealthReporter,
    metrics: PredictorMetrics,
}

impl std::fmt::Debug for ModelSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSlot")
            .field("serving", &self.current_id())
            .finish()
    }
}

impl ModelSlot {
    pub(crate) fn new(health: HealthReporter, metrics: PredictorMetrics) -> Self {
        Self {
            current: Arc::new(ArcSwapOption::empty()),
            health,
            metrics,
        }
    }

    /// The serving model, if any.
    pub fn current(&self) -> Option<Arc<ServingModel>> {
        self.current.load_full()
    }

    /// The id of the serving model, if any.
    pub fn current_id(&self) -> Option<String> {
        self.current.load().as_ref().map(|m| m.id().to_owned())
    }

    /// A cheap, lock-free view of the serving model for one request; do not hold it across
    /// an `.await`.
    pub(crate) fn guard(&self) -> arc_swap::Guard<Option<Arc<ServingModel>>> {
        self.current.load()
    }

    /// Swaps `model` in atomically and reports the server as serving. Requests in flight finish
    /// on the model they started with.
    pub async fn install(&self, model: ServingModel) {
        let model = Arc::new(model);
        tracing::info!(
            model_version_id = model.id(),
            version = model.version.version,
            artifact = %model.artifact.metadata.model_version_id,
            source = ?model.source,
            "serving model"
        );
        self.metrics
            .serving_version
            .set(i64::from(model.version.version));
        let previous = self.current.swap(Some(model));
        self.metrics.swaps.inc();
        self.set_health(ServingStatus::Serving).await;
        // Freeing a large model takes a moment; not on a request thread's time.
        if let Some(previous) = previous {
            tokio::task::spawn_blocking(move || drop(previous));
        }
    }

    pub(crate) async fn set_health(&self, status: ServingStatus) {
        for name in health_names() {
            self.health.set_service_status(name, status).await;
        }
    }

    /// Whether a model is serving (readiness).
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    pub(crate) fn metrics(&self) -> &PredictorMetrics {
        &self.metrics
    }
}
