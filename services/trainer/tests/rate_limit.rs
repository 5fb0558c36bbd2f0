//! `trainer.max_requested_runs_per_hour` against the real NATS and PostgreSQL: a flood of run
//! requests spread over two trainer replicas starts the allowed runs only (the limit is shared,
//! not per replica), every other request is answered with a refusal that says when to ask
//! again, and the limit follows the live configuration.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::Utc;
use vigil_domain::ModelType;
use vigil_ml::{BoostConfig, ForestConfig, MlpConfig, TrainConfig};
use vigil_testkit::{Sandbox, Service, eventually, nsl_kdd};
use vigil_trainer::{DatasetFormat, RunOutcome, RunReport};

/// Rows of the 20 % file the runs train on: real models, quick to fit.
const ROWS: usize = 1_500;
/// A guard against a hung service, not a speed requirement.
const PATIENCE: Duration = Duration::from_secs(900);
/// Requests sent at once: enough that both replicas get some (all 16 to one replica of two
/// is a chance of one in 32,768).
const FLOOD: usize = 16;

fn small_train_config(dir: &tempfile::TempDir) -> String {
    let config = TrainConfig {
        forest: ForestConfig {
            n_trees: 10,
            ..ForestConfig::default()
        },
        xgboost: BoostConfig {
            rounds: 10,
            ..BoostConfig::default()
        },
        mlp: MlpConfig {
            max_epochs: 2,
            ..MlpConfig::default()
        },
        ..TrainConfig::default()
    };
    let path = dir.path().join("train.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    format!("trainer.train_config=\"{}\"", path.display())
}

async fn request(client: &async_nats::Client, subject: &str, who: usize) -> RunReport {
    let body = format!(r#"{{"requested_by":"flood-{who}"}}"#);
    let reply = client
        .request(subject.to_owned(), body.into_bytes().into())
        .await
        .unwrap_or_else(|e| panic!("request {who}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap()
}

fn is_run(report: &RunReport) -> bool {
    matches!(
        report.outcome,
        RunOutcome::Promoted | RunOutcome::NotPromoted
    )
}

/// A refusal says why and when the next request is allowed: within the hour, not before now.
fn assert_refusal(report: &RunReport, limit: u32, sent_at: chrono::DateTime<Utc>) {
    assert_eq!(report.outcome, RunOutcome::RateLimited, "{report:?}");
    assert!(
        report
            .reason
            .contains(&format!("trainer.max_requested_runs_per_hour is {limit}"))
            && report.reason.contains("the next is allowed at"),
        "{}",
        report.reason
    );
    let next = report.next_run_allowed_at.expect("when to ask again");
    assert!(
        next > sent_at && next <= Utc::now() + chrono::Duration::hours(1),
        "next run allowed at {next}, sent at {sent_at}"
    );
    assert!(report.registered.is_empty() && report.examples.total == 0);
}

/// A counter summed over the replicas.
fn counter(trainers: &[Service], name: &str) -> u64 {
    trainers.iter().map(|t| t.counter(name)).sum()
}

async fn ensembles(sandbox: &Sandbox) -> usize {
    sandbox
        .store()
        .models()
        .list(Some(ModelType::Ensemble))
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_run_requests_starts_only_the_allowed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::with(&[
        small_train_config(&dir),
        // Once a year at midnight on January 1st, and never on new examples: every run here
        // is a requested one.
        "trainer.schedule=\"0 0 0 1 1 *\"".to_string(),
        "trainer.min_new_examples=1000000000".to_string(),
        "trainer.cross_val_folds=0".to_string(),
        "trainer.max_requested_runs_per_hour=2".to_string(),
    ])
    .await;
    let path = nsl_kdd::subset(dir.path(), ROWS);
    let examples = vigil_trainer::read_dataset(&path, DatasetFormat::NslKdd)
        .unwrap()
        .examples;
    vigil_trainer::import_examples(sandbox.store(), &examples)
        .await
        .unwrap();
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(PATIENCE))
        .connect(vigil_testkit::nats_url())
        .await
        .unwrap();
    let subject = vigil_trainer::run_subject(sandbox.prefix());
    // Two replicas share the requests (a queue group) and must share the limit too.
    let mut trainers = [
        sandbox.spawn("trainer", vigil_trainer::run_in),
        sandbox.spawn("trainer", vigil_trainer::run_in),
    ];
    for trainer in &mut trainers {
        trainer.ready(PATIENCE).await;
    }

    let sent_at = Utc::now();
    let replies =
        futures::future::join_all((0..FLOOD).map(|who| request(&client, &subject, who))).await;
    let (runs, refused): (Vec<_>, Vec<_>) = replies.iter().partition(|r| is_run(r));
    assert_eq!(runs.len(), 2, "{replies:#?}");
    assert_eq!(refused.len(), FLOOD - 2, "{replies:#?}");
    for report in &refused {
        assert_refusal(report, 2, sent_at);
    }
    assert_eq!(counter(&trainers, "vigil_trainer_runs_started"), 2);
    assert_eq!(
        counter(&trainers, "vigil_trainer_runs_rate_limited"),
        (FLOOD - 2) as u64
    );
    assert!(
        trainers.iter().all(|t| {
            t.counter("vigil_trainer_runs_started") + t.counter("vigil_trainer_runs_rate_limited")
                > 0
        }),
        "the flood reached both replicas"
    );
    assert_eq!(ensembles(&sandbox).await, 2, "one ensemble per allowed run");

    // The limit is live: raised to 3, one more request runs; the one after it is refused.
    let bucket = sandbox.bus().config_bucket().await.unwrap();
    bucket
        .put("trainer.max_requested_runs_per_hour", "3")
        .await
        .unwrap();
    eventually(PATIENCE, "the trainers to apply the new limit", || async {
        trainers
            .iter()
            .all(|t| t.ctx().live.get().trainer.max_requested_runs_per_hour == 3)
    })
    .await;
    let third = request(&client, &subject, FLOOD).await;
    assert!(is_run(&third), "{third:?}");
    let sent_at = Utc::now();
    let fourth = request(&client, &subject, FLOOD + 1).await;
    assert_refusal(&fourth, 3, sent_at);
    assert!(
        fourth.reason.contains("3 requested runs in the last hour"),
        "{}",
        fourth.reason
    );
    assert_eq!(counter(&trainers, "vigil_trainer_runs_started"), 3);
    assert_eq!(
        counter(&trainers, "vigil_trainer_runs_rate_limited"),
        (FLOOD - 1) as u64
    );
    assert_eq!(ensembles(&sandbox).await, 3);

    // 0 refuses every request, saying that no request will do.
    bucket
        .put("trainer.max_requested_runs_per_hour", "0")
        .await
        .unwrap();
    eventually(PATIENCE, "the trainers to apply a limit of 0", || async {
        trainers
            .iter()
            .all(|t| t.ctx().live.get().trainer.max_requested_runs_per_hour == 0)
    })
    .await;
    let never = request(&client, &subject, FLOOD + 2).await;
    assert_eq!(never.outcome, RunOutcome::RateLimited, "{never:?}");
    assert_eq!(never.next_run_allowed_at, None);
    assert!(never.reason.contains("is 0"), "{}", never.reason);
    for trainer in trainers {
        trainer.stop().await;
    }
    assert_eq!(ensembles(&sandbox).await, 3);
}
