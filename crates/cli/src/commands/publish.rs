//! `vigil publish`: send threat signals to the ingest stream from JSON or a JSONL file.
//!
//! Signals are read by [`signal_json::decode_checked`], as the broker reads JSON: proto3 JSON
//! plus the aliases `type` and `port` and severities in any case (`"severity": "critical"`).

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use vigil_bus::{Bus, PublishOptions};
use vigil_proto::{signal_json, v1};
use vigil_runtime::ConfigArgs;

/// Arguments of `vigil publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// One signal as JSON: `{"type": "port_scan", "port": 22, "confidence": 0.9, "severity":
    /// "high"}` (proto3 JSON names such as `threatType`, `destinationPort` work too).
    #[arg(conflicts_with = "file")]
    pub json: Option<String>,
    /// A JSONL file: one signal per line (`-` reads standard input).
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// The ingest subject suffix: `vigil.ingest.<kind>`.
    #[arg(long, default_value = "cli")]
    pub kind: String,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Validates every signal first (refusals name their line, field and value), then publishes the
/// valid ones; when none is valid it fails without connecting.
pub fn run(args: PublishArgs) -> anyhow::Result<()> {
    let lines: Vec<String> = match (&args.json, &args.file) {
        (Some(json), None) => vec![json.clone()],
        (None, Some(path)) if path.as_os_str() == "-" => {
            std::io::stdin().lock().lines().collect::<Result<_, _>>()?
        }
        (None, Some(path)) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            std::io::BufReader::new(file)
                .lines()
                .collect::<Result<_, _>>()?
        }
        _ => anyhow::bail!("give a signal as JSON or --file FILE"),
    };
    let mut signals = Vec::new();
    let mut refused = 0usize;
    let now = chrono::Utc::now();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match signal_json::decode_checked(line.as_bytes(), now) {
            Ok(signal) => signals.push(signal),
            Err(error) => {
                refused += 1;
                eprintln!("line {}: {error}", index + 1);
            }
        }
    }
    if signals.is_empty() && refused > 0 {
        println!("published 0, duplicates 0, refused {refused}");
        anyhow::bail!("no valid signal to publish");
    }
    let config = args.config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let (published, duplicates) = runtime.block_on(async {
        let bus = Bus::connect(&config.nats, vigil_runtime::topology(&config)).await?;
        bus.declare().await?;
        let subject = bus.topology().ingest_subject(&args.kind)?;
        let publisher = bus.publisher();
        let (mut published, mut duplicates) = (0usize, 0usize);
        for signal in signals {
            let msg_id = if signal.id.is_empty() {
                uuid_like(&signal)
            } else {
                signal.id.clone()
            };
            // A backlog at its bound (this sensor's, `streams.ingest_max_per_subject`) is
            // waited out, as a sensor should; only a wait past the patience is an error.
            let ack = publisher
                .publish_waiting(
                    &subject,
                    &signal,
                    PublishOptions::new(msg_id),
                    super::replay::PUBLISH_PATIENCE,
                )
                .await?;
            if ack.duplicate {
                duplicates += 1
            } else {
                published += 1
            }
        }
        anyhow::Ok((published, duplicates))
    })?;
    println!("published {published}, duplicates {duplicates}, refused {refused}");
    Ok(())
}

/// Signals without an id get a fresh message id: the broker fingerprints their content.
fn uuid_like(_signal: &v1::ThreatSignal) -> String {
    uuid::Uuid::new_v4().to_string()
}
