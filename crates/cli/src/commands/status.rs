//! `vigil status`: the health service's view of the running system, as a table (coloured on a
//! terminal) or as JSON; `--watch` asks again every few seconds.

use std::io::IsTerminal;
use std::time::Duration;

use vigil_bus::Bus;
use vigil_domain::HealthState;
use vigil_health::{InstanceStatus, StatusReport};
use vigil_runtime::ConfigArgs;

/// Arguments of `vigil status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the whole status as one JSON object (the shape is in docs/health.md).
    #[arg(long)]
    pub json: bool,
    /// Ask again every INTERVAL seconds (2 when not given) until Ctrl-C; a failed ask is
    /// reported and retried.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs `vigil status`.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let timeout = Duration::from_millis(config.health.status_timeout_ms);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let bus = Bus::connect(&config.nats, vigil_runtime::topology(&config))
            .await
            .map_err(|e| anyhow::anyhow!("NATS is not reachable: {e}"))?;
        let colour = std::io::stdout().is_terminal();
        if args.watch.is_some() {
            // Ctrl-C ends the watch at once, also in the middle of an ask.
            tokio::spawn(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(0);
                }
            });
        }
        loop {
            let report = match vigil_health::status(&bus, timeout).await {
                Ok(report) => report,
                Err(error) if args.watch.is_some() => {
                    eprintln!("error: {error}");
                    if !wait(args.watch).await {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                if args.watch.is_some() && colour {
                    // Clear the screen and go home, so the table stays in place.
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", table(&report, colour));
            }
            if !wait(args.watch).await {
                return Ok(());
            }
        }
    })
}

/// Waits out one `--watch` interval; false when not watching.
async fn wait(watch: Option<u64>) -> bool {
    match watch {
        Some(every) => {
            tokio::time::sleep(Duration::from_secs(every.max(1))).await;
            true
        }
        None => false,
    }
}

fn paint(state: HealthState, colour: bool) -> String {
    let text = state.as_str().to_uppercase();
    if !colour {
        return text;
    }
    let code = match state {
        HealthState::Healthy => "32",
        HealthState::Degraded => "33",
        HealthState::Critical => "31",
    };
    format!("\x1b[1;{code}m{text}\x1b[0m")
}

fn optional(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The status as a table a person reads at a glance.
fn table(report: &StatusReport, colour: bool) -> String {
    let mut out = format!(
        "vigil is {}: {}\n\n",
        paint(report.state, colour),
        report.reason
    );
    out.push_str(&format!(
        "  {:<14} {:<10} {:>9} {:>7} {:>8} {:>9}  {}\n",
        "COMPONENT", "STATE", "INSTANCES", "OPS", "ERRORS", "P99 MS", "REASON"
    ));
    for (name, component) in &report.components {
        // Pad before painting: escape codes would count towards the width.
        let state = format!("{:<10}", component.state.as_str().to_uppercase());
        let state = if colour {
            state.replace(
                &component.state.as_str().to_uppercase(),
                &paint(component.state, true),
            )
        } else {
            state
        };
        let p99 = component
            .latency_ms
            .map_or_else(|| "-".to_owned(), |l| format!("{:.1}", l.p99_ms));
        out.push_str(&format!(
            "  {:<14} {} {:>9} {:>7} {:>8} {:>9}  {}\n",
            name,
            state,
            format!(
                "{}/{}",
                component.alive,
                component.alive + component.missing
            ),
            component.operations,
            component.errors,
            p99,
            component.reasons.join("; ")
        ));
        for instance in &component.instances {
            if instance.status == InstanceStatus::Missing {
                out.push_str(&format!(
                    "  {:<14}   missing: {} (last heartbeat {:.0} s ago)\n",
                    "", instance.instance, instance.last_seen_secs_ago
                ));
            }
        }
    }
    out.push_str(&format!(
        "\nevents processed {}   workflows {}\n",
        optional(report.events_processed),
        if report.workflows.is_empty() {
            "-".to_owned()
        } else {
            report
                .workflows
                .iter()
                .map(|(status, n)| format!("{} {n}", status.to_lowercase()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    out.push_str(&format!(
        "last {} s: alerts {}, remediations {}, workflows {}\n",
        report.recent.window_secs,
        optional(report.recent.alerts),
        optional(report.recent.remediations),
        optional(report.recent.workflows)
    ));
    out.push_str(&format!(
        "feedback accuracy {} ({} judged)\n",
        report
            .feedback
            .accuracy
            .map_or_else(|| "-".to_owned(), |a| format!("{:.1} %", a * 100.0)),
        optional(report.feedback.judged)
    ));
    let model = |m: &Option<vigil_health::ModelRef>| {
        m.as_ref().map_or_else(
            || "none".to_owned(),
            |m| format!("v{} ({})", m.version, m.id),
        )
    };
    out.push_str(&format!(
        "models: production {}, active {}\n",
        model(&report.models.production),
        model(&report.models.active)
    ));
    let streams: Vec<String> = report
        .streams
        .iter()
        .map(|(name, s)| match s.oldest_age_secs {
            Some(age) => format!("{name} {} (oldest {age:.0} s)", s.messages),
            None => format!("{name} {}", s.messages),
        })
        .collect();
    out.push_str(&format!("streams: {}\n", streams.join(", ")));
    let recent: u64 = report.dead_letters.recent.values().sum();
    out.push_str(&format!(
        "dead letters: {} stored, {recent} in the last {} s\n",
        optional(report.dead_letters.stored),
        report.dead_letters.window_secs
    ));
    for missing in &report.unavailable {
        out.push_str(&format!("unavailable: {missing}\n"));
    }
    out
}
