//! The gRPC surface through real tonic clients on loopback: the typed API, the Open Inference
//! Protocol, health, reflection, and refusals of bad input.

#![allow(clippy::unwrap_used)]

mod common;

use common::{NOT_SERVING, SERVING, artifact_a, artifact_b, signal, signals};
use futures::StreamExt;
use tonic::Code;
use vigil_domain::RiskThresholds;
use vigil_predictor::{PredictorServer, ServerOptions, ServingModel};
use vigil_proto::inference::infer_parameter::ParameterChoice;
use vigil_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use vigil_proto::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use vigil_proto::v1;
use vigil_telemetry::Metrics;

const MODEL: &str = "vigil-threat";

async fn start(initial: Option<ServingModel>) -> PredictorServer {
    PredictorServer::start(
        "127.0.0.1:0",
        ServerOptions::default(),
        initial,
        &Metrics::new(),
    )
    .await
    .unwrap()
}

async fn start_with_a() -> PredictorServer {
    start(Some(artifact_a().clone().into())).await
}

fn predict_request(signal: v1::ThreatSignal) -> v1::PredictRequest {
    v1::PredictRequest {
        signal: Some(signal),
    }
}

#[tokio::test]
async fn predict_scores_a_signal_as_the_model_does() {
    let server = start_with_a().await;
    let mut client = common::predictor(server.local_addr()).await;
    let mut wire = signal();
    wire.id = "sig-1".into();
    let result = client
        .predict(predict_request(wire.clone()))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    let result = vigil_domain::PredictionResult::try_from(result).unwrap();

    let expected = artifact_a()
        .predict(
            &vigil_domain::ThreatSignal::try_from(wire).unwrap(),
            &RiskThresholds::default(),
        )
        .unwrap();
    assert_eq!(result.threat_id, "sig-1");
    assert_eq!(result.risk_score.to_bits(), expected.risk_score.to_bits());
    assert_eq!(result.confidence.to_bits(), expected.confidence.to_bits());
    assert_eq!(result.risk_level, expected.risk_level);
    assert_eq!(result.features_used, expected.features_used);
    assert!(!result.features_used.is_empty());
    assert!((0.0..=10.0).contains(&result.risk_score));
    assert!((0.0..=1.0).contains(&result.confidence));
    assert_eq!(
        result.model_version_id,
        artifact_a().metadata.model_version_id
    );
    assert!(result.prediction_time_ms >= 0.0);
    assert!((chrono::Utc::now() - result.created_at).num_seconds().abs() < 60);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_signal_without_timestamp_is_scored_as_of_now() {
    let server = start_with_a().await;
    let mut client = common::predictor(server.local_addr()).await;
    let mut wire = signal();
    wire.timestamp = None;
    let response = client.predict(predict_request(wire)).await.unwrap();
    assert!(response.into_inner().result.is_some());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn predict_batch_answers_in_request_order_like_single_predictions() {
    let server = start_with_a().await;
    let mut client = common::predictor(server.local_addr()).await;
    // 40 rows: more than are scored inline, so the blocking-pool path runs too.
    for n in [0, 3, 40] {
        let batch = signals(n);
        let results = client
            .predict_batch(v1::PredictBatchRequest {
                signals: batch.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert_eq!(results.len(), n);
        for (signal, batched) in batch.into_iter().zip(results) {
            let single = client
                .predict(predict_request(signal))
                .await
                .unwrap()
                .into_inner()
                .result
                .unwrap();
            assert_eq!(batched.risk_score.to_bits(), single.risk_score.to_bits());
            assert_eq!(batched.risk_level, single.risk_level);
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn get_model_describes_the_serving_ensemble() {
    let server = start_with_a().await;
    let mut client = common::predictor(server.local_addr()).await;
    let response = client
        .get_model(v1::GetModelRequest {})
        .await
        .unwrap()
        .into_inner();
    let model = vigil_domain::ModelVersion::try_from(response.model.unwrap()).unwrap();
    assert_eq!(model.id, artifact_a().metadata.model_version_id);
    assert_eq!(model.model_type, vigil_domain::ModelType::Ensemble);
    assert_eq!(
        model.training_samples,
        artifact_a().metadata.training_samples
    );
    assert!(!model.features_used.is_empty());
    let kinds: Vec<i32> = response.components.iter().map(|c| c.model_type).collect();
    assert_eq!(
        kinds,
        vec![
            v1::ModelType::RandomForest as i32,
            v1::ModelType::Xgboost as i32,
            v1::ModelType::NeuralNetwork as i32
        ]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_input_is_refused_with_invalid_argument_and_the_reason() {
    let server = start_with_a().await;
    let mut client = common::predictor(server.local_addr()).await;

    let status = client
        .predict(v1::PredictRequest { signal: None })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("signal is required"),
        "{status:?}"
    );

    let mut bad_confidence = signal();
    bad_confidence.confidence = 1.5;
    let status = client
        .predict(predict_request(bad_confidence))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("confidence"), "{status:?}");

    let mut nan = signal();
    nan.numeric.insert("src_bytes".into(), f64::NAN);
    let status = client.predict(predict_request(nan)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("src_bytes"), "{status:?}");

    let mut bad_ip = signal();
    bad_ip.source_ip = "not-an-ip".into();
    let status = client.predict(predict_request(bad_ip)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("source_ip"), "{status:?}");

    let mut batch = signals(4);
    batch[2].confidence = -0.1;
    let status = client
        .predict_batch(v1::PredictBatchRequest { signals: batch })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("signals[2]: "), "{status:?}");

    // Still serving after all that.
    client.predict(predict_request(signal())).await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_model_health_is_not_serving_and_predict_is_unavailable_until_one_is_installed() {
    let server = start(None).await;
    let addr = server.local_addr();
    for service in ["", "vigil.v1.Predictor", "inference.GRPCInferenceService"] {
        assert_eq!(common::health_status(addr, service).await, NOT_SERVING);
    }
    let mut client = common::predictor(addr).await;
    let status = client.predict(predict_request(signal())).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("no model is loaded"),
        "{status:?}"
    );
    let status = client.get_model(v1::GetModelRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let mut oip = common::inference(addr).await;
    assert!(
        !oip.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        oip.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );

    server.models().install(artifact_a().clone().into()).await;
    for service in ["", "vigil.v1.Predictor", "inference.GRPCInferenceService"] {
        assert_eq!(common::health_status(addr, service).await, SERVING);
    }
    client.predict(predict_request(signal())).await.unwrap();
    assert!(
        oip.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );

    // A swap changes the version the very next request sees.
    server.models().install(artifact_b().clone().into()).await;
    let result = client
        .predict(predict_request(signal()))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(
        result.model_version_id,
        artifact_b().metadata.model_version_id
    );

    server.stop().await.unwrap();
}

fn json_signals(n: usize) -> Vec<Vec<u8>> {
    signals(n)
        .iter()
        .map(|s| serde_json::to_vec(s).unwrap())
        .collect()
}

fn infer_request(elements: Vec<Vec<u8>>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: MODEL.into(),
        id: "req-7".into(),
        inputs: vec![InferInputTensor {
            name: "signals".into(),
            datatype: "BYTES".into(),
            shape: vec![elements.len() as i64],
            parameters: Default::default(),
            contents: Some(InferTensorContents {
                bytes_contents: elements,
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn model_infer_scores_json_signals_like_predict() {
    let server = start_with_a().await;
    let addr = server.local_addr();
    let mut oip = common::inference(addr).await;
    let mut typed = common::predictor(addr).await;

    let response = oip
        .model_infer(infer_request(json_signals(3)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.model_name, MODEL);
    assert_eq!(
        response.model_version,
        artifact_a().metadata.model_version_id
    );
    assert_eq!(response.id, "req-7");
    let names: Vec<&str> = response.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "risk_score",
            "confidence",
            "risk_level",
            "coverage",
            "abstention"
        ]
    );
    for output in &response.outputs {
        assert_eq!(output.shape, vec![3]);
    }
    let contents = |i: usize| response.outputs[i].contents.clone().unwrap();
    assert_eq!(response.outputs[0].datatype, "FP64");
    assert_eq!(response.outputs[2].datatype, "BYTES");
    for (i, signal) in signals(3).into_iter().enumerate() {
        let expected = typed
            .predict(predict_request(signal))
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap();
        assert_eq!(contents(0).fp64_contents[i], expected.risk_score);
        assert_eq!(contents(1).fp64_contents[i], expected.confidence);
        assert_eq!(
            String::from_utf8(contents(2).bytes_contents[i].clone()).unwrap(),
            level_name(expected.risk_level)
        );
    }

    assert!(
        response.raw_output_contents.is_empty(),
        "typed inputs, typed outputs"
    );

    // The same signals as one raw, length-prefixed BYTES tensor, as Triton's clients send them:
    // the answer is raw too (Triton's clients read nothing else), and only the outputs asked for.
    let mut request = raw_infer_request(&json_signals(3));
    request.outputs = ["risk_score", "risk_level"]
        .map(|name| InferRequestedOutputTensor {
            name: name.into(),
            parameters: Default::default(),
        })
        .to_vec();
    let raw_response = oip.model_infer(request.clone()).await.unwrap().into_inner();
    assert_eq!(raw_response.outputs.len(), 2);
    assert!(
        raw_response.outputs.iter().all(|o| o.contents.is_none()),
        "raw and typed contents never together: {:?}",
        raw_response.outputs
    );
    assert_eq!(raw_response.raw_output_contents.len(), 2);
    assert_eq!(
        fp64_from_raw(&raw_response.raw_output_contents[0]),
        contents(0).fp64_contents
    );
    assert_eq!(
        bytes_from_raw(&raw_response.raw_output_contents[1]),
        contents(2).bytes_contents
    );

    // The request may ask for the other form, either way.
    request.parameters.insert(
        "binary_data_output".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(false)),
        },
    );
    let typed_response = oip.model_infer(request).await.unwrap().into_inner();
    assert!(typed_response.raw_output_contents.is_empty());
    assert_eq!(
        typed_response.outputs[0]
            .contents
            .clone()
            .unwrap()
            .fp64_contents,
        contents(0).fp64_contents
    );
    let mut typed_in_raw_out = infer_request(json_signals(3));
    typed_in_raw_out.parameters.insert(
        "binary_data_output".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(true)),
        },
    );
    let raw_response = oip
        .model_infer(typed_in_raw_out)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw_response.raw_output_contents.len(), 5);
    assert_eq!(
        fp64_from_raw(&raw_response.raw_output_contents[1]),
        contents(1).fp64_contents
    );
    server.stop().await.unwrap();
}

/// A ModelInfer request with the signals as one raw BYTES tensor (a 4-byte little-endian length
/// before each element), the form `tritonclient` sends.
fn raw_infer_request(elements: &[Vec<u8>]) -> ModelInferRequest {
    let mut raw = Vec::new();
    for element in elements {
        raw.extend_from_slice(&(element.len() as u32).to_le_bytes());
        raw.extend_from_slice(element);
    }
    let mut request = infer_request(Vec::new());
    request.inputs[0].shape = vec![elements.len() as i64];
    request.inputs[0].contents = None;
    request.raw_input_contents = vec![raw];
    request
}

/// An FP64 tensor's raw contents: little-endian 8-byte values.
fn fp64_from_raw(raw: &[u8]) -> Vec<f64> {
    assert_eq!(raw.len() % 8, 0, "whole FP64 values");
    raw.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// A BYTES tensor's raw contents: each element a 4-byte little-endian length and the bytes.
fn bytes_from_raw(mut raw: &[u8]) -> Vec<Vec<u8>> {
    let mut elements = Vec::new();
    while !raw.is_empty() {
        let len = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
        elements.push(raw[4..4 + len].to_vec());
        raw = &raw[4 + len..];
    }
    elements
}

/// The name `risk_level` carries for a wire severity.
fn level_name(value: i32) -> &'static str {
    match v1::Severity::try_from(value).unwrap() {
        v1::Severity::Low => "low",
        v1::Severity::Medium => "medium",
        v1::Severity::High => "high",
        v1::Severity::Critical => "critical",
        v1::Severity::Unspecified => panic!("unspecified level"),
    }
}

#[tokio::test]
async fn model_infer_refuses_wrong_tensors_with_invalid_argument() {
    let server = start_with_a().await;
    let mut oip = common::inference(server.local_addr()).await;

    let mut wrong_datatype = infer_request(json_signals(2));
    wrong_datatype.inputs[0].datatype = "FP32".into();
    let mut wrong_shape = infer_request(json_signals(2));
    wrong_shape.inputs[0].shape = vec![3];
    let mut two_dims = infer_request(json_signals(2));
    two_dims.inputs[0].shape = vec![1, 2];
    let mut wrong_name = infer_request(json_signals(2));
    wrong_name.inputs[0].name = "input_0".into();
    let mut no_input = infer_request(json_signals(2));
    no_input.inputs.clear();
    let mut not_json = json_signals(3);
    not_json[1] = b"{\"confidence\": \"high\"".to_vec();
    let mut out_of_range = signals(2);
    out_of_range[1].confidence = 7.0;
    let out_of_range = out_of_range
        .iter()
        .map(|s| serde_json::to_vec(s).unwrap())
        .collect();
    let mut unknown_output = infer_request(json_signals(1));
    unknown_output.outputs = vec![InferRequestedOutputTensor {
        name: "probability".into(),
        parameters: Default::default(),
    }];

    let cases = [
        (wrong_datatype, "datatype \"FP32\""),
        (wrong_shape, "shape [3] but holds 2"),
        (two_dims, "shape [1, 2]"),
        (wrong_name, "input \"input_0\""),
        (no_input, "got 0 inputs"),
        (infer_request(not_json), "signals[1]: not a threat signal"),
        (infer_request(out_of_range), "signals[1]: invalid signal"),
        (unknown_output, "unknown output \"probability\""),
    ];
    for (request, expected) in cases {
        let status = oip.model_infer(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(expected),
            "{expected:?} not in {:?}",
            status.message()
        );
    }

    let mut other_model = infer_request(json_signals(1));
    other_model.model_name = "other".into();
    let status = oip.model_infer(other_model).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let mut other_version = infer_request(json_signals(1));
    other_version.model_version = "ens-0000".into();
    let status = oip.model_infer(other_version).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn model_metadata_and_readiness_describe_the_tensors() {
    let server = start_with_a().await;
    let mut oip = common::inference(server.local_addr()).await;
    let id = artifact_a().metadata.model_version_id.clone();

    let meta = oip
        .model_metadata(ModelMetadataRequest {
            name: MODEL.into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.versions, vec![id.clone()]);
    assert_eq!(meta.inputs.len(), 1);
    assert_eq!(meta.inputs[0].name, "signals");
    assert_eq!(meta.inputs[0].datatype, "BYTES");
    assert_eq!(meta.inputs[0].shape, vec![-1]);
    let outputs: Vec<(&str, &str)> = meta
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.datatype.as_str()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("risk_score", "FP64"),
            ("confidence", "FP64"),
            ("risk_level", "BYTES"),
            ("coverage", "FP64"),
            ("abstention", "BYTES")
        ]
    );

    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(
        oip.model_ready(ready(MODEL, ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        oip.model_ready(ready(MODEL, &id))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !oip.model_ready(ready(MODEL, "ens-other"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let status = oip.model_ready(ready("other", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let server_meta = oip
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server_meta.name, "vigil-predictor");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reflection_lists_every_service_and_serves_their_descriptors() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    let server = start(None).await;
    let mut client = ServerReflectionClient::new(common::channel(server.local_addr()).await);
    let ask = |message: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "vigil.v1.Predictor".into(),
        )),
        ask(MessageRequest::FileContainingSymbol(
            "inference.GRPCInferenceService".into(),
        )),
    ];
    let responses: Vec<ServerReflectionResponse> = client
        .server_reflection_info(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(responses.len(), 3);
    let Some(MessageResponse::ListServicesResponse(list)) = &responses[0].message_response else {
        panic!("{:?}", responses[0]);
    };
    let mut names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    for expected in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "inference.GRPCInferenceService",
        "vigil.v1.Predictor",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    for response in &responses[1..] {
        let Some(MessageResponse::FileDescriptorResponse(files)) = &response.message_response
        else {
            panic!("{response:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn stop_finishes_and_closes_the_port() {
    let server = start_with_a().await;
    let addr = server.local_addr();
    let mut client = common::predictor(addr).await;
    client.predict(predict_request(signal())).await.unwrap();
    drop(client);
    tokio::time::timeout(std::time::Duration::from_secs(15), server.stop())
        .await
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn the_repository_index_lists_the_model_and_its_state() {
    use vigil_proto::inference::RepositoryIndexRequest;
    let index = |ready: bool| RepositoryIndexRequest {
        repository_name: String::new(),
        ready,
    };
    let server = start(None).await;
    let mut oip = common::inference(server.local_addr()).await;
    let empty = oip
        .repository_index(index(false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(empty.models.len(), 1);
    assert_eq!(empty.models[0].name, MODEL);
    assert_eq!(empty.models[0].state, "UNAVAILABLE");
    assert!(!empty.models[0].reason.is_empty());
    let ready_only = oip
        .repository_index(index(true))
        .await
        .unwrap()
        .into_inner();
    assert!(ready_only.models.is_empty());

    server.models().install(artifact_a().clone().into()).await;
    let serving = oip
        .repository_index(index(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.models.len(), 1);
    assert_eq!(serving.models[0].state, "READY");
    assert_eq!(
        serving.models[0].version,
        artifact_a().metadata.model_version_id
    );
    server.stop().await.unwrap();
}
