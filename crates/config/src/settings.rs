use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::{Secret, redact_url_password};

/// How to reach NATS, and the namespace vigil's streams and subjects live in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// One or more server URLs, comma-separated.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// NKey seed (`SU...`), for NKey authentication.
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (JWT + NKey seed).
    pub creds_file: Option<PathBuf>,
    pub tls: TlsSettings,
    /// Prepended to every stream, consumer, subject and bucket name; empty in production,
    /// random in tests so that they do not collide.
    pub prefix: String,
    /// Name this connection reports to the server.
    pub client_name: Option<String>,
    /// The subjects this connection receives replies on (`<prefix>.>`); give each service its
    /// own (`_INBOX_broker`), with a server user allowed only that, so that one service cannot
    /// read the replies another receives.
    pub inbox_prefix: String,
    pub connect_timeout_ms: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls: TlsSettings::default(),
            prefix: String::new(),
            client_name: None,
            inbox_prefix: "_INBOX".into(),
            connect_timeout_ms: 5_000,
        }
    }
}

/// TLS towards NATS.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Refuse a plaintext connection.
    pub required: bool,
    /// CA bundle (PEM) to verify the server with.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub key_file: Option<PathBuf>,
}

/// How to reach PostgreSQL.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/vigil".into(),
            max_connections: 10,
            acquire_timeout_ms: 5_000,
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

impl Serialize for DatabaseSettings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("DatabaseSettings", 3)?;
        s.serialize_field("url", &redact_url_password(&self.url))?;
        s.serialize_field("max_connections", &self.max_connections)?;
        s.serialize_field("acquire_timeout_ms", &self.acquire_timeout_ms)?;
        s.end()
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logs, traces and the HTTP endpoint for `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,vigil_bus=debug`; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; port 0 picks a free one.
    pub http_addr: String,
    /// OTLP/gRPC endpoint for traces; `OTEL_EXPORTER_OTLP_ENDPOINT` is used when unset.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Human,
            log_filter: "info".into(),
            http_addr: "127.0.0.1:9464".into(),
            otlp_endpoint: None,
        }
    }
}

/// JetStream stream and consumer limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Window in which two signals with one fingerprint count as one (seconds).
    pub dedup_window_secs: u64,
    /// Most messages VIGIL_WORK holds before it refuses new ones (backpressure).
    pub work_max_messages: i64,
    /// Most signals waiting in VIGIL_INGEST per ingest subject (one per sensor in the
    /// documented server configuration); beyond it that subject's publishes are refused
    /// (backpressure to the flooding sensor), so a flood from one sensor cannot queue
    /// unboundedly ahead of the others.
    pub ingest_max_per_subject: i64,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliver: i64,
    /// How long a consumer has to ack before redelivery (seconds).
    pub ack_wait_secs: u64,
    /// How long domain events are kept in VIGIL_EVENTS (days).
    pub events_max_age_days: u64,
    /// Copies a JetStream cluster keeps of every stream and of the config bucket: 1 on a
    /// single server, 3 on a three-node cluster (losing one node then loses nothing). At most 5.
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            dedup_window_secs: 300,
            work_max_messages: 10_000,
            ingest_max_per_subject: 100_000,
            max_deliver: 5,
            ack_wait_secs: 30,
            events_max_age_days: 7,
            replicas: 1,
        }
    }
}

/// The broker: ingest -> validated, deduplicated, prioritised work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// Signal fields the content fingerprint covers when the sensor sets no id; empty means
    /// every field except the receive-time ones.
    pub fingerprint_fields: Vec<String>,
    /// How long to wait before retrying input when VIGIL_WORK is full (milliseconds).
    pub backpressure_delay_ms: u64,
    /// Messages pulled per fetch.
    pub batch_size: usize,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            fingerprint_fields: Vec::new(),
            backpressure_delay_ms: 1_000,
            batch_size: 256,
        }
    }
}

/// The orchestrator: one workflow per threat signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorSettings {
    /// Workflows in flight at once.
    pub max_workflows: usize,
    /// gRPC address of the predictor (`http://127.0.0.1:50051`); no ML step when unset.
    pub predictor_url: Option<String>,
    /// Deadline of the predict step; past it the step is skipped (milliseconds).
    pub predict_timeout_ms: u64,
    /// Most finished workflows committed to PostgreSQL in one transaction (group commit).
    pub commit_batch_max: usize,
    /// Group-commit transactions in flight at once.
    pub commit_concurrency: usize,
    /// TLS towards the predictor (with an `https://` `predictor_url`).
    pub predictor_tls: GrpcClientTlsSettings,
}

impl Default for OrchestratorSettings {
    fn default() -> Self {
        Self {
            max_workflows: 256,
            predictor_url: None,
            predict_timeout_ms: 50,
            commit_batch_max: 256,
            commit_concurrency: 2,
            predictor_tls: GrpcClientTlsSettings::default(),
        }
    }
}

/// The gRPC predictor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorSettings {
    /// Where the gRPC server listens; port 0 picks a free one.
    pub grpc_addr: String,
    /// The model name of the Open Inference Protocol endpoints.
    pub model_name: String,
    /// A model artifact file (written by `vigil train`) to serve while the registry has no
    /// production ensemble; the registry's production version replaces it once there is one.
    pub model_file: Option<PathBuf>,
    /// How often (seconds) the predictor checks the registry for a production version it
    /// missed (e.g. a `model_promoted` event sent while it was disconnected); 0 disables.
    pub refresh_secs: u64,
    /// The model abstains (answers without a usable score, saying why) when a signal carries
    /// less than this share (0-1) of the model's inputs: a model trained on flow records has
    /// little to say about a signal that carries none of their counters. 0 never abstains.
    pub min_coverage: f64,
    /// TLS, and optionally mutual TLS, of the gRPC server; plaintext when no certificate is set.
    pub tls: GrpcServerTlsSettings,
}

/// TLS of a gRPC server (the predictor's): its certificate and key, and the CA whose
/// certificates clients must present when mutual TLS is wanted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcServerTlsSettings {
    /// The server's certificate chain (PEM), leaf first; serving TLS needs it and `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM); when set, a client must present a certificate they signed
    /// (mutual TLS) or its connection is refused.
    pub client_ca_file: Option<PathBuf>,
}

impl GrpcServerTlsSettings {
    /// Whether the server serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some() || self.client_ca_file.is_some()
    }
}

/// TLS of a gRPC client (towards the predictor).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcClientTlsSettings {
    /// CA certificates (PEM) that verify the server; the system's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// The client's certificate chain (PEM), for a server that asks for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// The client's private key (PEM), with `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when not the URL's host (e.g. the URL
    /// holds an IP address and the certificate a DNS name).
    pub domain_name: Option<String>,
}

impl GrpcClientTlsSettings {
    /// Whether anything is set (which asks for TLS).
    pub fn enabled(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.domain_name.is_some()
    }
}

impl Default for PredictorSettings {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50051".into(),
            model_name: "vigil-threat".into(),
            model_file: None,
            refresh_secs: 60,
            min_coverage: vigil_domain::PredictionResult::DEFAULT_MIN_COVERAGE,
            tls: GrpcServerTlsSettings::default(),
        }
    }
}

/// The trainer: when to retrain and when to promote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerSettings {
    /// Cron expression (sec min hour day month weekday) for scheduled runs.
    pub schedule: String,
    /// New labelled examples that trigger a run before the schedule does.
    pub min_new_examples: u64,
    /// How much better (F1 on the held-out split) a new ensemble must be to reach production;
    /// or, when it makes fewer errors than production on the analysts' verdicts held out, how
    /// much worse it may be.
    pub promotion_margin: f64,
    /// Seed of the data split and the learners, so runs are reproducible.
    pub seed: u64,
    /// How often (seconds) the trainer counts the labelled examples that arrived since its last
    /// run, to start one when there are `min_new_examples`.
    pub check_interval_secs: u64,
    /// The most recent labelled examples one run trains on, at most.
    pub max_examples: u64,
    /// An NSL-KDD file imported as `dataset` examples at start-up (idempotent).
    pub dataset: Option<PathBuf>,
    /// A JSON training configuration (as `vigil train --config`); the defaults otherwise.
    pub train_config: Option<PathBuf>,
    /// How each run chooses the decision threshold on its validation split, over the training
    /// configuration's: `balanced`, `accuracy`, `fpr:B` (a false-positive budget) or `fixed:T`
    /// (docs/ml.md, "Operating point").
    pub operating_point: Option<String>,
    /// How many data-set rows one analyst-labelled signal counts for in training (its sample
    /// weight is multiplied by this): analysts label the few signals the data sets got wrong
    /// or never had, and a handful among a hundred thousand rows would otherwise teach
    /// nothing. A stated prior, not fitted to any data (docs/feedback.md).
    pub feedback_weight: f64,
    /// Folds of the stratified cross-validation each run adds on its training rows (the mean
    /// F1 is each registry row's `cross_val_score`); 0 turns it off.
    pub cross_val_folds: usize,
    /// The most training rows the cross-validation uses (evenly spaced when there are more),
    /// so that it costs a bounded share of a run.
    pub cross_val_max_rows: usize,
    /// Runs the trainer starts on request (`vigil.trainer.run`) in any hour, at most; a request
    /// beyond it is answered at once with a refusal saying when the next one is allowed.
    /// Scheduled and threshold runs do not count. 0 refuses every request.
    pub max_requested_runs_per_hour: u32,
}

impl TrainerSettings {
    /// The most `max_requested_runs_per_hour` may be: one a second.
    pub const MAX_REQUESTED_RUNS_PER_HOUR: u32 = 3_600;
}

impl Default for TrainerSettings {
    fn default() -> Self {
        Self {
            schedule: "0 0 3 * * *".into(),
            min_new_examples: 1_000,
            promotion_margin: 0.005,
            seed: 42,
            check_interval_secs: 300,
            max_examples: 200_000,
            dataset: None,
            train_config: None,
            operating_point: None,
            feedback_weight: 10.0,
            cross_val_folds: 3,
            cross_val_max_rows: 20_000,
            max_requested_runs_per_hour: 6,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Sources};

    fn with(overrides: &[&str]) -> Result<Config, crate::Error> {
        Config::load(&Sources {
            overrides: overrides.iter().map(|o| (*o).to_owned()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn cross_validation_needs_two_folds_or_none() {
        let defaults = with(&[]).expect("defaults are valid");
        assert_eq!(defaults.trainer.cross_val_folds, 3);
        assert!(with(&["trainer.cross_val_folds=0"]).is_ok());
        let err = with(&["trainer.cross_val_folds=1"])
            .expect_err("one fold")
            .to_string();
        assert!(err.contains("trainer.cross_val_folds"), "{err}");
    }

    #[test]
    fn requested_runs_per_hour_are_bounded() {
        let defaults = with(&[]).expect("defaults are valid");
        assert_eq!(defaults.trainer.max_requested_runs_per_hour, 6);
        assert!(with(&["trainer.max_requested_runs_per_hour=0"]).is_ok());
        assert!(with(&["trainer.max_requested_runs_per_hour=3600"]).is_ok());
        let err = with(&["trainer.max_requested_runs_per_hour=3601"])
            .expect_err("more than one a second")
            .to_string();
        assert!(
            err.contains("trainer.max_requested_runs_per_hour") && err.contains("3601"),
            "{err}"
        );
        assert!(with(&["trainer.max_requested_runs_per_hour=-1"]).is_err());
    }

    #[test]
    fn a_config_of_a_later_layout_version_is_refused() {
        assert_eq!(with(&[]).expect("defaults").version.0, 1);
        assert!(with(&["version=1"]).is_ok());
        let err = with(&["version=2"])
            .expect_err("a later layout")
            .to_string();
        assert!(
            err.contains("version = 2") && err.contains("version 1"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_training_schedule_is_refused_with_the_expression() {
        let err = with(&["trainer.schedule=\"0 3 * * *\""])
            .expect_err("five fields")
            .to_string();
        assert!(
            err.contains("0 3 * * *") && err.contains("expected 6"),
            "{err}"
        );
    }

    #[test]
    fn min_coverage_is_a_share_and_defaults_to_a_half() {
        let defaults = with(&[]).expect("defaults are valid");
        assert_eq!(defaults.predictor.min_coverage, 0.5);
        let never = with(&["predictor.min_coverage=0"]).expect("0 never abstains");
        assert_eq!(never.predictor.min_coverage, 0.0);
        for bad in ["predictor.min_coverage=1.5", "predictor.min_coverage=-0.1"] {
            let err = with(&[bad]).expect_err(bad).to_string();
            assert!(err.contains("predictor.min_coverage"), "{err}");
        }
    }

    #[test]
    fn grpc_tls_keys_that_belong_together_are_refused_alone() {
        let cases = [
            (
                &["predictor.tls.cert_file=\"s.pem\""][..],
                "predictor.tls.cert_file and predictor.tls.key_file",
            ),
            (
                &["predictor.tls.client_ca_file=\"ca.pem\""][..],
                "predictor.tls.client_ca_file",
            ),
            (
                &["orchestrator.predictor_tls.key_file=\"c.key\""][..],
                "orchestrator.predictor_tls.cert_file",
            ),
            (
                &[
                    "orchestrator.predictor_url=\"http://p:50051\"",
                    "orchestrator.predictor_tls.ca_file=\"ca.pem\"",
                ][..],
                "https://",
            ),
        ];
        for (overrides, expected) in cases {
            let err = with(overrides).expect_err(expected).to_string();
            assert!(err.contains(expected), "{overrides:?}: {err}");
        }
        let tls = with(&[
            "predictor.tls.cert_file=\"s.pem\"",
            "predictor.tls.key_file=\"s.key\"",
            "predictor.tls.client_ca_file=\"ca.pem\"",
            "orchestrator.predictor_url=\"https://p:50051\"",
            "orchestrator.predictor_tls.ca_file=\"ca.pem\"",
        ])
        .expect("a complete TLS configuration");
        assert!(tls.predictor.tls.enabled() && tls.orchestrator.predictor_tls.enabled());
        assert!(!with(&[]).expect("defaults").predictor.tls.enabled());
    }
}
