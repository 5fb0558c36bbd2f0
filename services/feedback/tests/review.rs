//! The review queue against the real NATS and PostgreSQL: a hand-made set of workflows with
//! known predictions, ranked by the documented score, spread over patterns, judged and failed
//! workflows left out, each item with its reasons.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{now, prediction, record, record_failed, results, signal};
use vigil_domain::{AbstainReason, Abstention, FeedbackType, Severity, TrueLabel};
use vigil_feedback::{ReviewItem, ReviewReply};
use vigil_store::NewFeedback;
use vigil_testkit::{Sandbox, Service, eventually};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(180);

fn none() -> serde_json::Value {
    serde_json::json!({ "skipped": "test" })
}

/// Records the set; returns the id of the judged workflow.
///
/// | name          | pattern (type, port, source)  | u    | n   | d      | i   | score  |
/// |---------------|-------------------------------|------|-----|--------|-----|--------|
/// | scan-0..4     | port_scan 22 198.51.100.0/24  | 1    | 0   | 0.79   | 0   | 0.5475 |
/// | novel         | exfiltration 443 203.0.113.0  | 0.4  | 1   | 0.05   | 0   | 0.4025 |
/// | abstained     | malware 445 192.0.2.0         | 1    | 0   | 0      | 0   | 0.35   |
/// | no-prediction | brute_force 3389 192.0.2.0    | 0.5  | 0   | 0      | 0   | 0.175  |
/// | remediated    | dos 80 203.0.113.0            | 0    | 0   | 0      | 1   | 0.15   |
/// | alerted       | phishing 25 203.0.113.0       | 0    | 0   | 0      | 0.5 | 0.075  |
/// | confident     | suspicious 8080 10.0.0.0      | 0.02 | 0   | 0      | 0   | 0.007  |
async fn hand_made_set(sandbox: &Sandbox) -> String {
    let store = sandbox.store();
    let start = now() - chrono::Duration::minutes(10);
    let at = |i: i64| start + chrono::Duration::seconds(i);
    let split = prediction(0.5, [0.12, 0.91, 0.40], 0.0);
    for i in 0..5 {
        let s = signal(
            &format!("scan-{i}"),
            "port_scan",
            &format!("198.51.100.{}", 10 + i),
            22,
        );
        record(
            store,
            &s,
            at(i),
            results(5.0, Severity::Medium, Some(&split), none(), none()),
        )
        .await;
    }
    let novel = prediction(0.2, [0.2, 0.1, 0.15], 0.9);
    let s = signal("novel", "exfiltration", "203.0.113.50", 443);
    record(
        store,
        &s,
        at(10),
        results(2.0, Severity::Low, Some(&novel), none(), none()),
    )
    .await;

    let mut abstained = prediction(0.9, [0.9, 0.9, 0.9], 0.0);
    abstained.abstention = Some(Abstention {
        reason: AbstainReason::LowCoverage,
        detail: "the signal carried 20% of the model's inputs".into(),
    });
    let s = signal("abstained", "malware", "192.0.2.77", 445);
    record(
        store,
        &s,
        at(11),
        results(6.0, Severity::Medium, Some(&abstained), none(), none()),
    )
    .await;

    let s = signal("no-prediction", "brute_force", "192.0.2.78", 3389);
    record(
        store,
        &s,
        at(12),
        results(5.5, Severity::Medium, None, none(), none()),
    )
    .await;

    let sure = prediction(1.0, [1.0, 1.0, 1.0], 0.0);
    let s = signal("remediated", "dos", "203.0.113.7", 80);
    let remediation = serde_json::json!({
        "actions": [{"kind": "block_address", "target": "203.0.113.7", "status": "applied"}],
        "notes": [],
    });
    let alerts = serde_json::json!({
        "channels": [{"channel": "slack", "status": "delivered", "attempts": 1}],
    });
    record(
        store,
        &s,
        at(13),
        results(
            9.5,
            Severity::Critical,
            Some(&sure),
            alerts.clone(),
            remediation.clone(),
        ),
    )
    .await;

    let never = prediction(0.0, [0.0, 0.0, 0.0], 0.0);
    let s = signal("alerted", "phishing", "203.0.113.8", 25);
    record(
        store,
        &s,
        at(14),
        results(7.5, Severity::High, Some(&never), alerts.clone(), none()),
    )
    .await;

    let confident = prediction(0.99, [0.99, 0.99, 0.99], 0.0);
    let s = signal("confident", "suspicious", "10.0.0.9", 8080);
    record(
        store,
        &s,
        at(15),
        results(6.5, Severity::Medium, Some(&confident), none(), none()),
    )
    .await;

    // It would top the list (split, novel, remediated), but an analyst has judged it.
    let loud = prediction(0.5, [0.0, 1.0, 0.5], 1.0);
    let s = signal("judged", "worm", "198.18.0.1", 135);
    let judged = record(
        store,
        &s,
        at(16),
        results(9.5, Severity::Critical, Some(&loud), alerts, remediation),
    )
    .await;
    store
        .feedback()
        .record(&NewFeedback {
            workflow_id: &judged,
            action_id: "",
            feedback_type: FeedbackType::Correct,
            label: TrueLabel::Attack,
            system_label: TrueLabel::Attack,
            attack_type: None,
            confidence: 1.0,
            correction: None,
            analyst: "alice",
        })
        .await
        .unwrap();
    record_failed(store, "failed").await;
    judged
}

async fn feedback_service(sandbox: &Sandbox) -> Service {
    let mut service = sandbox.spawn("feedback", vigil_feedback::run_in);
    service.ready(PATIENCE).await;
    service
}

async fn sandbox() -> Sandbox {
    Sandbox::with(&[
        "feedback.retrain_after_labels=0",
        "feedback.accuracy_floor=0",
    ])
    .await
}

/// What an item is called in the table above (the near-copies are all `scan`).
fn name(item: &ReviewItem) -> &str {
    if item.event_id.starts_with("scan-") {
        "scan"
    } else {
        &item.event_id
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn the_queue_ranks_by_the_documented_score_spread_over_patterns() {
    let sandbox = sandbox().await;
    let judged = hand_made_set(&sandbox).await;
    let feedback = feedback_service(&sandbox).await;

    let items = vigil_feedback::review(sandbox.bus(), 20).await.unwrap();
    let names: Vec<&str> = items.iter().map(name).collect();
    // Priorities: scan 0.5475, novel 0.4025, abstained 0.35, 2nd scan 0.27375, no-prediction
    // 0.175, remediated 0.15, 3rd scan 0.136875, alerted 0.075, 4th scan 0.0684, 5th scan
    // 0.0342, confident 0.007.
    assert_eq!(
        names,
        [
            "scan",
            "novel",
            "abstained",
            "scan",
            "no-prediction",
            "remediated",
            "scan",
            "alerted",
            "scan",
            "scan",
            "confident"
        ]
    );
    assert!(
        items.iter().all(|i| i.workflow_id != judged),
        "judged: left out"
    );
    assert!(
        items.iter().all(|i| i.event_id != "failed"),
        "failed: left out"
    );
    let scores: Vec<f64> = items.iter().map(|i| i.score).collect();
    for (got, want) in scores.iter().zip([
        0.5475, 0.4025, 0.35, 0.5475, 0.175, 0.15, 0.5475, 0.075, 0.5475, 0.5475, 0.007,
    ]) {
        assert!(close(*got, want), "{scores:?}");
    }
    assert!(close(items[3].priority, 0.27375));
    // The second pick is the exploration lane's: of the two signals the model calls benign
    // (novel at 0.2, alerted at 0.0), novel's novelty member is above the other's (rarity
    // 0.5, the lane's floor); alerted (rarity 0) stays with the score. Novel is the lane's
    // only candidate, typical of nothing around it: its value is 0, and the lane still has
    // it to give.
    let explored: Vec<&str> = items.iter().filter(|i| i.explore).map(name).collect();
    assert_eq!(explored, ["novel"]);
    assert!(close(items[1].priority, 0.0), "{}", items[1].priority);
    assert!(!items[1].follow_up);
    assert!(
        items[1].reasons[0].starts_with(
            "explore: the model calls it benign (probability 0.20, threshold 0.50), yet by the \
             novelty member (0.900) it is more unusual than 50.0 % of the 2 candidates"
        ),
        "{:?}",
        items[1].reasons
    );
    // The newest copy of the scan comes first.
    assert_eq!(items[0].event_id, "scan-4");
    assert_eq!(items[0].pattern, "port_scan tcp/22 from 198.51.100.0/24");
    assert_eq!(items[0].threat_type, "port_scan");
    assert_eq!(items[0].source_ip.as_deref(), Some("198.51.100.14"));
    assert_eq!(items[0].probability, Some(0.5));

    // Each says why.
    let reasons = |n: &str| {
        items
            .iter()
            .find(|i| i.event_id == n)
            .unwrap()
            .reasons
            .join(" | ")
    };
    assert!(
        reasons("scan-4")
            .contains("members disagree: xgboost 0.91, neural_network 0.40, random_forest 0.12"),
        "{}",
        reasons("scan-4")
    );
    assert!(reasons("scan-4").contains("the model is unsure: probability 0.50, threshold 0.50"));
    assert!(reasons("scan-3").contains("1 of its pattern already listed above"));
    assert!(reasons("novel").contains("never seen this: the novelty member says 0.90"));
    assert!(reasons("abstained").contains("the model abstained: the signal carried 20%"));
    assert!(reasons("no-prediction").contains("no model prediction"));
    assert_eq!(
        reasons("remediated"),
        "remediated: block_address 203.0.113.7"
    );
    assert_eq!(reasons("alerted"), "alerted: slack (delivered)");
    assert!(
        items
            .iter()
            .all(|i| !i.reasons.is_empty() || i.event_id == "confident")
    );

    // A small budget: the near-copies do not crowd out the other patterns.
    let top: Vec<String> = vigil_feedback::review(sandbox.bus(), 3)
        .await
        .unwrap()
        .iter()
        .map(|i| name(i).to_owned())
        .collect();
    assert_eq!(top, ["scan", "novel", "abstained"]);

    // A verdict takes a workflow off the queue.
    sandbox
        .store()
        .feedback()
        .record(&NewFeedback {
            workflow_id: &items[1].workflow_id,
            action_id: "",
            feedback_type: FeedbackType::Incorrect,
            label: TrueLabel::Attack,
            system_label: TrueLabel::Benign,
            attack_type: None,
            confidence: 1.0,
            correction: None,
            analyst: "bob",
        })
        .await
        .unwrap();
    let top: Vec<String> = vigil_feedback::review(sandbox.bus(), 3)
        .await
        .unwrap()
        .iter()
        .map(|i| name(i).to_owned())
        .collect();
    assert_eq!(top, ["scan", "abstained", "scan"]);
    feedback.stop().await;
}

/// A flow the model calls benign (probability 0.05), its novelty member at `novelty`, of
/// `service` with `bytes`.
async fn record_flow(
    store: &vigil_store::Store,
    event_id: &str,
    novelty: f64,
    service: &str,
    bytes: u64,
) -> String {
    let mut s = signal(event_id, "network_connection", "192.0.2.99", 20);
    s.destination_port = None;
    s.bytes = bytes;
    s.categorical.insert("service".into(), service.into());
    s.numeric.insert("count".into(), (bytes % 7) as f64);
    let benign = prediction(0.05, [0.05, 0.05, 0.05], novelty);
    record(
        store,
        &s,
        now(),
        results(1.0, Severity::Low, Some(&benign), none(), none()),
    )
    .await
}

#[tokio::test]
async fn a_verdict_of_attack_leads_the_next_ranking_to_signals_like_it() {
    let sandbox = sandbox().await;
    let store = sandbox.store();
    // Ordinary traffic (rarity 0) and two groups of unusual flows: ftp data (the rarer) and
    // telnet, 8 each.
    for i in 0..20 {
        record_flow(store, &format!("ordinary-{i:02}"), 0.001, "http", 300 + i).await;
    }
    let mut telnet = Vec::new();
    for i in 0..8 {
        record_flow(store, &format!("ftp-{i}"), 0.3, "ftp_data", 1_000 + i).await;
        telnet.push(record_flow(store, &format!("telnet-{i}"), 0.2, "telnet", 5_000 + i).await);
    }
    let feedback = feedback_service(&sandbox).await;
    let explored = |items: &[ReviewItem]| -> Vec<String> {
        items
            .iter()
            .filter(|i| i.explore)
            .map(|i| i.event_id.clone())
            .collect()
    };

    // Before any verdict the lane starts with the rarer group, then the other.
    let items = vigil_feedback::review(sandbox.bus(), 4).await.unwrap();
    let first = explored(&items);
    assert!(
        first[0].starts_with("ftp-") && first[1].starts_with("telnet-"),
        "{items:#?}"
    );

    // An analyst says one telnet flow was an attack: the lane's picks now follow it up.
    sandbox
        .store()
        .feedback()
        .record(&NewFeedback {
            workflow_id: &telnet[3],
            action_id: "",
            feedback_type: FeedbackType::Incorrect,
            label: TrueLabel::Attack,
            system_label: TrueLabel::Benign,
            attack_type: Some("warezclient"),
            confidence: 1.0,
            correction: None,
            analyst: "carol",
        })
        .await
        .unwrap();
    let items = vigil_feedback::review(sandbox.bus(), 8).await.unwrap();
    let followed: Vec<&ReviewItem> = items.iter().filter(|i| i.explore).collect();
    assert_eq!(followed.len(), 4, "{items:#?}");
    for item in &followed {
        assert!(
            item.follow_up && item.event_id.starts_with("telnet-") && item.event_id != "telnet-3",
            "{items:#?}"
        );
        assert!(
            item.reasons[0].starts_with("explore, follow-up: like event telnet-3 (distance "),
            "{:?}",
            item.reasons
        );
    }
    feedback.stop().await;
}

/// Sends a raw body on the review subject, as any NATS client could.
async fn ask_raw(sandbox: &Sandbox, body: &[u8]) -> ReviewReply {
    let reply = sandbox
        .nats()
        .send_request(
            sandbox.bus().topology().feedback_review_subject(),
            async_nats::Request::new()
                .payload(Bytes::copy_from_slice(body))
                .timeout(Some(PATIENCE)),
        )
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test]
async fn bad_requests_get_one_clear_error() {
    let sandbox = sandbox().await;
    let feedback = feedback_service(&sandbox).await;

    for (body, expected) in [
        (
            &br#"{"limit":0}"#[..],
            "limit must be within 1..=1000, got 0",
        ),
        (
            br#"{"limit":5000}"#,
            "limit must be within 1..=1000, got 5000",
        ),
        (b"{limit", "not a review request"),
        (br#"{"count":3}"#, "unknown field `count`"),
    ] {
        let reply = ask_raw(&sandbox, body).await;
        assert!(!reply.ok);
        assert!(reply.items.is_none());
        let error = reply.error.unwrap();
        assert!(error.contains(expected), "{error}");
    }
    // An empty body asks for the default; nothing to review is an empty list.
    let reply = ask_raw(&sandbox, b"").await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.items, Some(Vec::new()));
    let error = vigil_feedback::review(sandbox.bus(), 0).await.unwrap_err();
    assert!(
        error.to_string().contains("limit must be within"),
        "{error}"
    );
    feedback.stop().await;

    // With no service running, the client says so. The server may take a moment to drop the
    // stopped service's subscription; until it does, a request goes to it and goes unanswered.
    let subject = sandbox.bus().topology().feedback_review_subject();
    eventually(
        PATIENCE,
        "the stopped service's subscription is gone",
        || async {
            let sent = sandbox
                .nats()
                .send_request(
                    subject.clone(),
                    async_nats::Request::new()
                        .payload(Bytes::from_static(b"{}"))
                        .timeout(Some(Duration::from_secs(1))),
                )
                .await;
            matches!(sent, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders)
        },
    )
    .await;
    let error = vigil_feedback::review(sandbox.bus(), 5).await.unwrap_err();
    assert!(
        matches!(error, vigil_feedback::QueryError::NoService { .. }),
        "{error}"
    );
}
