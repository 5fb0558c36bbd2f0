//! [`Sandbox`]: what one test needs to run vigil against the real NATS and PostgreSQL without
//! seeing any other test: its own stream prefix, its own freshly migrated database, a config
//! pointing at both, and services started in-process through their `run_in`.

use std::fmt::Display;
use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use vigil_bus::{Bus, StreamKind, Topology, TopologyConfig};
use vigil_config::{Config, Sources};
use vigil_runtime::ServiceContext;
use vigil_store::Store;

use crate::database::{STALE_AFTER, TestDatabase};
use crate::unix_seconds;

/// The NATS server tests use when `NATS_URL` is not set.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How long [`Service::stop`] waits for a service to drain before it fails the test.
pub const STOP_PATIENCE: Duration = Duration::from_secs(60);

/// Every sandbox prefix starts with this, then the creation time and a random part.
const PREFIX_START: &str = "vt";

/// The URL of the NATS server tests use: `NATS_URL`, else [`DEFAULT_NATS_URL`].
pub fn nats_url() -> String {
    std::env::var("NATS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
}

/// One test's share of NATS and PostgreSQL. Dropping it deletes every stream under its prefix
/// and drops its database, also when the test panics.
///
/// The configuration binds every server to port 0 (`telemetry.http_addr`,
/// `predictor.grpc_addr`); `nats.url`, `nats.prefix` and `database` belong to the sandbox.
#[derive(Debug)]
pub struct Sandbox {
    config: Config,
    prefix: String,
    nats: async_nats::Client,
    bus: Bus,
    // Dropped after the streams are deleted (fields drop after `Drop::drop`).
    db: TestDatabase,
}

impl Sandbox {
    /// A sandbox with the default configuration.
    pub async fn start() -> Self {
        Self::with::<&str>(&[]).await
    }

    /// A sandbox whose configuration also takes `overrides` in `--set key=value` form, e.g.
    /// `Sandbox::with(&["thresholds.high=6.5"])`; panics when one is refused.
    pub async fn with<S: AsRef<str>>(overrides: &[S]) -> Self {
        Self::on_nats(&nats_url(), overrides).await
    }

    /// [`with`](Self::with), on the NATS server(s) at `url` (comma-separated) instead of the
    /// shared one: a server the test owns, such as a [`NatsServer`](crate::NatsServer) it kills.
    pub async fn on_nats<S: AsRef<str>>(url: &str, overrides: &[S]) -> Self {
        let prefix = new_prefix();
        let mut all = vec![
            "telemetry.http_addr=\"127.0.0.1:0\"".to_owned(),
            "predictor.grpc_addr=\"127.0.0.1:0\"".to_owned(),
        ];
        all.extend(overrides.iter().map(|o| o.as_ref().to_owned()));
        let mut config = Config::load(&Sources {
            file: None,
            env: Vec::new(),
            overrides: all,
        })
        .unwrap_or_else(|e| panic!("the sandbox configuration is refused: {e}"));

        let db = TestDatabase::new()
            .await
            .unwrap_or_else(|e| panic!("the sandbox has no database: {e:#}"));
        config.nats.url = url.to_owned();
        config.nats.prefix = prefix.clone();
        config.nats.client_name = Some(format!("vigil-test-{prefix}"));
        config.database = db.settings();
        config
            .validate()
            .unwrap_or_else(|e| panic!("the sandbox configuration is invalid: {e}"));

        let nats = vigil_bus::connect(&config.nats).await.unwrap_or_else(|e| {
            panic!(
                "the sandbox cannot reach NATS at {} (set NATS_URL): {e}",
                config.nats.url
            )
        });
        static SWEEP: Once = Once::new();
        let mut sweep_needed = false;
        SWEEP.call_once(|| sweep_needed = true);
        if sweep_needed {
            delete_stale_streams(&async_nats::jetstream::new(nats.clone())).await;
        }
        let bus = Bus::from_client(nats.clone(), topology(&prefix, &config));
        bus.declare()
            .await
            .unwrap_or_else(|e| panic!("the sandbox cannot declare its streams: {e}"));
        Self {
            config,
            prefix,
            nats,
            bus,
            db,
        }
    }

    /// The configuration services started in this sandbox run with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration, to change before [`spawn`](Self::spawn)ing services with it.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The store connected to the sandbox's database.
    pub fn store(&self) -> &Store {
        self.db.store()
    }

    /// The sandbox's database (its URL and settings, for code that connects by itself).
    pub fn database(&self) -> &TestDatabase {
        &self.db
    }

    /// The stream and subject prefix, e.g. `vt1733400000xa1b2c3d4`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `subject` under the sandbox's prefix: `subject("vigil.events.>")`.
    pub fn subject(&self, subject: &str) -> String {
        format!("{}.{subject}", self.prefix)
    }

    /// A bus with the topology the services derive from the config, declared.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// A bus under the sandbox's prefix with another topology (limits, redelivery policy),
    /// declared; its streams are deleted with the sandbox's.
    pub async fn bus_with(&self, config: TopologyConfig) -> Bus {
        let bus = Bus::from_client(
            self.nats.clone(),
            Topology::new(self.prefix.clone(), config).expect("the sandbox prefix is valid"),
        );
        bus.declare()
            .await
            .unwrap_or_else(|e| panic!("cannot declare the topology: {e}"));
        bus
    }

    /// `VIGIL_*` environment variables that point a `vigil` command (or a `vigil up` child)
    /// at this sandbox: its NATS server and prefix, and its database.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        vec![
            ("VIGIL_NATS__URL".into(), self.config.nats.url.clone()),
            ("VIGIL_NATS__PREFIX".into(), self.prefix.clone()),
            (
                "VIGIL_DATABASE__URL".into(),
                self.config.database.url.clone(),
            ),
        ]
    }

    /// The raw NATS client the sandbox is connected with.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Subscribes to `subject` (a full subject: see [`subject`](Self::subject)) and makes sure
    /// the server knows the subscription before returning, so nothing published later is missed.
    pub async fn subscribe(&self, subject: &str) -> async_nats::Subscriber {
        let subscriber = self
            .nats
            .subscribe(subject.to_owned())
            .await
            .unwrap_or_else(|e| panic!("cannot subscribe to {subject}: {e}"));
        self.nats
            .flush()
            .await
            .unwrap_or_else(|e| panic!("cannot flush the subscription to {subject}: {e}"));
        subscriber
    }

    /// The number of rows `sql` (a `SELECT count(*) ...`) counts in the sandbox's database.
    pub async fn count(&self, sql: &str) -> i64 {
        count_rows(self.store(), sql).await
    }

    /// The number of messages stored in one of the sandbox's streams.
    pub async fn stream_messages(&self, kind: StreamKind) -> u64 {
        stream_messages(&self.bus, kind).await
    }

    /// Publishes `signal` (protobuf) on the ingest subject `vigil.ingest.<kind>`, as a sensor
    /// of that kind does, and waits for JetStream to store it.
    pub async fn publish_signal(&self, kind: &str, signal: &vigil_proto::v1::ThreatSignal) {
        use prost::Message as _;
        let subject = self
            .bus
            .topology()
            .ingest_subject(kind)
            .unwrap_or_else(|e| panic!("ingest subject for {kind:?}: {e}"));
        self.bus
            .jetstream()
            .publish(subject, signal.encode_to_vec().into())
            .await
            .unwrap_or_else(|e| panic!("publishing signal {:?}: {e}", signal.id))
            .await
            .unwrap_or_else(|e| panic!("no ack for signal {:?}: {e}", signal.id));
    }

    /// Starts a service in-process with a context of its own (this sandbox's config) and a
    /// token of its own: `sandbox.spawn("broker", vigil_broker::run_in)`.
    ///
    /// `name` is the readiness check the service reports (`broker`, `orchestrator`,
    /// `predictor`, `trainer`); it starts as not ready, so [`Service::ready`] waits for the
    /// service to say it is.
    pub fn spawn<F, Fut, E>(&self, name: &str, run_in: F) -> Service
    where
        F: FnOnce(ServiceContext, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        self.spawn_with_config(name, self.config.clone(), run_in)
    }

    /// [`spawn`](Self::spawn) with another config (e.g. a copy of [`config`](Self::config) with
    /// one setting changed for this service only).
    pub fn spawn_with_config<F, Fut, E>(&self, name: &str, config: Config, run_in: F) -> Service
    where
        F: FnOnce(ServiceContext, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        Service::spawn(name, config, run_in)
    }
}

impl Drop for Sandbox {
    /// Deletes the streams under the prefix (also those of [`bus_with`](Self::bus_with) and of
    /// any service), from a helper thread: the test's runtime may be unwinding.
    fn drop(&mut self) {
        let url = self.config.nats.url.clone();
        let prefix = self.prefix.clone();
        crate::block_on_helper_thread(
            format!("deleting the streams of {prefix}"),
            move || async move {
                let client = async_nats::connect(url).await?;
                let js = async_nats::jetstream::new(client);
                for name in stream_names(&js).await? {
                    if belongs_to(&name, &prefix) {
                        delete_stream(&js, &name).await?;
                    }
                }
                Ok(())
            },
        );
    }
}

fn topology(prefix: &str, config: &Config) -> Topology {
    Topology::new(prefix.to_owned(), vigil_runtime::topology(config))
        .expect("the sandbox prefix is valid")
}

fn new_prefix() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{PREFIX_START}{}x{}", unix_seconds(), &random[..8])
}

/// When a sandbox prefix was made, from the prefix itself.
fn prefix_created_at(prefix: &str) -> Option<u64> {
    let rest = prefix.strip_prefix(PREFIX_START)?;
    let (seconds, random) = rest.split_once('x')?;
    if random.len() != 8 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    seconds.parse().ok()
}

/// Whether the stream `name` is the sandbox's: its streams are `<prefix>_<NAME>`, key-value
/// buckets `KV_<prefix>_<name>`, object stores `OBJ_<prefix>_<name>`.
fn belongs_to(name: &str, prefix: &str) -> bool {
    let bare = name
        .strip_prefix("KV_")
        .or_else(|| name.strip_prefix("OBJ_"))
        .unwrap_or(name);
    bare.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('_'))
}

/// The sandbox prefix of a stream name, if it has one.
fn sandbox_prefix_of(name: &str) -> Option<&str> {
    let bare = name
        .strip_prefix("KV_")
        .or_else(|| name.strip_prefix("OBJ_"))
        .unwrap_or(name);
    let (prefix, _) = bare.split_once('_')?;
    prefix_created_at(prefix).map(|_| prefix)
}

async fn stream_names(js: &async_nats::jetstream::Context) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut listing = js.stream_names();
    while let Some(name) = listing.next().await {
        names.push(name?);
    }
    Ok(names)
}

async fn delete_stream(js: &async_nats::jetstream::Context, name: &str) -> anyhow::Result<()> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::DeleteStreamErrorKind;
    match js.delete_stream(name).await {
        Ok(_) => Ok(()),
        Err(err) => match err.kind() {
            // Deleted by someone else in the meantime (a stale sweep in another process).
            DeleteStreamErrorKind::JetStream(js_err)
                if js_err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(())
            }
            _ => Err(anyhow::anyhow!("cannot delete stream {name}: {err}")),
        },
    }
}

/// Deletes streams of sandboxes older than [`STALE_AFTER`]: left behind by killed test runs.
async fn delete_stale_streams(js: &async_nats::jetstream::Context) {
    let names = match stream_names(js).await {
        Ok(names) => names,
        Err(err) => {
            eprintln!("vigil-testkit: cannot list streams: {err:#}");
            return;
        }
    };
    let now = unix_seconds();
    for name in names {
        let Some(created) = sandbox_prefix_of(&name).and_then(prefix_created_at) else {
            continue;
        };
        if now.saturating_sub(created) < STALE_AFTER.as_secs() {
            continue;
        }
        if let Err(err) = delete_stream(js, &name).await {
            eprintln!("vigil-testkit: cannot delete stale {name}: {err:#}");
        }
    }
}

/// The number of rows `sql` (a `SELECT count(*) ...`) counts.
pub async fn count_rows(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The number of messages stored in one of `bus`'s streams.
pub async fn stream_messages(bus: &Bus, kind: StreamKind) -> u64 {
    let name = bus.topology().stream_name(kind);
    let mut stream = bus
        .jetstream()
        .get_stream(&name)
        .await
        .unwrap_or_else(|e| panic!("no stream {name}: {e}"));
    stream
        .info()
        .await
        .unwrap_or_else(|e| panic!("no info on stream {name}: {e}"))
        .state
        .messages
}

/// The subjects of every message stored in one of `bus`'s streams, oldest first.
pub async fn stream_subjects(bus: &Bus, kind: StreamKind) -> Vec<String> {
    let name = bus.topology().stream_name(kind);
    let mut stream = bus
        .jetstream()
        .get_stream(&name)
        .await
        .unwrap_or_else(|e| panic!("no stream {name}: {e}"));
    let info = stream
        .info()
        .await
        .unwrap_or_else(|e| panic!("no info on stream {name}: {e}"));
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut subjects = Vec::new();
    for sequence in first..=last {
        // Sequences of deleted messages (acked work, purged) are gaps, not errors.
        if let Ok(message) = stream.get_raw_message(sequence).await {
            subjects.push(message.subject.to_string());
        }
    }
    subjects
}

/// The next message of `subscriber`, within `within`; panics naming `what` otherwise.
pub async fn next_message(
    subscriber: &mut async_nats::Subscriber,
    within: Duration,
    what: &str,
) -> async_nats::Message {
    match tokio::time::timeout(within, subscriber.next()).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("the subscription ended while waiting for {what}"),
        Err(_) => panic!("no message within {within:?} while waiting for {what}"),
    }
}

/// A service started by [`Sandbox::spawn`]: its context (metrics, readiness), its token, and
/// an async runtime of its own running it, as a process of its own would. Everything the
/// service spawns (each workflow, its HTTP calls, its NATS and PostgreSQL connections) runs on
/// that runtime, so [`kill`](Self::kill) ends all of it at once, as a crash does. Dropping it
/// kills it.
#[derive(Debug)]
pub struct Service {
    name: String,
    ctx: ServiceContext,
    token: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Service {
    fn spawn<F, Fut, E>(name: &str, config: Config, run_in: F) -> Self
    where
        F: FnOnce(ServiceContext, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let ctx = ServiceContext::new(config);
        ctx.readiness.set(name, false);
        let token = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("service-{name}"))
            .enable_all()
            .build()
            .expect("a runtime for the service");
        let task = {
            let _inside = runtime.enter();
            let running = run_in(ctx.clone(), token.clone());
            // Ends with the runtime.
            drop(vigil_runtime::spawn_heartbeats(&ctx, &token));
            runtime.spawn(async move { running.await.map_err(|e| format!("{e:#}")) })
        };
        Self {
            name: name.to_owned(),
            ctx,
            token,
            task: Some(task),
            runtime: Some(runtime),
        }
    }

    /// The service's name as given to [`Sandbox::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The context the service runs in: its metrics and readiness.
    pub fn ctx(&self) -> &ServiceContext {
        &self.ctx
    }

    /// The token that stops the service.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The value of the counter `metric` (full name, without `_total`) in the service's
    /// `/metrics`, 0 when it was never incremented.
    pub fn counter(&self, metric: &str) -> u64 {
        let line_start = format!("{metric}_total ");
        self.ctx
            .metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(&line_start)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether the service's task has ended (by itself, or stopped).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|task| task.is_finished())
    }

    /// Waits until the service reports ready; panics if it stops first or is not ready within
    /// `within`.
    pub async fn ready(&mut self, within: Duration) {
        let name = self.name.clone();
        let what = format!("{name} to report ready");
        let ctx = self.ctx.clone();
        let task = self.task.as_mut().expect("the service is running");
        let waiting = async {
            loop {
                if ctx.readiness.status().0 {
                    return;
                }
                if task.is_finished() {
                    let outcome = task.await;
                    panic!("{name} stopped before it was ready: {}", describe(outcome));
                }
                tokio::time::sleep(crate::POLL_EVERY).await;
            }
        };
        if tokio::time::timeout(within, waiting).await.is_err() {
            let pending = self.ctx.readiness.status().1;
            panic!("timed out after {within:?} waiting for {what}; not ready: {pending:?}");
        }
    }

    /// Waits for the service to end by itself (not stopped by the test) and says how it ended:
    /// `Ok` when it returned cleanly, else its error or panic. For `select!` against a condition
    /// the test waits for, so a crashed service fails the test at once.
    pub async fn finished(&mut self) -> Result<(), String> {
        match self.task.as_mut() {
            Some(task) => {
                let outcome = task.await;
                self.task = None;
                flatten(outcome)
            }
            None => Ok(()),
        }
    }

    /// Cancels the token and waits for the service to drain; panics when it returns an error,
    /// panics, or takes longer than [`STOP_PATIENCE`].
    pub async fn stop(mut self) {
        self.token.cancel();
        let Some(task) = self.task.take() else { return };
        let outcome = tokio::time::timeout(STOP_PATIENCE, task).await;
        // What the service left running (heartbeats, a connection's tasks) ends with it.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        match outcome {
            Ok(outcome) => {
                if let Err(error) = flatten(outcome) {
                    panic!("{} did not stop cleanly: {error}", self.name);
                }
            }
            Err(_) => panic!("{} did not stop within {STOP_PATIENCE:?}", self.name),
        }
    }

    /// Kills the service without letting it drain, as a crash would: every task it runs
    /// (in-flight workflows and their HTTP calls included) stops where it is, its connections
    /// close, and its work is neither finished nor acked.
    pub async fn kill(mut self) {
        self.task.take();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn flatten(outcome: Result<Result<(), String>, tokio::task::JoinError>) -> Result<(), String> {
    match outcome {
        Ok(result) => result,
        Err(join) if join.is_panic() => Err(format!(
            "panicked: {}",
            vigil_runtime::panic_message(&*join.into_panic())
        )),
        Err(join) => Err(format!("aborted: {join}")),
    }
}

fn describe(outcome: Result<Result<(), String>, tokio::task::JoinError>) -> String {
    match flatten(outcome) {
        Ok(()) => "it returned Ok".to_owned(),
        Err(error) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_valid_unique_and_carry_their_age() {
        let a = new_prefix();
        let b = new_prefix();
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        let created = prefix_created_at(&a).expect("a timestamp in the prefix");
        assert!(unix_seconds() - created < 60);
        assert_eq!(prefix_created_at("vtabc"), None);
        assert_eq!(prefix_created_at("t1234abcd"), None);
    }

    #[test]
    fn streams_belong_to_their_sandbox_only() {
        let prefix = "vt1700000000xa1b2c3d4";
        assert!(belongs_to("vt1700000000xa1b2c3d4_VIGIL_INGEST", prefix));
        assert!(belongs_to("KV_vt1700000000xa1b2c3d4_vigil_config", prefix));
        assert!(!belongs_to("vt1700000000xa1b2c3d45_VIGIL_INGEST", prefix));
        assert!(!belongs_to("VIGIL_INGEST", prefix));
        assert!(!belongs_to("KV_vigil_config", prefix));
        assert_eq!(
            sandbox_prefix_of("KV_vt1700000000xa1b2c3d4_vigil_config"),
            Some(prefix)
        );
        assert_eq!(sandbox_prefix_of("VIGIL_EVENTS"), None);
        assert_eq!(sandbox_prefix_of("tb0123456789_VIGIL_EVENTS"), None);
    }
}
