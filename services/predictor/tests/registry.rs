//! The predictor following the model registry, against the real PostgreSQL and NATS: the first
//! load, hot swaps on `model_promoted` under continuous traffic, refusal of corrupt artifacts,
//! and the model-file fallback.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{NOT_SERVING, SERVING, artifact_a, artifact_b, signal};
use tokio_util::sync::CancellationToken;
use vigil_bus::{Bus, PublishOptions};
use vigil_config::{Config, Sources};
use vigil_domain::{EventType, ModelType, SecurityEvent};
use vigil_ml::ModelArtifact;
use vigil_predictor::Predictor;
use vigil_proto::v1;
use vigil_runtime::ServiceContext;
use vigil_store::NewModelVersion;
use vigil_store::test_util::TestDatabase;

fn config(db: &TestDatabase, extra: &[String]) -> Config {
    let prefix = format!("tp{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut overrides = vec![
        format!("nats.prefix=\"{prefix}\""),
        "telemetry.http_addr=\"127.0.0.1:0\"".to_string(),
        "predictor.grpc_addr=\"127.0.0.1:0\"".to_string(),
        // Only events move the model, so these tests show the event path works.
        "predictor.refresh_secs=0".to_string(),
    ];
    overrides.extend_from_slice(extra);
    if let Ok(url) = std::env::var("NATS_URL") {
        overrides.push(format!("nats.url=\"{url}\""));
    }
    let mut config = Config::load(&Sources {
        overrides,
        ..Default::default()
    })
    .expect("valid test config");
    config.database = db.settings();
    config
}

/// Registers an artifact (or any bytes standing for one) as a new ensemble version.
async fn register(db: &TestDatabase, artifact: &ModelArtifact, bytes: Vec<u8>) -> String {
    let mut version = artifact
        .model_versions(1)
        .into_iter()
        .find(|v| v.model_type == ModelType::Ensemble)
        .unwrap();
    version.id = uuid::Uuid::new_v4().to_string();
    let record = db
        .store()
        .models()
        .register(
            &NewModelVersion {
                version,
                feature_spec: serde_json::to_value(&artifact.ensemble.spec).unwrap(),
                artifact: bytes,
            },
            "test",
            "predictor test",
        )
        .await
        .unwrap();
    record.version.id
}

async fn register_and_promote(db: &TestDatabase, artifact: &ModelArtifact) -> String {
    let id = register(db, artifact, artifact.to_bytes().unwrap()).await;
    promote(db, &id).await;
    id
}

async fn promote(db: &TestDatabase, id: &str) {
    db.store()
        .models()
        .promote_to_production(id, "test", "predictor test")
        .await
        .unwrap();
}

/// Publishes `model_promoted` as the trainer does.
async fn announce(config: &Config, model_id: &str) {
    let bus = Bus::connect(&config.nats, vigil_runtime::topology(config))
        .await
        .unwrap();
    bus.declare().await.unwrap();
    let event = SecurityEvent {
        id: format!("model_promoted:{model_id}"),
        event_type: EventType::ModelPromoted,
        timestamp: chrono::Utc::now(),
        source: "trainer".into(),
        correlation_id: String::new(),
        severity: None,
        data: serde_json::json!({ "model_id": model_id, "model_type": "ensemble" }),
    };
    let subject = bus
        .topology()
        .event_subject(EventType::ModelPromoted.as_str())
        .unwrap();
    bus.publisher()
        .publish(
            &subject,
            &v1::SecurityEvent::from(event.clone()),
            PublishOptions::new(event.id),
        )
        .await
        .unwrap();
}

struct Running {
    addr: SocketAddr,
    ctx: ServiceContext,
    token: CancellationToken,
    task: tokio::task::JoinHandle<vigil_predictor::Result<()>>,
}

impl Running {
    async fn start(config: Config) -> Self {
        let ctx = ServiceContext::new(config);
        let predictor = Predictor::start(ctx.clone()).await.unwrap();
        let addr = predictor.local_addr();
        let token = CancellationToken::new();
        let task = tokio::spawn(predictor.run(token.clone()));
        Self {
            addr,
            ctx,
            token,
            task,
        }
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stops")
            .expect("joins")
            .expect("stops cleanly");
        // Leave the shared NATS server as we found it.
        let config = &self.ctx.config;
        let bus = Bus::connect(&config.nats, vigil_runtime::topology(config))
            .await
            .unwrap();
        bus.topology().delete(bus.jetstream()).await.unwrap();
    }

    fn metric(&self, name: &str) -> u64 {
        self.ctx
            .metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("vigil_{name}_total ")))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    async fn serving_id(&self) -> String {
        let mut client = common::predictor(self.addr).await;
        client
            .get_model(v1::GetModelRequest {})
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap()
            .id
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn swaps_to_the_promoted_version_under_load_without_a_single_error() {
    let db = TestDatabase::new().await.unwrap();
    let id_a = register_and_promote(&db, artifact_a()).await;
    let config = config(&db, &[]);
    let predictor = Running::start(config.clone()).await;
    assert_eq!(predictor.serving_id().await, id_a);

    // Four clients on two connections score continuously through the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let channel = common::channel(predictor.addr).await;
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut client = v1::predictor_client::PredictorClient::new(channel);
            let mut seen: Vec<String> = Vec::new();
            let mut errors = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut wire = signal();
                wire.id = format!("c{c}-{n}");
                n += 1;
                match client
                    .predict(v1::PredictRequest { signal: Some(wire) })
                    .await
                {
                    Ok(response) => {
                        let id = response.into_inner().result.unwrap().model_version_id;
                        if seen.last() != Some(&id) {
                            seen.push(id);
                        }
                    }
                    Err(status) => errors.push(status),
                }
            }
            (n, seen, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let id_b = register_and_promote(&db, artifact_b()).await;
    announce(&config, &id_b).await;
    eventually("the swap to B", async || {
        predictor.serving_id().await == id_b
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for client in clients {
        let (n, seen, errors) = client.await.unwrap();
        total += n;
        assert!(errors.is_empty(), "errors during the swap: {errors:?}");
        // Each client saw A, then B, and never A again.
        assert_eq!(seen, vec![id_a.clone(), id_b.clone()], "versions seen");
    }
    assert!(total > 100, "only {total} requests");
    assert_eq!(predictor.metric("predictor_model_swaps"), 2);
    assert_eq!(predictor.metric("predictor_model_load_failures"), 0);
    predictor.stop().await;
}

#[tokio::test]
async fn a_corrupt_artifact_is_refused_and_the_previous_model_keeps_serving() {
    let db = TestDatabase::new().await.unwrap();
    let id_a = register_and_promote(&db, artifact_a()).await;
    let config = config(&db, &[]);
    let predictor = Running::start(config.clone()).await;
    let mut client = common::predictor(predictor.addr).await;

    // 1: bytes altered after promotion (the registry checks them when promoting); its
    // checksum catches it when the predictor loads them.
    let id_c = register(&db, artifact_b(), artifact_b().to_bytes().unwrap()).await;
    promote(&db, &id_c).await;
    sqlx::query(
        "UPDATE model_versions SET artifact = overlay(artifact placing '\\x00'::bytea from 100) \
         WHERE id = $1::uuid",
    )
    .bind(&id_c)
    .execute(db.store().pool())
    .await
    .unwrap();
    announce(&config, &id_c).await;
    eventually("the checksum refusal", async || {
        predictor.metric("predictor_model_load_failures") == 1
    })
    .await;
    assert_eq!(predictor.serving_id().await, id_a);
    let result = client
        .predict(v1::PredictRequest {
            signal: Some(signal()),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(result.model_version_id, id_a);

    // 2: bytes that match their checksum but are no artifact; the format check catches it.
    let mut garbage = artifact_b().to_bytes().unwrap();
    garbage.truncate(garbage.len() / 2);
    let id_d = register(&db, artifact_b(), garbage).await;
    promote(&db, &id_d).await;
    announce(&config, &id_d).await;
    eventually("the format refusal", async || {
        predictor.metric("predictor_model_load_failures") == 2
    })
    .await;
    assert_eq!(predictor.serving_id().await, id_a);
    assert_eq!(
        common::health_status(predictor.addr, "vigil.v1.Predictor").await,
        SERVING
    );

    // A good version after the refusals is taken.
    let id_b = register_and_promote(&db, artifact_b()).await;
    announce(&config, &id_b).await;
    eventually("the swap to B", async || {
        predictor.serving_id().await == id_b
    })
    .await;
    predictor.stop().await;
}

#[tokio::test]
async fn with_an_empty_registry_it_is_not_serving_until_a_version_is_promoted() {
    let db = TestDatabase::new().await.unwrap();
    let config = config(&db, &[]);
    let predictor = Running::start(config.clone()).await;
    assert_eq!(common::health_status(predictor.addr, "").await, NOT_SERVING);
    let mut client = common::predictor(predictor.addr).await;
    let status = client
        .predict(v1::PredictRequest {
            signal: Some(signal()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);

    let id_a = register_and_promote(&db, artifact_a()).await;
    announce(&config, &id_a).await;
    eventually("serving", async || {
        common::health_status(predictor.addr, "").await == SERVING
    })
    .await;
    let result = client
        .predict(v1::PredictRequest {
            signal: Some(signal()),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(result.model_version_id, id_a);
    predictor.stop().await;
}

#[tokio::test]
async fn a_model_file_serves_until_the_registry_has_a_production_version() {
    let db = TestDatabase::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.vgl");
    std::fs::write(&path, artifact_a().to_bytes().unwrap()).unwrap();
    let config = config(
        &db,
        &[format!("predictor.model_file=\"{}\"", path.display())],
    );
    let predictor = Running::start(config.clone()).await;
    assert_eq!(
        predictor.serving_id().await,
        artifact_a().metadata.model_version_id
    );
    assert_eq!(common::health_status(predictor.addr, "").await, SERVING);

    let id_b = register_and_promote(&db, artifact_b()).await;
    announce(&config, &id_b).await;
    eventually("the swap to B", async || {
        predictor.serving_id().await == id_b
    })
    .await;
    predictor.stop().await;
}

#[tokio::test]
async fn a_missed_event_is_caught_up_by_the_periodic_refresh() {
    let db = TestDatabase::new().await.unwrap();
    let id_a = register_and_promote(&db, artifact_a()).await;
    let config = config(&db, &["predictor.refresh_secs=1".to_string()]);
    let predictor = Running::start(config.clone()).await;
    assert_eq!(predictor.serving_id().await, id_a);
    // Promoted without an event.
    let id_b = register_and_promote(&db, artifact_b()).await;
    eventually("the swap to B", async || {
        predictor.serving_id().await == id_b
    })
    .await;
    predictor.stop().await;
}
