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
//!
//! The protocol lets an answer carry its outputs in one of two forms, never both: typed
//! `contents` per output, or `raw_output_contents` (one little-endian byte string per output,
//! BYTES elements each a 4-byte length and the bytes). Triton's clients (`tritonclient`'s
//! `InferResult.as_numpy`) read only the raw form, and they always send raw inputs; clients that
//! send typed `contents` (grpcurl, KServe's) read typed contents. So the answer mirrors the
//! request, as KServe's server does: raw outputs for raw inputs, typed for typed; a request
//! parameter `binary_data_output` (bool, Triton's name for the same choice over HTTP) overrides.

use tonic::{Request, Response, Status};
use vigil_proto::inference::grpc_inference_service_server::GrpcInferenceService;
use vigil_proto::inference::infer_parameter::ParameterChoice;
use vigil_proto::inference::model_infer_request::InferInputTensor;
use vigil_proto::inference::model_infer_response::InferOutputTensor;
use vigil_proto::inference::model_metadata_response::TensorMetadata;
use vigil_proto::inference::repository_index_response::ModelIndex;
use vigil_proto::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, RepositoryIndexRequest,
    RepositoryIndexResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
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
/// Request parameter: `true` answers in `raw_output_contents`, `false` in typed `contents`;
/// without it the answer takes the form the input came in.
pub const PARAM_BINARY_DATA_OUTPUT: &str = "binary_data_output";

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
        let raw = raw_output_wanted(&request)?;
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
        let columns: Vec<(&str, OutputColumn)> = outputs
            .into_iter()
            .map(|name| {
                let column = match name {
                    OUTPUT_RISK_SCORE => {
                        OutputColumn::Fp64(results.iter().map(|r| r.risk_score).collect())
                    }
                    OUTPUT_CONFIDENCE => {
                        OutputColumn::Fp64(results.iter().map(|r| r.confidence).collect())
                    }
                    OUTPUT_COVERAGE => {
                        OutputColumn::Fp64(results.iter().map(|r| r.coverage).collect())
                    }
                    OUTPUT_ABSTENTION => OutputColumn::Bytes(
                        results
                            .iter()
                            .map(|r| {
                                r.abstention
                                    .as_ref()
                                    .map_or("", |a| a.reason.as_str())
                                    .as_bytes()
                                    .to_vec()
                            })
                            .collect(),
                    ),
                    _ => OutputColumn::Bytes(
                        results
                            .iter()
                            .map(|r| r.risk_level.as_str().as_bytes().to_vec())
                            .collect(),
                    ),
                };
                (name, column)
            })
            .collect();
        let mut outputs = Vec::with_capacity(columns.len());
        let mut raw_output_contents = Vec::new();
        for (name, column) in columns {
            let mut tensor = InferOutputTensor {
                name: name.to_owned(),
                datatype: column.datatype().to_owned(),
                shape: vec![n],
                parameters: Default::default(),
                contents: None,
            };
            if raw {
                raw_output_contents.push(column.into_raw());
            } else {
                tensor.contents = Some(column.into_contents());
            }
            outputs.push(tensor);
        }
        Ok(ModelInferResponse {
            model_name: self.shared.model_name.clone(),
            model_version: model.id().to_owned(),
            id: request.id,
            parameters: Default::default(),
            outputs,
            raw_output_contents,
        })
    }

    /// The one model this server serves, with its state (Triton's repository index).
    fn repository_index(&self, request: &RepositoryIndexRequest) -> RepositoryIndexResponse {
        let serving = self.shared.models.current_id();
        let model = match serving {
            Some(version) => ModelIndex {
                name: self.shared.model_name.clone(),
                version,
                state: "READY".to_owned(),
                reason: String::new(),
            },
            None => ModelIndex {
                name: self.shared.model_name.clone(),
                version: String::new(),
                state: "UNAVAILABLE".to_owned(),
                reason: "no production model is loaded yet".to_owned(),
            },
        };
        let models = if request.ready && model.state != "READY" {
            Vec::new()
        } else {
            vec![model]
        };
        RepositoryIndexResponse { models }
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

/// One output's values, before they are put in the answer's typed or raw form.
enum OutputColumn {
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

impl OutputColumn {
    fn datatype(&self) -> &'static str {
        match self {
            OutputColumn::Fp64(_) => "FP64",
            OutputColumn::Bytes(_) => "BYTES",
        }
    }

    fn into_contents(self) -> InferTensorContents {
        match self {
            OutputColumn::Fp64(values) => InferTensorContents {
                fp64_contents: values,
                ..Default::default()
            },
            OutputColumn::Bytes(values) => InferTensorContents {
                bytes_contents: values,
                ..Default::default()
            },
        }
    }

    /// The raw form: FP64 as little-endian 8-byte values; BYTES as a 4-byte little-endian length
    /// and the bytes, per element (what Triton sends and `tritonclient` decodes).
    fn into_raw(self) -> Vec<u8> {
        match self {
            OutputColumn::Fp64(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            OutputColumn::Bytes(values) => {
                let mut raw = Vec::with_capacity(values.iter().map(|v| v.len() + 4).sum());
                for value in values {
                    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
                    raw.extend_from_slice(&len.to_le_bytes());
                    raw.extend_from_slice(&value);
                }
                raw
            }
        }
    }
}

/// Whether to answer in `raw_output_contents`: as the request parameter
/// [`PARAM_BINARY_DATA_OUTPUT`] says, else in the form the inputs came in.
fn raw_output_wanted(request: &ModelInferRequest) -> Result<bool, ApiError> {
    match request
        .parameters
        .get(PARAM_BINARY_DATA_OUTPUT)
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => Ok(!request.raw_input_contents.is_empty()),
        Some(ParameterChoice::BoolParam(raw)) => Ok(*raw),
        Some(other) => Err(ApiError::invalid(format!(
            "parameter {PARAM_BINARY_DATA_OUTPUT:?} must be a bool (true: raw_output_contents, \
             false: typed contents), got {other:?}"
        ))),
    }
}

/// The outputs to answer, in request order; all of them when none are named.
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

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        Ok(Response::new(self.repository_index(request.get_ref())))
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
    fn raw_outputs_are_little_endian_and_length_prefixed() {
        let fp64 = OutputColumn::Fp64(vec![1.5, -2.0]).into_raw();
        assert_eq!(fp64.len(), 16);
        assert_eq!(fp64[..8], 1.5f64.to_le_bytes());
        assert_eq!(fp64[8..], (-2.0f64).to_le_bytes());
        let bytes = OutputColumn::Bytes(vec![b"high".to_vec(), Vec::new()]).into_raw();
        assert_eq!(bytes, raw(&[b"high", b""]));
        // What the raw BYTES input reader splits, the raw BYTES output writer joins.
        assert_eq!(
            split_raw_bytes(&bytes).unwrap_or_default(),
            vec![&b"high"[..], b""]
        );
    }

    fn with_parameter(mut request: ModelInferRequest, value: ParameterChoice) -> ModelInferRequest {
        request.parameters.insert(
            PARAM_BINARY_DATA_OUTPUT.into(),
            vigil_proto::inference::InferParameter {
                parameter_choice: Some(value),
            },
        );
        request
    }

    #[test]
    fn outputs_take_the_form_of_the_inputs_unless_the_request_says() {
        let typed = request(vec![1], "BYTES", 1);
        let mut raw_input = request(vec![1], "BYTES", 0);
        raw_input.inputs[0].contents = None;
        raw_input.raw_input_contents = vec![raw(&[b"{}"])];
        assert_eq!(raw_output_wanted(&typed), Ok(false));
        assert_eq!(raw_output_wanted(&raw_input), Ok(true));
        let asked = with_parameter(typed, ParameterChoice::BoolParam(true));
        assert_eq!(raw_output_wanted(&asked), Ok(true));
        let asked = with_parameter(raw_input, ParameterChoice::BoolParam(false));
        assert_eq!(raw_output_wanted(&asked), Ok(false));
        let wrong = with_parameter(asked, ParameterChoice::StringParam("yes".into()));
        assert!(matches!(
            raw_output_wanted(&wrong),
            Err(ApiError::InvalidArgument(m)) if m.contains(PARAM_BINARY_DATA_OUTPUT)
        ));
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

    #[allow(clippy::unwrap_used)]
    mod props {
        use proptest::prelude::*;

        use super::*;

        fn shape() -> impl Strategy<Value = Vec<i64>> {
            prop_oneof![
                (0..6i64).prop_map(|n| vec![n]),
                Just(vec![1i64 << 40]),
                Just(vec![i64::MAX]),
                Just(vec![i64::MIN]),
                Just(vec![-1]),
                prop::collection::vec(any::<i64>(), 0..4),
            ]
        }

        fn raw_contents() -> impl Strategy<Value = Vec<Vec<u8>>> {
            prop_oneof![
                Just(Vec::new()),
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..3),
                // A length prefix far larger than the bytes that follow.
                Just(vec![[u32::MAX.to_le_bytes().as_slice(), b"{}"].concat()]),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            /// Whatever the declared shape (2^40 elements, negative, many dimensions) and
            /// whatever the contents, the tensor is read or refused with INVALID_ARGUMENT; a
            /// declared shape never sizes an allocation.
            #[test]
            fn any_tensor_is_read_or_refused(
                shape in shape(),
                datatype in prop::sample::select(vec!["BYTES", "FP64", ""]),
                typed in 0..4usize,
                raw in raw_contents(),
                extra_inputs in 0..2usize,
            ) {
                let mut request = request(shape.clone(), datatype, typed);
                request.raw_input_contents = raw;
                for _ in 0..extra_inputs {
                    let again = request.inputs[0].clone();
                    request.inputs.push(again);
                }
                match signal_elements(&request) {
                    Ok(elements) => {
                        prop_assert_eq!(datatype, "BYTES");
                        prop_assert_eq!(shape, vec![elements.len() as i64]);
                    }
                    Err(error) => {
                        prop_assert_eq!(error.code(), tonic::Code::InvalidArgument);
                        prop_assert!(!error.to_string().is_empty());
                    }
                }
            }

            #[test]
            fn any_raw_bytes_split_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                if let Ok(elements) = split_raw_bytes(&bytes) {
                    let total: usize = elements.iter().map(|e| e.len() + 4).sum();
                    prop_assert_eq!(total, bytes.len());
                }
            }

            #[test]
            fn any_parameters_choose_a_form_or_are_refused(
                choice in prop_oneof![
                    any::<bool>().prop_map(ParameterChoice::BoolParam),
                    any::<i64>().prop_map(ParameterChoice::Int64Param),
                    any::<String>().prop_map(ParameterChoice::StringParam),
                ],
            ) {
                let request = with_parameter(request(vec![1], "BYTES", 1), choice.clone());
                let wanted = raw_output_wanted(&request);
                prop_assert_eq!(wanted.is_ok(), matches!(choice, ParameterChoice::BoolParam(_)));
            }
        }

        #[test]
        fn a_declared_shape_of_two_to_the_forty_is_refused_at_once() {
            let error = signal_elements(&request(vec![1 << 40], "BYTES", 1)).unwrap_err();
            assert!(error.to_string().contains("1099511627776"), "{error}");
        }
    }
}
