//! `vigil remediation list | undo ID | retry ID`: see what auto-remediation did, roll it back,
//! or carry out again an action that failed (or whose outcome an interrupted workflow never
//! recorded).

use anyhow::Context;
use vigil_domain::ActionStatus;
use vigil_runtime::ConfigArgs;
use vigil_soar::Remediator;
use vigil_store::Store;

/// Arguments of `vigil remediation`.
#[derive(Debug, clap::Args)]
pub struct RemediationArgs {
    #[command(subcommand)]
    pub command: RemediationCommand,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum RemediationCommand {
    /// The most recent actions, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON: an array of actions as they are stored (with `undo`).
        #[arg(long)]
        json: bool,
    },
    /// Replay an action's undo through its executor and mark it undone.
    Undo {
        /// The action id (from `vigil remediation list`).
        id: String,
    },
    /// Carry out a failed (or pending) action again through the configured executor, with the
    /// same idempotency key, and record the outcome.
    Retry {
        /// The action id (from `vigil remediation list`).
        id: String,
    },
}

/// Runs `vigil remediation`.
pub fn run(args: RemediationArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = Store::connect_and_migrate(&config.database).await?;
        match args.command {
            RemediationCommand::List { limit, json } => {
                let actions = store.remediations().recent(limit).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&actions)?);
                    return anyhow::Ok(());
                }
                if actions.is_empty() {
                    println!("no remediation actions recorded");
                }
                for a in actions {
                    println!(
                        "{}  {:<16} {:<40} {:<9} {:<10} event {}",
                        a.id,
                        a.kind.as_str(),
                        a.target,
                        a.executor,
                        serde_json::to_value(a.status)?.as_str().unwrap_or("?"),
                        a.event_id
                    );
                }
            }
            RemediationCommand::Undo { id } => {
                let action = store.remediations().get(&id).await?;
                match action.status {
                    ActionStatus::Undone | ActionStatus::Expired => {
                        anyhow::bail!(
                            "action {id} is already {:?}; nothing to undo",
                            action.status
                        )
                    }
                    ActionStatus::Refused | ActionStatus::Failed | ActionStatus::Pending => {
                        anyhow::bail!(
                            "action {id} was never applied ({:?}); nothing to undo",
                            action.status
                        )
                    }
                    ActionStatus::Simulated | ActionStatus::Applied => {}
                }
                let remediator = Remediator::from_settings(config.soar.remediation.clone())
                    .context("remediation settings")?;
                remediator
                    .undo(&action)
                    .await
                    .with_context(|| format!("undoing {id}"))?;
                store
                    .remediations()
                    .set_status(&id, ActionStatus::Undone, None)
                    .await?;
                println!(
                    "undone {id}: {} {} ({})",
                    action.kind.as_str(),
                    action.target,
                    action.executor
                );
            }
            RemediationCommand::Retry { id } => {
                let action = store.remediations().get(&id).await?;
                if !matches!(action.status, ActionStatus::Failed | ActionStatus::Pending) {
                    anyhow::bail!(
                        "action {id} is {}; only a failed or pending action is retried",
                        serde_json::to_value(action.status)?.as_str().unwrap_or("?")
                    );
                }
                let remediator = Remediator::from_settings(config.soar.remediation.clone())
                    .context("remediation settings")?;
                if let Some(why) = remediator.protected(&action.target) {
                    anyhow::bail!("action {id} is not retried: {why}");
                }
                let done = remediator.execute(action).await;
                store
                    .remediations()
                    .set_status(&id, done.status, Some(&done.details))
                    .await?;
                let status = serde_json::to_value(done.status)?;
                let status = status.as_str().unwrap_or("?");
                if done.status == ActionStatus::Failed {
                    anyhow::bail!(
                        "retried {id}: {} {} failed again: {}",
                        done.kind.as_str(),
                        done.target,
                        done.details["error"].as_str().unwrap_or("no reason given")
                    );
                }
                println!(
                    "retried {id}: {} {} is {status} ({})",
                    done.kind.as_str(),
                    done.target,
                    done.executor
                );
            }
        }
        anyhow::Ok(())
    })
}
