//! `vigil predict`: score one threat signal with the running predictor over gRPC.

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use vigil_domain::PredictionResult;
use vigil_proto::v1::predictor_client::PredictorClient;
use vigil_proto::{signal_json, v1};
use vigil_runtime::ConfigArgs;

/// Arguments of `vigil predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// The signal as JSON, read as the broker reads it: `{"type": "port_scan", "port": 22,
    /// "confidence": 0.9, "severity": "high"}` (proto3 JSON names such as `threatType` work
    /// too); `-` reads it from standard input. It is checked before the predictor is called.
    #[arg(long, short = 's')]
    pub signal: String,
    /// The predictor's gRPC address (`HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`);
    /// defaults to `predictor.grpc_addr` of the configuration. TLS as
    /// `orchestrator.predictor_tls` says (`--set orchestrator.predictor_tls.ca_file=ca.pem`);
    /// a bare `HOST:PORT` is asked over TLS when that or `predictor.tls` is set.
    #[arg(long, short = 'a')]
    pub addr: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Sends the signal to `Predict` and prints the prediction as JSON.
pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let json = if args.signal == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        args.signal.clone()
    };
    let signal = parse(&json)?;
    let config = args.config.load()?;
    let addr = args
        .addr
        .clone()
        .unwrap_or_else(|| config.predictor.grpc_addr.clone());
    let timeout = Duration::from_secs(args.timeout.max(1));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let channel = connect(&config, &addr, timeout).await?;
        let response = PredictorClient::new(channel)
            .predict(v1::PredictRequest {
                signal: Some(signal),
            })
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "the predictor refused: {}: {}",
                    code_name(status.code()),
                    status.message()
                )
            })?;
        response
            .into_inner()
            .result
            .context("the predictor answered without a result")
    })?;
    let result = PredictionResult::try_from(result).context("the predictor answered nonsense")?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}

/// A channel to the predictor at `addr` (`HOST:PORT` or a URL), over TLS when the
/// configuration says so (`orchestrator.predictor_tls`, or `predictor.tls` for this
/// configuration's own predictor), with the same helper the orchestrator uses.
pub(crate) async fn connect(
    config: &vigil_config::Config,
    addr: &str,
    timeout: Duration,
) -> anyhow::Result<tonic::transport::Channel> {
    let tls = &config.orchestrator.predictor_tls;
    let url = endpoint_url(addr, tls.enabled() || config.predictor.tls.enabled());
    vigil_runtime::grpc_tls::predictor_endpoint(&url, tls)?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the predictor at {url}: {}",
                vigil_runtime::grpc_tls::error_chain(&e)
            )
        })
}

fn parse(json: &str) -> anyhow::Result<v1::ThreatSignal> {
    signal_json::decode_checked(json.trim().as_bytes(), chrono::Utc::now())
        .map_err(|error| anyhow::anyhow!("--signal is not a valid threat signal: {error}"))
}

/// `HOST:PORT` as a URL (`https://` when `tls`); a wildcard bind address means this machine.
fn endpoint_url(addr: &str, tls: bool) -> String {
    let addr = addr.trim();
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return addr.to_owned();
    }
    let addr = addr
        .strip_prefix("0.0.0.0:")
        .map(|port| format!("127.0.0.1:{port}"))
        .or_else(|| {
            addr.strip_prefix("[::]:")
                .map(|port| format!("[::1]:{port}"))
        })
        .unwrap_or_else(|| addr.to_owned());
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::NotFound => "not found",
        tonic::Code::DeadlineExceeded => "deadline exceeded",
        tonic::Code::Internal => "internal error",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_urls() {
        assert_eq!(
            endpoint_url("127.0.0.1:50051", false),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            endpoint_url("0.0.0.0:50051", false),
            "http://127.0.0.1:50051"
        );
        assert_eq!(endpoint_url("[::]:7", false), "http://[::1]:7");
        assert_eq!(endpoint_url("http://p:1", true), "http://p:1");
        assert_eq!(endpoint_url("p:1", true), "https://p:1");
    }

    #[test]
    fn signals_parse_from_proto3_json_and_the_seed_designs_spelling() {
        let signal = parse(r#"{"threatType": "neptune", "confidence": 0.8}"#);
        assert_eq!(
            signal.map(|s| s.threat_type).ok().as_deref(),
            Some("neptune")
        );
        let signal = parse(r#"{"type": "neptune", "port": 80, "confidence": 0.8}"#).unwrap();
        assert_eq!(signal.destination_port, 80);
        let err = parse("{not json").unwrap_err().to_string();
        assert!(err.contains("line 1 column 2"), "{err}");
    }
}
