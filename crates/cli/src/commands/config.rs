//! `vigil config`: the effective configuration (`show`), and the live keys running services
//! apply without a restart (`get`, `set`, `unset`, `list`, `history`). Live values live in the
//! `vigil_config` bucket; every change asked for, applied or refused, is audited in PostgreSQL.

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::json;
use vigil_bus::{Bus, ConfigBucket};
use vigil_config::{Config, LIVE_KEYS, live_key, parse_value, render_value, value_at};
use vigil_runtime::ConfigArgs;
use vigil_store::{AuditedChange, ConfigChange, Store};

/// Arguments of `vigil config`.
#[derive(Debug, clap::Args)]
pub struct ConfigCmdArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// `show` when omitted.
    #[command(subcommand)]
    pub command: Option<ConfigCommand>,
}

/// What `vigil config` does.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration this machine's file, environment and flags give, as TOML,
    /// secrets redacted (without the live values; `list` shows those).
    Show,
    /// Print one key's value in force: the live value when one is set, else the start-up one.
    Get {
        /// The dotted key, e.g. `thresholds.high`.
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a live key: validated, written with compare-and-swap, audited, and applied by
    /// every running service within a second.
    Set {
        /// The dotted key, e.g. `thresholds.high` (`vigil config list` shows them).
        key: String,
        /// The value, as TOML: `6.5`, `false`, `'["slack","email"]'`, `high`.
        value: String,
        /// Write only if the key is still at this revision (`get` prints it; 0 = no live value
        /// yet); without it, the revision read just before writing.
        #[arg(long, value_name = "REVISION")]
        expect_revision: Option<u64>,
        /// Who makes the change, for the audit trail (default: cli:$USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Remove a key's live value: services go back to its start-up value.
    Unset {
        /// The dotted key.
        key: String,
        /// Who makes the change, for the audit trail (default: cli:$USER).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Every live key: its value in force, whether it is set live, and who applies it.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The audit trail of changes (applied and refused), newest first.
    History {
        /// Only this key.
        key: Option<String>,
        /// At most this many changes.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `vigil config ...`.
pub fn run(args: ConfigCmdArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let command = args.command.unwrap_or(ConfigCommand::Show);
    if let ConfigCommand::Show = command {
        print!("{}", config.dump());
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match command {
            ConfigCommand::Show => Ok(()),
            ConfigCommand::Get { key, json } => get(&config, &key, json).await,
            ConfigCommand::Set {
                key,
                value,
                expect_revision,
                actor,
            } => {
                let actor = actor.unwrap_or_else(super::models::actor);
                set(&config, &key, &value, expect_revision, &actor).await
            }
            ConfigCommand::Unset { key, actor } => {
                let actor = actor.unwrap_or_else(super::models::actor);
                unset(&config, &key, &actor).await
            }
            ConfigCommand::List { json } => list(&config, json).await,
            ConfigCommand::History { key, limit, json } => {
                history(&config, key.as_deref(), limit, json).await
            }
        }
    })
}

/// A key's entry in the bucket: revision and value text.
type Entries = BTreeMap<String, (u64, String)>;

async fn bucket(config: &Config) -> anyhow::Result<ConfigBucket> {
    let bus = Bus::connect(&config.nats, vigil_runtime::topology(config))
        .await
        .context("cannot reach NATS, where the live configuration is kept")?;
    bus.declare().await?;
    Ok(bus.config_bucket().await?)
}

async fn entries(bucket: &ConfigBucket) -> anyhow::Result<Entries> {
    let mut entries = Entries::new();
    for key in bucket.keys().await? {
        if let Some(entry) = bucket.get(&key).await? {
            let value = String::from_utf8_lossy(&entry.value).into_owned();
            entries.insert(key, (entry.revision, value));
        }
    }
    Ok(entries)
}

/// The configuration in force: the start-up one with every live entry over it.
fn effective(config: &Config, entries: &Entries) -> anyhow::Result<Config> {
    let all: Vec<(&String, &String)> = entries.iter().map(|(k, (_, v))| (k, v)).collect();
    Ok(config.with_live(&all)?)
}

fn json_of(value: &toml::Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

async fn get(config: &Config, key: &str, as_json: bool) -> anyhow::Result<()> {
    let entries = entries(&bucket(config).await?).await?;
    let in_force = effective(config, &entries)?;
    let value = value_at(&in_force, key).with_context(|| {
        format!("no key {key} (or it has no value); `vigil config show` lists the keys")
    })?;
    let live = entries.get(key);
    if as_json {
        let out = json!({
            "key": key,
            "value": json_of(&value),
            "live": live.is_some(),
            "revision": live.map(|(r, _)| *r),
            "can_change_live": live_key(key).is_some(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let source = match live {
        Some((revision, _)) => format!("live, revision {revision}"),
        None if live_key(key).is_some() => "start-up value; can change live".to_owned(),
        None => "start-up value; needs a restart to change".to_owned(),
    };
    println!("{key} = {}    # {source}", render_value(&value));
    Ok(())
}

async fn set(
    config: &Config,
    key: &str,
    raw: &str,
    expect_revision: Option<u64>,
    actor: &str,
) -> anyhow::Result<()> {
    let store = Store::connect_and_migrate(&config.database).await?;
    let result = set_audited(config, &store, key, raw, expect_revision, actor).await;
    store.close().await;
    result
}

async fn set_audited(
    config: &Config,
    store: &Store,
    key: &str,
    raw: &str,
    expect_revision: Option<u64>,
    actor: &str,
) -> anyhow::Result<()> {
    let new_value = parse_value(raw);
    let mut change = ConfigChange {
        key: key.to_owned(),
        old_value: None,
        new_value: Some(json_of(&new_value)),
        actor: actor.to_owned(),
        accepted: false,
        reason: None,
        revision: None,
    };
    let outcome = write_checked(config, key, &new_value, expect_revision, &mut change).await;
    match &outcome {
        Ok(revision) => {
            change.accepted = true;
            change.revision = Some(*revision);
        }
        Err(error) => change.reason = Some(format!("{error:#}")),
    }
    store
        .config_audit()
        .record(&change)
        .await
        .context("the change could not be audited")?;
    let revision = outcome?;
    let was = change
        .old_value
        .as_ref()
        .map_or_else(|| "its start-up value".to_owned(), ToString::to_string);
    println!(
        "{key} = {} (was {was}); revision {revision}: running services apply it within a second",
        render_value(&new_value)
    );
    Ok(())
}

/// Validates the change against the configuration in force and writes it with
/// compare-and-swap; records the value it replaces in `change`.
async fn write_checked(
    config: &Config,
    key: &str,
    value: &toml::Value,
    expect_revision: Option<u64>,
    change: &mut ConfigChange,
) -> anyhow::Result<u64> {
    if live_key(key).is_none() {
        return Err(vigil_config::Error::NotLive {
            key: key.to_owned(),
        }
        .into());
    }
    let bucket = bucket(config).await?;
    let mut entries = entries(&bucket).await?;
    let current = entries.get(key).cloned();
    change.old_value = match &current {
        Some((_, text)) => Some(json_of(&parse_value(text))),
        None => effective(config, &entries)
            .ok()
            .and_then(|c| value_at(&c, key))
            .map(|v| json_of(&v)),
    };
    let text = render_value(value);
    entries.insert(key.to_owned(), (0, text.clone()));
    effective(config, &entries)?;
    let expected = match expect_revision {
        Some(0) => None,
        Some(revision) => Some(revision),
        None => current.map(|(revision, _)| revision),
    };
    Ok(bucket.put_if(key, text, expected).await?)
}

async fn unset(config: &Config, key: &str, actor: &str) -> anyhow::Result<()> {
    let store = Store::connect_and_migrate(&config.database).await?;
    let bucket = bucket(config).await?;
    let current = bucket.get(key).await?;
    let mut change = ConfigChange {
        key: key.to_owned(),
        old_value: current
            .as_ref()
            .map(|e| json_of(&parse_value(&String::from_utf8_lossy(&e.value)))),
        new_value: None,
        actor: actor.to_owned(),
        accepted: current.is_some(),
        reason: None,
        revision: None,
    };
    if current.is_none() {
        change.reason = Some(format!("{key} has no live value"));
    }
    store.config_audit().record(&change).await?;
    store.close().await;
    if current.is_none() {
        anyhow::bail!("{key} has no live value; it is at its start-up value already");
    }
    bucket.delete(key).await?;
    println!("{key} is back to its start-up value: running services apply it within a second");
    Ok(())
}

async fn list(config: &Config, as_json: bool) -> anyhow::Result<()> {
    let entries = entries(&bucket(config).await?).await?;
    let in_force = effective(config, &entries)?;
    let rows: Vec<serde_json::Value> = LIVE_KEYS
        .iter()
        .filter(|live| !live.example.is_empty())
        .map(|live| {
            let value = value_at(&in_force, live.key);
            let set = entries.get(live.key);
            json!({
                "key": live.key,
                "value": value.as_ref().map(json_of),
                "live": set.is_some(),
                "revision": set.map(|(r, _)| *r),
                "applied_by": live.applied_by,
            })
        })
        .collect();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<40}  {:<24}  {:<10}  applied by",
        "key", "value", "source"
    );
    for live in LIVE_KEYS.iter().filter(|live| !live.example.is_empty()) {
        let value =
            value_at(&in_force, live.key).map_or_else(|| "-".to_owned(), |v| render_value(&v));
        let source = entries
            .get(live.key)
            .map_or_else(|| "start-up".to_owned(), |(r, _)| format!("live r{r}"));
        println!(
            "{:<40}  {:<24}  {:<10}  {}",
            live.key, value, source, live.applied_by
        );
    }
    Ok(())
}

async fn history(
    config: &Config,
    key: Option<&str>,
    limit: i64,
    as_json: bool,
) -> anyhow::Result<()> {
    let store = Store::connect_and_migrate(&config.database).await?;
    let changes = store.config_audit().history(key, limit).await;
    store.close().await;
    let changes = changes?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&changes)?);
        return Ok(());
    }
    if changes.is_empty() {
        println!("no configuration changes recorded");
        return Ok(());
    }
    for change in &changes {
        println!("{}", history_line(change));
    }
    Ok(())
}

fn history_line(audited: &AuditedChange) -> String {
    let c = &audited.change;
    let show = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string)
    };
    let outcome = if c.accepted {
        c.revision.map_or_else(
            || "applied".to_owned(),
            |r| format!("applied (revision {r})"),
        )
    } else {
        format!(
            "refused: {}",
            c.reason.as_deref().unwrap_or("no reason recorded")
        )
    };
    format!(
        "{}  {:<20}  {}  {} -> {}  {outcome}",
        audited.at.format("%Y-%m-%d %H:%M:%S"),
        c.actor,
        c.key,
        show(&c.old_value),
        show(&c.new_value),
    )
}
