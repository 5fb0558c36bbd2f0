//! `vigil up`: every service in one process, each as a task through its own `run_in`.

use std::time::Duration;

use anyhow::Context;
use vigil_config::Config;
use vigil_runtime::{ConfigArgs, ServiceContext};

/// Arguments of `vigil up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Checks NATS and PostgreSQL answer, then runs the services until Ctrl-C or SIGTERM.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut config = args.config.load()?;
    // In one process the orchestrator scores through the predictor next to it.
    if config.orchestrator.predictor_url.is_none() {
        let addr = config.predictor.grpc_addr.replace("0.0.0.0", "127.0.0.1");
        config.orchestrator.predictor_url = Some(format!("http://{addr}"));
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let _guard = vigil_telemetry::init(&config.telemetry, "vigil")?;
        check_dependencies(&config).await?;
        let token = vigil_runtime::token_from(vigil_runtime::shutdown_signal());
        let ctx = ServiceContext::new(config);
        let http = vigil_runtime::serve_http(&ctx, &token).await?;
        println!(
            "vigil is up: metrics, health and readiness on http://{}  (Ctrl-C stops it)",
            http.local_addr
        );

        let mut services = tokio::task::JoinSet::new();
        let (c, t) = (ctx.clone(), token.clone());
        services.spawn(async move {
            (
                "broker",
                vigil_broker::run_in(c, t)
                    .await
                    .map_err(anyhow::Error::from),
            )
        });
        let (c, t) = (ctx.clone(), token.clone());
        services.spawn(async move {
            (
                "predictor",
                vigil_predictor::run_in(c, t)
                    .await
                    .map_err(anyhow::Error::from),
            )
        });
        let (c, t) = (ctx.clone(), token.clone());
        services.spawn(async move {
            (
                "trainer",
                vigil_trainer::run_in(c, t)
                    .await
                    .map_err(anyhow::Error::from),
            )
        });
        let (c, t) = (ctx.clone(), token.clone());
        services.spawn(async move {
            (
                "orchestrator",
                vigil_orchestrator::run_in(c, t)
                    .await
                    .map_err(anyhow::Error::from),
            )
        });

        let mut failure = None;
        while let Some(joined) = services.join_next().await {
            match joined {
                Ok((name, Ok(()))) => tracing::info!(service = name, "service stopped"),
                Ok((name, Err(error))) => {
                    tracing::error!(service = name, %error, "service failed; stopping the others");
                    failure.get_or_insert(anyhow::anyhow!("{name}: {error:#}"));
                    token.cancel();
                }
                Err(error) => {
                    failure.get_or_insert(anyhow::anyhow!("a service task panicked: {error}"));
                    token.cancel();
                }
            }
        }
        token.cancel();
        http.wait().await;
        failure.map_or(Ok(()), Err)
    })
}

/// Fails with one line naming the dependency that does not answer.
async fn check_dependencies(config: &Config) -> anyhow::Result<()> {
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
