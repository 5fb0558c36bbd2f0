//! `vigil evaluate`.

/// Arguments of `vigil evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {}

/// Runs `vigil evaluate`.
pub fn run(_args: EvaluateArgs) -> anyhow::Result<()> {
    anyhow::bail!("vigil evaluate is not built yet")
}
