//! The nftables executor: adds addresses to timeout sets, so a block expires by itself.
//!
//! It only renders the commands (status `simulated`) unless `nftables.apply` is set; then it runs
//! `nft` with the rendered arguments (no shell). The table and sets it expects are given by
//! [`ruleset`]; load them once with `nft -f`.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::Duration;
use serde_json::{Value, json};
use vigil_config::NftablesSettings;
use vigil_domain::{ActionKind, ActionStatus, RemediationAction};

use super::{Executor, PreparedAction, ensure_executor};
use crate::error::{Error, Result};

/// Runs (or renders) `nft add element` / `nft delete element` on vigil's sets.
#[derive(Debug, Clone)]
pub struct NftablesExecutor {
    settings: NftablesSettings,
}

/// The table, sets and rules the executor's commands act on, for `nft -f`.
///
/// Blocked and isolated addresses are dropped both ways; rate-limited sources share one limit.
pub fn ruleset(s: &NftablesSettings) -> String {
    let sets = [&s.block_set, &s.rate_limit_set, &s.isolate_set]
        .iter()
        .map(|name| {
            format!(
                "    set {name} {{ type ipv4_addr; flags timeout; }}\n    set {name}6 {{ type ipv6_addr; flags timeout; }}\n"
            )
        })
        .collect::<String>();
    let (b, r, i) = (&s.block_set, &s.rate_limit_set, &s.isolate_set);
    format!(
        "table {family} {table} {{\n{sets}\
    chain input {{\n        type filter hook input priority filter - 10; policy accept;\n\
        ip saddr @{b} drop\n        ip6 saddr @{b}6 drop\n\
        ip saddr @{i} drop\n        ip6 saddr @{i}6 drop\n\
        ip saddr @{r} limit rate over 10/second drop\n        ip6 saddr @{r}6 limit rate over 10/second drop\n    }}\n\
    chain forward {{\n        type filter hook forward priority filter - 10; policy accept;\n\
        ip saddr @{b} drop\n        ip6 saddr @{b}6 drop\n\
        ip saddr @{i} drop\n        ip6 saddr @{i}6 drop\n        ip daddr @{i} drop\n        ip6 daddr @{i}6 drop\n\
        ip saddr @{r} limit rate over 10/second drop\n        ip6 saddr @{r}6 limit rate over 10/second drop\n    }}\n\
    chain output {{\n        type filter hook output priority filter - 10; policy accept;\n\
        ip daddr @{b} drop\n        ip6 daddr @{b}6 drop\n        ip daddr @{i} drop\n        ip6 daddr @{i}6 drop\n    }}\n}}\n",
        family = s.family,
        table = s.table,
    )
}

impl NftablesExecutor {
    /// An executor with these (validated) settings.
    pub fn new(settings: NftablesSettings) -> Result<Self> {
        settings.validate()?;
        Ok(Self { settings })
    }

    fn set_for(&self, kind: ActionKind, target: &str) -> Result<(IpAddr, String)> {
        let unsupported = |reason: String| Error::Unsupported {
            executor: "nftables",
            action: kind,
            target: target.to_owned(),
            reason,
        };
        let base = match kind {
            ActionKind::BlockAddress => &self.settings.block_set,
            ActionKind::RateLimit => &self.settings.rate_limit_set,
            ActionKind::IsolateHost => &self.settings.isolate_set,
            ActionKind::DisableAccount => {
                return Err(unsupported("a firewall has no accounts".into()));
            }
        };
        let ip: IpAddr = target
            .trim()
            .parse()
            .map_err(|_| unsupported("nftables acts on IP addresses only".into()))?;
        let set = match ip {
            IpAddr::V4(_) => base.clone(),
            IpAddr::V6(_) => format!("{base}6"),
        };
        Ok((ip, set))
    }

    fn argv(&self, verb: &str, set: &str, element: String) -> Vec<String> {
        vec![
            verb.to_owned(),
            "element".to_owned(),
            self.settings.family.clone(),
            self.settings.table.clone(),
            set.to_owned(),
            element,
        ]
    }

    async fn run(&self, argv: &[String]) -> Result<()> {
        let command = render_command(argv);
        let timeout = StdDuration::from_millis(self.settings.timeout_ms);
        let child = tokio::process::Command::new(&self.settings.nft_path)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: self.settings.nft_path.clone(),
                source,
            })?;
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| Error::Timeout {
                command: command.clone(),
                timeout,
            })?
            .map_err(|source| Error::Spawn {
                program: self.settings.nft_path.clone(),
                source,
            })?;
        if output.status.success() {
            tracing::info!(%command, "nftables applied");
            return Ok(());
        }
        Err(Error::CommandFailed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn render_command(argv: &[String]) -> String {
    std::iter::once("nft")
        .chain(argv.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn stored_argv(
    action: &RemediationAction,
    part: &'static str,
    value: &Value,
) -> Result<Vec<Vec<String>>> {
    let malformed = |reason: &str| Error::MalformedAction {
        id: action.id.clone(),
        part,
        reason: reason.to_owned(),
    };
    let lists = value["argv"]
        .as_array()
        .ok_or_else(|| malformed("no argv list"))?;
    lists
        .iter()
        .map(|list| {
            list.as_array()
                .ok_or_else(|| malformed("argv entry is not a list"))?
                .iter()
                .map(|a| {
                    a.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| malformed("argument is not a string"))
                })
                .collect()
        })
        .collect()
}

/// `nft delete element` of an element that already timed out fails with ENOENT; the undo is
/// then already done.
fn already_gone(err: &Error) -> bool {
    matches!(err, Error::CommandFailed { stderr, .. }
        if stderr.contains("No such file or directory") || stderr.contains("does not exist"))
}

#[async_trait]
impl Executor for NftablesExecutor {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn prepare(
        &self,
        kind: ActionKind,
        target: &str,
        duration: Option<Duration>,
    ) -> Result<PreparedAction> {
        let (ip, set) = self.set_for(kind, target)?;
        let element = match duration {
            Some(d) => format!("{{ {ip} timeout {}s }}", d.num_seconds().max(1)),
            None => format!("{{ {ip} }}"),
        };
        let apply = self.argv("add", &set, element);
        let undo = self.argv("delete", &set, format!("{{ {ip} }}"));
        Ok(PreparedAction {
            details: json!({
                "commands": [render_command(&apply)],
                "argv": [apply],
                "applied_by_nft": self.settings.apply,
            }),
            undo: json!({
                "commands": [render_command(&undo)],
                "argv": [undo],
            }),
        })
    }

    async fn execute(&self, action: &RemediationAction) -> Result<ActionStatus> {
        ensure_executor(action, self.name())?;
        let commands = stored_argv(action, "details", &action.details)?;
        if !self.settings.apply {
            return Ok(ActionStatus::Simulated);
        }
        for argv in &commands {
            self.run(argv).await?;
        }
        Ok(ActionStatus::Applied)
    }

    async fn undo(&self, action: &RemediationAction) -> Result<()> {
        ensure_executor(action, self.name())?;
        let commands = stored_argv(action, "undo", &action.undo)?;
        if action.status != ActionStatus::Applied {
            // Rendered only (or refused / failed before nft ran): nothing to reverse.
            return Ok(());
        }
        if !self.settings.apply {
            return Err(Error::ApplyDisabled {
                id: action.id.clone(),
                command: commands
                    .iter()
                    .map(|a| render_command(a))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        for argv in &commands {
            match self.run(argv).await {
                Err(e) if already_gone(&e) => {
                    tracing::info!(id = %action.id, "nftables element already expired");
                }
                other => other?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor() -> NftablesExecutor {
        NftablesExecutor::new(NftablesSettings::default()).unwrap()
    }

    #[test]
    fn rendering_includes_the_timeout_and_the_undo() {
        let p = executor()
            .prepare(
                ActionKind::BlockAddress,
                "203.0.113.7",
                Some(Duration::seconds(3600)),
            )
            .unwrap();
        assert_eq!(
            p.details["commands"][0],
            "nft add element inet vigil blocklist { 203.0.113.7 timeout 3600s }"
        );
        assert_eq!(
            p.undo["commands"][0],
            "nft delete element inet vigil blocklist { 203.0.113.7 }"
        );
        assert_eq!(
            p.details["argv"][0],
            json!([
                "add",
                "element",
                "inet",
                "vigil",
                "blocklist",
                "{ 203.0.113.7 timeout 3600s }"
            ])
        );
    }

    #[test]
    fn ipv6_rate_limits_and_isolation_use_their_sets() {
        let e = executor();
        let p = e
            .prepare(
                ActionKind::RateLimit,
                "2001:db8::1",
                Some(Duration::seconds(60)),
            )
            .unwrap();
        assert_eq!(
            p.details["commands"][0],
            "nft add element inet vigil ratelimit6 { 2001:db8::1 timeout 60s }"
        );
        let p = e
            .prepare(ActionKind::IsolateHost, "10.0.0.5", None)
            .unwrap();
        assert_eq!(
            p.details["commands"][0],
            "nft add element inet vigil isolated { 10.0.0.5 }"
        );
    }

    #[test]
    fn non_addresses_and_accounts_are_unsupported() {
        let e = executor();
        let err = e
            .prepare(ActionKind::BlockAddress, "10.0.0.1; rm -rf /", None)
            .unwrap_err();
        assert!(err.to_string().contains("IP addresses only"), "{err}");
        assert!(
            e.prepare(ActionKind::DisableAccount, "alice", None)
                .is_err()
        );
    }

    #[test]
    fn the_ruleset_declares_timeout_sets_used_by_the_commands() {
        let text = ruleset(&NftablesSettings::default());
        assert!(text.starts_with("table inet vigil {"), "{text}");
        for set in [
            "blocklist",
            "blocklist6",
            "ratelimit",
            "ratelimit6",
            "isolated",
            "isolated6",
        ] {
            assert!(
                text.contains(&format!("set {set} {{ type ")),
                "{set} missing:\n{text}"
            );
        }
        assert_eq!(text.matches("flags timeout").count(), 6);
        assert!(text.contains("ip saddr @blocklist drop"));
    }
}
