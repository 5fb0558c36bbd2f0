//! `vigil up`: every service in one process, each as a task through its own `run_in`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_config::Config;
use vigil_runtime::{ConfigArgs, ServiceContext};

/// Arguments of `vigil up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run only these services (comma-separated: predictor, broker, trainer, orchestrator,
    /// feedback, health), e.g. one per process. Without a predictor, the orchestrator scores
    /// through `orchestrator.predictor_url`, or not at all.
    #[arg(long, value_delimiter = ',', value_name = "SERVICES")]
    pub only: Vec<String>,
}

/// Checks NATS and PostgreSQL answer, then runs the services until Ctrl-C or SIGTERM; a second
/// Ctrl-C during the shutdown exits at once.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let selection = Selection::only(&args.only)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let _guard = vigil_telemetry::init(&config.telemetry, "vigil")?;
        check_dependencies(&config).await?;
        let token = vigil_runtime::token_from(vigil_runtime::shutdown_signal());
        exit_on_second_interrupt(&token);
        let ctx = ServiceContext::new(config);
        let http = vigil_runtime::serve_http(&ctx, &token).await?;
        let services = match spawn_selected(&ctx, &token, &selection).await {
            Ok(services) => services,
            Err(error) => {
                token.cancel();
                http.wait().await;
                return Err(error);
            }
        };
        println!(
            "vigil is up: metrics, health, readiness and status on http://{}  (Ctrl-C stops it); \
             running {}",
            http.local_addr,
            selection.names.join(", ")
        );
        let outcome = services.supervise(&token).await;
        http.wait().await;
        outcome
    })
}

/// Once shutdown has begun, a second Ctrl-C ends the process without waiting for the services
/// to drain (their unacked work is redelivered later).
///
/// The interrupt listener is registered now, before any Ctrl-C: one created after the first
/// would miss a second that comes quickly.
#[cfg(unix)]
fn exit_on_second_interrupt(token: &CancellationToken) {
    use futures::FutureExt;
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupts = match signal(SignalKind::interrupt()) {
        Ok(interrupts) => interrupts,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for a second ctrl-c");
            return;
        }
    };
    let token = token.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        // The Ctrl-C that began the shutdown, if one did, is not the second.
        while let Some(Some(())) = interrupts.recv().now_or_never() {}
        eprintln!("stopping: finishing in-flight work (Ctrl-C again to exit at once)");
        if interrupts.recv().await.is_some() {
            eprintln!("exiting at once; unacknowledged work is redelivered on the next start");
            std::process::exit(130);
        }
    });
}

#[cfg(not(unix))]
fn exit_on_second_interrupt(token: &CancellationToken) {
    let token = token.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        eprintln!("stopping: finishing in-flight work (Ctrl-C again to exit at once)");
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("exiting at once; unacknowledged work is redelivered on the next start");
            std::process::exit(130);
        }
    });
}

/// The services one process runs, as [`spawn_services`] started them.
#[derive(Debug)]
pub struct Services {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    /// The process's heartbeat task; it ends with the token.
    heartbeats: tokio::task::JoinHandle<()>,
    /// Where the predictor's gRPC server listens (the bound port when the config said 0), when
    /// this process runs it.
    pub predictor_addr: Option<SocketAddr>,
}

/// A service's `run_in`, as `vigil up` starts it.
type Launch = fn(ServiceContext, CancellationToken) -> BoxFuture<'static, anyhow::Result<()>>;

fn launch<E: Into<anyhow::Error>>(
    service: impl Future<Output = Result<(), E>> + Send + 'static,
) -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move { service.await.map_err(Into::into) })
}

/// The services `vigil up` runs after the predictor, in start order. The predictor is not in
/// it because it starts first and alone: the orchestrator scores through the address it bound.
const SERVICES: [(&str, Launch); 5] = [
    ("broker", |ctx, token| {
        launch(vigil_broker::run_in(ctx, token))
    }),
    ("trainer", |ctx, token| {
        launch(vigil_trainer::run_in(ctx, token))
    }),
    ("orchestrator", |ctx, token| {
        launch(vigil_orchestrator::run_in(ctx, token))
    }),
    ("feedback", |ctx, token| {
        launch(vigil_feedback::run_in(ctx, token))
    }),
    ("health", |ctx, token| {
        launch(vigil_health::run_in(ctx, token))
    }),
];

/// The readiness checks of the services [`spawn_services`] starts.
pub const SERVICE_NAMES: [&str; 6] = [
    "predictor",
    SERVICES[0].0,
    SERVICES[1].0,
    SERVICES[2].0,
    SERVICES[3].0,
    SERVICES[4].0,
];

/// Which services one process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    names: Vec<&'static str>,
}

impl Selection {
    /// Every service.
    pub fn all() -> Self {
        Self {
            names: SERVICE_NAMES.to_vec(),
        }
    }

    /// The services named in `only` (every one when it is empty); an unknown name is refused,
    /// listing the known ones.
    pub fn only(only: &[String]) -> anyhow::Result<Self> {
        if only.is_empty() {
            return Ok(Self::all());
        }
        let mut names = Vec::new();
        for name in only {
            let name = name.trim();
            match SERVICE_NAMES
                .iter()
                .find(|known| known.eq_ignore_ascii_case(name))
            {
                Some(known) if !names.contains(known) => names.push(*known),
                Some(_) => {}
                None => anyhow::bail!(
                    "--only: no service is called {name:?}; the services are {}",
                    SERVICE_NAMES.join(", ")
                ),
            }
        }
        Ok(Self { names })
    }

    fn has(&self, name: &str) -> bool {
        self.names.contains(&name)
    }
}

/// Starts every vigil service: [`spawn_selected`] with [`Selection::all`].
pub async fn spawn_services(
    ctx: &ServiceContext,
    token: &CancellationToken,
) -> anyhow::Result<Services> {
    spawn_selected(ctx, token, &Selection::all()).await
}

/// Starts the selected vigil services as tasks of this process, all sharing `ctx` (one metrics
/// registry, one readiness, one heartbeat task) and stopping when `token` is cancelled.
///
/// Each service's readiness check starts as not ready, so `/readyz` (and
/// [`Services::wait_ready`]) say "not ready" until the service itself reports in. The predictor
/// starts first: when `orchestrator.predictor_url` is not set, the orchestrator scores through
/// the address the predictor actually bound (port 0 in the config picks a free one). Fails,
/// with nothing left running, when the predictor cannot start (its port is taken, ...).
pub async fn spawn_selected(
    ctx: &ServiceContext,
    token: &CancellationToken,
    selection: &Selection,
) -> anyhow::Result<Services> {
    for name in &selection.names {
        ctx.readiness.set(name, false);
    }
    let mut tasks = JoinSet::new();
    let mut predictor_addr = None;
    let mut config = (*ctx.config).clone();
    if selection.has("predictor") {
        let predictor = vigil_predictor::Predictor::start(ctx.clone())
            .await
            .context("the predictor cannot start")?;
        let addr = predictor.local_addr();
        if config.orchestrator.predictor_url.is_none() {
            let url = local_url(addr);
            // A predictor serving TLS is reached over TLS (its certificate must name the
            // address, or `orchestrator.predictor_tls.domain_name` the name it carries).
            config.orchestrator.predictor_url = Some(if config.predictor.tls.enabled() {
                url.replacen("http://", "https://", 1)
            } else {
                url
            });
        }
        predictor_addr = Some(addr);
        tasks.spawn(named("predictor", launch(predictor.run(token.clone()))));
    }
    let ctx = ServiceContext {
        config: Arc::new(config),
        ..ctx.clone()
    };
    for (name, run_in) in SERVICES {
        if selection.has(name) {
            tasks.spawn(named(name, run_in(ctx.clone(), token.clone())));
        }
    }
    let heartbeats = vigil_runtime::spawn_heartbeats(&ctx, token);
    Ok(Services {
        tasks,
        heartbeats,
        predictor_addr,
    })
}

async fn named(
    name: &'static str,
    service: BoxFuture<'static, anyhow::Result<()>>,
) -> (&'static str, anyhow::Result<()>) {
    (name, service.await)
}

/// `http://HOST:PORT` for a client of this machine: an unspecified bind address (`0.0.0.0`,
/// `::`) is reached on loopback.
fn local_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    format!("http://{host}:{}", addr.port())
}

impl Services {
    /// The predictor's gRPC URL as a client on this machine reaches it, when this process
    /// runs it.
    pub fn predictor_url(&self) -> Option<String> {
        self.predictor_addr.map(local_url)
    }

    /// Waits until every service has stopped; the first one that fails (or panics) cancels
    /// `token`, so the others drain and stop, and its error is returned.
    pub async fn supervise(mut self, token: &CancellationToken) -> anyhow::Result<()> {
        let mut failure = None;
        while let Some(stopped) = self.next_stopped().await {
            match stopped {
                Ok(name) => tracing::info!(service = name, "service stopped"),
                Err(error) => {
                    tracing::error!(%error, "service failed; stopping the others");
                    failure.get_or_insert(error);
                    token.cancel();
                }
            }
        }
        token.cancel();
        let _ = self.heartbeats.await;
        failure.map_or(Ok(()), Err)
    }

    /// The next service to stop: its name when it stopped cleanly, its error when it failed;
    /// `None` once every service has stopped.
    pub async fn next_stopped(&mut self) -> Option<anyhow::Result<&'static str>> {
        let joined = self.tasks.join_next().await?;
        Some(match joined {
            Ok((name, Ok(()))) => Ok(name),
            Ok((name, Err(error))) => Err(anyhow::anyhow!("{name}: {error:#}")),
            Err(error) => Err(anyhow::anyhow!("a service task panicked: {error}")),
        })
    }

    /// Waits until every service except `except` reports ready in `ctx`'s readiness, or one of
    /// them stops (its error, or why it stopped, is returned).
    pub async fn wait_ready(
        &mut self,
        ctx: &ServiceContext,
        except: &[&str],
        patience: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let (_, pending) = ctx.readiness.status();
            let pending: Vec<String> = pending
                .into_iter()
                .filter(|name| !except.contains(&name.as_str()))
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "{} did not report ready within {} s",
                    pending.join(", "),
                    patience.as_secs()
                );
            }
            // Readiness has no change notification; a short poll of it is the observation.
            tokio::select! {
                stopped = self.next_stopped() => match stopped {
                    Some(Err(error)) => return Err(error),
                    Some(Ok(name)) => anyhow::bail!("{name} stopped while starting"),
                    None => anyhow::bail!("every service stopped while starting"),
                },
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

/// Fails with one line naming the dependency that does not answer.
pub async fn check_dependencies(config: &Config) -> anyhow::Result<()> {
    let nats = tokio::time::timeout(Duration::from_secs(5), vigil_bus::connect(&config.nats)).await;
    match nats {
        Ok(Ok(_client)) => {}
        Ok(Err(error)) => anyhow::bail!("NATS is not reachable: {error}"),
        Err(_) => anyhow::bail!(
            "NATS is not reachable at {} (timed out after 5 s)",
            config.nats.url
        ),
    }
    let url = vigil_config::redact_url_password(&config.database.url);
    use sqlx::Connection;
    let pg = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect(&config.database.url),
    )
    .await;
    match pg {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(error)) => anyhow::bail!("PostgreSQL is not reachable at {url}: {error}"),
        Err(_) => anyhow::bail!("PostgreSQL is not reachable at {url} (timed out after 5 s)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(only: &[&str]) -> anyhow::Result<Vec<&'static str>> {
        let only: Vec<String> = only.iter().map(|s| (*s).to_owned()).collect();
        Selection::only(&only).map(|selection| selection.names)
    }

    #[test]
    fn only_selects_services_by_name_and_refuses_an_unknown_one() {
        assert_eq!(names(&[]).unwrap(), SERVICE_NAMES);
        assert_eq!(
            names(&["Orchestrator", " broker", "orchestrator"]).unwrap(),
            ["orchestrator", "broker"]
        );
        let error = names(&["broker", "orchestrater"])
            .expect_err("an unknown name is refused")
            .to_string();
        assert!(
            error.contains("\"orchestrater\"") && error.contains("orchestrator, feedback"),
            "{error}"
        );
    }
}
