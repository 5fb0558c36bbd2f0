//! Shared by the predictor's test binaries: small real ensembles trained on NSL-KDD, signals
//! to score, gRPC clients.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::OnceLock;

use tonic::transport::Channel;
use vigil_ml::{
    BoostConfig, ForestConfig, LabeledExample, MlpConfig, ModelArtifact, NoProgress, TrainConfig,
    train_ensemble,
};
use vigil_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vigil_proto::v1;
use vigil_proto::v1::predictor_client::PredictorClient;

/// The 20 % NSL-KDD training file, read once.
pub fn examples() -> &'static [LabeledExample] {
    vigil_testkit::nsl_kdd::examples()
}

/// Small models, so training takes seconds; still the real pipeline.
fn small_config(seed: u64) -> TrainConfig {
    TrainConfig {
        forest: ForestConfig {
            n_trees: 12,
            max_depth: 10,
            ..ForestConfig::default()
        },
        xgboost: BoostConfig {
            rounds: 15,
            ..BoostConfig::default()
        },
        mlp: MlpConfig {
            hidden: vec![16],
            max_epochs: 3,
            ..MlpConfig::default()
        },
        ..TrainConfig::default()
    }
    .with_seed(seed)
}

fn train(rows: std::ops::Range<usize>, seed: u64) -> ModelArtifact {
    let (artifact, _) = train_ensemble(
        examples()[rows].to_vec(),
        &small_config(seed),
        "nsl-kdd test slice",
        &NoProgress,
    )
    .unwrap();
    artifact
}

/// Version A: rows 0-2,499.
pub fn artifact_a() -> &'static ModelArtifact {
    static A: OnceLock<ModelArtifact> = OnceLock::new();
    A.get_or_init(|| train(0..2_500, 1))
}

/// Version B: rows 2,500-4,999, another seed; a different model with a different id.
pub fn artifact_b() -> &'static ModelArtifact {
    static B: OnceLock<ModelArtifact> = OnceLock::new();
    B.get_or_init(|| {
        let b = train(2_500..5_000, 2);
        assert_ne!(
            b.metadata.model_version_id,
            artifact_a().metadata.model_version_id
        );
        b
    })
}

/// Signals neither model was trained on, as the wire sends them.
pub fn signals(n: usize) -> Vec<v1::ThreatSignal> {
    examples()[20_000..]
        .iter()
        .step_by(7)
        .take(n)
        .map(|e| v1::ThreatSignal::from(e.signal.clone()))
        .collect()
}

pub fn signal() -> v1::ThreatSignal {
    signals(1).remove(0)
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn predictor(addr: SocketAddr) -> PredictorClient<Channel> {
    PredictorClient::new(channel(addr).await)
}

pub async fn inference(addr: SocketAddr) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::new(channel(addr).await)
}

pub async fn health_status(addr: SocketAddr, service: &str) -> i32 {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel(addr).await);
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

pub const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
pub const NOT_SERVING: i32 =
    tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
