//! Fixtures shared by the integration tests.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use vigil_domain::{
    ModelMetrics, ModelType, ModelVersion, StepOutcome, WorkflowExecution, WorkflowStatus,
    WorkflowStep,
};
use vigil_store::NewModelVersion;

/// Now, at the microsecond precision PostgreSQL keeps, so values round-trip exactly.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now is representable")
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn running_workflow(event_id: &str) -> WorkflowExecution {
    WorkflowExecution {
        id: new_id(),
        event_id: event_id.to_owned(),
        workflow_type: "threat_response".into(),
        status: WorkflowStatus::Running,
        started_at: now(),
        completed_at: None,
        steps: vec![WorkflowStep {
            name: "assess".into(),
            outcome: StepOutcome::Succeeded,
            detail: None,
            duration_ms: 1.25,
        }],
        results: serde_json::json!({ "risk_score": 7.5 }),
        error_message: None,
        duration_seconds: 0.0,
    }
}

pub fn model_version(model_type: ModelType, version: i32) -> NewModelVersion {
    NewModelVersion {
        version: ModelVersion {
            id: new_id(),
            model_type,
            version,
            trained_at: now(),
            metrics: ModelMetrics {
                accuracy: 0.91,
                precision: 0.88,
                recall: 0.93,
                f1: 0.904,
                auc_roc: 0.97,
                cross_val_score: Some(0.9),
            },
            hyperparameters: serde_json::json!({ "n_estimators": 100, "max_depth": 12 }),
            training_samples: 25_192,
            features_used: vec!["duration".into(), "src_bytes".into()],
            is_active: false,
            is_production: false,
        },
        feature_spec: serde_json::json!({ "version": 1, "columns": ["duration", "src_bytes"] }),
        artifact: format!("model {model_type} v{version}").into_bytes(),
    }
}

pub fn production(mut m: NewModelVersion) -> NewModelVersion {
    m.version.is_production = true;
    m
}

pub fn active(mut m: NewModelVersion) -> NewModelVersion {
    m.version.is_active = true;
    m
}
