//! Learning insights against the real NATS and PostgreSQL: a hand-built set of verdicts and
//! the numbers a person computes from it by hand.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{now, record, record_failed, results, signal};
use vigil_domain::{FeedbackType, RiskThresholds, Severity, TrueLabel};
use vigil_feedback::InsightsReply;
use vigil_store::{NewFeedback, Store};
use vigil_testkit::{Sandbox, Service};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(180);

async fn judge(store: &Store, workflow_id: &str, analyst: &str, said: TrueLabel, label: TrueLabel) {
    store
        .feedback()
        .record(&NewFeedback {
            workflow_id,
            action_id: "",
            feedback_type: if said == label {
                FeedbackType::Correct
            } else {
                FeedbackType::Incorrect
            },
            label,
            system_label: said,
            attack_type: None,
            confidence: 1.0,
            correction: None,
            analyst,
        })
        .await
        .unwrap();
}

/// Ten judged workflows (default thresholds: medium 4, high 7, critical 9):
///
/// | type      | score | level    | vigil  | truth  |    |
/// |-----------|-------|----------|--------|--------|----|
/// | port_scan | 7.2   | high     | attack | benign | FP |
/// | port_scan | 7.4   | high     | attack | benign | FP |
/// | port_scan | 7.3   | high     | attack | benign | FP |
/// | port_scan | 9.5   | critical | attack | attack | TP |
/// | port_scan | 2.0   | low      | benign | benign | TN |
/// | dos       | 8.0   | high     | attack | attack | TP |
/// | dos       | 7.8   | high     | attack | attack | TP |
/// | dos       | 6.8   | medium   | benign | attack | FN |
/// | dos       | 5.0   | medium   | benign | benign | TN |
/// | dos       | 3.0   | low      | benign | benign | TN |
///
/// plus a workflow without a verdict and a failed one (neither counts), and superseded and
/// second-analyst verdicts that the newest current verdict overrules.
async fn hand_built_verdicts(store: &Store) {
    use TrueLabel::{Attack, Benign};
    let thresholds = RiskThresholds::default();
    let rows = [
        ("port_scan", 7.2, Benign),
        ("port_scan", 7.4, Benign),
        ("port_scan", 7.3, Benign),
        ("port_scan", 9.5, Attack),
        ("port_scan", 2.0, Benign),
        ("dos", 8.0, Attack),
        ("dos", 7.8, Attack),
        ("dos", 6.8, Attack),
        ("dos", 5.0, Benign),
        ("dos", 3.0, Benign),
    ];
    for (i, (threat_type, score, truth)) in rows.into_iter().enumerate() {
        let level = thresholds.level(score);
        let said = TrueLabel::verdict_of(level);
        let s = signal(&format!("evt-{i}"), threat_type, "198.51.100.1", 22);
        let id = record(
            store,
            &s,
            now(),
            results(
                score,
                level,
                None,
                serde_json::json!({}),
                serde_json::json!({}),
            ),
        )
        .await;
        match i {
            // Alice first agreed with vigil, then changed her mind: only the second counts.
            0 => {
                judge(store, &id, "alice", said, said).await;
                judge(store, &id, "alice", said, truth).await;
            }
            // Bob said otherwise first; Carol's later verdict is the newest current one.
            5 => {
                judge(store, &id, "bob", said, Benign).await;
                judge(store, &id, "carol", said, truth).await;
            }
            _ => judge(store, &id, "alice", said, truth).await,
        }
    }
    let s = signal("unjudged", "dos", "198.51.100.2", 80);
    record(
        store,
        &s,
        now(),
        results(
            9.9,
            Severity::Critical,
            None,
            serde_json::json!({}),
            serde_json::json!({}),
        ),
    )
    .await;
    record_failed(store, "failed").await;
}

async fn feedback_service(sandbox: &Sandbox) -> Service {
    let mut service = sandbox.spawn("feedback", vigil_feedback::run_in);
    service.ready(PATIENCE).await;
    service
}

#[tokio::test]
async fn insights_equal_the_hand_computed_numbers() {
    let sandbox = Sandbox::with(&[
        "feedback.retrain_after_labels=0",
        "feedback.accuracy_floor=0",
    ])
    .await;
    hand_built_verdicts(sandbox.store()).await;
    let feedback = feedback_service(&sandbox).await;

    let insights = vigil_feedback::insights(sandbox.bus()).await.unwrap();
    let o = &insights.overall;
    assert_eq!((o.judged, o.correct), (10, 6));
    assert_eq!(
        (
            o.true_positives,
            o.false_positives,
            o.true_negatives,
            o.false_negatives
        ),
        (3, 3, 3, 1)
    );
    assert_eq!(o.accuracy, Some(0.6));
    assert_eq!(
        o.false_positive_rate,
        Some(0.5),
        "3 of 6 benign called attacks"
    );
    assert_eq!(
        o.false_negative_rate,
        Some(0.25),
        "1 of 4 attacks called benign"
    );

    let by_type: Vec<(&str, u64, u64, u64, u64)> = insights
        .by_threat_type
        .iter()
        .map(|g| {
            (
                g.key.as_str(),
                g.tally.judged,
                g.tally.correct,
                g.tally.false_positives,
                g.tally.false_negatives,
            )
        })
        .collect();
    assert_eq!(by_type, [("dos", 5, 4, 0, 1), ("port_scan", 5, 2, 3, 0)]);
    let by_level: Vec<(&str, u64, u64)> = insights
        .by_risk_level
        .iter()
        .map(|g| (g.key.as_str(), g.tally.judged, g.tally.correct))
        .collect();
    assert_eq!(
        by_level,
        [
            ("critical", 1, 1),
            ("high", 5, 2),
            ("medium", 2, 1),
            ("low", 2, 2)
        ]
    );
    let errors: Vec<(&str, Severity, TrueLabel, u64)> = insights
        .error_patterns
        .iter()
        .map(|e| (e.threat_type.as_str(), e.risk_level, e.label, e.count))
        .collect();
    assert_eq!(
        errors,
        [
            ("port_scan", Severity::High, TrueLabel::Benign, 3),
            ("dos", Severity::Medium, TrueLabel::Attack, 1)
        ]
    );

    // The sweep: at 7.5 the three port scans scored 7.2-7.4 are benign, nothing else changes.
    let at = |high: f64| {
        insights
            .threshold_sweep
            .iter()
            .find(|o| o.high == high)
            .unwrap()
    };
    assert_eq!(at(7.0).tally.correct, 6);
    assert_eq!(at(7.5).tally.correct, 9);
    assert_eq!(
        (at(7.5).false_positives_avoided, at(7.5).threats_missed),
        (3, 0)
    );
    assert_eq!((at(8.0).tally.correct, at(8.0).threats_missed), (8, 1));
    assert_eq!((at(6.5).tally.correct, at(6.5).threats_missed), (7, -1));
    assert_eq!(insights.recommendations.len(), 1);
    let advice = &insights.recommendations[0];
    assert_eq!(
        (advice.setting.as_str(), advice.current, advice.proposed),
        ("thresholds.high", 7.0, 7.5)
    );
    assert_eq!(
        advice.message,
        "raising the high threshold from 7.0 to 7.5 would have avoided 3 of 3 false positives \
         and missed 0 more true threats (accuracy 60.0 % -> 90.0 % on 10 judged workflows)"
    );
    feedback.stop().await;
}

#[tokio::test]
async fn the_sweep_follows_the_configured_thresholds() {
    // With high at 8.0 the dos signals at 7.8 are missed; the recorded levels are kept.
    let sandbox = Sandbox::with(&[
        "feedback.retrain_after_labels=0",
        "feedback.accuracy_floor=0",
        "thresholds.high=8.0",
    ])
    .await;
    hand_built_verdicts(sandbox.store()).await;
    let feedback = feedback_service(&sandbox).await;

    let insights = vigil_feedback::insights(sandbox.bus()).await.unwrap();
    assert_eq!(insights.thresholds.unwrap().high, 8.0);
    let current = insights
        .threshold_sweep
        .iter()
        .find(|o| o.high == 8.0)
        .unwrap();
    assert_eq!(
        (current.false_positives_avoided, current.threats_missed),
        (0, 0)
    );
    assert_eq!(current.tally.correct, 8);
    let advice = &insights.recommendations[0];
    assert_eq!(advice.proposed, 7.5);
    assert_eq!(
        advice.message,
        "lowering the high threshold from 8.0 to 7.5 would have caught 1 of 2 missed threats \
         and raised 0 more false positives (accuracy 80.0 % -> 90.0 % on 10 judged workflows)"
    );

    // A body that is not an insights request is refused with one message.
    let reply = sandbox
        .nats()
        .send_request(
            sandbox.bus().topology().feedback_insights_subject(),
            async_nats::Request::new()
                .payload(Bytes::from_static(b"[1,2]"))
                .timeout(Some(PATIENCE)),
        )
        .await
        .unwrap();
    let reply: InsightsReply = serde_json::from_slice(&reply.payload).unwrap();
    assert!(!reply.ok);
    assert!(reply.error.unwrap().starts_with("not an insights request"));
    feedback.stop().await;
}
