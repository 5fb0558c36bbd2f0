use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use vigil_config::{LogFormat, TelemetrySettings};

use crate::{Error, Result};

/// Keeps trace export alive; dropping it flushes pending spans.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are being exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Bounded by the batch processor's own export timeout.
            if let Err(error) = provider.shutdown() {
                eprintln!("warning: flushing traces failed: {error}");
            }
        }
    }
}

/// Installs the global tracing subscriber: logs in the configured format, filtered by
/// `RUST_LOG` or `log_filter`, plus OTLP trace export when `otlp_endpoint` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Calling it twice keeps the first subscriber.
pub fn init(settings: &TelemetrySettings, service_name: &str) -> Result<TelemetryGuard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => value,
        _ => settings.log_filter.clone(),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|e| Error::Filter {
        filter: filter.clone(),
        reason: e.to_string(),
    })?;

    let endpoint = settings
        .otlp_endpoint
        .clone()
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.trim().is_empty());

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = match &endpoint {
        Some(endpoint) => Some(otlp_provider(endpoint, service_name)?),
        None => None,
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service_name.to_owned())));

    let (human, json) = match settings.log_format {
        LogFormat::Human => (
            Some(tracing_subscriber::fmt::layer().with_target(true)),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            ),
        ),
    };
    // A second init (several services in one process, or tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(env_filter)
        .with(human)
        .with(json)
        .with(otel_layer)
        .try_init();
    if let Some(endpoint) = endpoint {
        tracing::info!(%endpoint, service = service_name, "exporting traces over otlp");
    }
    Ok(TelemetryGuard { provider })
}

fn otlp_provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| Error::Otlp {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}
