//! Every proto <-> domain conversion round-trips, and bad wire values are refused with a message
//! that names the field.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use prost::Message;
use serde_json::json;
use vigil_domain as d;
use vigil_proto::{ConversionError, v1};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + secs, 123_000_000)
        .single()
        .expect("valid timestamp")
}

/// domain -> wire -> bytes -> wire -> domain gives back the same value.
fn round_trip<D, W>(value: D) -> D
where
    D: Clone + PartialEq + std::fmt::Debug + TryFrom<W, Error = ConversionError>,
    W: From<D> + Message + Default,
{
    let wire: W = value.clone().into();
    let decoded = W::decode(wire.encode_to_vec().as_slice()).expect("decodes");
    let back = D::try_from(decoded).expect("converts back");
    assert_eq!(back, value);
    back
}

fn signal() -> d::ThreatSignal {
    let mut s = d::ThreatSignal::new("port_scan", 0.85, at(0));
    s.id = "threat_12345".into();
    s.source_ip = Some("203.0.113.7".parse().unwrap());
    s.destination_ip = Some("2001:db8::1".parse().unwrap());
    s.source_port = Some(51515);
    s.destination_port = Some(8080);
    s.protocol = Some("tcp".into());
    s.severity = Some(d::Severity::High);
    s.sensor = "suricata-eu-1".into();
    s.bytes = 4096;
    s.packets = 12;
    s.duration_seconds = 1.5;
    s.numeric = BTreeMap::from([("srv_count".into(), 17.0), ("serror_rate".into(), 0.25)]);
    s.categorical = BTreeMap::from([("service".into(), "http".into())]);
    s
}

#[test]
fn threat_signal_round_trips() {
    round_trip::<_, v1::ThreatSignal>(signal());
    round_trip::<_, v1::ThreatSignal>(d::ThreatSignal::new("x", 0.0, at(1)));
}

#[test]
fn threat_signal_refusals_name_the_field() {
    let mut w: v1::ThreatSignal = signal().into();
    w.confidence = 1.2;
    let err = d::ThreatSignal::try_from(w).unwrap_err();
    assert!(err.to_string().contains("confidence"), "{err}");

    let mut w: v1::ThreatSignal = signal().into();
    w.threat_type = "  ".into();
    let err = d::ThreatSignal::try_from(w).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"field "threat_type" is missing or empty; expected a threat type"#),
        "{err}"
    );

    let mut w: v1::ThreatSignal = signal().into();
    w.source_ip = "not-an-ip".into();
    let err = d::ThreatSignal::try_from(w).unwrap_err();
    assert!(
        matches!(
            err,
            ConversionError::BadAddress {
                field: "source_ip",
                ..
            }
        ),
        "{err}"
    );

    let mut w: v1::ThreatSignal = signal().into();
    w.destination_port = 70_000;
    assert!(matches!(
        d::ThreatSignal::try_from(w).unwrap_err(),
        ConversionError::BadPort {
            field: "destination_port",
            ..
        }
    ));

    let mut w: v1::ThreatSignal = signal().into();
    w.timestamp = None;
    assert_eq!(
        d::ThreatSignal::try_from(w).unwrap_err(),
        ConversionError::Missing { field: "timestamp" }
    );

    let mut w: v1::ThreatSignal = signal().into();
    w.numeric.insert("rate".into(), f64::INFINITY);
    assert!(
        d::ThreatSignal::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("rate")
    );

    let mut w: v1::ThreatSignal = signal().into();
    w.severity = 42;
    assert!(matches!(
        d::ThreatSignal::try_from(w).unwrap_err(),
        ConversionError::UnknownEnum {
            field: "severity",
            value: 42,
            ..
        }
    ));
}

#[test]
fn json_published_signal_equals_its_protobuf_twin() {
    let json = r#"{
        "id": "threat_12345", "threatType": "port_scan",
        "sourceIp": "203.0.113.7", "destinationIp": "2001:db8::1",
        "sourcePort": 51515, "destinationPort": 8080, "protocol": "tcp",
        "confidence": 0.85, "severity": "SEVERITY_HIGH", "sensor": "suricata-eu-1",
        "timestamp": "2026-09-21T14:13:20.123Z", "bytes": "4096", "packets": "12",
        "durationSeconds": 1.5,
        "numeric": {"srv_count": 17, "serror_rate": 0.25},
        "categorical": {"service": "http"}
    }"#;
    let from_json: v1::ThreatSignal = serde_json::from_str(json).expect("proto3 JSON decodes");
    let twin: v1::ThreatSignal = signal().into();
    assert_eq!(from_json, twin);
    assert_eq!(d::ThreatSignal::try_from(from_json).unwrap(), signal());
}

#[test]
fn security_event_round_trips_with_its_payload() {
    round_trip::<_, v1::SecurityEvent>(d::SecurityEvent {
        id: "evt-1".into(),
        event_type: d::EventType::WorkflowCompleted,
        timestamp: at(2),
        source: "orchestrator".into(),
        correlation_id: "threat_12345".into(),
        severity: Some(d::Severity::Critical),
        data: json!({"status": "SUCCESS", "steps": ["assess", "predict"], "score": 8.5, "nested": {"ok": true, "none": null}}),
    });
    let mut w: v1::SecurityEvent = d::SecurityEvent {
        id: "evt-2".into(),
        event_type: d::EventType::ThreatDetected,
        timestamp: at(2),
        source: "broker".into(),
        correlation_id: String::new(),
        severity: None,
        data: serde_json::Value::Null,
    }
    .into();
    w.event_type = v1::EventType::Unspecified as i32;
    assert!(matches!(
        d::SecurityEvent::try_from(w).unwrap_err(),
        ConversionError::UnknownEnum {
            field: "event_type",
            ..
        }
    ));
}

#[test]
fn every_event_type_converts_both_ways() {
    for t in d::EventType::ALL {
        let w = v1::EventType::from(t);
        assert_eq!(d::EventType::try_from(w).unwrap(), t);
        assert_eq!(t.as_str().parse::<d::EventType>().unwrap(), t);
    }
}

#[test]
fn config_change_round_trips() {
    round_trip::<_, v1::ConfigChange>(d::ConfigChange {
        key: "thresholds.high".into(),
        old_value: Some(json!(7.0)),
        new_value: Some(json!(6.5)),
        actor: "alice".into(),
        timestamp: at(3),
    });
    let w = v1::ConfigChange {
        key: "k".into(),
        new_value_json: "{not json".into(),
        timestamp: Some(at(3).into()),
        ..Default::default()
    };
    assert!(
        d::ConfigChange::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("new_value_json")
    );
}

fn assessment() -> d::Assessment {
    d::Assessment {
        threat_id: "threat_12345".into(),
        risk_score: 8.5,
        risk_level: d::Severity::High,
        confidence: 0.94,
        rule_score: 8.7,
        ml_score: Some(8.3),
        factors: vec![d::RiskFactor {
            name: "port_risk".into(),
            contribution: 1.5,
            detail: "destination port 8080".into(),
        }],
        assessed_at: at(4),
    }
}

#[test]
fn assessment_round_trips_and_refuses_bad_scores() {
    round_trip::<_, v1::Assessment>(assessment());
    round_trip::<_, v1::Assessment>(d::Assessment {
        ml_score: None,
        ..assessment()
    });

    let mut w: v1::Assessment = assessment().into();
    w.risk_score = 10.5;
    let err = d::Assessment::try_from(w).unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"field "risk_score": 10.5 is out of range; expected 0 to 10"#),
        "{err}"
    );

    let mut w: v1::Assessment = assessment().into();
    w.confidence = -0.1;
    assert!(
        d::Assessment::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("confidence")
    );

    let mut w: v1::Assessment = assessment().into();
    w.threat_id.clear();
    assert!(
        d::Assessment::try_from(w)
            .unwrap_err()
            .to_string()
            .contains(r#"field "threat_id" is missing or empty"#)
    );

    let mut w: v1::Assessment = assessment().into();
    w.ml_score = Some(f64::NAN);
    assert!(
        d::Assessment::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("ml_score")
    );
}

fn model_version() -> d::ModelVersion {
    d::ModelVersion {
        id: "0b5f".into(),
        model_type: d::ModelType::Xgboost,
        version: 3,
        trained_at: at(5),
        metrics: d::ModelMetrics {
            accuracy: 0.9,
            precision: 0.91,
            recall: 0.88,
            f1: 0.895,
            auc_roc: 0.95,
            cross_val_score: Some(0.89),
        },
        hyperparameters: json!({"max_depth": 6.0, "eta": 0.3}),
        training_samples: 125_973,
        features_used: vec!["src_bytes_log".into(), "count".into()],
        is_active: true,
        is_production: false,
    }
}

#[test]
fn model_version_round_trips_and_refuses_bad_metrics() {
    for t in d::ModelType::ALL {
        round_trip::<_, v1::ModelVersion>(d::ModelVersion {
            model_type: t,
            ..model_version()
        });
    }
    let mut w: v1::ModelVersion = model_version().into();
    w.metrics.as_mut().unwrap().auc_roc = 1.5;
    assert!(
        d::ModelVersion::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("metrics.auc_roc")
    );

    let mut w: v1::ModelVersion = model_version().into();
    w.id.clear();
    assert!(
        d::ModelVersion::try_from(w)
            .unwrap_err()
            .to_string()
            .contains(r#"field "id" is missing or empty"#)
    );

    let mut w: v1::ModelVersion = model_version().into();
    w.model_type = 0;
    assert!(matches!(
        d::ModelVersion::try_from(w).unwrap_err(),
        ConversionError::UnknownEnum {
            field: "model_type",
            ..
        }
    ));
}

fn prediction() -> d::PredictionResult {
    d::PredictionResult {
        threat_id: "threat_12345".into(),
        risk_score: 8.3,
        risk_level: d::Severity::High,
        confidence: 0.85,
        model_version_id: "ens-7".into(),
        features_used: BTreeMap::from([("count".into(), 511.0)]),
        prediction_time_ms: 0.04,
        created_at: at(6),
        coverage: 0.95,
        missing_inputs: vec!["duration".into()],
        in_domain: 0.8,
        probability: 0.9,
        decision_threshold: 0.1,
        member_probabilities: BTreeMap::from([(d::ModelType::Xgboost, 0.97)]),
        novelty: 0.02,
        abstention: Some(d::Abstention {
            reason: d::AbstainReason::LowCoverage,
            detail: "too little".into(),
        }),
    }
}

#[test]
fn prediction_result_round_trips_and_refuses_bad_values() {
    round_trip::<_, v1::PredictionResult>(prediction());
    let mut w: v1::PredictionResult = prediction().into();
    w.risk_score = -1.0;
    assert!(
        d::PredictionResult::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("risk_score")
    );
    let mut w: v1::PredictionResult = prediction().into();
    w.confidence = 2.0;
    assert!(
        d::PredictionResult::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("confidence")
    );
    let mut w: v1::PredictionResult = prediction().into();
    w.model_version_id.clear();
    assert!(
        d::PredictionResult::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("model_version_id")
    );
}

fn workflow() -> d::WorkflowExecution {
    d::WorkflowExecution {
        id: "wf-1".into(),
        event_id: "threat_12345".into(),
        workflow_type: "threat_response".into(),
        status: d::WorkflowStatus::Success,
        started_at: at(7),
        completed_at: Some(at(8)),
        steps: vec![
            d::WorkflowStep {
                name: "assess".into(),
                outcome: d::StepOutcome::Succeeded,
                detail: None,
                duration_ms: 0.2,
            },
            d::WorkflowStep {
                name: "predict".into(),
                outcome: d::StepOutcome::Skipped,
                detail: Some("predictor unavailable".into()),
                duration_ms: 50.0,
            },
        ],
        results: json!({"risk_score": 8.5}),
        error_message: None,
        duration_seconds: 1.0,
    }
}

#[test]
fn workflow_round_trips_in_every_status() {
    round_trip::<_, v1::WorkflowExecution>(workflow());
    for status in [d::WorkflowStatus::Pending, d::WorkflowStatus::Running] {
        round_trip::<_, v1::WorkflowExecution>(d::WorkflowExecution {
            status,
            completed_at: None,
            ..workflow()
        });
    }
    round_trip::<_, v1::WorkflowExecution>(d::WorkflowExecution {
        status: d::WorkflowStatus::Failed,
        error_message: Some("store unavailable".into()),
        ..workflow()
    });
    let mut w: v1::WorkflowExecution = workflow().into();
    w.event_id.clear();
    assert!(
        d::WorkflowExecution::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("event_id")
    );
    let mut w: v1::WorkflowExecution = workflow().into();
    w.status = v1::WorkflowStatus::Failed as i32;
    assert!(
        d::WorkflowExecution::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("FAILED workflow must say why")
    );
}

#[test]
fn alert_remediation_incident_round_trip() {
    round_trip::<_, v1::Alert>(d::Alert {
        id: "al-1".into(),
        event_id: "threat_12345".into(),
        threat_key: "port_scan|203.0.113.7".into(),
        channel: "pagerduty".into(),
        severity: d::Severity::Critical,
        title: "Port scan".into(),
        body: "details".into(),
        status: d::AlertStatus::Delivered,
        attempts: 2,
        last_error: Some("429 Too Many Requests".into()),
        created_at: at(9),
        delivered_at: Some(at(10)),
    });
    let action = d::RemediationAction {
        id: "rm-1".into(),
        event_id: "threat_12345".into(),
        kind: d::ActionKind::BlockAddress,
        target: "203.0.113.7".into(),
        executor: "nftables".into(),
        status: d::ActionStatus::Simulated,
        details: json!({"command": "nft add element inet vigil blocklist { 203.0.113.7 timeout 3600s }"}),
        undo: json!({"command": "nft delete element inet vigil blocklist { 203.0.113.7 }"}),
        expires_at: Some(at(3600)),
        created_at: at(11),
    };
    round_trip::<_, v1::RemediationAction>(action.clone());
    let mut w: v1::RemediationAction = action.into();
    w.target.clear();
    assert!(
        d::RemediationAction::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("target")
    );

    round_trip::<_, v1::Incident>(d::Incident {
        id: "inc-1".into(),
        threat_key: "port_scan|203.0.113.7".into(),
        title: "Port scan from 203.0.113.7".into(),
        severity: d::Severity::High,
        status: d::IncidentStatus::Acknowledged,
        event_ids: vec!["threat_12345".into(), "threat_12346".into()],
        created_at: at(12),
        updated_at: at(13),
    });
}

#[test]
fn feedback_round_trips_and_refuses_bad_confidence() {
    let record = d::FeedbackRecord {
        id: "fb-1".into(),
        workflow_execution_id: "wf-1".into(),
        action_id: "rm-1".into(),
        feedback_type: d::FeedbackType::Partial,
        confidence: 0.95,
        correction: Some("should be medium".into()),
        analyst: "alice".into(),
        timestamp: at(14),
        label: Some(d::TrueLabel::Attack),
        attack_type: None,
        superseded_by: None,
    };
    round_trip::<_, v1::FeedbackRecord>(record.clone());
    let mut w: v1::FeedbackRecord = record.clone().into();
    w.confidence = Some(1.01);
    assert!(
        d::FeedbackRecord::try_from(w)
            .unwrap_err()
            .to_string()
            .contains("confidence")
    );
    let mut w: v1::FeedbackRecord = record.into();
    w.id.clear();
    assert!(
        d::FeedbackRecord::try_from(w)
            .unwrap_err()
            .to_string()
            .contains(r#"field "id" is missing or empty"#)
    );
}

#[test]
fn health_messages_round_trip() {
    round_trip::<_, v1::Heartbeat>(d::Heartbeat {
        service: "broker".into(),
        instance: "broker-0".into(),
        timestamp: at(15),
        version: "0.1.0".into(),
        ready: true,
        uptime_ms: 120_000,
        interval_ms: 5_000,
        operations: 42,
        errors: 1,
        latency: Some(d::LatencyPercentiles {
            p50_ms: 1.5,
            p95_ms: 4.0,
            p99_ms: 9.5,
        }),
        dependencies: BTreeMap::from([
            (
                "nats".to_owned(),
                d::DependencyStatus {
                    ok: true,
                    detail: String::new(),
                },
            ),
            (
                "postgres".to_owned(),
                d::DependencyStatus {
                    ok: false,
                    detail: "connection refused".into(),
                },
            ),
        ]),
    });
    let component = d::ComponentHealth {
        component: "orchestrator".into(),
        state: d::HealthState::Degraded,
        operations: 1000,
        errors: 12,
        avg_latency_ms: 3.5,
        p99_latency_ms: 20.0,
        last_seen: Some(at(16)),
    };
    round_trip::<_, v1::ComponentHealth>(component.clone());
    round_trip::<_, v1::SystemStatus>(d::SystemStatus {
        state: d::HealthState::Degraded,
        components: BTreeMap::from([(component.component.clone(), component)]),
        events_processed: 1000,
        feedback_accuracy: Some(0.93),
        timestamp: at(17),
    });
    let w = v1::Heartbeat {
        service: "broker".into(),
        timestamp: Some(at(15).into()),
        ..Default::default()
    };
    assert!(
        d::Heartbeat::try_from(w)
            .unwrap_err()
            .to_string()
            .contains(r#"field "instance" is missing or empty"#)
    );
}
