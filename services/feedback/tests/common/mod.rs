//! Hand-made workflows for the review queue and insights tests: recorded through the store as
//! the orchestrator records them, with the results and signal a test chooses.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vigil_domain::{
    ModelType, PredictionResult, Severity, ThreatSignal, WorkflowExecution, WorkflowStatus,
};
use vigil_store::Store;

/// Now, at the microsecond precision PostgreSQL keeps.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now is representable")
}

/// A signal of `threat_type` over tcp to `port` from `source_ip`.
pub fn signal(event_id: &str, threat_type: &str, source_ip: &str, port: u16) -> ThreatSignal {
    let mut signal = ThreatSignal::new(threat_type, 0.7, now());
    signal.id = event_id.to_owned();
    signal.source_ip = Some(source_ip.parse().expect("a valid address"));
    signal.destination_ip = Some("192.0.2.10".parse().expect("a valid address"));
    signal.destination_port = Some(port);
    signal.protocol = Some("tcp".into());
    signal
}

/// An ensemble prediction with threshold 0.5, in-domain 0.5, and the given probability,
/// supervised members (random forest, XGBoost, neural network) and novelty member.
pub fn prediction(probability: f64, members: [f64; 3], novelty: f64) -> PredictionResult {
    PredictionResult {
        threat_id: "t".into(),
        risk_score: probability * 10.0,
        risk_level: Severity::Medium,
        confidence: 0.8,
        model_version_id: "test-model".into(),
        features_used: BTreeMap::new(),
        prediction_time_ms: 0.5,
        created_at: now(),
        coverage: 1.0,
        missing_inputs: Vec::new(),
        in_domain: 0.5,
        probability,
        decision_threshold: 0.5,
        member_probabilities: [
            (ModelType::RandomForest, members[0]),
            (ModelType::Xgboost, members[1]),
            (ModelType::NeuralNetwork, members[2]),
        ]
        .into(),
        novelty,
        abstention: None,
    }
}

/// The `results` the orchestrator records: score, level, prediction, alerts, remediation.
pub fn results(
    risk_score: f64,
    risk_level: Severity,
    prediction: Option<&PredictionResult>,
    alerts: serde_json::Value,
    remediation: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "risk_score": risk_score,
        "risk_level": risk_level,
        "ml_score": prediction.map(|p| p.risk_score),
        "prediction": prediction,
        "alerts": alerts,
        "remediation": remediation,
        "incident": {"skipped": "test"},
    })
}

/// Records a successful workflow with its signal, started at `started_at`; returns its id.
pub async fn record(
    store: &Store,
    signal: &ThreatSignal,
    started_at: DateTime<Utc>,
    results: serde_json::Value,
) -> String {
    let workflow = WorkflowExecution {
        id: uuid::Uuid::now_v7().to_string(),
        event_id: signal.id.clone(),
        workflow_type: "threat_response".into(),
        status: WorkflowStatus::Success,
        started_at,
        completed_at: Some(started_at),
        steps: Vec::new(),
        results,
        error_message: None,
        duration_seconds: 0.01,
    };
    let mut batch = store.begin_batch().await.expect("a transaction");
    batch.save_workflows(&[&workflow]).await.expect("saved");
    batch
        .record_signals(&[(signal.id.as_str(), signal)])
        .await
        .expect("signal recorded");
    batch.commit().await.expect("committed");
    workflow.id
}

/// Records a workflow that failed (no verdict to judge, never offered for review).
pub async fn record_failed(store: &Store, event_id: &str) {
    let workflow = WorkflowExecution {
        id: uuid::Uuid::now_v7().to_string(),
        event_id: event_id.to_owned(),
        workflow_type: "threat_response".into(),
        status: WorkflowStatus::Failed,
        started_at: now(),
        completed_at: Some(now()),
        steps: Vec::new(),
        results: serde_json::json!({}),
        error_message: Some("the test says so".into()),
        duration_seconds: 0.01,
    };
    store
        .workflows()
        .insert_if_absent(&workflow)
        .await
        .expect("recorded");
}
