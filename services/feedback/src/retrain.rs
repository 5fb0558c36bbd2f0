//! The retraining trigger: asks the trainer for a run when the verdicts say so.
//!
//! The rule is checked and a request recorded in one PostgreSQL transaction under an advisory
//! lock ([`vigil_store::Feedback::check_retrain`]), so replicas fire once between them and a
//! restart forgets nothing. The request is then sent on the trainer's request subject. NATS
//! answers a request nobody subscribes to with "no responders" at once; a request that draws no
//! such answer within [`DELIVERY_GRACE`] reached a trainer (which replies only when its run is
//! over), and the run report is recorded when it comes. An undelivered request is sent again
//! every `feedback.retry_secs` by whichever replica claims it, and no new one is made meanwhile.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vigil_config::FeedbackSettings;
use vigil_runtime::LiveConfig;
use vigil_store::{RetrainRequest, RetrainRule, Store};
use vigil_trainer::{RunReport, RunRequest};

use crate::metrics::FeedbackMetrics;

/// How long a request may go unanswered by "no responders" before it counts as delivered.
pub(crate) const DELIVERY_GRACE: Duration = Duration::from_secs(2);

/// Who the trainer's registry records as having asked.
pub const REQUESTED_BY: &str = "feedback";

pub(crate) struct Retrainer {
    store: Store,
    client: Client,
    subject: String,
    /// The retraining thresholds follow the live configuration.
    live: LiveConfig,
    lease: Duration,
    report_timeout: Duration,
    instance: String,
    metrics: FeedbackMetrics,
    token: CancellationToken,
    /// Check requests not yet served (at most one is kept).
    wake: tokio::sync::Notify,
}

impl Retrainer {
    pub fn new(
        store: Store,
        client: Client,
        subject: String,
        live: LiveConfig,
        instance: String,
        metrics: FeedbackMetrics,
        token: CancellationToken,
    ) -> Self {
        let settings = &live.get().feedback;
        Self {
            store,
            client,
            subject,
            // Longer than a send can take, so no two replicas send one request at once.
            lease: Duration::from_secs(settings.retry_secs).max(DELIVERY_GRACE * 3),
            report_timeout: Duration::from_secs(settings.run_report_timeout_secs),
            live,
            instance,
            metrics,
            token,
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The trainer's request subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Asks the background checker ([`run_checks`](Self::run_checks)) for a check, so the
    /// submission that crossed the threshold is answered without waiting for the trainer.
    /// Requests made while a check runs are served by one more check, not one each: a burst
    /// of verdicts costs a few checks, not a queue of them.
    pub fn request_check(&self) {
        self.wake.notify_one();
    }

    /// Runs a check whenever one was requested, until the service stops.
    pub async fn run_checks(&self) {
        loop {
            tokio::select! {
                () = self.token.cancelled() => return,
                () = self.wake.notified() => self.check_and_send().await,
            }
        }
    }

    /// Checks the rule; when it fires, sends the new request. Also sends requests left
    /// undelivered (no trainer was listening, or a replica stopped before sending).
    pub async fn check_and_send(&self) {
        let rule = retrain_rule(&self.live.get().feedback);
        match self.store.feedback().check_retrain(&rule).await {
            Ok(Some(request)) => {
                self.metrics.retrain_requests.inc();
                info!(request_id = %request.id, trigger = %request.trigger,
                      reason = %request.reason, "asking the trainer for a run");
                match self
                    .store
                    .feedback()
                    .claim_retrain(Some(&request.id), self.lease)
                    .await
                {
                    Ok(Some(claimed)) => self.send(claimed).await,
                    Ok(None) => {}
                    Err(error) => warn!(%error, "cannot claim the retraining request"),
                }
            }
            Ok(None) => self.retry_undelivered().await,
            Err(error) => warn!(%error, "cannot check the retraining trigger"),
        }
    }

    /// Sends the undelivered requests no replica tried within the lease.
    pub async fn retry_undelivered(&self) {
        loop {
            match self.store.feedback().claim_retrain(None, self.lease).await {
                Ok(Some(request)) => self.send(request).await,
                Ok(None) => return,
                Err(error) => {
                    warn!(%error, "cannot claim an undelivered retraining request");
                    return;
                }
            }
        }
    }

    async fn send(&self, request: RetrainRequest) {
        let body = match serde_json::to_vec(&RunRequest {
            requested_by: format!("{REQUESTED_BY} ({})", self.instance),
            reason: request.reason.clone(),
        }) {
            Ok(body) => body,
            Err(error) => {
                warn!(%error, "cannot encode the run request");
                return;
            }
        };
        let client = self.client.clone();
        let subject = self.subject.clone();
        let asked = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(self.report_timeout));
        let mut answer = Box::pin(async move { client.send_request(subject, asked).await });
        let feedback = self.store.feedback();
        tokio::select! {
            result = &mut answer => match result {
                Ok(reply) => {
                    // A run that finished within the grace (a failed or skipped one).
                    self.delivered(&request).await;
                    record_report(&self.store, &request.id, &reply.payload).await;
                }
                Err(error) => {
                    let why = match error.kind() {
                        RequestErrorKind::NoResponders => {
                            format!("no trainer listens on {}", self.subject)
                        }
                        _ => format!("requesting a run on {}: {error}", self.subject),
                    };
                    warn!(request_id = %request.id, error = %why,
                          "the retraining request did not reach a trainer; it is sent again later");
                    if let Err(error) = feedback.retrain_failed(&request.id, &why).await {
                        warn!(%error, "cannot note the failed retraining request");
                    }
                }
            },
            () = tokio::time::sleep(DELIVERY_GRACE) => {
                self.delivered(&request).await;
                // The trainer answers when its run is over; the report is recorded then.
                let store = self.store.clone();
                let token = self.token.clone();
                let id = request.id.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        result = answer => match result {
                            Ok(reply) => record_report(&store, &id, &reply.payload).await,
                            Err(error) => {
                                info!(request_id = %id, %error, "no run report for a retraining request");
                            }
                        },
                    }
                });
            }
        }
    }

    async fn delivered(&self, request: &RetrainRequest) {
        info!(request_id = %request.id, subject = %self.subject, "a trainer took the retraining request");
        if let Err(error) = self.store.feedback().retrain_delivered(&request.id).await {
            warn!(%error, "cannot note the delivered retraining request");
        }
    }
}

async fn record_report(store: &Store, id: &str, payload: &[u8]) {
    match serde_json::from_slice::<RunReport>(payload) {
        Ok(report) => {
            let json = serde_json::to_value(&report).unwrap_or_default();
            let outcome = serde_json::to_value(report.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            info!(request_id = %id, run_id = %report.run_id, %outcome, reason = %report.reason,
                  "the trainer reported on a requested run");
            if let Err(error) = store
                .feedback()
                .retrain_reported(id, &report.run_id, &outcome, &json)
                .await
            {
                warn!(%error, "cannot record the run report");
            }
        }
        Err(error) => warn!(%error, request_id = %id, "the trainer's answer is not a run report"),
    }
}

/// The thresholds of `feedback.retrain_after_labels`, `accuracy_floor` and `accuracy_window`.
fn retrain_rule(settings: &FeedbackSettings) -> RetrainRule {
    RetrainRule {
        after_labels: settings.retrain_after_labels,
        accuracy_floor: settings.accuracy_floor,
        accuracy_window: settings.accuracy_window,
    }
}
