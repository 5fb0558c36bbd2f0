//! `vigil config`: print the effective configuration, secrets redacted.

use vigil_runtime::ConfigArgs;

/// Arguments of `vigil config`.
#[derive(Debug, clap::Args)]
pub struct ConfigCmdArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Loads and validates the configuration and prints it as TOML.
pub fn run(args: ConfigCmdArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    print!("{}", config.dump());
    Ok(())
}
