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
    /// The predictor's gRPC address (`HOST:PORT` or `http://HOST:PORT`); defaults to
    /// `predictor.grpc_addr` of the configuration.
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
    let addr = match &args.addr {
        Some(addr) => addr.clone(),
        None => args.config.load()?.predictor.grpc_addr,
    };
    let endpoint = endpoint_url(&addr);
    let timeout = Duration::from_secs(args.timeout.max(1));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .with_context(|| format!("invalid predictor address {addr:?}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .with_context(|| format!("cannot reach the predictor at {endpoint}"))?;
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

fn parse(json: &str) -> anyhow::Result<v1::ThreatSignal> {
    signal_json::decode_checked(json.trim().as_bytes(), chrono::Utc::now())
        .map_err(|error| anyhow::anyhow!("--signal is not a valid threat signal: {error}"))
}

/// `HOST:PORT` as a URL; a wildcard bind address means this machine.
fn endpoint_url(addr: &str) -> String {
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
    format!("http://{addr}")
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
        assert_eq!(endpoint_url("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(endpoint_url("0.0.0.0:50051"), "http://127.0.0.1:50051");
        assert_eq!(endpoint_url("[::]:7"), "http://[::1]:7");
        assert_eq!(endpoint_url("http://p:1"), "http://p:1");
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
