//! `vigil train`.

/// Arguments of `vigil train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {}

/// Runs `vigil train`.
pub fn run(_args: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("vigil train is not built yet")
}
