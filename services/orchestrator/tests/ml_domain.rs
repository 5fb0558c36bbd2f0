//! The ML speaks only about what it has seen: with a production model trained on NSL-KDD,
//! ordinary benign signals of several shapes are never raised above their rule level (the
//! model abstains on those that carry too little of its inputs, and says why), while replayed
//! NSL-KDD attack rows still get the model's full say. Broker, predictor and orchestrator run
//! in-process against the real NATS and PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use vigil_domain::{EventType, ModelType, SecurityEvent, ThreatSignal};
use vigil_ml::{
    BoostConfig, ForestConfig, LabeledExample, MlpConfig, ModelArtifact, NoProgress, TrainConfig,
    train_ensemble,
};
use vigil_predictor::Predictor;
use vigil_proto::v1;
use vigil_store::{NewModelVersion, Store};
use vigil_testkit::{Sandbox, Service, eventually, next_message, nsl_kdd};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(240);

/// An ensemble trained on the first 15,000 rows of the 20 % NSL-KDD file, smaller than the
/// defaults so the test trains it in seconds; the recipe (partial copies, missing values,
/// novelty member, domain measure) is the production one.
fn trained() -> ModelArtifact {
    let config = TrainConfig {
        forest: ForestConfig {
            n_trees: 30,
            ..ForestConfig::default()
        },
        xgboost: BoostConfig {
            rounds: 40,
            ..BoostConfig::default()
        },
        mlp: MlpConfig {
            max_epochs: 8,
            ..MlpConfig::default()
        },
        ..TrainConfig::default()
    };
    let (artifact, _) = train_ensemble(
        nsl_kdd::examples()[..15_000].to_vec(),
        &config,
        "nsl-kdd 20 % rows 0-14,999",
        &NoProgress,
    )
    .unwrap();
    artifact
}

/// Registers the artifact and promotes it to production, as the trainer does.
async fn promote(store: &Store, artifact: &ModelArtifact) {
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
                artifact: artifact.to_bytes().unwrap(),
            },
            "test",
            "ml domain test",
        )
        .await
        .unwrap();
    store
        .models()
        .promote_to_production(&record.version.id, "test", "ml domain test")
        .await
        .unwrap();
}

/// Starts the predictor and returns it with the address its gRPC server bound.
async fn start_predictor(sandbox: &Sandbox) -> (Service, SocketAddr) {
    let (bound, addr) = tokio::sync::oneshot::channel();
    let service = sandbox.spawn("predictor", |ctx, token| async move {
        let predictor = Predictor::start(ctx).await?;
        let _ = bound.send(predictor.local_addr());
        predictor.run(token).await
    });
    (service, addr.await.expect("the predictor bound its port"))
}

/// A signal as a sensor would send it (JSON fields below are what each sensor knows).
fn sensor_signal(json: serde_json::Value) -> ThreatSignal {
    let mut json = json;
    json["timestamp"] = serde_json::json!(chrono::Utc::now());
    serde_json::from_value(json).unwrap()
}

/// The first `n` rows of the 20 % file after row 20,000 (never trained on) that `pick` keeps.
fn held_out_rows(n: usize, pick: impl Fn(&LabeledExample) -> bool) -> Vec<ThreatSignal> {
    nsl_kdd::examples()[20_000..]
        .iter()
        .filter(|e| pick(e))
        .take(n)
        .map(|e| e.signal.clone())
        .collect()
}

async fn publish(sandbox: &Sandbox, signal: &ThreatSignal) {
    let bus = sandbox.bus();
    let subject = bus.topology().ingest_subject("ml").unwrap();
    let wire = v1::ThreatSignal::from(signal.clone());
    bus.jetstream()
        .publish(subject, wire.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The stored results and the predict step of the workflow of `event_id`.
async fn workflow(store: &Store, event_id: &str) -> (serde_json::Value, serde_json::Value) {
    let (results, steps): (serde_json::Value, serde_json::Value) =
        sqlx::query_as("SELECT results, steps FROM workflows WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(store.pool())
            .await
            .unwrap();
    let predict = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "predict")
        .cloned()
        .unwrap();
    (results, predict)
}

#[tokio::test]
async fn benign_signals_are_never_raised_by_the_model_and_attacks_still_are() {
    let sandbox = Sandbox::with(&["predictor.refresh_secs=0"]).await;
    let artifact = tokio::task::spawn_blocking(trained).await.unwrap();
    promote(sandbox.store(), &artifact).await;
    let (mut predictor, addr) = start_predictor(&sandbox).await;
    predictor.ready(PATIENCE).await;
    let mut config = sandbox.config().clone();
    config.orchestrator.predictor_url = Some(format!("http://{addr}"));
    // The predict step must not be skipped for being slow on a busy test machine.
    config.orchestrator.predict_timeout_ms = 60_000;
    let orchestrator =
        sandbox.spawn_with_config("orchestrator", config, vigil_orchestrator::run_in);
    let broker = sandbox.spawn("broker", vigil_broker::run_in);

    let topology = sandbox.bus().topology();
    let mut predictions = sandbox
        .subscribe(
            &topology
                .event_subject(EventType::PredictionComplete.as_str())
                .unwrap(),
        )
        .await;

    // Benign signals as sensors send them: none carries NSL-KDD's connection counters.
    let sensor_shapes = vec![
        (
            "dns-query",
            sensor_signal(serde_json::json!({
                "id": "dns-query", "threat_type": "dns_query", "source_ip": "10.0.0.5",
                "source_port": 53124, "destination_ip": "10.0.0.2", "destination_port": 53,
                "protocol": "udp", "confidence": 0.05, "sensor": "zeek", "bytes": 142,
                "packets": 2, "duration_seconds": 0.004
            })),
        ),
        (
            "https-connection",
            // The signal of the report: rule score 0.75, the model used to make it 5.37.
            sensor_signal(serde_json::json!({
                "id": "https-connection", "threat_type": "normal", "source_ip": "10.0.0.5",
                "destination_port": 443, "protocol": "tcp", "confidence": 0.1,
                "severity": "low"
            })),
        ),
        (
            "login-success",
            sensor_signal(serde_json::json!({
                "id": "login-success", "threat_type": "authentication",
                "source_ip": "10.0.0.5", "destination_ip": "10.0.1.10",
                "destination_port": 22, "protocol": "tcp", "confidence": 0.1,
                "sensor": "auth-log",
                "categorical": { "outcome": "success", "user": "alice" }
            })),
        ),
    ];
    let normal_rows = held_out_rows(3, |e| !e.label);
    let attack_rows = held_out_rows(3, |e| {
        e.label
            && e.class_name
                .as_deref()
                .is_some_and(|c| c == "neptune" || c == "satan")
    });
    for (_, signal) in &sensor_shapes {
        publish(&sandbox, signal).await;
    }
    for signal in normal_rows.iter().chain(&attack_rows) {
        publish(&sandbox, signal).await;
    }
    let total = (sensor_shapes.len() + normal_rows.len() + attack_rows.len()) as i64;

    eventually(PATIENCE, "a workflow per signal", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        if done == total { Ok(done) } else { Err(done) }
    })
    .await;
    let store = sandbox.store();

    // The sensor signals: the model abstains, says why, and the rules alone decide.
    for (id, _) in &sensor_shapes {
        let (results, predict) = workflow(store, id).await;
        let prediction = &results["prediction"];
        assert_eq!(
            prediction["abstention"]["reason"], "low_coverage",
            "{id}: {results}"
        );
        assert!(
            prediction["coverage"].as_f64().unwrap() < 0.5,
            "{id}: {prediction}"
        );
        assert!(
            prediction["missing_inputs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == "same_srv_rate"),
            "{id}: the counters it lacks are named: {prediction}"
        );
        assert_eq!(
            results["ml_score"],
            serde_json::Value::Null,
            "{id}: {results}"
        );
        assert_eq!(
            results["risk_score"], results["assessment"]["rule_score"],
            "{id}: {results}"
        );
        assert!(
            predict["detail"]
                .as_str()
                .is_some_and(|d| d.contains("abstained")),
            "{id}: {predict}"
        );
    }
    // The signal of the report stays at its rule score, low, instead of medium at 5.37.
    let (results, _) = workflow(store, "https-connection").await;
    assert_eq!(results["risk_score"], 0.75, "{results}");
    assert_eq!(results["risk_level"], "low", "{results}");

    // NSL-KDD normal rows carry the model's inputs: it scores them, and lowers their risk.
    for signal in &normal_rows {
        let (results, _) = workflow(store, &signal.id).await;
        let ml = results["ml_score"].as_f64().expect("the model scored it");
        let rule = results["assessment"]["rule_score"].as_f64().unwrap();
        let risk = results["risk_score"].as_f64().unwrap();
        assert!(ml < rule, "{}: ml {ml} rule {rule}", signal.id);
        assert!(risk <= rule, "{}: risk {risk} above rule {rule}", signal.id);
        assert!(results["prediction"]["abstention"].is_null());
    }

    // Attack rows: the model's full say, and what a review queue reads is stored with it.
    for signal in &attack_rows {
        let (results, _) = workflow(store, &signal.id).await;
        let prediction = &results["prediction"];
        let ml = results["ml_score"].as_f64().expect("the model scored it");
        let rule = results["assessment"]["rule_score"].as_f64().unwrap();
        let risk = results["risk_score"].as_f64().unwrap();
        assert!(ml >= 7.0, "{}: ml {ml}", signal.id);
        assert!(risk > rule + 1.5, "{}: risk {risk} rule {rule}", signal.id);
        assert!(
            prediction["coverage"].as_f64().unwrap() > 0.9,
            "{prediction}"
        );
        let members: BTreeMap<String, f64> =
            serde_json::from_value(prediction["member_probabilities"].clone()).unwrap();
        assert_eq!(
            members.keys().collect::<Vec<_>>(),
            ["neural_network", "random_forest", "xgboost"]
        );
        assert!(members.values().all(|p| *p > 0.5), "{members:?}");
        assert!(prediction["novelty"].is_number() && prediction["in_domain"].is_number());
    }

    // PREDICTION_COMPLETE says the same: why for the abstentions, the score for the others.
    let mut seen: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    while seen.len() < total as usize {
        let message = next_message(&mut predictions, PATIENCE, "prediction_complete").await;
        let event =
            SecurityEvent::try_from(v1::SecurityEvent::decode(message.payload).unwrap()).unwrap();
        seen.insert(event.correlation_id.clone(), event.data);
    }
    for (id, _) in &sensor_shapes {
        let data = &seen[*id];
        assert_eq!(data["abstention"]["reason"], "low_coverage", "{id}: {data}");
        assert!(data.get("risk_score").is_none(), "{id}: {data}");
    }
    for signal in &attack_rows {
        let data = &seen[&signal.id];
        assert!(data["risk_score"].as_f64().unwrap() >= 7.0, "{data}");
        assert!(data.get("abstention").is_none(), "{data}");
    }

    assert_eq!(
        predictor.counter("vigil_predictor_abstentions"),
        sensor_shapes.len() as u64,
        "the predictor counts its abstentions"
    );

    broker.stop().await;
    orchestrator.stop().await;
    predictor.stop().await;
}
