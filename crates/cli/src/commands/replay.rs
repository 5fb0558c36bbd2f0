//! `vigil replay nsl-kdd FILE`: publish data-set rows as threat signals.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use vigil_bus::{Bus, PublishOptions};
use vigil_proto::v1;
use vigil_runtime::ConfigArgs;

/// Arguments of `vigil replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(subcommand)]
    pub source: ReplaySource,
}

/// What to replay.
#[derive(Debug, clap::Subcommand)]
pub enum ReplaySource {
    /// NSL-KDD rows (headerless CSV); each row keeps a stable id, so a second replay is
    /// recognised as duplicates.
    NslKdd(NslKddArgs),
}

/// Arguments of `vigil replay nsl-kdd`.
#[derive(Debug, clap::Args)]
pub struct NslKddArgs {
    /// The data file, e.g. KDDTrain+.txt.
    pub file: PathBuf,
    /// Signals per second (0 = as fast as NATS takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Stop after this many rows.
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// At most this many publishes wait for their ack at once.
const IN_FLIGHT: usize = 512;

/// Publishes the rows; malformed rows are reported with their line number and skipped.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let ReplaySource::NslKdd(args) = args.source;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let mut signals = Vec::new();
    let mut malformed = 0usize;
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        if args.limit.is_some_and(|limit| signals.len() >= limit) {
            break;
        }
        let line = line.with_context(|| format!("cannot read {}", args.file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match vigil_ml::parse_nsl_kdd_line(&line) {
            Ok(example) => signals.push(v1::ThreatSignal::from(example.signal)),
            Err(reason) => {
                malformed += 1;
                if malformed <= 20 {
                    eprintln!("{}:{}: {reason}", args.file.display(), index + 1);
                }
            }
        }
    }
    if malformed > 20 {
        eprintln!("... and {} more malformed rows", malformed - 20);
    }

    let config = args.config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let (published, duplicates, elapsed) = runtime.block_on(async {
        let bus = Bus::connect(&config.nats, vigil_runtime::topology(&config)).await?;
        bus.declare().await?;
        let subject = bus.topology().ingest_subject("nsl-kdd")?;
        let publisher = bus.publisher();
        let bar = ProgressBar::new(signals.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} signals  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = Instant::now();
        let mut pending = FuturesUnordered::new();
        let (mut published, mut duplicates) = (0usize, 0usize);
        for (i, signal) in signals.iter().enumerate() {
            if args.rate > 0 {
                // Open-loop pacing: row i goes out at i / rate seconds.
                let due = started + Duration::from_secs_f64(i as f64 / args.rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            while pending.len() >= IN_FLIGHT {
                if let Some(ack) = pending.next().await {
                    tally(ack, &mut published, &mut duplicates)?;
                    bar.inc(1);
                }
            }
            let publisher = publisher.clone();
            let subject = subject.clone();
            pending.push(async move {
                publisher
                    .publish(&subject, signal, PublishOptions::new(signal.id.clone()))
                    .await
            });
        }
        while let Some(ack) = pending.next().await {
            tally(ack, &mut published, &mut duplicates)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        anyhow::Ok((published, duplicates, started.elapsed()))
    })?;
    println!(
        "replayed {} rows in {:.1} s: published {published}, duplicates {duplicates}, malformed {malformed}",
        published + duplicates,
        elapsed.as_secs_f64()
    );
    Ok(())
}

fn tally(
    ack: vigil_bus::Result<vigil_bus::PubAck>,
    published: &mut usize,
    duplicates: &mut usize,
) -> anyhow::Result<()> {
    if ack?.duplicate {
        *duplicates += 1;
    } else {
        *published += 1;
    }
    Ok(())
}
