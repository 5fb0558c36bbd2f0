//! The gRPC server: `vigil.v1.Predictor`, `inference.GRPCInferenceService`, `grpc.health.v1`
//! and server reflection on one port.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use vigil_config::PredictorSettings;
use vigil_domain::RiskThresholds;
use vigil_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use vigil_proto::v1::predictor_server::PredictorServer as PredictorGrpc;
use vigil_runtime::grpc_tls::ServerTls;
use vigil_telemetry::Metrics;

use crate::error::{Error, Result};
use crate::inference::InferenceApi;
use crate::metrics::PredictorMetrics;
use crate::model::{ModelSlot, ServingModel};
use crate::predictor::{PredictorApi, Shared};

/// How long shutdown waits for in-flight requests before closing connections anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How the server answers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The model name of the Open Inference Protocol endpoints.
    pub model_name: String,
    /// The score thresholds of the risk levels.
    pub thresholds: RiskThresholds,
    /// Below this share of its inputs carried, the model abstains (`predictor.min_coverage`).
    pub min_coverage: f64,
    /// TLS (`predictor.tls`): the port serves TLS only, and with a client CA only to clients
    /// that present a certificate it signed. Plaintext when `None`.
    pub tls: Option<ServerTls>,
}

impl ServerOptions {
    /// Options from the predictor's settings and the configured thresholds; reads the TLS
    /// files when `predictor.tls` sets them.
    pub fn from_settings(settings: &PredictorSettings, thresholds: RiskThresholds) -> Result<Self> {
        Ok(Self {
            model_name: settings.model_name.clone(),
            thresholds,
            min_coverage: settings.min_coverage,
            tls: ServerTls::load(&settings.tls, "predictor.tls")?,
        })
    }
}

impl Default for ServerOptions {
    /// Plaintext, with the default model name, thresholds and coverage.
    fn default() -> Self {
        let settings = PredictorSettings::default();
        Self {
            model_name: settings.model_name,
            thresholds: RiskThresholds::default(),
            min_coverage: settings.min_coverage,
            tls: None,
        }
    }
}

/// A running gRPC server; [`stop`](Self::stop) it to drain and close.
#[derive(Debug)]
pub struct PredictorServer {
    local_addr: SocketAddr,
    models: ModelSlot,
    stop: CancellationToken,
    task: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
}

impl PredictorServer {
    /// Binds `addr` (port 0 picks a free one) and serves, with `initial` as the model when
    /// given; until a model is installed, health says NOT_SERVING and predictions are
    /// refused with UNAVAILABLE. Counters go to `metrics`.
    pub async fn start(
        addr: &str,
        options: ServerOptions,
        initial: Option<ServingModel>,
        metrics: &Metrics,
    ) -> Result<Self> {
        Self::start_with(addr, options, initial, PredictorMetrics::register(metrics)).await
    }

    pub(crate) async fn start_with(
        addr: &str,
        options: ServerOptions,
        initial: Option<ServingModel>,
        metrics: PredictorMetrics,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: addr.to_owned(),
            source,
        })?;

        let (health, health_service) = tonic_health::server::health_reporter();
        let models = ModelSlot::new(health, metrics);
        models.set_health(ServingStatus::NotServing).await;
        if let Some(model) = initial {
            models.install(model).await;
        }
        let shared = Shared {
            models: models.clone(),
            thresholds: options.thresholds,
            min_coverage: options.min_coverage,
            model_name: options.model_name,
        };
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(vigil_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;

        let stop = CancellationToken::new();
        let signal = stop.clone();
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut builder = Server::builder();
        if let Some(tls) = &options.tls {
            builder = builder
                .tls_config(tls.config())
                .map_err(|source| Error::Transport {
                    addr: local_addr,
                    source,
                })?;
        }
        let tls = match &options.tls {
            None => "off",
            Some(tls) if tls.is_mutual() => "mutual",
            Some(_) => "on",
        };
        let router = builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(PredictorGrpc::new(PredictorApi::new(shared.clone())))
            .add_service(GrpcInferenceServiceServer::new(InferenceApi::new(shared)));
        let task = tokio::spawn(
            router.serve_with_incoming_shutdown(incoming, async move { signal.cancelled().await }),
        );
        tracing::info!(%local_addr, tls, "predictor serving gRPC");
        Ok(Self {
            local_addr,
            models,
            stop,
            task,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The slot of the serving model, to swap models in.
    pub fn models(&self) -> &ModelSlot {
        &self.models
    }

    /// Reports NOT_SERVING, stops accepting, lets in-flight requests finish (for at most
    /// 10 s), then closes.
    pub async fn stop(mut self) -> Result<()> {
        self.models.set_health(ServingStatus::NotServing).await;
        self.stop.cancel();
        let joined = tokio::time::timeout(DRAIN_TIMEOUT, &mut self.task).await;
        match joined {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(source))) => Err(Error::Transport {
                addr: self.local_addr,
                source,
            }),
            Ok(Err(join)) => Err(Error::Other(anyhow::anyhow!("gRPC server task: {join}"))),
            Err(_) => {
                tracing::warn!("in-flight requests did not finish in time, closing");
                self.task.abort();
                Ok(())
            }
        }
    }

    /// Completes when the server stops by itself (it only does on a transport error).
    pub(crate) async fn failed(&mut self) -> Error {
        match (&mut self.task).await {
            Ok(Ok(())) => Error::Other(anyhow::anyhow!("the gRPC server stopped unexpectedly")),
            Ok(Err(source)) => Error::Transport {
                addr: self.local_addr,
                source,
            },
            Err(join) => Error::Other(anyhow::anyhow!("gRPC server task: {join}")),
        }
    }
}
