//! What every vigil service shares at run time: one [`ServiceContext`] (config, metrics,
//! readiness, heartbeats, instance id), shutdown on SIGINT/SIGTERM, and the `main` of a service
//! binary.
//!
//! A service exposes `run(config, shutdown)`, which builds its own context and HTTP endpoint,
//! and `run_in(ctx, shutdown)`, which `vigil up` calls for every service with one shared context.

pub mod grpc_tls;
mod live;
mod pulse;
pub mod trace;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigil_config::{Config, Sources};
use vigil_telemetry::{HttpServer, Metrics, Readiness, StatusEndpoint};

pub use live::LiveConfig;
pub use pulse::{Beat, CheckFuture, Interval, Pulse, spawn_heartbeats};

/// Every binary that runs a vigil service allocates through mimalloc: the event path makes
/// millions of small, short-lived allocations (messages, JSON, headers), and glibc's allocator
/// took about 15 % of the process's CPU in the event benchmark (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The message of a caught panic (`panic!("...")` payloads are `&str` or `String`).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Shared, cheaply cloned handles a service runs with.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    /// The configuration the process started with.
    pub config: Arc<Config>,
    /// The same with the live keys kept current from the `vigil_config` bucket: what
    /// components read each time they use a live value.
    pub live: LiveConfig,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// Where services register for heartbeats ([`Pulse::register`]); one task per process
    /// ([`spawn_heartbeats`]) sends them.
    pub pulse: Pulse,
    /// The `/status` route of the process's HTTP server, filled by the health service.
    pub status: StatusEndpoint,
    /// Unique per process: `<hostname-or-pid>-<random>`.
    pub instance: String,
}

impl ServiceContext {
    /// A context with fresh metrics and readiness.
    pub fn new(config: Config) -> Self {
        let config = Arc::new(config);
        Self {
            live: LiveConfig::new(config.clone()),
            config,
            metrics: Metrics::new(),
            readiness: Readiness::new(),
            pulse: Pulse::default(),
            status: StatusEndpoint::new(),
            instance: instance_id(),
        }
    }
}

fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid{}", std::process::id()));
    let random = uuid::Uuid::new_v4().simple().to_string();
    // Heartbeat subjects carry the instance id as one token.
    vigil_bus::subject_token(&format!("{host}-{}", &random[..8]))
}

/// The stream limits and redelivery policy from config, in the bus's terms.
pub fn topology(config: &Config) -> vigil_bus::TopologyConfig {
    let policy = vigil_bus::ConsumerPolicy::exponential(
        Duration::from_secs(config.streams.ack_wait_secs),
        config.streams.max_deliver,
    );
    vigil_bus::TopologyConfig {
        dedup_window: Duration::from_secs(config.streams.dedup_window_secs),
        // Events a late attempt republishes must still be recognised: as long as an attempt
        // can run, and never shorter than the signals' own window.
        events_dedup_window: config
            .effects_settled_after()
            .max(Duration::from_secs(config.streams.dedup_window_secs)),
        work_max_messages: config.streams.work_max_messages,
        ingest_max_per_subject: config.streams.ingest_max_per_subject,
        events_max_age: Duration::from_secs(config.streams.events_max_age_days * 24 * 3600),
        replicas: config.streams.replicas,
        broker: policy.clone(),
        orchestrator: policy,
        ..Default::default()
    }
}

/// What every service opens on NATS first: a connection with the configured topology, the
/// streams, consumers and config bucket declared, and this process's live configuration
/// followed (once per process; see [`LiveConfig::watch`]) until `token` is cancelled.
pub async fn connect_bus(
    ctx: &ServiceContext,
    token: &CancellationToken,
) -> vigil_bus::Result<vigil_bus::Bus> {
    let bus = vigil_bus::Bus::connect(&ctx.config.nats, topology(&ctx.config)).await?;
    bus.declare().await?;
    ctx.live.watch(&bus, token).await?;
    Ok(bus)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Turns a shutdown future into a token that many tasks can wait on.
pub fn token_from(shutdown: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    token
}

/// Starts the `/metrics`, `/healthz`, `/readyz` (and `/status`, where the health service runs)
/// server of a process.
pub async fn serve_http(
    ctx: &ServiceContext,
    token: &CancellationToken,
) -> anyhow::Result<HttpServer> {
    let stop = token.clone();
    Ok(HttpServer::start_with_status(
        &ctx.config.telemetry.http_addr,
        ctx.metrics.clone(),
        ctx.readiness.clone(),
        ctx.status.clone(),
        async move { stop.cancelled().await },
    )
    .await?)
}

/// Runs one service standalone: its own `/metrics`, `/healthz`, `/readyz` server and its
/// heartbeats, then its `run_in` until `shutdown` completes; the HTTP server stops after the
/// service has drained.
pub async fn run_standalone<F, Fut, E>(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    run_in: F,
) -> Result<(), E>
where
    F: FnOnce(ServiceContext, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: From<anyhow::Error>,
{
    let token = token_from(shutdown);
    let ctx = ServiceContext::new(config);
    let http = serve_http(&ctx, &token).await?;
    let heartbeats = spawn_heartbeats(&ctx, &token);
    let result = run_in(ctx, token.clone()).await;
    token.cancel();
    let _ = heartbeats.await;
    http.wait().await;
    result
}

/// Flags every service binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML config file (also `VIGIL_CONFIG`).
    #[arg(long, short = 'c', env = "VIGIL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Override one key, e.g. `--set thresholds.high=6.5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub overrides: Vec<String>,
}

impl ConfigArgs {
    /// Loads defaults -> file -> environment -> `--set`.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut sources = Sources::from_process_env();
        if self.config.is_some() {
            sources.file = self.config.clone();
        }
        sources.overrides = self.overrides.clone();
        Ok(Config::load(&sources)?)
    }
}

#[derive(Debug, clap::Parser)]
struct ServiceCli {
    #[command(flatten)]
    config: ConfigArgs,
}

/// The whole `main` of a service binary: flags, config, telemetry, then `run` until SIGINT or
/// SIGTERM. Errors print as one line and exit non-zero.
pub fn service_main<F, Fut, E>(name: &str, run: F) -> std::process::ExitCode
where
    F: FnOnce(Config, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use clap::Parser;
    let cli = ServiceCli::parse();
    let config = match cli.config.load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _guard = match vigil_telemetry::init(&config.telemetry, name) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("error: {error}");
                return std::process::ExitCode::FAILURE;
            }
        };
        match run(config, Box::pin(shutdown_signal())).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, service = name, "service failed");
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_both_payload_kinds() {
        let literal = std::panic::catch_unwind(|| panic!("plain")).expect_err("panics");
        assert_eq!(panic_message(&*literal), "plain");
        let formatted =
            std::panic::catch_unwind(|| panic!("step {} failed", 3)).expect_err("panics");
        assert_eq!(panic_message(&*formatted), "step 3 failed");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7_u8)).expect_err("panics");
        assert_eq!(panic_message(&*other), "a panic without a message");
    }
}
