//! What the end-to-end tests share: `vigil up` as a child process, the `vigil` command pointed at
//! it, and the domain events as any subscriber on the bus sees them.
//!
//! Each test gets its own [`Sandbox`] (stream prefix and database, removed afterwards) and free
//! ports, so the tests run in parallel; the child is killed when its [`Up`] is dropped.

#![allow(dead_code, clippy::unwrap_used)]

pub mod python;

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use vigil_domain::SecurityEvent;
use vigil_proto::v1;
use vigil_testkit::{
    CapturedOutput, Sandbox, announced_http_addr, eventually, spawn_capturing, vigil_bin,
};

/// A guard against a hung system, not a speed requirement.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// A port nothing listens on right now, for a server that must be told its port up front (the
/// orchestrator and `vigil predict` need the predictor's address before it binds).
pub use vigil_testkit::free_port;

/// The `vigil` command as a user runs it against one deployment: the sandbox's NATS prefix and
/// database (as `VIGIL_*` environment variables) plus the deployment's `--set` flags.
#[derive(Debug, Clone)]
pub struct Cli {
    env: Vec<(String, String)>,
    sets: Vec<String>,
}

impl Cli {
    pub fn new(sandbox: &Sandbox, sets: &[String]) -> Self {
        Self {
            env: sandbox.cli_env(),
            sets: sets.to_vec(),
        }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(vigil_bin());
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env_remove("VIGIL_CONFIG");
        for set in &self.sets {
            cmd.args(["--set", set]);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `vigil <args>` to completion.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("vigil runs"))
            .await
            .expect("the command thread joins")
    }

    /// Runs `vigil <args>`, which must succeed, and returns what it printed on stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "vigil {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

/// Trains a small real model (`vigil train` on the first `rows` rows of NSL-KDD, few trees and
/// epochs) into `dir`, quick to fit, for a predictor to serve; returns the artifact's path.
pub async fn small_model(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    rows: usize,
) -> std::path::PathBuf {
    let data = vigil_testkit::nsl_kdd::subset(dir, rows);
    let model = dir.join("model.vigil");
    let config = dir.join("train.json");
    std::fs::write(
        &config,
        r#"{"forest": {"n_trees": 10}, "xgboost": {"rounds": 10}, "mlp": {"max_epochs": 3}}"#,
    )
    .unwrap();
    Cli::new(sandbox, &[])
        .ok(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .await;
    model
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `vigil up` running as a child process; killed when dropped.
pub struct Up {
    child: tokio::process::Child,
    /// Where `/metrics`, `/healthz` and `/readyz` answer.
    pub http: SocketAddr,
    /// Where the predictor serves gRPC.
    pub grpc: SocketAddr,
    /// The command pointed at this deployment.
    pub cli: Cli,
    output: CapturedOutput,
}

impl Up {
    /// Starts `vigil up` in the sandbox with `sets` (`key=value`) and waits until every service
    /// but the predictor reports ready (the predictor is not ready until a model is in
    /// production).
    pub async fn start(sandbox: &Sandbox, sets: &[String]) -> Self {
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_only(sandbox, sets, &[], grpc).await
    }

    /// `vigil up --only <only>` (every service when `only` is empty), its predictor (if it runs
    /// one) serving gRPC on `grpc`; waits like [`start`](Self::start).
    pub async fn start_only(
        sandbox: &Sandbox,
        sets: &[String],
        only: &[&str],
        grpc: SocketAddr,
    ) -> Self {
        let mut all = vec![
            "telemetry.http_addr=\"127.0.0.1:0\"".to_string(),
            format!("predictor.grpc_addr=\"{grpc}\""),
        ];
        all.extend_from_slice(sets);
        let cli = Cli::new(sandbox, &all);
        let only = only.join(",");
        let args: Vec<&str> = if only.is_empty() {
            vec!["up"]
        } else {
            vec!["up", "--only", &only]
        };
        let (child, output) = spawn_capturing(tokio::process::Command::from(cli.command(&args)))
            .expect("vigil up starts");
        let mut up = Self {
            child,
            http: "127.0.0.1:0".parse().unwrap(),
            grpc,
            cli,
            output,
        };
        up.http = up.announced_http_addr().await;
        up.wait_ready_but_predictor().await;
        up
    }

    /// Everything the child printed so far (stdout and stderr, interleaved by line).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Panics with the child's output if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("vigil up exited ({status}):\n{}", self.output());
        }
    }

    /// The address `vigil up` says it serves metrics on: "vigil is up: ... on http://ADDR".
    async fn announced_http_addr(&mut self) -> SocketAddr {
        let output = self.output.clone();
        eventually(PATIENCE, "vigil up to announce its address", || {
            self.assert_running();
            std::future::ready(announced_http_addr(&output))
        })
        .await
    }

    /// Whether `vigil up` printed a line containing `needle`.
    pub fn printed(&self, needle: &str) -> bool {
        self.output
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Sends SIGINT to `vigil up`, as a Ctrl-C in its terminal would.
    pub fn interrupt(&self) {
        let pid = self.child.id().expect("vigil up is running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -INT {pid} failed");
    }

    /// `kill -9`: the process ends where it is, nothing drains; waits until it is gone.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("vigil up can be killed");
        let _ = self.child.wait().await;
    }

    /// Sends SIGTERM, as `docker stop` or Kubernetes would.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("vigil up is running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits for `vigil up` to exit and returns how it did.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("vigil up did not exit:\n{}", self.output()))
            .expect("waiting for vigil up")
    }

    /// `/readyz` as a user (or Kubernetes) sees it: status and body.
    pub async fn readyz(&self) -> (u16, String) {
        let response = reqwest::get(format!("http://{}/readyz", self.http))
            .await
            .expect("/readyz answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    async fn wait_ready_but_predictor(&mut self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            self.assert_running();
            let (status, body) = self.readyz().await;
            if status == 200 || body.trim() == "not ready: predictor" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "vigil up not ready within {PATIENCE:?}: /readyz {status} {body}\n{}",
                self.output()
            );
            tokio::time::sleep(vigil_testkit::POLL_EVERY).await;
        }
    }
}

/// The domain events of one deployment as a subscriber to `<prefix>.vigil.events.>` sees them,
/// decoded with the published protobuf contract.
pub struct Events {
    subscriber: async_nats::Subscriber,
    seen: Vec<SecurityEvent>,
}

impl Events {
    /// Subscribes before anything is published, so no event is missed.
    pub async fn subscribe(sandbox: &Sandbox) -> Self {
        Self {
            subscriber: sandbox.subscribe(&sandbox.subject("vigil.events.>")).await,
            seen: Vec::new(),
        }
    }

    /// Reads events until one of `event_type` correlated with `signal_id` arrives (or was
    /// already seen) and returns it; panics after [`PATIENCE`], listing what was seen.
    pub async fn wait_for(&mut self, event_type: &str, signal_id: &str) -> SecurityEvent {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(event) = self.find(event_type, signal_id) {
                return event.clone();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let next = tokio::time::timeout(left, self.subscriber.next()).await;
            let Ok(Some(message)) = next else {
                panic!(
                    "no {event_type} event for {signal_id} within {PATIENCE:?}; seen: {:?}",
                    self.summary()
                );
            };
            let wire = v1::SecurityEvent::decode(message.payload).expect("a SecurityEvent");
            self.seen
                .push(SecurityEvent::try_from(wire).expect("a valid SecurityEvent"));
        }
    }

    /// The events seen so far for `signal_id`, by type.
    pub fn types_for(&self, signal_id: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|e| e.correlation_id == signal_id)
            .map(|e| e.event_type.as_str().to_owned())
            .collect()
    }

    fn find(&self, event_type: &str, signal_id: &str) -> Option<&SecurityEvent> {
        self.seen.iter().find(|e| {
            e.event_type.as_str() == event_type
                && (e.correlation_id == signal_id || signal_id.is_empty())
        })
    }

    fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|e| format!("{} {}", e.event_type.as_str(), e.correlation_id))
            .collect()
    }
}
