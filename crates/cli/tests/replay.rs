//! `vigil replay nsl-kdd FILE --with-feedback` against the broker, orchestrator and feedback
//! service started in a sandbox: every replayed row's label comes back as an analyst's verdict
//! and labels its training example; with a budget only that many verdicts are given.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use vigil_ml::LabeledExample;
use vigil_testkit::{Sandbox, Service, nsl_kdd};

mod common;
use common::{text, vigil};

/// A guard against a hung system, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(180);

/// A sandbox running what a replay with feedback needs; the retraining trigger is off.
async fn with_services() -> (Sandbox, Vec<Service>) {
    let sandbox = Sandbox::with(&[
        "feedback.retrain_after_labels=0",
        "feedback.accuracy_floor=0",
    ])
    .await;
    let mut services = vec![
        sandbox.spawn("broker", vigil_broker::run_in),
        sandbox.spawn("orchestrator", vigil_orchestrator::run_in),
        sandbox.spawn("feedback", vigil_feedback::run_in),
    ];
    for service in &mut services {
        service.ready(PATIENCE).await;
    }
    (sandbox, services)
}

/// The first `rows` rows of the 20 % file, written to a file of their own.
fn fixture(dir: &tempfile::TempDir, rows: usize) -> (String, &'static [LabeledExample]) {
    let path = nsl_kdd::subset(dir.path(), rows);
    let examples = &nsl_kdd::examples()[..rows];
    (path.to_str().unwrap().to_owned(), examples)
}

/// Every verdict: event id -> (verdict, label, vigil's label, attack type, analyst).
async fn verdicts(
    sandbox: &Sandbox,
) -> HashMap<String, (String, String, String, Option<String>, String)> {
    let rows: Vec<(String, String, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT w.event_id, f.feedback_type, f.label, f.system_label, f.attack_type, f.analyst \
         FROM feedback f JOIN workflows w ON w.id = f.workflow_id",
    )
    .fetch_all(sandbox.store().pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, verdict, label, system, attack, analyst)| {
            (id, (verdict, label, system, attack, analyst))
        })
        .collect()
}

async fn stop(services: Vec<Service>) {
    for service in services {
        service.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replayed_row_gets_its_label_back_as_a_verdict() {
    let (sandbox, services) = with_services().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, examples) = fixture(&dir, 40);

    let out = vigil(&sandbox, &["replay", "nsl-kdd", &file, "--with-feedback"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("replayed 40 rows")
            && stdout.contains("workflows completed: 40 (0 failed)"),
        "{stdout}"
    );
    assert!(stdout.contains("verdicts given: 40"), "{stdout}");
    assert!(stdout.contains("refused 0"), "{stdout}");

    let given = verdicts(&sandbox).await;
    assert_eq!(given.len(), 40, "one verdict per row");
    let mut matched = 0;
    for example in examples {
        let (verdict, label, system, attack_type, analyst) = &given[&example.signal.id];
        let truth = if example.label { "attack" } else { "benign" };
        assert_eq!(label, truth, "row {}", example.signal.id);
        assert_eq!(analyst, "replay");
        let expected = if system == truth {
            matched += 1;
            "correct"
        } else {
            "incorrect"
        };
        assert_eq!(verdict, expected, "row {}", example.signal.id);
        if example.label {
            assert_eq!(
                attack_type, &example.class_name,
                "row {}",
                example.signal.id
            );
        } else {
            assert_eq!(attack_type, &None);
        }
    }
    assert!(
        stdout.contains(&format!("matched the label on {matched} of 40")),
        "{stdout}"
    );

    // Each row's signal is now a training example with the row's label, from the analyst.
    let labels: HashMap<String, bool> = sqlx::query_as::<_, (String, bool)>(
        "SELECT source_ref, label FROM training_examples WHERE source = 'feedback'",
    )
    .fetch_all(sandbox.store().pool())
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(labels.len(), 40);
    for example in examples {
        assert_eq!(labels[&example.signal.id], example.label);
    }

    // Again: the same rows, the same verdicts, nothing new stored.
    let out = vigil(&sandbox, &["replay", "nsl-kdd", &file, "--with-feedback"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("40 were already stored"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(sandbox.count("SELECT count(*) FROM feedback").await, 40);
    stop(services).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_picked_at_random_gives_exactly_that_many_verdicts() {
    let (sandbox, services) = with_services().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = fixture(&dir, 30);

    let out = vigil(
        &sandbox,
        &[
            "replay",
            "nsl-kdd",
            &file,
            "--with-feedback",
            "--budget",
            "7",
            "--pick",
            "random",
            "--seed",
            "3",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("7 of 30 completed workflows at random (seed 3)"),
        "{stdout}"
    );
    assert!(stdout.contains("verdicts given: 7"), "{stdout}");
    assert_eq!(sandbox.count("SELECT count(*) FROM feedback").await, 7);
    assert_eq!(
        sandbox
            .count("SELECT count(*) FROM training_examples WHERE source = 'feedback'")
            .await,
        7
    );

    // --pick without --budget, or --budget without --pick, is a usage error.
    let out = vigil(&sandbox, &["replay", "nsl-kdd", &file, "--budget", "3"]).await;
    assert!(!out.status.success());
    stop(services).await;
}

/// The feedback service's review queue picks the budget's rows: the rows judged are the queue's
/// top three, as the queue ranked them before any verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_picked_by_the_review_queue_judges_the_queue_s_picks() {
    let (sandbox, services) = with_services().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = fixture(&dir, 12);

    // The rows once without verdicts, then the queue's ranking of their workflows.
    let out = vigil(&sandbox, &["replay", "nsl-kdd", &file]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    vigil_testkit::eventually(PATIENCE, "the 12 workflows complete", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM workflows")
            .fetch_one(sandbox.store().pool())
            .await
            .unwrap();
        n == 12
    })
    .await;
    let mut expected: Vec<String> = vigil_feedback::review(sandbox.bus(), 3)
        .await
        .expect("the review queue answers")
        .into_iter()
        .map(|item| item.event_id)
        .collect();
    assert_eq!(expected.len(), 3);

    let out = vigil(
        &sandbox,
        &[
            "replay",
            "nsl-kdd",
            &file,
            "--with-feedback",
            "--budget",
            "3",
            "--pick",
            "queue",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("3 of 12 completed workflows by the review queue"),
        "{stdout}"
    );
    let given = verdicts(&sandbox).await;
    let mut judged: Vec<String> = given.keys().cloned().collect();
    judged.sort();
    expected.sort();
    assert_eq!(judged, expected, "the queue's top three");
    stop(services).await;
}
