//! The predictor following the model registry, against the real PostgreSQL and NATS: the first
//! load, hot swaps on `model_promoted` under continuous traffic, refusal of corrupt artifacts,
//! and the model-file fallback.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{NOT_SERVING, SERVING, artifact_a, artifact_b, signal};
use vigil_bus::{Bus, PublishOptions};
use vigil_domain::{EventType, ModelType, SecurityEvent};
use vigil_ml::ModelArtifact;
use vigil_predictor::Predictor;
use vigil_proto::v1;
use vigil_store::{NewModelVersion, Store};
use vigil_testkit::{Sandbox, Service, eventually};

/// A sandbox where only events (or the given refresh) move the predictor's model.
async fn sandbox(extra: &[String]) -> Sandbox {
    // Only events move the model, so these tests show the event path works.
    let mut overrides = vec!["predictor.refresh_secs=0".to_string()];
    overrides.extend_from_slice(extra);
    Sandbox::with(&overrides).await
}

/// Registers an artifact (or any bytes standing for one) as a new ensemble version.
async fn register(store: &Store, artifact: &ModelArtifact, bytes: Vec<u8>) -> String {
    let mut version = artifact
        .model_versions(1)
        .into_iter()
        .find(|v| v.model_type == ModelType::Ensemble)
        .unwrap();
    version.id = uuid::Uuid::new_v4().to_string();
    let record = store
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

async fn register_and_promote(store: &Store, artifact: &ModelArtifact) -> String {
    let id = register(store, artifact, artifact.to_bytes().unwrap()).await;
    promote(store, &id).await;
    id
}

async fn promote(store: &Store, id: &str) {
    store
        .models()
        .promote_to_production(id, "test", "predictor test")
        .await
        .unwrap();
}

/// Publishes `model_promoted` as the trainer does.
async fn announce(bus: &Bus, model_id: &str) {
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

/// The predictor started in a sandbox, and the address its gRPC server bound.
struct Running {
    addr: SocketAddr,
    service: Service,
}

impl Running {
    async fn start(sandbox: &Sandbox) -> Self {
        let (bound, addr) = tokio::sync::oneshot::channel();
        let service = sandbox.spawn("predictor", |ctx, token| async move {
            let predictor = Predictor::start(ctx).await?;
            let _ = bound.send(predictor.local_addr());
            predictor.run(token).await
        });
        let addr = addr
            .await
            .expect("the predictor started and bound its port");
        Self { addr, service }
    }

    async fn stop(self) {
        self.service.stop().await;
    }

    fn metric(&self, name: &str) -> u64 {
        self.service.counter(&format!("vigil_{name}"))
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

/// A guard against a hung predictor, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn swaps_to_the_promoted_version_under_load_without_a_single_error() {
    let sandbox = sandbox(&[]).await;
    let store = sandbox.store();
    let id_a = register_and_promote(store, artifact_a()).await;
    let predictor = Running::start(&sandbox).await;
    assert_eq!(predictor.serving_id().await, id_a);

    // Four clients on two connections score continuously through the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    // Every client has had at least `more` answers since `since` (answers per client).
    let each_answered = |since: [u64; 4], more: u64| {
        let answered = answered.clone();
        move || {
            let now: [u64; 4] = std::array::from_fn(|c| answered[c].load(Ordering::Relaxed));
            let ok = now.iter().zip(since).all(|(n, s)| *n >= s + more);
            let result = if ok { Ok(now) } else { Err(now) };
            std::future::ready(result)
        }
    };
    let mut clients = Vec::new();
    for c in 0..4 {
        let channel = common::channel(predictor.addr).await;
        let stop = stop.clone();
        let answered = answered.clone();
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
                        answered[c].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => errors.push(status),
                }
            }
            (n, seen, errors)
        }));
    }
    // Every client is scoring with A before B is promoted.
    eventually(
        PATIENCE,
        "20 answers per client from A",
        each_answered([0; 4], 20),
    )
    .await;

    let id_b = register_and_promote(store, artifact_b()).await;
    announce(sandbox.bus(), &id_b).await;
    eventually(PATIENCE, "the swap to B", || async {
        predictor.serving_id().await == id_b
    })
    .await;
    // And every client goes on scoring, now with B, after the swap.
    let at_swap = each_answered([0; 4], 0)().await.unwrap();
    eventually(
        PATIENCE,
        "20 more answers per client after the swap",
        each_answered(at_swap, 20),
    )
    .await;
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
    let sandbox = sandbox(&[]).await;
    let store = sandbox.store();
    let id_a = register_and_promote(store, artifact_a()).await;
    let predictor = Running::start(&sandbox).await;
    let mut client = common::predictor(predictor.addr).await;

    // 1: bytes altered after promotion (the registry checks them when promoting); its
    // checksum catches it when the predictor loads them.
    let id_c = register(store, artifact_b(), artifact_b().to_bytes().unwrap()).await;
    promote(store, &id_c).await;
    sqlx::query(
        "UPDATE model_versions SET artifact = overlay(artifact placing '\\x00'::bytea from 100) \
         WHERE id = $1::uuid",
    )
    .bind(&id_c)
    .execute(store.pool())
    .await
    .unwrap();
    announce(sandbox.bus(), &id_c).await;
    eventually(PATIENCE, "the checksum refusal", || async {
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
    let id_d = register(store, artifact_b(), garbage).await;
    promote(store, &id_d).await;
    announce(sandbox.bus(), &id_d).await;
    eventually(PATIENCE, "the format refusal", || async {
        predictor.metric("predictor_model_load_failures") == 2
    })
    .await;
    assert_eq!(predictor.serving_id().await, id_a);
    assert_eq!(
        common::health_status(predictor.addr, "vigil.v1.Predictor").await,
        SERVING
    );

    // A good version after the refusals is taken.
    let id_b = register_and_promote(store, artifact_b()).await;
    announce(sandbox.bus(), &id_b).await;
    eventually(PATIENCE, "the swap to B", || async {
        predictor.serving_id().await == id_b
    })
    .await;
    predictor.stop().await;
}

#[tokio::test]
async fn with_an_empty_registry_it_is_not_serving_until_a_version_is_promoted() {
    let sandbox = sandbox(&[]).await;
    let store = sandbox.store();
    let predictor = Running::start(&sandbox).await;
    assert_eq!(common::health_status(predictor.addr, "").await, NOT_SERVING);
    let mut client = common::predictor(predictor.addr).await;
    let status = client
        .predict(v1::PredictRequest {
            signal: Some(signal()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);

    let id_a = register_and_promote(store, artifact_a()).await;
    announce(sandbox.bus(), &id_a).await;
    eventually(PATIENCE, "serving", || async {
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.vgl");
    std::fs::write(&path, artifact_a().to_bytes().unwrap()).unwrap();
    let sandbox = sandbox(&[format!("predictor.model_file=\"{}\"", path.display())]).await;
    let store = sandbox.store();
    let predictor = Running::start(&sandbox).await;
    assert_eq!(
        predictor.serving_id().await,
        artifact_a().metadata.model_version_id
    );
    assert_eq!(common::health_status(predictor.addr, "").await, SERVING);

    let id_b = register_and_promote(store, artifact_b()).await;
    announce(sandbox.bus(), &id_b).await;
    eventually(PATIENCE, "the swap to B", || async {
        predictor.serving_id().await == id_b
    })
    .await;
    predictor.stop().await;
}

#[tokio::test]
async fn a_missed_event_is_caught_up_by_the_periodic_refresh() {
    let sandbox = sandbox(&["predictor.refresh_secs=1".to_string()]).await;
    let store = sandbox.store();
    let id_a = register_and_promote(store, artifact_a()).await;
    let predictor = Running::start(&sandbox).await;
    assert_eq!(predictor.serving_id().await, id_a);
    // Promoted without an event.
    let id_b = register_and_promote(store, artifact_b()).await;
    eventually(PATIENCE, "the swap to B", || async {
        predictor.serving_id().await == id_b
    })
    .await;
    predictor.stop().await;
}
