//! The learning loop end to end, with the real broker, orchestrator, feedback service and
//! trainer: vigil's own verdicts never become training labels; an analyst's verdict does, and
//! asks the trainer for a run whose report says why it ran and what it learned from.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use prost::Message;
use vigil_domain::{FeedbackSubmission, FeedbackType, TrueLabel};
use vigil_ml::{BoostConfig, ForestConfig, MlpConfig, TrainConfig};
use vigil_proto::v1;
use vigil_store::ExampleSource;
use vigil_testkit::{Sandbox, eventually, nsl_kdd};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(900);

/// Data-set rows the trainer learns from besides the analyst's verdict.
const ROWS: usize = 2_000;

/// Smaller models than the defaults, so a run takes seconds; still the real learners.
fn small_train_config(dir: &tempfile::TempDir) -> String {
    let config = TrainConfig {
        forest: ForestConfig {
            n_trees: 20,
            ..ForestConfig::default()
        },
        xgboost: BoostConfig {
            rounds: 30,
            ..BoostConfig::default()
        },
        mlp: MlpConfig {
            max_epochs: 5,
            ..MlpConfig::default()
        },
        ..TrainConfig::default()
    };
    let path = dir.path().join("train.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    format!("trainer.train_config=\"{}\"", path.display())
}

fn signal(id: &str, source_ip: &str, confidence: f64, severity: v1::Severity) -> v1::ThreatSignal {
    v1::ThreatSignal {
        id: id.into(),
        threat_type: "port_scan".into(),
        source_ip: source_ip.into(),
        destination_ip: "192.0.2.10".into(),
        destination_port: 22,
        protocol: "tcp".into(),
        confidence,
        severity: severity as i32,
        sensor: "learning-test".into(),
        timestamp: Some(chrono::Utc::now().into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_learns_from_analysts_and_data_sets_never_from_its_own_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::with(&[
        small_train_config(&dir),
        "soar.assessment.known_bad=[\"203.0.113.0/24\"]".to_string(),
        // Runs come only from the feedback trigger here: no schedule, no threshold.
        "trainer.schedule=\"0 0 0 1 1 *\"".to_string(),
        "trainer.min_new_examples=1000000".to_string(),
        "feedback.retrain_after_labels=1".to_string(),
        "feedback.accuracy_floor=0".to_string(),
    ])
    .await;
    let imported = vigil_trainer::import_examples(sandbox.store(), &nsl_kdd::examples()[..ROWS])
        .await
        .unwrap();
    assert_eq!(imported.inserted as usize, ROWS);

    // Three signals vigil rates as attacks (known-bad source, confident, critical). In truth
    // they come from the company's own scanner: vigil is wrong about all three. No analyst
    // answers for two of them.
    let broker = sandbox.spawn("broker", vigil_broker::run_in);
    let orchestrator = sandbox.spawn("orchestrator", vigil_orchestrator::run_in);
    let subject = sandbox.bus().topology().ingest_subject("test").unwrap();
    let ids = ["scanner-1", "scanner-2", "scanner-judged"];
    for (i, id) in ids.iter().enumerate() {
        let s = signal(
            id,
            &format!("203.0.113.{}", 10 + i),
            0.95,
            v1::Severity::Critical,
        );
        sandbox
            .bus()
            .jetstream()
            .publish(subject.clone(), s.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually(PATIENCE, "three workflows completed", || async {
        let done = sandbox
            .count("SELECT count(*) FROM workflows WHERE status = 'SUCCESS'")
            .await;
        if done == 3 { Ok(()) } else { Err(done) }
    })
    .await;
    broker.stop().await;
    orchestrator.stop().await;
    for id in ids {
        let level: String =
            sqlx::query_scalar("SELECT results->>'risk_level' FROM workflows WHERE event_id = $1")
                .bind(id)
                .fetch_one(sandbox.store().pool())
                .await
                .unwrap();
        assert!(
            level == "high" || level == "critical",
            "{id}: vigil's verdict must be attack for this test, got {level}"
        );
    }
    assert_eq!(sandbox.store().workflow_signals().count().await.unwrap(), 3);
    let examples = sandbox.store().training().load(u64::MAX).await.unwrap();
    assert_eq!(
        examples.len(),
        ROWS,
        "processing the signals labelled none of them"
    );
    assert!(examples.iter().all(|e| e.source == ExampleSource::Dataset));

    // The analyst answers for one: benign. The trigger (one label) asks the trainer for a run.
    let mut trainer = sandbox.spawn("trainer", vigil_trainer::run_in);
    trainer.ready(PATIENCE).await;
    let mut feedback = sandbox.spawn("feedback", vigil_feedback::run_in);
    feedback.ready(PATIENCE).await;
    let reply = vigil_feedback::submit(
        sandbox.nats(),
        sandbox.prefix(),
        &FeedbackSubmission {
            workflow: "scanner-judged".into(),
            action_id: String::new(),
            feedback_type: FeedbackType::Incorrect,
            label: Some(TrueLabel::Benign),
            attack_type: None,
            confidence: 1.0,
            correction: Some("our own vulnerability scanner".into()),
            analyst: "alice".into(),
        },
        PATIENCE,
    )
    .await
    .unwrap();
    assert!(reply.ok && reply.training_example, "{reply:?}");

    let report = eventually(PATIENCE, "the requested run reported", || async {
        let requests = sandbox
            .store()
            .feedback()
            .retrain_requests(10)
            .await
            .unwrap();
        match requests.first().and_then(|r| r.run_report.clone()) {
            Some(report) => Ok(report),
            None => Err(requests.len()),
        }
    })
    .await;
    assert_eq!(report["trigger"]["kind"], "request", "{report:#}");
    assert!(
        report["trigger"]["reason"]
            .as_str()
            .unwrap()
            .contains("1 labelled verdicts since the last run"),
        "{report:#}"
    );
    let outcome = report["outcome"].as_str().unwrap();
    assert!(
        outcome == "promoted" || outcome == "not_promoted",
        "{report:#}"
    );
    // What the run learned from: the data set and the analyst's one label; not one of vigil's
    // own verdicts, wrong (scanner-1, scanner-2) or not.
    let examples = &report["examples"];
    assert_eq!(examples["total"], ROWS + 1, "{examples:#}");
    assert_eq!(examples["by_source"]["dataset"], ROWS);
    assert_eq!(examples["by_source"]["feedback"], 1);
    assert_eq!(examples["cap"], sandbox.config().trainer.max_examples);
    assert_eq!(examples["evicted_by_source"]["dataset"], 0);
    let learned = sandbox.store().training().load(u64::MAX).await.unwrap();
    let judged = learned
        .iter()
        .find(|e| e.source_ref == "scanner-judged")
        .unwrap();
    assert_eq!(judged.source, ExampleSource::Feedback);
    assert!(!judged.label, "the analyst's label: benign");
    assert!(
        !learned
            .iter()
            .any(|e| e.source_ref == "scanner-1" || e.source_ref == "scanner-2"),
        "vigil's own (wrong) verdicts were learned"
    );
    // The registry says why the models were trained.
    let reasons: Vec<String> = sqlx::query_scalar("SELECT reason FROM model_events")
        .fetch_all(sandbox.store().pool())
        .await
        .unwrap();
    assert!(
        reasons.iter().any(|r| r.contains("labelled verdicts")),
        "{reasons:?}"
    );
    feedback.stop().await;
    trainer.stop().await;
}
