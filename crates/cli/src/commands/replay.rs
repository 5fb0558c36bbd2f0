//! `vigil replay nsl-kdd FILE`: publish data-set rows as threat signals, and with
//! `--with-feedback` give their labels back as analysts' verdicts.

mod feedback;

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
    /// Give each row's own label back as an analyst's verdict on its workflow, through the
    /// feedback service, once the workflow completed: `correct` when vigil's verdict matches
    /// it, `incorrect` with the true label (and attack type) otherwise.
    #[arg(long)]
    pub with_feedback: bool,
    /// Give only this many verdicts, chosen by --pick once every workflow completed.
    #[arg(long, requires = "with_feedback", requires = "pick")]
    pub budget: Option<usize>,
    /// How the budget's verdicts are chosen: the review queue's picks, or at random (--seed).
    #[arg(long, value_enum, requires = "budget")]
    pub pick: Option<Pick>,
    /// With --pick queue, judge the queue's picks this many at a time and ask it again after
    /// each page, as an analyst working through the queue does: each ranking sees the
    /// verdicts given before it (the queue follows up a verdict of attack).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub page: u64,
    /// Seed of --pick random: the same seed picks the same rows.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Who the verdicts are given as.
    #[arg(long, default_value = "replay")]
    pub analyst: String,
    /// Give up when no workflow completes and no verdict is answered for this many seconds.
    #[arg(long, default_value_t = 120)]
    pub stall_secs: u64,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// How `--budget` verdicts are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pick {
    /// What the feedback service's review queue ranks first (`vigil.feedback.review`).
    Queue,
    /// A seeded random sample of the replayed rows whose workflow completed.
    Random,
}

/// At most this many publishes wait for their ack at once.
const IN_FLIGHT: usize = 512;

/// How long a publish waits out a full ingest backlog (`streams.ingest_max_per_subject`)
/// before the command gives up with the server's reason.
pub const PUBLISH_PATIENCE: Duration = Duration::from_secs(300);

/// Publishes the rows; malformed rows are reported with their line number and skipped.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let ReplaySource::NslKdd(args) = args.source;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let mut rows = Vec::new();
    let mut malformed = 0usize;
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        if args.limit.is_some_and(|limit| rows.len() >= limit) {
            break;
        }
        let line = line.with_context(|| format!("cannot read {}", args.file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match vigil_ml::parse_nsl_kdd_line(&line) {
            Ok(example) => rows.push(example),
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
    if args.with_feedback {
        let summary = runtime.block_on(feedback::replay(&config, &rows, &args))?;
        summary.print(malformed);
        return Ok(());
    }
    let signals: Vec<v1::ThreatSignal> = rows
        .into_iter()
        .map(|e| v1::ThreatSignal::from(e.signal))
        .collect();
    let tally = runtime.block_on(async {
        let bus = Bus::connect(&config.nats, vigil_runtime::topology(&config)).await?;
        bus.declare().await?;
        let bar = ProgressBar::new(signals.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} signals  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let tally = publish_signals(&bus, "nsl-kdd", &signals, args.rate, |_| bar.inc(1)).await;
        bar.finish_and_clear();
        tally
    })?;
    let PublishTally {
        published,
        duplicates,
        elapsed,
    } = tally;
    println!(
        "replayed {} rows in {:.1} s: published {published}, duplicates {duplicates}, malformed {malformed}",
        published + duplicates,
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// What [`publish_signals`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishTally {
    /// Signals the ingest stream stored.
    pub published: usize,
    /// Signals it recognised as already stored (same id within the dedup window).
    pub duplicates: usize,
    /// From the first publish to the last acknowledgement.
    pub elapsed: Duration,
}

/// Publishes `signals` to `vigil.ingest.<kind>`, keyed by their ids, with at most 512
/// acknowledgements outstanding, at `rate` signals per second (0 = as fast as NATS takes them).
/// `on_ack` sees each acknowledgement as it arrives (`true` for a duplicate).
pub async fn publish_signals(
    bus: &Bus,
    kind: &str,
    signals: &[v1::ThreatSignal],
    rate: u64,
    mut on_ack: impl FnMut(bool),
) -> anyhow::Result<PublishTally> {
    let subject = bus.topology().ingest_subject(kind)?;
    let publisher = bus.publisher();
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut tally = PublishTally {
        published: 0,
        duplicates: 0,
        elapsed: Duration::ZERO,
    };
    let mut count = |ack: vigil_bus::Result<vigil_bus::PubAck>| -> anyhow::Result<()> {
        let duplicate = ack?.duplicate;
        if duplicate {
            tally.duplicates += 1;
        } else {
            tally.published += 1;
        }
        on_ack(duplicate);
        Ok(())
    };
    for (i, signal) in signals.iter().enumerate() {
        if rate > 0 {
            // Open-loop pacing: row i goes out at i / rate seconds.
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        while pending.len() >= IN_FLIGHT {
            if let Some(ack) = pending.next().await {
                count(ack)?;
            }
        }
        let publisher = publisher.clone();
        let subject = subject.clone();
        pending.push(async move {
            publisher
                .publish_waiting(
                    &subject,
                    signal,
                    PublishOptions::new(signal.id.clone()),
                    PUBLISH_PATIENCE,
                )
                .await
        });
    }
    while let Some(ack) = pending.next().await {
        count(ack)?;
    }
    tally.elapsed = started.elapsed();
    Ok(tally)
}
