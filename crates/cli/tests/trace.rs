//! One trace per event: a signal published with a `traceparent` yields one OpenTelemetry trace
//! across the broker, the orchestrator and the predictor, each span the child of the one before,
//! as the SDK's in-memory exporter records them.
//!
//! It installs the process's global tracing subscriber, so it is the only test in this file.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;
use vigil_bus::{PublishOptions, TraceParent};
use vigil_proto::v1;
use vigil_runtime::ServiceContext;
use vigil_testkit::{Sandbox, eventually};

const PATIENCE: Duration = Duration::from_secs(60);

fn span<'a>(spans: &'a [SpanData], name: &str) -> Option<&'a SpanData> {
    spans.iter().find(|s| s.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_signal_is_one_trace_across_broker_orchestrator_and_predictor() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("vigil-test")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    // The predictor first, so the orchestrator can call the port it bound.
    let sandbox = Sandbox::with(&["orchestrator.predict_timeout_ms=5000"]).await;
    let predictor =
        vigil_predictor::Predictor::start(ServiceContext::new(sandbox.config().clone()))
            .await
            .expect("the predictor starts");
    let mut config = sandbox.config().clone();
    config.orchestrator.predictor_url = Some(format!("http://{}", predictor.local_addr()));
    let predictor_token = tokio_util::sync::CancellationToken::new();
    let predictor_task = tokio::spawn(predictor.run(predictor_token.clone()));
    let mut broker = sandbox.spawn("broker", vigil_broker::run_in);
    let mut orchestrator =
        sandbox.spawn_with_config("orchestrator", config, vigil_orchestrator::run_in);
    broker.ready(PATIENCE).await;
    orchestrator.ready(PATIENCE).await;

    // A sensor that traces its own work sends its span as the parent.
    let sensor = TraceParent::generate();
    let signal = v1::ThreatSignal {
        id: "traced-1".into(),
        threat_type: "port_scan".into(),
        source_ip: "203.0.113.7".into(),
        destination_port: 22,
        confidence: 0.9,
        sensor: "traced".into(),
        ..Default::default()
    };
    let subject = sandbox.bus().topology().ingest_subject("traced").unwrap();
    sandbox
        .bus()
        .publisher()
        .publish(
            &subject,
            &signal,
            PublishOptions::new("traced-1").traceparent(sensor.clone()),
        )
        .await
        .expect("published");

    let spans = eventually(PATIENCE, "the three spans of the signal", || async {
        let spans = exporter.get_finished_spans().unwrap_or_default();
        let names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
        let all = [
            "broker.signal",
            "orchestrator.workflow",
            "predictor.predict",
        ]
        .iter()
        .all(|name| span(&spans, name).is_some());
        if all { Ok(spans) } else { Err(names) }
    })
    .await;

    let broker_span = span(&spans, "broker.signal").unwrap();
    let workflow = span(&spans, "orchestrator.workflow").unwrap();
    let predict = span(&spans, "predictor.predict").unwrap();
    for s in [broker_span, workflow, predict] {
        assert_eq!(
            s.span_context.trace_id().to_string(),
            sensor.trace_id(),
            "{} is not in the sensor's trace",
            s.name
        );
    }
    assert_eq!(broker_span.parent_span_id.to_string(), sensor.span_id());
    assert_eq!(workflow.parent_span_id, broker_span.span_context.span_id());
    assert_eq!(predict.parent_span_id, workflow.span_context.span_id());

    orchestrator.stop().await;
    broker.stop().await;
    predictor_token.cancel();
    let _ = predictor_task.await;
}
