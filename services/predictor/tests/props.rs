//! Property tests of the gRPC surface with a real model: any `Predict` request, with extreme
//! numbers, texts and addresses, gets a score in range or INVALID_ARGUMENT with a reason;
//! never an internal error or a dropped connection (a panic). An Open Inference request that
//! declares an enormous tensor is refused before anything is allocated for it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use tonic::Code;
use vigil_ml::NSL_KDD_COLUMNS;
use vigil_predictor::{PredictorServer, ServerOptions};
use vigil_proto::inference::model_infer_request::InferInputTensor;
use vigil_proto::inference::{InferTensorContents, ModelInferRequest};
use vigil_proto::v1;
use vigil_telemetry::Metrics;

/// One runtime and one server for every case: a server per case would spend the time budget
/// on start-up.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    server: PredictorServer,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let model = common::artifact_a().clone().into();
        let server = runtime
            .block_on(PredictorServer::start(
                "127.0.0.1:0",
                ServerOptions::default(),
                Some(model),
                &Metrics::new(),
            ))
            .unwrap();
        Fixture { runtime, server }
    })
}

/// Finite numbers a model's arithmetic may not expect.
fn extreme() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::MAX),
        Just(-f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(-0.0),
        Just(1e300),
        Just(-1e300),
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        0.0..1e6f64,
    ]
}

/// One field of a signal made wrong, as a stranger might.
#[derive(Debug, Clone)]
enum Spoil {
    Numeric(&'static str, f64),
    Confidence(f64),
    Duration(f64),
    SourceIp(String),
    Port(u32),
    Severity(i32),
    ThreatType(String),
}

fn spoil() -> impl Strategy<Value = Option<Spoil>> {
    let non_finite = prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)];
    prop_oneof![
        3 => Just(None),
        1 => (prop::sample::select(NSL_KDD_COLUMNS.to_vec()), non_finite.clone())
            .prop_map(|(k, v)| Some(Spoil::Numeric(k, v))),
        1 => prop_oneof![non_finite.clone(), extreme()].prop_map(|v| Some(Spoil::Confidence(v))),
        1 => prop_oneof![non_finite, Just(-1.0)].prop_map(|v| Some(Spoil::Duration(v))),
        1 => any::<String>().prop_map(|v| Some(Spoil::SourceIp(v))),
        1 => (65_536..=u32::MAX).prop_map(|v| Some(Spoil::Port(v))),
        1 => (5..=i32::MAX).prop_map(|v| Some(Spoil::Severity(v))),
        1 => Just(Some(Spoil::ThreatType(" ".into()))),
    ]
}

/// Signals carrying the model's inputs with extreme but finite values and texts of any
/// characters, and sometimes one field spoiled.
fn signal() -> impl Strategy<Value = (v1::ThreatSignal, bool)> {
    (
        prop::collection::btree_map(
            prop::sample::select(NSL_KDD_COLUMNS.to_vec()),
            extreme(),
            0..41,
        ),
        prop::collection::btree_map(
            prop::sample::select(vec!["service", "flag", "user"]),
            any::<String>(),
            0..3,
        ),
        (
            "[a-z_]{1,10}",
            any::<std::net::IpAddr>(),
            0..=65_535u32,
            any::<String>(),
        ),
        (
            0.0..=1.0f64,
            prop_oneof![0.0..1e4f64, Just(f64::MAX)],
            any::<u64>(),
            any::<u64>(),
            0..5i32,
        ),
        spoil(),
    )
        .prop_map(
            |(
                numeric,
                categorical,
                (threat_type, source_ip, port, protocol),
                (confidence, duration, bytes, packets, severity),
                spoil,
            )| {
                let mut wire = common::signal();
                wire.numeric = numeric
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                wire.categorical = categorical
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                wire.threat_type = threat_type;
                wire.source_ip = source_ip.to_string();
                wire.destination_port = port;
                wire.protocol = protocol;
                wire.confidence = confidence;
                wire.duration_seconds = duration;
                wire.bytes = bytes;
                wire.packets = packets;
                wire.severity = severity;
                let spoiled = match spoil {
                    None => false,
                    Some(Spoil::Numeric(k, v)) => {
                        wire.numeric.insert(k.to_owned(), v);
                        true
                    }
                    Some(Spoil::Confidence(v)) => {
                        wire.confidence = v;
                        !(0.0..=1.0).contains(&v)
                    }
                    Some(Spoil::Duration(v)) => {
                        wire.duration_seconds = v;
                        true
                    }
                    Some(Spoil::SourceIp(v)) => {
                        let valid =
                            v.trim().is_empty() || v.trim().parse::<std::net::IpAddr>().is_ok();
                        wire.source_ip = v;
                        !valid
                    }
                    Some(Spoil::Port(v)) => {
                        wire.destination_port = v;
                        true
                    }
                    Some(Spoil::Severity(v)) => {
                        wire.severity = v;
                        true
                    }
                    Some(Spoil::ThreatType(v)) => {
                        wire.threat_type = v;
                        true
                    }
                };
                (wire, spoiled)
            },
        )
}

/// A clean signal is scored in range (never an internal error or a dropped connection); a
/// spoiled one is INVALID_ARGUMENT with a reason.
#[test]
fn any_signal_is_scored_in_range_or_refused_as_invalid() {
    let fixture = fixture();
    let addr = fixture.server.local_addr();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    let scored = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    runner
        .run(&signal(), |(wire, spoiled)| {
            let answer = fixture.runtime.block_on(async move {
                let mut client = common::predictor(addr).await;
                client
                    .predict(v1::PredictRequest { signal: Some(wire) })
                    .await
            });
            match answer {
                Ok(response) => {
                    let result = response.into_inner().result.unwrap();
                    prop_assert!(!spoiled, "a spoiled signal was scored: {:?}", result);
                    prop_assert!((0.0..=10.0).contains(&result.risk_score), "{:?}", result);
                    prop_assert!((0.0..=1.0).contains(&result.confidence), "{:?}", result);
                    scored.fetch_add(1, Ordering::Relaxed);
                }
                Err(status) => {
                    prop_assert_eq!(status.code(), Code::InvalidArgument, "{:?}", status);
                    prop_assert!(!status.message().is_empty());
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        })
        .unwrap();
    // Both sides of the property were exercised.
    assert!(scored.load(Ordering::Relaxed) > 0 && refused.load(Ordering::Relaxed) > 0);
}

#[test]
fn an_enormous_declared_tensor_is_refused_as_invalid() {
    let fixture = fixture();
    let addr = fixture.server.local_addr();
    for shape in [
        vec![1i64 << 40],
        vec![i64::MAX],
        vec![1 << 20, 1 << 20],
        vec![-7],
    ] {
        let request = ModelInferRequest {
            model_name: "vigil-threat".into(),
            inputs: vec![InferInputTensor {
                name: "signals".into(),
                datatype: "BYTES".into(),
                shape: shape.clone(),
                parameters: Default::default(),
                contents: Some(InferTensorContents {
                    bytes_contents: vec![b"{\"type\": \"x\", \"confidence\": 0.5}".to_vec()],
                    ..Default::default()
                }),
            }],
            ..Default::default()
        };
        let status = fixture
            .runtime
            .block_on(async move { common::inference(addr).await.model_infer(request).await })
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{shape:?}: {status:?}"
        );
        assert!(status.message().contains("shape"), "{shape:?}: {status:?}");
    }
}
