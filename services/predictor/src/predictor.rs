//! `vigil.v1.Predictor`: Predict, PredictBatch, GetModel.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use vigil_domain::{PredictionResult, RiskThresholds, ThreatSignal};
use vigil_proto::v1;
use vigil_proto::v1::predictor_server::Predictor;

use crate::error::ApiError;
use crate::model::{ModelSlot, ServingModel};

/// Batches up to this many rows are scored on the request's own task; larger ones on the
/// blocking pool, so a big batch does not stall the other requests of its worker thread.
const INLINE_BATCH_ROWS: usize = 16;

/// What every handler needs: the model slot, the thresholds and the minimum coverage.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub models: ModelSlot,
    pub thresholds: RiskThresholds,
    /// Below this share of its inputs carried, the model abstains.
    pub min_coverage: f64,
    pub model_name: String,
}

impl Shared {
    /// Turns a handler's result into the gRPC answer, counting errors.
    pub(crate) fn answer<T>(&self, result: Result<T, ApiError>) -> Result<Response<T>, Status> {
        result.map(Response::new).map_err(|error| {
            self.models.metrics().failed(error.label());
            if matches!(error, ApiError::Internal(_)) {
                tracing::warn!(%error, "request failed");
            }
            Status::from(error)
        })
    }

    /// [`answer`](Self::answer), recording the request in the heartbeats: only a fault of the
    /// server counts as a failed operation; a missing model is judged by the model rule.
    pub(crate) fn answer_timed<T>(
        &self,
        started: Instant,
        result: Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        if !matches!(result, Err(ApiError::NoModel)) {
            let failed = matches!(result, Err(ApiError::Internal(_)));
            self.models
                .metrics()
                .beat
                .record(!failed, started.elapsed());
        }
        self.answer(result)
    }

    /// `result`, abstaining when its signal carried less than the minimum coverage (counted).
    fn abstain_below_minimum(&self, result: PredictionResult) -> PredictionResult {
        let result = result.abstain_below(self.min_coverage);
        if result.abstention.is_some() {
            self.models.metrics().abstentions.inc();
        }
        result
    }

    /// Scores `signals` with the serving model, refusing the whole batch at the first signal
    /// that cannot be scored (the message names its index).
    pub(crate) async fn score_all(
        &self,
        rpc: &'static str,
        signals: Vec<ThreatSignal>,
    ) -> Result<(Arc<ServingModel>, Vec<PredictionResult>), ApiError> {
        let model = self.models.current().ok_or(ApiError::NoModel)?;
        let rows = signals.len();
        let thresholds = self.thresholds;
        let results = if rows <= INLINE_BATCH_ROWS {
            model.predict_batch(&signals, &thresholds)
        } else {
            let model = model.clone();
            tokio::task::spawn_blocking(move || model.predict_batch(&signals, &thresholds))
                .await
                .map_err(|e| ApiError::Internal(format!("scoring task failed: {e}")))?
        };
        let results = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.map(|r| self.abstain_below_minimum(r))
                    .map_err(|e| ApiError::from(e).at(&format!("signals[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.models.metrics().scored(rpc, rows);
        Ok((model, results))
    }
}

/// A wire signal as a validated domain signal; no timestamp means "now", as at the broker.
pub(crate) fn signal_from_wire(mut wire: v1::ThreatSignal) -> Result<ThreatSignal, ApiError> {
    if wire.timestamp.is_none() {
        wire.timestamp = Some(Utc::now().into());
    }
    Ok(ThreatSignal::try_from(wire)?)
}

/// The `vigil.v1.Predictor` implementation.
#[derive(Debug, Clone)]
pub struct PredictorApi {
    shared: Shared,
}

impl PredictorApi {
    pub(crate) fn new(shared: Shared) -> Self {
        Self { shared }
    }

    fn predict_one(&self, request: v1::PredictRequest) -> Result<v1::PredictResponse, ApiError> {
        let wire = request
            .signal
            .ok_or_else(|| ApiError::invalid("signal is required"))?;
        let signal = signal_from_wire(wire)?;
        let guard = self.shared.models.guard();
        let model = guard.as_ref().ok_or(ApiError::NoModel)?;
        let result = self
            .shared
            .abstain_below_minimum(model.predict(&signal, &self.shared.thresholds)?);
        drop(guard);
        self.shared.models.metrics().scored("predict", 1);
        Ok(v1::PredictResponse {
            result: Some(result.into()),
        })
    }

    async fn predict_many(
        &self,
        request: v1::PredictBatchRequest,
    ) -> Result<v1::PredictBatchResponse, ApiError> {
        let signals = request
            .signals
            .into_iter()
            .enumerate()
            .map(|(i, wire)| signal_from_wire(wire).map_err(|e| e.at(&format!("signals[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let (_, results) = self.shared.score_all("predict_batch", signals).await?;
        Ok(v1::PredictBatchResponse {
            results: results.into_iter().map(Into::into).collect(),
        })
    }

    fn model(&self) -> Result<v1::GetModelResponse, ApiError> {
        let model = self.shared.models.current().ok_or(ApiError::NoModel)?;
        Ok(v1::GetModelResponse {
            model: Some(model.version.clone().into()),
            components: model.components.iter().cloned().map(Into::into).collect(),
        })
    }
}

#[tonic::async_trait]
impl Predictor for PredictorApi {
    async fn predict(
        &self,
        request: Request<v1::PredictRequest>,
    ) -> Result<Response<v1::PredictResponse>, Status> {
        let started = Instant::now();
        let span = caller_span(tracing::info_span!("predictor.predict"), &request);
        let _entered = span.enter();
        self.shared
            .answer_timed(started, self.predict_one(request.into_inner()))
    }

    async fn predict_batch(
        &self,
        request: Request<v1::PredictBatchRequest>,
    ) -> Result<Response<v1::PredictBatchResponse>, Status> {
        let started = Instant::now();
        let span = caller_span(tracing::info_span!("predictor.predict_batch"), &request);
        let result = self
            .predict_many(request.into_inner())
            .instrument(span)
            .await;
        self.shared.answer_timed(started, result)
    }

    async fn get_model(
        &self,
        _request: Request<v1::GetModelRequest>,
    ) -> Result<Response<v1::GetModelResponse>, Status> {
        self.shared.answer(self.model())
    }
}

/// `span`, in the caller's trace when its metadata carried a `traceparent`.
fn caller_span<T>(span: tracing::Span, request: &Request<T>) -> tracing::Span {
    let header = request
        .metadata()
        .get(vigil_runtime::trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    vigil_runtime::trace::follow_header(span, header)
}
