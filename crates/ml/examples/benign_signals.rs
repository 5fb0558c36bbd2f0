//! The false-alert rate on benign sensor signals: an ensemble trained on NSL-KDD scores the
//! hand-written benign signals of `bench/ml/benign_signals.json` (DNS, HTTPS, logins, NTP, mail,
//! file access ..., each with only the fields such a sensor sends) and this counts how many it
//! calls attacks, by itself and once it abstains below the default minimum coverage.
//!
//! `cargo run --release -p vigil-ml --example benign_signals -- [KDDTrain+.txt] [--config config.json]`

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use vigil_domain::{PredictionResult, RiskThresholds, ThreatSignal};
use vigil_ml::{ModelArtifact, NoProgress, TrainConfig, read_nsl_kdd, train_ensemble};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut data: Option<PathBuf> = None;
    let mut config = TrainConfig::default();
    while let Some(arg) = args.next() {
        if arg == "--config" {
            let path = args
                .next()
                .ok_or_else(|| anyhow::anyhow!("--config needs a file"))?;
            config = serde_json::from_reader(File::open(path)?)?;
        } else {
            data = Some(PathBuf::from(arg));
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = data.unwrap_or_else(|| {
        std::env::var("VIGIL_DATA_DIR")
            .map_or_else(|_| root.join("../shared/data/nsl-kdd"), PathBuf::from)
            .join("KDDTrain+.txt")
    });
    let outcome = read_nsl_kdd(BufReader::new(File::open(&data)?));
    anyhow::ensure!(
        outcome.errors.is_empty(),
        "malformed rows in {}",
        data.display()
    );
    let rows: Vec<ThreatSignal> = outcome.examples.iter().map(|e| e.signal.clone()).collect();
    let (artifact, _) = train_ensemble(outcome.examples, &config, "benign_signals", &NoProgress)?;
    // How much of the model's inputs the data set's own rows carry, for comparison.
    let spec = &artifact.ensemble.spec;
    let mut carried: Vec<usize> = Vec::with_capacity(rows.len());
    for row in &rows {
        carried.push(spec.coverage(&spec.transform(row)?).carried);
    }
    carried.sort_unstable();
    println!(
        "the model reads {} inputs; rows of {} carry {} to {} of them (median {})",
        spec.inputs.len(),
        data.display(),
        carried[0],
        carried[carried.len() - 1],
        carried[carried.len() / 2]
    );
    let signals = benign_signals(&root)?;
    println!(
        "{} benign sensor signals, model trained on {}",
        signals.len(),
        data.display()
    );
    let rates = false_alerts(&artifact, &signals, true)?;
    println!(
        "false alerts on benign sensor signals: {} / {} scored as attacks by the ensemble alone, \
         {} / {} once it abstains below coverage {}",
        rates.alone,
        signals.len(),
        rates.after_abstention,
        signals.len(),
        PredictionResult::DEFAULT_MIN_COVERAGE
    );
    Ok(())
}

fn benign_signals(root: &std::path::Path) -> anyhow::Result<Vec<ThreatSignal>> {
    let path = root.join("bench/ml/benign_signals.json");
    Ok(serde_json::from_reader(BufReader::new(File::open(&path)?))?)
}

struct FalseAlerts {
    alone: usize,
    after_abstention: usize,
}

fn false_alerts(
    artifact: &ModelArtifact,
    signals: &[ThreatSignal],
    verbose: bool,
) -> anyhow::Result<FalseAlerts> {
    let thresholds = RiskThresholds::default();
    let (mut alone, mut after_abstention) = (0, 0);
    for signal in signals {
        let result = artifact.predict(signal, &thresholds)?;
        let attack = result.probability >= result.decision_threshold;
        let result = result.abstain_below(PredictionResult::DEFAULT_MIN_COVERAGE);
        alone += usize::from(attack);
        after_abstention += usize::from(attack && result.abstention.is_none());
        if verbose {
            println!(
                "  {:<18} coverage {:.3} in_domain {:.3} p {:.4} risk {:>6.3} attack {:<5} {}",
                signal.id,
                result.coverage,
                result.in_domain,
                result.probability,
                result.risk_score,
                attack,
                if result.abstention.is_some() {
                    "abstains"
                } else {
                    "scores"
                },
            );
        }
    }
    Ok(FalseAlerts {
        alone,
        after_abstention,
    })
}
