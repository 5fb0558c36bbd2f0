//! The Open Inference Protocol v2 (`inference.GRPCInferenceService`, as spoken by KServe,
//! Triton and Seldon clients).
//!
//! The model takes one input, `signals`: a BYTES tensor of shape `[N]` whose elements are threat
//! signals in JSON as every vigil entry point reads it (`{"threatType": "neptune", "confidence":
//! 0.8, ...}`, or `type`, `port`, `"severity": "high"`: see [`vigil_proto::signal_json`]), in
//! `contents` or length-prefixed in `raw_input_contents`. It answers `risk_score` (FP64 `[N]`,
//! 0-10), `confidence` (FP64 `[N]`, 0-1), `risk_level` (BYTES `[N]`: `low` ... `critical`),
//! `coverage` (FP64 `[N]`, the share of the model's inputs each signal carried) and `abstention`
//! (BYTES `[N]`: `low_coverage` where the model abstained, empty where it scored; an abstained
//! signal's other outputs are what the model computed anyway and must not be used).

use tonic::{Request, Response, Status};
use vigil_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use vigil_proto::inference::model_infer_request::InferInputTensor;
use vigil_proto::inference::model_infer_response::InferOutputTensor;
use vigil_proto::inference::model_metadata_response::TensorMetadata;
use vigil_proto::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse,
};
use vigil_proto::signal_json;

use crate::error::ApiError;
use crate::predictor::{Shared, signal_from_wire};

/// The input tensor.
pub const INPUT_SIGNALS: &str = "signals";
/// Output: risk score 0-10 per signal.
pub const OUTPUT_RISK_SCORE: &str = "risk_score";
/// Output: confidence 0-1 per signal.
pub const OUTPUT_CONFIDENCE: &str = "confidence";
/// Output: risk level name per signal.
pub const OUTPUT_RISK_LEVEL: &str = "risk_level";
/// Output: share of the model's inputs each signal carried, 0-1.
pub const OUTPUT_COVERAGE: &str = "coverage";
/// Output: why the model abstained on each signal (`low_coverage`), empty where it scored; the
/// other outputs of an abstained signal are what the model computed anyway, not to be used.
pub const OUTPUT_ABSTENTION: &str = "abstention";
const OUTPUTS: [(&str, &str); 5] = [
    (OUTPUT_RISK_SCORE, "FP64"),
    (OUTPUT_CONFIDENCE, "FP64"),
    (OUTPUT_RISK_LEVEL, "BYTES"),
    (OUTPUT_COVERAGE, "FP64"),
    (OUTPUT_ABSTENTION, "BYTES"),
];
/// What `ModelMetadata` names as the platform.
pub const PLATFORM: &str = "vigil_ensemble";

/// The `inference.GRPCInferenceService` implementation.
#[derive(Debug, Clone)]
pub struct InferenceApi {
    shared: Shared,
}

impl InferenceApi {
    pub(crate) fn new(shared: Shared) -> Self {
        Self { shared }
    }

    fn check_name(&self, name: &str) -> Result<(), ApiError> {
        if name == self.shared.model_name {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "unknown model {name:?}; this server serves {:?}",
                self.shared.model_name
            )))
        }
    }

    fn model_ready(&self, request: &ModelReadyRequest) -> Result<ModelReadyResponse, ApiError> {
        self.check_name(&request.name)?;
        let ready = self
            .shared
            .models
            .current_id()
            .is_some_and(|id| request.version.is_empty() || request.version == id);
        Ok(ModelReadyResponse { ready })
    }

    fn model_metadata(
        &self,
        request: &ModelMetadataRequest,
    ) -> Result<ModelMetadataResponse, ApiError> {
        self.check_name(&request.name)?;
        let tensor = |name: &str, datatype: &str| TensorMetadata {
            name: name.to_owned(),
            datatype: datatype.to_owned(),
            shape: vec![-1],
        };
        Ok(ModelMetadataResponse {
            name: self.shared.model_name.clone(),
            versions: self.shared.models.current_id().into_iter().collect(),
            platform: PLATFORM.to_owned(),
            inputs: vec![tensor(INPUT_SIGNALS, "BYTES")],
            outputs: OUTPUTS.iter().map(|(n, t)| tensor(n, t)).collect(),
        })
    }

    async fn infer(&self, request: ModelInferRequest) -> Result<ModelInferResponse, ApiError> {
        self.check_name(&request.model_name)?;
        let outputs = requested_outputs(&request)?;
        let elements = signal_elements(&request)?;
        let signals = elements
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let wire = signal_json::decode(bytes)
                    .map_err(|e| ApiError::invalid(format!("not a threat signal: {e}")));
                wire.and_then(signal_from_wire)
                    .map_err(|e| e.at(&format!("{INPUT_SIGNALS}[{i}]")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(elements);
        let (model, results) = self.shared.score_all("model_infer", signals).await?;
        if !request.model_version.is_empty() && request.model_version != model.id() {
            return Err(self.unknown_version(&request.model_version));
        }
        let n = results.len() as i64;
        let outputs = outputs
            .into_iter()
            .map(|name| {
                let (datatype, contents) = match name {
                    OUTPUT_RISK_SCORE => (
                        "FP64",
                        InferTensorContents {
                            fp64_contents: results.iter().map(|r| r.risk_score).collect(),
                            ..Default::default()
                        },
                    ),
                    OUTPUT_CONFIDENCE => (
                        "FP64",
                        InferTensorContents {
                            fp64_contents: results.iter().map(|r| r.confidence).collect(),
                            ..Default::default()
                        },
                    ),
                    OUTPUT_COVERAGE => (
                        "FP64",
                        InferTensorContents {
                            fp64_contents: results.iter().map(|r| r.coverage).collect(),
                            ..Default::default()
                        },
                    ),
                    OUTPUT_ABSTENTION => (
                        "BYTES",
                        InferTensorContents {
                            bytes_contents: results
                                .iter()
                                .map(|r| {
                                    r.abstention
                                        .as_ref()
                                        .map_or("", |a| a.reason.as_str())
                                        .as_bytes()
                                        .to_vec()
                                })
                                .collect(),
                            ..Default::default()
                        },
                    ),
                    _ => (
                        "BYTES",
                        InferTensorContents {
                            bytes_contents: results
                                .iter()
                                .map(|r| r.risk_level.as_str().as_bytes().to_vec())
                                .collect(),
                            ..Default::default()
                        },
                    ),
                };
                InferOutputTensor {
                    name: name.to_owned(),
                    datatype: datatype.to_owned(),
                    shape: vec![n],
                    parameters: Default::default(),
                    contents: Some(contents),
                }
            })
            .collect();
        Ok(ModelInferResponse {
            model_name: self.shared.model_name.clone(),
            model_version: model.id().to_owned(),
            id: request.id,
            parameters: Default::default(),
            outputs,
            raw_output_contents: Vec::new(),
        })
    }

    fn unknown_version(&self, version: &str) -> ApiError {
        ApiError::NotFound(format!(
            "model {:?} has no version {version:?}; serving {:?} (leave model_version empty for \
             the serving one)",
            self.shared.model_name,
            self.shared.models.current_id().unwrap_or_default()
        ))
    }
}

/// The outputs to answer, in request order; all three when none are named.
fn requested_outputs(request: &ModelInferRequest) -> Result<Vec<&'static str>, ApiError> {
    if request.outputs.is_empty() {
        return Ok(OUTPUTS.iter().map(|(name, _)| *name).collect());
    }
    request
        .outputs
        .iter()
        .map(|o| {
            OUTPUTS
                .iter()
                .map(|(name, _)| *name)
                .find(|name| *name == o.name)
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "unknown output {:?}; the outputs are {OUTPUT_RISK_SCORE}, \
                         {OUTPUT_CONFIDENCE}, {OUTPUT_RISK_LEVEL}, {OUTPUT_COVERAGE} and \
                         {OUTPUT_ABSTENTION}",
                        o.name
                    ))
                })
        })
        .collect()
}

/// The elements of the `signals` tensor, after checking its name, datatype and shape.
fn signal_elements(request: &ModelInferRequest) -> Result<Vec<&[u8]>, ApiError> {
    let expected =
        format!("one input tensor {INPUT_SIGNALS:?} of datatype BYTES and shape [N] is expected");
    let input: &InferInputTensor = match request.inputs.as_slice() {
        [input] => input,
        inputs => {
            return Err(ApiError::invalid(format!(
                "{expected}, got {} inputs",
                inputs.len()
            )));
        }
    };
    if input.name != INPUT_SIGNALS {
        return Err(ApiError::invalid(format!(
            "{expected}, got input {:?}",
            input.name
        )));
    }
    if input.datatype != "BYTES" {
        return Err(ApiError::invalid(format!(
            "{expected}, got datatype {:?}",
            input.datatype
        )));
    }
    let n = match input.shape.as_slice() {
        [n] if *n >= 0 => usize::try_from(*n).unwrap_or(usize::MAX),
        shape => {
            return Err(ApiError::invalid(format!(
                "{expected}, got shape {shape:?}"
            )));
        }
    };
    let in_contents = input
        .contents
        .as_ref()
        .map_or(0, |c| c.bytes_contents.len());
    let elements: Vec<&[u8]> = match (in_contents, request.raw_input_contents.as_slice()) {
        (_, []) => input
            .contents
            .iter()
            .flat_map(|c| c.bytes_contents.iter().map(Vec::as_slice))
            .collect(),
        (0, [raw]) => split_raw_bytes(raw)?,
        (0, raws) => {
            return Err(ApiError::invalid(format!(
                "raw_input_contents has {} entries for 1 input",
                raws.len()
            )));
        }
        _ => {
            return Err(ApiError::invalid(
                "the input has both contents and raw_input_contents; send one",
            ));
        }
    };
    if elements.len() != n {
        return Err(ApiError::invalid(format!(
            "input {INPUT_SIGNALS:?} has shape [{n}] but holds {} elements",
            elements.len()
        )));
    }
    Ok(elements)
}

/// Splits a raw BYTES tensor: each element is a 4-byte little-endian length and the bytes.
fn split_raw_bytes(mut raw: &[u8]) -> Result<Vec<&[u8]>, ApiError> {
    let mut elements = Vec::new();
    while !raw.is_empty() {
        let Some((len, rest)) = raw.split_first_chunk::<4>() else {
            return Err(ApiError::invalid(
                "raw_input_contents is truncated inside an element length",
            ));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(ApiError::invalid(format!(
                "raw_input_contents is truncated: an element of {len} bytes has {} left",
                rest.len()
            )));
        }
        let (element, rest) = rest.split_at(len);
        elements.push(element);
        raw = rest;
    }
    Ok(elements)
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceApi {
    async fn server_live(
        &self,
        _request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.shared.models.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        self.shared.answer(self.model_ready(request.get_ref()))
    }

    async fn server_metadata(
        &self,
        _request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "vigil-predictor".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        self.shared.answer(self.model_metadata(request.get_ref()))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let result = self.infer(request.into_inner()).await;
        self.shared.answer(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(elements: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in elements {
            out.extend_from_slice(&(e.len() as u32).to_le_bytes());
            out.extend_from_slice(e);
        }
        out
    }

    #[test]
    fn raw_bytes_split_into_their_elements() {
        let bytes = raw(&[b"{}", b"", b"{\"a\":1}"]);
        let elements = split_raw_bytes(&bytes).unwrap_or_default();
        assert_eq!(elements, vec![&b"{}"[..], b"", b"{\"a\":1}"]);
        let truncated = &bytes[..bytes.len() - 1];
        assert!(split_raw_bytes(truncated).is_err());
        assert!(split_raw_bytes(&[1, 0]).is_err());
    }

    fn request(shape: Vec<i64>, datatype: &str, elements: usize) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![InferInputTensor {
                name: INPUT_SIGNALS.into(),
                datatype: datatype.into(),
                shape,
                parameters: Default::default(),
                contents: Some(InferTensorContents {
                    bytes_contents: vec![b"{}".to_vec(); elements],
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_input_tensor_is_checked() {
        assert_eq!(
            signal_elements(&request(vec![2], "BYTES", 2)).map(|e| e.len()),
            Ok(2)
        );
        for (shape, datatype, n) in [
            (vec![3], "BYTES", 2),
            (vec![1, 2], "BYTES", 2),
            (vec![-1], "BYTES", 1),
            (vec![2], "FP32", 2),
        ] {
            let request = request(shape.clone(), datatype, n);
            let error = signal_elements(&request);
            assert!(
                matches!(error, Err(ApiError::InvalidArgument(_))),
                "{shape:?} {datatype}: {error:?}"
            );
        }
    }
}
