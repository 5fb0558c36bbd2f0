//! `deploy/nats/vigil-auth.conf`, the documented NATS server configuration, run as it is
//! committed: each test starts a nats-server of its own (TLS with certificates made here,
//! JetStream in a temporary folder, a free port) with that file, the test's passwords and NKeys
//! in the server's environment, and only the listen address, the store folder and the
//! certificate paths rewritten. The shared server on 127.0.0.1:4222 is never reconfigured: the
//! sandbox gives the services their database (and declares its own prefixed streams there,
//! which nothing here uses).
//!
//! It shows that every service runs with its own user and that a signal from a sensor user goes
//! all the way to a workflow row; that a sensor can publish its own signals and nothing else,
//! not even through the reply subject of a signal; that a wrong password or an unknown NKey is
//! refused with an error that does not show it; and that TLS is required (and client
//! certificates checked, with `verify: true`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use vigil_bus::{Bus, StreamKind, TopologyConfig};
use vigil_config::{NatsSettings, Secret};
use vigil_proto::v1;
use vigil_testkit::{
    Sandbox, Service, eventually, free_port, nats_server_bin, stream_messages, stream_subjects,
};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(180);

/// The services, by the user each connects as in the configuration.
const SERVICES: [&str; 6] = [
    "broker",
    "orchestrator",
    "predictor",
    "trainer",
    "feedback",
    "health",
];

/// The configuration file, as committed.
fn committed_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/vigil-auth.conf");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fresh random token (letters and digits; NATS reads a value of digits only as a number).
fn random_token() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// `needle` must be in `text` exactly once: the test rewrites what the file says, and must
/// notice when the file no longer says it.
fn replace_once(text: &mut String, needle: &str, with: &str) {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "deploy/nats/vigil-auth.conf should contain {needle:?} once"
    );
    *text = text.replacen(needle, with, 1);
}

/// The certificates of the TLS tests (testkit's, made fresh by each test), under the file names
/// the committed configuration uses (cert-manager's).
struct Certificates {
    pki: vigil_testkit::tls::TestPki,
}

impl Certificates {
    fn generate() -> Self {
        Self {
            pki: vigil_testkit::tls::TestPki::generate(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        let file = match name {
            "ca.crt" => "ca.pem",
            "tls.crt" => "server.pem",
            "tls.key" => "server.key",
            "client.crt" => "client.pem",
            "client.key" => "client.key",
            other => panic!("no certificate file {other}"),
        };
        self.pki.path(file)
    }
}

/// How a client proves who it is.
#[derive(Clone)]
enum Login {
    Password(&'static str, String),
    Nkey(String),
    Nobody,
}

/// The users' secrets, as the server's environment carries them (public NKeys) and as the
/// clients hold them (passwords, NKey seeds).
struct Secrets {
    passwords: Vec<(&'static str, String)>,
    predictor: nkeys::KeyPair,
    sensor_edr: nkeys::KeyPair,
}

impl Secrets {
    fn generate() -> Self {
        let passwords = [
            "sensor_ids",
            "broker",
            "orchestrator",
            "trainer",
            "feedback",
            "health",
            "operator",
        ]
        .into_iter()
        .map(|user| (user, random_token()))
        .collect();
        Self {
            passwords,
            predictor: nkeys::KeyPair::new_user(),
            sensor_edr: nkeys::KeyPair::new_user(),
        }
    }

    fn password(&self, user: &str) -> String {
        self.passwords
            .iter()
            .find(|(name, _)| *name == user)
            .map(|(_, password)| password.clone())
            .unwrap_or_else(|| panic!("no password user {user}"))
    }

    fn seed(key: &nkeys::KeyPair) -> String {
        key.seed().unwrap()
    }

    /// How `user` (a service, a sensor or the operator) logs in.
    fn login(&self, user: &'static str) -> Login {
        match user {
            "predictor" => Login::Nkey(Self::seed(&self.predictor)),
            "sensor_edr" => Login::Nkey(Self::seed(&self.sensor_edr)),
            user => Login::Password(user, self.password(user)),
        }
    }
}

/// The nats-server child process; killed when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A nats-server running the committed configuration.
struct AuthServer {
    /// Kept for its `Drop`: the server lives as long as this.
    _process: ServerProcess,
    port: u16,
    log: PathBuf,
    certs: Certificates,
    secrets: Secrets,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    /// Starts the server; with `mutual_tls` the file's `# verify: true` is switched on.
    async fn start(mutual_tls: bool) -> Self {
        let certs = Certificates::generate();
        let secrets = Secrets::generate();
        let dir = tempfile::tempdir().unwrap();
        let mut attempt = 0;
        let (process, port, log) = loop {
            attempt += 1;
            let port = free_port();
            let conf = dir.path().join("vigil-auth.conf");
            std::fs::write(&conf, render(port, dir.path(), &certs, mutual_tls)).unwrap();
            let log = dir.path().join(format!("nats-{attempt}.log"));
            let stderr = dir.path().join(format!("stderr-{attempt}.txt"));
            let mut command = Command::new(nats_server_bin());
            command
                .arg("-c")
                .arg(&conf)
                .arg("-l")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap());
            for (user, password) in &secrets.passwords {
                command.env(format!("VIGIL_{}_PASSWORD", user.to_uppercase()), password);
            }
            command
                .env("VIGIL_PREDICTOR_NKEY", secrets.predictor.public_key())
                .env("VIGIL_SENSOR_EDR_NKEY", secrets.sensor_edr.public_key());
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", nats_server_bin().display()));
            let mut process = ServerProcess(child);
            match ready(&mut process, &log, &stderr).await {
                Ok(()) => break (process, port, log),
                // Another process took the port between our look and the server's bind.
                Err(why) if why.contains("address already in use") && attempt < 5 => {}
                Err(why) => panic!("the nats-server did not start: {why}"),
            }
        };
        Self {
            _process: process,
            port,
            log,
            certs,
            secrets,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// What a vigil service or command is configured with to log in as `login`: this server,
    /// no prefix (the file names production's streams), TLS with the test CA.
    fn settings(&self, login: &Login) -> NatsSettings {
        let mut settings = NatsSettings {
            url: self.url(),
            prefix: String::new(),
            ..NatsSettings::default()
        };
        settings.tls.required = true;
        settings.tls.ca_file = Some(self.certs.path("ca.crt"));
        match login {
            Login::Password(user, password) => {
                settings.user = Some((*user).to_owned());
                settings.password = Some(Secret::new(password.clone()));
                settings.client_name = Some(format!("e2e-{user}"));
                // A service reads replies on its own inbox only; the operator may read any.
                if *user != "operator" {
                    settings.inbox_prefix = format!("_INBOX_{user}");
                }
            }
            Login::Nkey(seed) => settings.nkey_seed = Some(Secret::new(seed.clone())),
            Login::Nobody => {}
        }
        settings
    }

    /// The operator's bus, with the topology declared.
    async fn operator(&self) -> Bus {
        let settings = self.settings(&self.secrets.login("operator"));
        let bus = Bus::connect(&settings, TopologyConfig::default())
            .await
            .unwrap_or_else(|e| panic!("the operator cannot connect: {e}"));
        bus.declare().await.unwrap();
        bus
    }

    /// The lines of the server's log that report a permissions violation.
    fn violations(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("Violation"))
            .map(str::to_owned)
            .collect()
    }
}

/// Waits for the log to say the server is ready, or for the server to exit.
async fn ready(process: &mut ServerProcess, log: &Path, stderr: &Path) -> Result<(), String> {
    let waiting = async {
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("Server is ready") {
                return Ok(());
            }
            if let Ok(Some(status)) = process.0.try_wait() {
                let stderr = std::fs::read_to_string(stderr).unwrap_or_default();
                return Err(format!("it exited ({status}): {stderr}{text}"));
            }
            tokio::time::sleep(vigil_testkit::POLL_EVERY).await;
        }
    };
    tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap_or_else(|_| Err(format!("not ready within {PATIENCE:?}")))
}

/// The committed file with this server's port, store folder and certificate paths (and client
/// certificates required, with `mutual_tls`); nothing else changes.
fn render(port: u16, dir: &Path, certs: &Certificates, mutual_tls: bool) -> String {
    let mut text = committed_config();
    replace_once(
        &mut text,
        "listen: 0.0.0.0:4222",
        &format!("listen: 127.0.0.1:{port}"),
    );
    let store = dir.join("jetstream");
    replace_once(
        &mut text,
        "store_dir: /data/jetstream",
        &format!("store_dir: {:?}", store.display().to_string()),
    );
    assert_eq!(
        text.matches("\"/etc/nats/tls/").count(),
        3,
        "deploy/nats/vigil-auth.conf names three TLS files under /etc/nats/tls/"
    );
    for name in ["tls.crt", "tls.key", "ca.crt"] {
        replace_once(
            &mut text,
            &format!("\"/etc/nats/tls/{name}\""),
            &format!("{:?}", certs.path(name).display().to_string()),
        );
    }
    if mutual_tls {
        replace_once(&mut text, "# verify: true", "verify: true");
    }
    text
}

/// A sensor as NATS sees it, or a service's credentials in other hands: any client (not
/// vigil's) logged in as a user of the file, with the inbox prefix that user may subscribe to
/// (`_INBOX_<user>`), reporting the errors the server sends it.
struct SensorClient {
    client: async_nats::Client,
    errors: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl SensorClient {
    async fn connect(server: &AuthServer, user: &'static str) -> Self {
        let (sender, errors) = mpsc::unbounded_channel();
        let options = async_nats::ConnectOptions::new()
            .add_root_certificates(server.certs.path("ca.crt"))
            .require_tls(true)
            .custom_inbox_prefix(format!("_INBOX_{user}"))
            .event_callback(move |event| {
                let sender = sender.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        let _ = sender.send(error.to_string());
                    }
                }
            });
        let options = match server.secrets.login(user) {
            Login::Password(user, password) => options.user_and_password(user.into(), password),
            Login::Nkey(seed) => options.nkey(seed),
            Login::Nobody => options,
        };
        let client = options
            .connect(server.url())
            .await
            .unwrap_or_else(|e| panic!("sensor {user} cannot connect: {e}"));
        Self {
            client,
            errors,
            seen: Vec::new(),
        }
    }

    /// Publishes `signal` on `subject` through JetStream and waits for the stream to store it.
    async fn publish_signal(&self, subject: &str, signal: &v1::ThreatSignal) {
        async_nats::jetstream::new(self.client.clone())
            .publish(subject.to_owned(), signal.encode_to_vec().into())
            .await
            .unwrap_or_else(|e| panic!("publishing on {subject}: {e}"))
            .await
            .unwrap_or_else(|e| panic!("no acknowledgement on {subject}: {e}"));
    }

    /// Waits for the server's permissions violation for `action` ("publish" or
    /// "subscription") on `subject`.
    async fn refused(&mut self, action: &str, subject: &str) {
        let wanted = format!("permissions violation for {action} to \"{subject}\"").to_lowercase();
        let matches = |error: &String| error.to_lowercase().contains(&wanted);
        if let Some(at) = self.seen.iter().position(matches) {
            self.seen.remove(at);
            return;
        }
        let waiting = async {
            while let Some(error) = self.errors.recv().await {
                if matches(&error) {
                    return;
                }
                self.seen.push(error);
            }
            panic!("the connection ended before the server refused {action} on {subject}");
        };
        if tokio::time::timeout(PATIENCE, waiting).await.is_err() {
            panic!(
                "the server did not refuse {action} on {subject}; it said {:?}",
                self.seen
            );
        }
    }
}

fn signal(id: &str, sensor: &str) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id: id.into(),
        threat_type: "port_scan".into(),
        source_ip: "198.51.100.7".into(),
        destination_ip: "192.0.2.10".into(),
        destination_port: 22,
        protocol: "tcp".into(),
        confidence: 0.8,
        severity: v1::Severity::Medium as i32,
        sensor: sensor.into(),
        timestamp: Some(chrono::Utc::now().into()),
        ..Default::default()
    }
}

/// The whole chain of `error`'s messages.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_runs_with_its_own_user_and_a_sensor_signal_becomes_a_workflow() {
    let server = AuthServer::start(false).await;
    // The sandbox's database; its NATS settings are replaced by each service's own.
    let sandbox = Sandbox::with(&[
        "health.heartbeat_interval_ms=250",
        "trainer.schedule=\"0 0 0 1 1 *\"",
    ])
    .await;
    let operator = server.operator().await;
    let mut heartbeats = operator
        .client()
        .subscribe("vigil.health.heartbeat.>")
        .await
        .unwrap();
    operator.client().flush().await.unwrap();

    let spawn = |user: &'static str| -> Service {
        let mut config = sandbox.config().clone();
        config.nats = server.settings(&server.secrets.login(user));
        match user {
            "broker" => sandbox.spawn_with_config(user, config, vigil_broker::run_in),
            "orchestrator" => sandbox.spawn_with_config(user, config, vigil_orchestrator::run_in),
            "predictor" => sandbox.spawn_with_config(user, config, vigil_predictor::run_in),
            "trainer" => sandbox.spawn_with_config(user, config, vigil_trainer::run_in),
            "feedback" => sandbox.spawn_with_config(user, config, vigil_feedback::run_in),
            "health" => sandbox.spawn_with_config(user, config, vigil_health::run_in),
            other => unreachable!("no service {other}"),
        }
    };
    let mut services: Vec<Service> = SERVICES.into_iter().map(spawn).collect();
    for service in &mut services {
        // The predictor is ready once it serves a model, and there is none: its heartbeats
        // below show it runs.
        if service.name() != "predictor" {
            service.ready(PATIENCE).await;
        }
    }
    // Every service's heartbeats arrive, each on its own subject.
    let mut beating = BTreeSet::new();
    let waiting = async {
        while beating.len() < SERVICES.len() {
            let beat = heartbeats.next().await.expect("the heartbeat subscription");
            let service = beat
                .subject
                .split('.')
                .nth(3)
                .unwrap_or_default()
                .to_owned();
            beating.insert(service);
        }
    };
    tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap_or_else(|_| panic!("heartbeats within {PATIENCE:?} only from {beating:?}"));

    // A password sensor and an NKey sensor each send a signal; each becomes a workflow.
    let ids = SensorClient::connect(&server, "sensor_ids").await;
    let edr = SensorClient::connect(&server, "sensor_edr").await;
    ids.publish_signal("vigil.ingest.ids", &signal("auth-ids-1", "ids"))
        .await;
    edr.publish_signal("vigil.ingest.edr", &signal("auth-edr-1", "edr"))
        .await;
    eventually(PATIENCE, "a workflow per signal", || async {
        let done = sandbox.count("SELECT count(*) FROM workflows").await;
        if done == 2 { Ok(()) } else { Err(done) }
    })
    .await;
    let events = stream_subjects(&operator, StreamKind::Events).await;
    assert!(
        events
            .iter()
            .any(|s| s == "vigil.events.workflow_completed")
            && events.iter().any(|s| s == "vigil.events.threat_detected"),
        "{events:?}"
    );

    // The operator changes a live key; the services follow the bucket with their own users
    // (all but the predictor, which has no live key and no JetStream permission).
    let following = || services.iter().filter(|s| s.name() != "predictor");
    let bucket = operator.config_bucket().await.unwrap();
    bucket.put("thresholds.high", "6.5").await.unwrap();
    let applied = tokio::time::timeout(PATIENCE, async {
        while !following().all(|s| s.ctx().live.get().thresholds.high == 6.5) {
            tokio::time::sleep(vigil_testkit::POLL_EVERY).await;
        }
    })
    .await;
    assert!(
        applied.is_ok(),
        "not every service applied thresholds.high within {PATIENCE:?}: {:?}; the server refused {:?}",
        following()
            .map(|s| (s.name(), s.ctx().live.get().thresholds.high))
            .collect::<Vec<_>>(),
        server.violations()
    );

    // The feedback service's user may ask the trainer for a run, and the trainer answers it
    // (there is nothing to train on: the run fails, saying so).
    let feedback = vigil_bus::connect(&server.settings(&server.secrets.login("feedback")))
        .await
        .unwrap();
    let request = vigil_trainer::RunRequest {
        requested_by: "e2e".into(),
        reason: "nats auth".into(),
    };
    let reply = feedback
        .send_request(
            "vigil.trainer.run",
            async_nats::Request::new()
                .payload(serde_json::to_vec(&request).unwrap().into())
                .timeout(Some(PATIENCE)),
        )
        .await
        .unwrap();
    let report: vigil_trainer::RunReport = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        report.outcome,
        vigil_trainer::RunOutcome::Failed,
        "{report:?}"
    );
    // The health service answers the operator's status request.
    let status = operator
        .client()
        .request("vigil.health.status", "{}".into())
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.payload).unwrap();
    for service in SERVICES {
        assert!(
            status["components"][service]["alive"].as_u64() == Some(1),
            "{service}: {status}"
        );
    }

    for service in services {
        service.stop().await;
    }
    // Not one operation of any service was refused: the file gives each what it needs.
    assert_eq!(server.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensor_can_publish_its_own_signals_and_nothing_else() {
    let server = AuthServer::start(false).await;
    let operator = server.operator().await;
    // Whatever reaches vigil's subjects of a run request, a work lane or an event, the
    // operator sees here.
    let mut watched = operator.client().subscribe(">").await.unwrap();
    operator.client().flush().await.unwrap();

    let mut ids = SensorClient::connect(&server, "sensor_ids").await;
    for subject in [
        "vigil.trainer.run",
        "vigil.ingest.edr",
        "vigil.events.workflow_completed",
        "vigil.work.critical",
        "vigil.dlq.VIGIL_INGEST",
        "vigil.feedback.submit",
        "$KV.vigil_config.thresholds.high",
        "$JS.API.STREAM.PURGE.VIGIL_INGEST",
    ] {
        ids.client
            .publish(subject.to_owned(), "{}".into())
            .await
            .unwrap();
        ids.refused("publish", subject).await;
    }
    for subject in ["_INBOX.>", "vigil.events.>", "vigil.ingest.>", ">"] {
        // The client sends the subscription; the server refuses it.
        let _refused = ids.client.subscribe(subject.to_owned()).await.unwrap();
        ids.refused("subscription", subject).await;
    }
    // Its own subject with somebody else's subject as the reply: JetStream acknowledges to the
    // sensors' account, never onto vigil's subjects.
    for reply in [
        "vigil.trainer.run",
        "vigil.work.critical",
        "vigil.events.model_promoted",
    ] {
        ids.client
            .publish_with_reply(
                "vigil.ingest.ids".to_owned(),
                reply.to_owned(),
                signal("auth-reply-1", "ids").encode_to_vec().into(),
            )
            .await
            .unwrap();
    }
    // The NKey sensor is held to its own subject too.
    let mut edr = SensorClient::connect(&server, "sensor_edr").await;
    edr.client
        .publish("vigil.ingest.ids".to_owned(), "{}".into())
        .await
        .unwrap();
    edr.refused("publish", "vigil.ingest.ids").await;

    // What each may publish is stored: the server handled everything sent before.
    ids.publish_signal("vigil.ingest.ids", &signal("auth-ids-2", "ids"))
        .await;
    edr.publish_signal("vigil.ingest.edr", &signal("auth-edr-2", "edr"))
        .await;
    let ingest = stream_subjects(&operator, StreamKind::Ingest).await;
    assert_eq!(
        ingest,
        [
            "vigil.ingest.ids",
            "vigil.ingest.ids",
            "vigil.ingest.ids",
            "vigil.ingest.ids",
            "vigil.ingest.edr"
        ],
        "the three signals with borrowed replies, and one from each sensor"
    );
    for kind in [StreamKind::Work, StreamKind::Events, StreamKind::DeadLetter] {
        assert_eq!(stream_messages(&operator, kind).await, 0, "{kind}");
    }
    let bucket = operator.config_bucket().await.unwrap();
    assert!(bucket.keys().await.unwrap().is_empty());
    // The operator's connection saw only the signals on the ingest subjects (the server
    // handles its round trip after everything above): no run request, work or event.
    operator.client().flush().await.unwrap();
    let mut subjects = Vec::new();
    while let Some(Some(message)) = watched.next().now_or_never() {
        subjects.push(message.subject.to_string());
    }
    // JetStream's own traffic (API, advisories, acknowledgements) aside, only the signals.
    let vigils: Vec<&String> = subjects
        .iter()
        .filter(|s| s.starts_with("vigil.") || s.starts_with("$KV."))
        .collect();
    assert_eq!(
        vigils,
        [
            "vigil.ingest.ids",
            "vigil.ingest.ids",
            "vigil.ingest.ids",
            "vigil.ingest.ids",
            "vigil.ingest.edr"
        ],
        "{subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_cannot_read_the_replies_sent_to_another() {
    let server = AuthServer::start(false).await;
    // Any client logged in as the broker, with the broker's inbox prefix.
    let mut broker = SensorClient::connect(&server, "broker").await;
    // `_INBOX.>` is where every service's replies went when they shared the default prefix.
    for subject in [
        "_INBOX.>",
        "_INBOX_trainer.>",
        "_INBOX_feedback.>",
        "_INBOX_sensor_ids.>",
    ] {
        let _refused = broker.client.subscribe(subject.to_owned()).await.unwrap();
        broker.refused("subscription", subject).await;
    }
    // Its own inbox works: JetStream answers the broker's request there.
    let info = broker
        .client
        .request("$JS.API.INFO", "".into())
        .await
        .unwrap_or_else(|e| panic!("the broker's own inbox: {e}"));
    assert!(
        String::from_utf8_lossy(&info.payload).contains("account_info"),
        "{:?}",
        info.payload
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_an_unknown_nkey_is_refused_without_showing_it() {
    let server = AuthServer::start(false).await;
    let wrong = random_token();
    let stranger = nkeys::KeyPair::new_user();
    let stranger_seed = stranger.seed().unwrap();
    let attempts = [
        ("a wrong password", Login::Password("broker", wrong.clone())),
        (
            "another user's password",
            Login::Password("broker", server.secrets.password("operator")),
        ),
        ("an unknown NKey", Login::Nkey(stranger_seed.clone())),
        ("no user", Login::Nobody),
    ];
    for (what, login) in attempts {
        let error = vigil_bus::connect(&server.settings(&login))
            .await
            .map(|_| ())
            .expect_err(what);
        let text = chain(&error);
        assert!(
            text.to_lowercase().contains("authorization violation") && text.contains(&server.url()),
            "{what}: {text}"
        );
        for secret in [&wrong, &stranger_seed, &server.secrets.password("operator")] {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a secret: {text}"
            );
        }
    }
    // The right ones get in.
    for user in ["broker", "predictor"] {
        vigil_bus::connect(&server.settings(&server.secrets.login(user)))
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_required_and_the_server_is_checked_against_the_ca() {
    let server = AuthServer::start(false).await;
    let broker = server.secrets.login("broker");
    // The CA: in.
    vigil_bus::connect(&server.settings(&broker)).await.unwrap();

    // Without the CA the server's certificate is not trusted.
    let mut untrusting = server.settings(&broker);
    untrusting.tls.ca_file = None;
    let error = vigil_bus::connect(&untrusting)
        .await
        .map(|_| ())
        .expect_err("an unknown CA");
    let text = chain(&error).to_lowercase();
    assert!(
        text.contains("tls") || text.contains("certificate"),
        "{text}"
    );

    // A plaintext client: the server announces TLS, and a CONNECT in the clear gets no answer
    // but the end of the connection.
    let password = server.secrets.password("broker");
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received.ends_with(b"\r\n") {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the server closed before its INFO");
        received.extend_from_slice(&buffer[..n]);
    }
    let info = String::from_utf8_lossy(&received).into_owned();
    assert!(info.contains("\"tls_required\":true"), "{info}");
    let connect = format!(
        "CONNECT {{\"user\":\"broker\",\"pass\":\"{password}\",\"verbose\":false}}\r\nPING\r\n"
    );
    // The server may already have closed by the time the write completes.
    let _ = socket.write_all(connect.as_bytes()).await;
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept a plaintext client");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("PONG"),
        "a plaintext client was served: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_verify_a_client_needs_a_certificate_signed_by_the_ca() {
    let server = AuthServer::start(true).await;
    let broker = server.secrets.login("broker");
    let error = vigil_bus::connect(&server.settings(&broker))
        .await
        .map(|_| ())
        .expect_err("no client certificate");
    let text = chain(&error);
    assert!(!text.contains(&server.secrets.password("broker")), "{text}");

    let mut settings = server.settings(&broker);
    settings.tls.cert_file = Some(server.certs.path("client.crt"));
    settings.tls.key_file = Some(server.certs.path("client.key"));
    let client = vigil_bus::connect(&settings).await.unwrap();
    client.flush().await.unwrap();
    // The certificate does not replace the user: a wrong password is still refused.
    settings.password = Some(Secret::new(random_token()));
    let error = vigil_bus::connect(&settings)
        .await
        .map(|_| ())
        .expect_err("a wrong password with a good certificate");
    assert!(
        chain(&error)
            .to_lowercase()
            .contains("authorization violation"),
        "{}",
        chain(&error)
    );
}
