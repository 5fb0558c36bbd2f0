//! The feedback service: analysts' verdicts on workflows, the labelled training examples they
//! make, and the retraining trigger.
//!
//! - **Submit** (request/reply, queue group `vigil-feedback`, on
//!   [`Topology::feedback_submit_subject`](vigil_bus::Topology::feedback_submit_subject)):
//!   a `vigil.v1.FeedbackRecord` as protobuf, or as proto3 JSON with `Content-Type:
//!   application/json`. The reply is always one JSON [`SubmitReply`]: `{"ok":true,...}` with
//!   the stored verdict, or `{"ok":false,"error":"..."}` with one message saying what to fix;
//!   nothing is stored for a refused submission.
//! - **Stored** in PostgreSQL with its workflow, idempotently (the same verdict sent again is
//!   one row and one event); a different verdict of the same analyst on the same workflow and
//!   action supersedes the earlier one, which stays in the history. Each new verdict gives the
//!   workflow's signal its true label as an analyst-labelled training example (`correct`: the
//!   workflow's own verdict; `incorrect` and `partial`: the label the analyst gives, required).
//! - **Announced** as FEEDBACK_RECEIVED on `vigil.events.feedback_received`, with the message id
//!   `feedback_received:<verdict id>`; one that could not be published is sent again.
//! - **Retraining**: when labelled verdicts since the last run reach
//!   `feedback.retrain_after_labels`, or vigil's accuracy over the last
//!   `feedback.accuracy_window` verdicts falls below `feedback.accuracy_floor`, the service asks
//!   the trainer for a run on [`vigil_trainer::run_subject`] with the reason; once per crossing,
//!   across replicas and restarts (see [`vigil_store::Feedback::check_retrain`]).
//! - **Review queue** (request/reply, same queue group, on
//!   [`Topology::feedback_review_subject`](vigil_bus::Topology::feedback_review_subject)):
//!   `{"limit": N}` gets the unjudged workflows a verdict would teach most about, ranked by a
//!   documented score and spread over patterns, each with its reasons (see [`review`]).
//! - **Insights** (request/reply, same queue group, on
//!   [`Topology::feedback_insights_subject`](vigil_bus::Topology::feedback_insights_subject)):
//!   vigil's accuracy by the verdicts, its error rates and most frequent mistakes, and the high
//!   threshold the recorded scores say would have served better (see [`insights`]).

mod client;
pub mod insights;
mod metrics;
mod queries;
mod retrain;
pub mod review;
mod submit;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vigil_config::Config;
use vigil_runtime::ServiceContext;
use vigil_store::Store;

pub use client::{
    QUERY_TIMEOUT, QueryError, SubmitError, insights, review, submit, submit_subject,
};
pub use insights::{Insights, InsightsReply};
pub use review::{ReviewItem, ReviewReply};
pub use submit::{SubmitOutcome, SubmitReply};

use crate::metrics::FeedbackMetrics;
use crate::queries::Queries;
use crate::retrain::Retrainer;
use crate::submit::Submissions;

/// The queue group replicas share, so one submission is handled once.
pub const QUEUE_GROUP: &str = "vigil-feedback";

/// Requests (submissions, review and insights requests) handled at once by one replica.
const MAX_IN_FLIGHT: usize = 64;

/// Why the feedback service stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] vigil_bus::Error),
    #[error(transparent)]
    Store(#[from] vigil_store::Error),
    #[error("invalid feedback settings: {0}")]
    Config(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Result of a feedback service operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs a standalone feedback service (with its own `/metrics` endpoint) until `shutdown`
/// completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    vigil_runtime::run_standalone(config, shutdown, run_in).await
}

/// Runs the feedback service in a shared context until `token` is cancelled. Shutdown stops
/// taking requests and answers the ones in flight.
pub async fn run_in(ctx: ServiceContext, token: CancellationToken) -> Result<()> {
    let config = ctx.config.clone();
    config.feedback.validate().map_err(Error::Config)?;
    let store = Store::connect_and_migrate(&config.database).await?;
    let bus = vigil_runtime::connect_bus(&ctx, &token).await?;
    let metrics = FeedbackMetrics::register(&ctx.metrics);
    let retrainer = Arc::new(Retrainer::new(
        store.clone(),
        bus.client().clone(),
        vigil_trainer::run_subject(bus.topology().prefix()),
        ctx.live.clone(),
        ctx.instance.clone(),
        metrics.clone(),
        token.clone(),
    ));
    let submissions = Arc::new(Submissions::new(
        store.clone(),
        bus.clone(),
        Arc::clone(&retrainer),
        metrics,
    ));

    let queries = Arc::new(Queries::new(
        store.clone(),
        bus.client().clone(),
        config.feedback.review_window,
        config.thresholds,
    ));

    let subject = bus.topology().feedback_submit_subject();
    let subscribe = |subject: String, what: &'static str| {
        let client = bus.client().clone();
        async move {
            client
                .queue_subscribe(subject.clone(), QUEUE_GROUP.to_string())
                .await
                .map_err(|e| anyhow::anyhow!("cannot subscribe to {what} on {subject}: {e}"))
        }
    };
    let mut requests = subscribe(subject.clone(), "submissions").await?;
    let mut reviews =
        subscribe(bus.topology().feedback_review_subject(), "review requests").await?;
    let mut insight_requests = subscribe(
        bus.topology().feedback_insights_subject(),
        "insights requests",
    )
    .await?;
    // A round trip, so the subscriptions are in place before we report ready.
    bus.client()
        .flush()
        .await
        .map_err(|e| anyhow::anyhow!("cannot confirm the subscriptions: {e}"))?;
    let beat = ctx.pulse.register("feedback");
    beat.check_postgres(store.pool().clone());
    ctx.readiness.set("feedback", true);
    info!(%subject, trainer = %retrainer.subject(), "feedback service waiting for verdicts");

    // A crossing reached while no replica ran, and requests left undelivered, are acted on now.
    retrainer.check_and_send().await;
    let checker = {
        let retrainer = Arc::clone(&retrainer);
        tokio::spawn(async move { retrainer.run_checks().await })
    };
    let mut sweeps = tokio::time::interval(Duration::from_secs(config.feedback.retry_secs));
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweeps.tick().await;

    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            message = requests.next() => {
                let Some(message) = message else {
                    warn!("the submission subscription ended");
                    break;
                };
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                let submissions = Arc::clone(&submissions);
                let beat = beat.clone();
                in_flight.spawn(async move {
                    let started = Instant::now();
                    let ok = submissions.handle(message).await;
                    beat.record(ok, started.elapsed());
                    drop(slot);
                });
            }
            Some(message) = reviews.next() => {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                let queries = Arc::clone(&queries);
                in_flight.spawn(async move {
                    queries.handle_review(message).await;
                    drop(slot);
                });
            }
            Some(message) = insight_requests.next() => {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                let queries = Arc::clone(&queries);
                in_flight.spawn(async move {
                    queries.handle_insights(message).await;
                    drop(slot);
                });
            }
            _ = sweeps.tick() => {
                submissions.republish_events().await;
                retrainer.check_and_send().await;
            }
        }
    }
    // Stop taking requests, then answer those in flight.
    for subscription in [&mut requests, &mut reviews, &mut insight_requests] {
        if let Err(error) = subscription.unsubscribe().await {
            warn!(%error, "cannot unsubscribe from requests");
        }
    }
    while in_flight.join_next().await.is_some() {}
    if let Err(error) = checker.await {
        warn!(%error, "the retraining checker ended abnormally");
    }
    if let Err(error) = bus.client().flush().await {
        warn!(%error, "cannot flush the last replies");
    }
    ctx.readiness.remove("feedback");
    info!("feedback service stopped");
    Ok(())
}
