//! The predictor: scores threat signals with the production ML ensemble over gRPC.
//!
//! One port serves `vigil.v1.Predictor` (Predict, PredictBatch, GetModel), the Open Inference
//! Protocol v2 `inference.GRPCInferenceService`, `grpc.health.v1` (NOT_SERVING until a model is
//! loaded) and server reflection. At start it loads the registry's production ensemble (or
//! `predictor.model_file` while the registry has none); on every `model_promoted` event, and
//! every `predictor.refresh_secs`, it loads the registry's production version completely and
//! swaps it in atomically: no request fails or waits during a swap, and a version whose
//! artifact does not load is refused while the previous model keeps serving.
//!
//! Predictions carry the serving model's id: the registry id for registry models, the
//! artifact's `ens-...` id for a file. A signal that carries less than `predictor.min_coverage`
//! of the model's inputs gets an answer with `abstention` set (reason and detail): the model
//! does not speak about what it has not seen.

mod error;
mod inference;
mod metrics;
mod model;
mod predictor;
mod server;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigil_bus::Bus;
use vigil_config::Config;
use vigil_runtime::ServiceContext;
use vigil_store::Store;

pub use error::{ApiError, Error, Result};
pub use inference::{
    INPUT_SIGNALS, InferenceApi, OUTPUT_ABSTENTION, OUTPUT_CONFIDENCE, OUTPUT_COVERAGE,
    OUTPUT_RISK_LEVEL, OUTPUT_RISK_SCORE, PLATFORM,
};
pub use metrics::PredictorMetrics;
pub use model::{ModelSlot, ModelSource, ServingModel};
pub use predictor::PredictorApi;
pub use server::{PredictorServer, ServerOptions};

use watch::{Refresh, RegistryFollower};

/// The readiness name of the predictor in `/readyz`.
const READINESS: &str = "predictor";

/// Runs a standalone predictor (with its own `/metrics` endpoint) until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    vigil_runtime::run_standalone(config, shutdown, run_in).await
}

/// Runs the predictor in a shared context until `token` is cancelled; shutdown reports
/// NOT_SERVING, stops following the registry and drains in-flight requests.
pub async fn run_in(ctx: ServiceContext, token: CancellationToken) -> Result<()> {
    Predictor::start(ctx).await?.run(token).await
}

/// The `model` dependency of the predictor's heartbeats: the serving model's id, or none.
fn report_model(beat: &vigil_runtime::Beat, models: &ModelSlot) {
    match models.current_id() {
        Some(id) => beat.set_dependency("model", true, id),
        None => beat.set_dependency("model", false, "no model loaded"),
    }
}

/// A started predictor: bound, subscribed to promotions, first model loaded (when there is
/// one). [`run`](Self::run) it to serve until cancelled.
#[derive(Debug)]
pub struct Predictor {
    ctx: ServiceContext,
    beat: vigil_runtime::Beat,
    server: PredictorServer,
    follower: RegistryFollower,
    promotions: vigil_bus::async_nats::Subscriber,
    promotions_subject: String,
}

impl Predictor {
    /// Connects to PostgreSQL and NATS, binds `predictor.grpc_addr` and loads the registry's
    /// production ensemble (or `predictor.model_file` when the registry has none).
    pub async fn start(ctx: ServiceContext) -> Result<Self> {
        let config = ctx.config.clone();
        let settings = &config.predictor;
        // TLS files are read before anything connects: a wrong path fails at once.
        let options = ServerOptions::from_settings(settings, config.thresholds)?;
        let store = Store::connect_and_migrate(&config.database).await?;
        let bus = Bus::connect(&config.nats, vigil_runtime::topology(&config)).await?;
        // Subscribe before the first load, so a promotion in between is not missed.
        let (promotions_subject, promotions) = watch::subscribe_promotions(&bus).await?;
        let beat = ctx.pulse.register(READINESS);
        beat.check_postgres(store.pool().clone());
        let server = PredictorServer::start_with(
            &settings.grpc_addr,
            options,
            None,
            PredictorMetrics::register(&ctx.metrics).with_beat(beat.clone()),
        )
        .await?;
        let models = server.models().clone();
        let mut follower = RegistryFollower::new(store, models.clone());
        let first = follower.refresh(true).await;
        if models.current().is_none() {
            match &settings.model_file {
                Some(path) => match watch::load_file(path).await {
                    Ok(model) => models.install(model).await,
                    Err(error) => {
                        let _ = server.stop().await;
                        return Err(error);
                    }
                },
                None if first == Refresh::Unchanged => tracing::warn!(
                    "the registry has no production ensemble: NOT_SERVING until one is promoted"
                ),
                None => {}
            }
        }
        ctx.readiness.set(READINESS, models.is_ready());
        report_model(&beat, &models);
        Ok(Self {
            ctx,
            beat,
            server,
            follower,
            promotions,
            promotions_subject,
        })
    }

    /// The address the gRPC server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The slot of the serving model.
    pub fn models(&self) -> &ModelSlot {
        self.server.models()
    }

    /// Serves and follows the registry until `token` is cancelled.
    pub async fn run(self, token: CancellationToken) -> Result<()> {
        let Self {
            ctx,
            beat,
            mut server,
            mut follower,
            mut promotions,
            promotions_subject,
        } = self;
        let models = server.models().clone();
        let refresh_secs = ctx.config.predictor.refresh_secs;
        let mut refresh = tokio::time::interval(Duration::from_secs(refresh_secs.max(1)));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.reset();
        let outcome = loop {
            tokio::select! {
                () = token.cancelled() => break Ok(()),
                error = server.failed() => break Err(error),
                message = watch::next_promotion(&mut promotions) => {
                    let Some(message) = message else {
                        break Err(Error::Subscribe {
                            subject: promotions_subject,
                            message: "the subscription ended".into(),
                        });
                    };
                    let model_id = watch::promoted_model_id(&message);
                    tracing::info!(?model_id, "model promoted, checking the registry");
                    follower.refresh(true).await;
                }
                _ = refresh.tick(), if refresh_secs > 0 => {
                    follower.refresh(false).await;
                }
            }
            ctx.readiness.set(READINESS, models.is_ready());
            report_model(&beat, &models);
        };
        ctx.readiness.set(READINESS, false);
        drop(promotions);
        let stopped = server.stop().await;
        ctx.readiness.remove(READINESS);
        tracing::info!("predictor stopped");
        outcome.and(stopped)
    }
}
