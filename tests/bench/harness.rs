//! What the system benchmarks share: a vigil deployment run as a user runs it (the `vigil`
//! binary under test as child processes, against this machine's NATS and a fresh PostgreSQL
//! database), the signals a sensor sends, and the completions a subscriber sees.
//!
//! The binary is `BENCH_VIGIL` when set (another build, such as the baseline commit of
//! `bench/events/compare.sh`), else the `vigil` of this build. Only settings and behaviour both
//! sides have are used (`--set`, `VIGIL_*` variables, the "vigil is up" line, `/readyz`, the
//! events on the bus), so one driver measures two commits alike.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message;
use vigil_proto::v1;
use vigil_testkit::{EffectReceiver, TestDatabase};

/// Reads a number from the environment, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The binary under test.
pub fn vigil() -> PathBuf {
    std::env::var_os("BENCH_VIGIL")
        .map(PathBuf::from)
        .unwrap_or_else(vigil_testkit::vigil_bin)
}

/// The NSL-KDD directory (`shared/data/nsl-kdd` beside the checkout).
pub fn nsl_kdd_dir() -> PathBuf {
    vigil_testkit::nsl_kdd::data_dir()
}

/// The production model: `BENCH_MODEL` when set, else one trained now by the binary under test
/// on KDDTrain+ with the default training configuration, as `vigil train` gives a user.
pub async fn production_model(dir: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("BENCH_MODEL") {
        return PathBuf::from(path);
    }
    let out = dir.join("model.vigil");
    let data = nsl_kdd_dir().join("KDDTrain+.txt");
    eprintln!("training the production model on {} ...", data.display());
    let started = Instant::now();
    let status = tokio::process::Command::new(vigil())
        .args(["train", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .status()
        .await
        .expect("vigil train runs");
    assert!(status.success(), "vigil train failed ({status})");
    eprintln!("trained in {:.0} s", started.elapsed().as_secs_f64());
    out
}

/// Signal `i` of a run: the four severities, three threat types, four ports, a source address
/// of its own (a documentation range, so never a protected one) and traffic counts, so that
/// the predictor scores something different each time.
pub fn signal(i: u64, run: &str) -> v1::ThreatSignal {
    let severities = [
        v1::Severity::Low,
        v1::Severity::Medium,
        v1::Severity::High,
        v1::Severity::Critical,
    ];
    v1::ThreatSignal {
        id: format!("{run}-{i}"),
        threat_type: ["port_scan", "brute_force", "suspicious_traffic"][(i % 3) as usize].into(),
        source_ip: format!("198.51.{}.{}", (i / 250) % 250, i % 250 + 1),
        destination_ip: "192.0.2.10".into(),
        destination_port: [22, 443, 3389, 8080][(i % 4) as usize],
        protocol: "tcp".into(),
        confidence: 0.3 + (i % 7) as f64 / 10.0,
        severity: severities[(i % 4) as usize] as i32,
        sensor: "bench".into(),
        timestamp: Some(chrono::Utc::now().into()),
        bytes: 1000 + i % 5000,
        packets: 10 + i % 50,
        ..Default::default()
    }
}

/// The `p`th percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// One `vigil up` child process.
pub struct Process {
    pub name: String,
    child: tokio::process::Child,
    /// Where its `/metrics` and `/readyz` answer.
    pub http: SocketAddr,
    output: vigil_testkit::CapturedOutput,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Resident memory (`VmRSS`), in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    /// CPU time (user + system) the process has used, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        (ticks(11) + ticks(12)) / 100.0
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.output());
        }
    }

    /// SIGINT, as Ctrl-C, then waits for the exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
        }
    }
}

/// A deployment of the binary under test: its own stream prefix and database, the production
/// model in the predictor, high and critical alerts routed to a loopback webhook receiver, every
/// other setting at its default (remediation cap, executor, pool sizes, batch sizes).
pub struct Deployment {
    pub prefix: String,
    pub nats: async_nats::Client,
    pub alerts: EffectReceiver,
    pub processes: Vec<Process>,
    db: TestDatabase,
    sets: Vec<String>,
    env: Vec<(String, String)>,
}

impl Deployment {
    /// The settings: `model` served by the predictor, alerts to the receiver.
    pub async fn new(model: &Path) -> Self {
        let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let nats_url = vigil_testkit::nats_url();
        let nats = async_nats::connect(&nats_url)
            .await
            .expect("NATS is reachable");
        // Empty: the binary under test applies its own migrations.
        let db = TestDatabase::empty().await.expect("a benchmark database");
        let alerts = EffectReceiver::alert_webhook().await;
        let sets = vec![
            "telemetry.http_addr=\"127.0.0.1:0\"".to_string(),
            "telemetry.log_filter=\"warn\"".to_string(),
            format!("predictor.model_file=\"{}\"", model.display()),
            format!("soar.channels.webhook.url=\"{}\"", alerts.url("/hook")),
            // Outgoing webhooks are signed; a receiver checks the signature with this secret.
            "soar.channels.webhook.secret=\"bench-signing-secret-0123\"".to_string(),
            "soar.routing.rules.critical=[\"webhook\"]".to_string(),
            "soar.routing.rules.high=[\"webhook\"]".to_string(),
            // Every high and critical signal is delivered: the benchmark measures the delivery
            // path, not its suppression.
            "soar.routing.rate_limits.webhook.per_minute=0".to_string(),
            "soar.routing.rate_limits.webhook.burst=0".to_string(),
            // The trainer runs only when asked (never, here).
            "trainer.schedule=\"0 0 0 1 1 *\"".to_string(),
            "trainer.min_new_examples=1000000000".to_string(),
        ];
        let env = vec![
            ("VIGIL_NATS__URL".to_string(), nats_url),
            ("VIGIL_NATS__PREFIX".to_string(), prefix.clone()),
            ("VIGIL_DATABASE__URL".to_string(), db.url().to_string()),
        ];
        Self {
            prefix,
            nats,
            alerts,
            processes: Vec::new(),
            db,
            sets,
            env,
        }
    }

    /// `subject` under this deployment's prefix.
    pub fn subject(&self, subject: &str) -> String {
        format!("{}.{subject}", self.prefix)
    }

    /// Starts `vigil up` (`only` empty) or `vigil up --only <only>` with `extra` settings and
    /// waits until its `/readyz` says ready.
    pub async fn start(&mut self, name: &str, only: &[&str], extra: &[String]) {
        let mut cmd = tokio::process::Command::new(vigil());
        cmd.arg("up");
        if !only.is_empty() {
            cmd.args(["--only", &only.join(",")]);
        }
        for set in self.sets.iter().chain(extra) {
            cmd.args(["--set", set]);
        }
        cmd.env_remove("RUST_LOG")
            .env_remove("VIGIL_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let (child, output) = vigil_testkit::spawn_capturing(cmd).expect("vigil up starts");
        let mut process = Process {
            name: name.to_string(),
            child,
            http: "127.0.0.1:0".parse().unwrap(),
            output,
        };
        let deadline = Instant::now() + Duration::from_secs(300);
        process.http = loop {
            process.assert_running();
            if let Some(addr) = vigil_testkit::announced_http_addr(&process.output) {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not start:\n{}",
                process.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        loop {
            process.assert_running();
            let ready = reqwest::get(format!("http://{}/readyz", process.http))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready:\n{}",
                process.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.processes.push(process);
    }

    /// Stops every process (Ctrl-C), then removes the streams; the database goes when dropped.
    pub async fn stop(mut self) {
        for process in self.processes.drain(..).rev() {
            process.stop().await;
        }
        let js = async_nats::jetstream::new(self.nats.clone());
        let mut names = js.stream_names();
        let mut ours = Vec::new();
        while let Some(Ok(name)) = names.next().await {
            // The streams, and the config bucket's (`KV_<prefix>_vigil_config`).
            if name.starts_with(&self.prefix) || name.starts_with(&format!("KV_{}_", self.prefix)) {
                ours.push(name);
            }
        }
        for name in ours {
            let _ = js.delete_stream(&name).await;
        }
        // `BENCH_KEEP_DB=1` keeps the database to look into (each workflow's steps and their
        // durations); the next test run's clean-up removes it.
        if std::env::var_os("BENCH_KEEP_DB").is_some() {
            println!("kept database {}", self.db.name());
            std::mem::forget(self.db);
        }
    }
}

/// When each workflow completed, by signal id, as a subscriber to WORKFLOW_COMPLETED sees it.
#[derive(Clone, Default)]
pub struct Completions(Arc<Mutex<HashMap<String, Instant>>>);

impl Completions {
    /// Subscribes to WORKFLOW_COMPLETED before anything is published.
    pub async fn watch(deployment: &Deployment) -> Self {
        Self::watch_event(deployment, "workflow_completed").await
    }

    /// When each signal's `event` (`threat_detected`: the broker queued it) was seen.
    pub async fn watch_event(deployment: &Deployment, event: &str) -> Self {
        let done = Self::default();
        let subject = deployment.subject(&format!("vigil.events.{event}"));
        let mut sub = deployment.nats.subscribe(subject).await.unwrap();
        let sink = done.0.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                if let Ok(event) = v1::SecurityEvent::decode(msg.payload) {
                    sink.lock()
                        .unwrap()
                        .entry(event.correlation_id)
                        .or_insert_with(Instant::now);
                }
            }
        });
        deployment.nats.flush().await.unwrap();
        done
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    pub fn at(&self, id: &str) -> Option<Instant> {
        self.0.lock().unwrap().get(id).copied()
    }

    /// Waits until `n` completed or `timeout` passed; whether all did.
    pub async fn wait(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// Publishes signals to `vigil.ingest.bench` through JetStream, with `Nats-Msg-Id` = id, at
/// most `in_flight` unacknowledged; a refusal for a full backlog is waited out, as a sensor
/// would. Returns when every publish is acknowledged.
pub struct Sensor {
    js: async_nats::jetstream::Context,
    subject: String,
}

impl Sensor {
    pub fn new(deployment: &Deployment) -> Self {
        Self {
            js: async_nats::jetstream::new(deployment.nats.clone()),
            subject: deployment.subject("vigil.ingest.bench"),
        }
    }

    /// Publishes one signal and waits for the stream to store it.
    pub async fn send(&self, signal: &v1::ThreatSignal) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", signal.id.as_str());
        headers.insert("Content-Type", "application/protobuf");
        let payload: bytes::Bytes = signal.encode_to_vec().into();
        let mut pause = Duration::from_millis(20);
        loop {
            let stored = match self
                .js
                .publish_with_headers(self.subject.clone(), headers.clone(), payload.clone())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match stored {
                Ok(()) => return,
                Err(error) if error.contains("maximum messages") => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(error) => panic!("publishing {} failed: {error}", signal.id),
            }
        }
    }
}

impl Sensor {
    /// Signals `0..total` of `run`, signal i due at i / `rate` seconds (open loop: a slow
    /// system does not slow the sensor), at most 512 awaiting their acknowledgement.
    /// `on_send` sees each signal as it goes out; `on_stored` counts each one stored.
    pub async fn paced(
        &self,
        run: &str,
        total: u64,
        rate: u64,
        mut on_send: impl FnMut(&v1::ThreatSignal),
        on_stored: impl Fn() + Clone,
    ) {
        let started = Instant::now();
        let mut pending = futures::stream::FuturesUnordered::new();
        for i in 0..total {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            while let Some(Some(())) = futures::FutureExt::now_or_never(pending.next()) {}
            while pending.len() >= 512 {
                pending.next().await;
            }
            let s = signal(i, run);
            on_send(&s);
            let on_stored = on_stored.clone();
            pending.push(async move {
                self.send(&s).await;
                on_stored();
            });
        }
        while pending.next().await.is_some() {}
    }
}
