//! The read-only request/reply subjects: the review queue and the learning insights.

use async_nats::{Client, Message};
use serde::Serialize;
use tracing::{info, warn};
use vigil_domain::RiskThresholds;
use vigil_store::Store;

use crate::insights::{self, InsightsReply, InsightsRequest};
use crate::review::{self, Candidate, ReviewReply, ReviewRequest};

/// Answers review and insights requests; shared by every in-flight task.
pub(crate) struct Queries {
    store: Store,
    client: Client,
    /// The newest unjudged workflows the review queue scores.
    review_window: u64,
    /// The configured thresholds the insights' sweep compares against.
    thresholds: RiskThresholds,
}

impl Queries {
    pub fn new(
        store: Store,
        client: Client,
        review_window: u64,
        thresholds: RiskThresholds,
    ) -> Self {
        Self {
            store,
            client,
            review_window,
            thresholds,
        }
    }

    /// Answers one request on the review subject.
    pub async fn handle_review(&self, message: Message) {
        let reply = match ReviewRequest::decode(&message.payload) {
            Err(error) => ReviewReply::refused(error),
            Ok(limit) => self.review(limit).await,
        };
        if let Some(error) = &reply.error {
            info!(%error, "review request refused");
        }
        self.reply(message, &reply).await;
    }

    /// The review queue: the best `limit` of the newest unjudged workflows.
    pub async fn review(&self, limit: usize) -> ReviewReply {
        let stored = match self
            .store
            .feedback()
            .review_candidates(self.review_window)
            .await
        {
            Ok(stored) => stored,
            Err(error) => {
                warn!(%error, "cannot list the workflows to review");
                return ReviewReply::refused(format!(
                    "cannot list the workflows to review: {error}"
                ));
            }
        };
        // Without the verdicts the queue still ranks; it only cannot follow them up.
        let judged = self
            .store
            .feedback()
            .judged_signals(review::JUDGED_LEADS)
            .await
            .unwrap_or_else(|error| {
                warn!(%error, "the review queue ranks without the newest verdicts");
                Vec::new()
            });
        let candidates = stored
            .into_iter()
            .filter_map(|c| {
                Candidate::from_stored(c)
                    .map_err(|error| warn!(%error, "a workflow is left out of the review queue"))
                    .ok()
            })
            .collect();
        // Ranking compares hundreds of signals with each other: off the async threads.
        match tokio::task::spawn_blocking(move || review::rank(candidates, &judged, limit)).await {
            Ok(items) => ReviewReply::items(items),
            Err(error) => {
                warn!(%error, "ranking the review queue failed");
                ReviewReply::refused(format!("ranking the review queue failed: {error}"))
            }
        }
    }

    /// Answers one request on the insights subject.
    pub async fn handle_insights(&self, message: Message) {
        let reply = match InsightsRequest::decode(&message.payload) {
            Err(error) => InsightsReply::refused(error),
            Ok(()) => match self.store.feedback().judged_outcomes().await {
                Ok(judged) => InsightsReply {
                    ok: true,
                    error: None,
                    insights: Some(insights::compute(&judged, &self.thresholds)),
                },
                Err(error) => {
                    warn!(%error, "cannot read the judged workflows");
                    InsightsReply::refused(format!("cannot read the judged workflows: {error}"))
                }
            },
        };
        if let Some(error) = &reply.error {
            info!(%error, "insights request refused");
        }
        self.reply(message, &reply).await;
    }

    async fn reply(&self, message: Message, reply: &impl Serialize) {
        let Some(reply_to) = message.reply else {
            warn!(subject = %message.subject, "a request came without a reply subject");
            return;
        };
        let body = serde_json::to_vec(reply).unwrap_or_else(|_| {
            br#"{"ok":false,"error":"the reply could not be encoded"}"#.to_vec()
        });
        if let Err(error) = self.client.publish(reply_to, body.into()).await {
            warn!(%error, "cannot send a reply");
        }
    }
}
