//! Run requests on `vigil.trainer.run`. Each one passes the rate limit
//! (`trainer.max_requested_runs_per_hour`) and waits in a short queue for the trainer's loop, or
//! is answered at once with a refusal saying when the next run is allowed, also while a run is
//! training.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use vigil_bus::async_nats::{Client, Subject, Subscriber};
use vigil_runtime::LiveConfig;
use vigil_store::{RunAdmission, Store};

use crate::RunRequest;
use crate::run::{RunOutcome, RunReport, Trigger};

/// Admitted requests waiting for the run in progress; more are refused even within the rate.
pub(crate) const QUEUED_REQUESTS: usize = 32;

/// A request admitted by the rate limit, waiting to run.
#[derive(Debug)]
pub(crate) struct QueuedRequest {
    pub trigger: Trigger,
    /// Where the requester waits for the run report.
    pub reply: Option<Subject>,
}

/// Turns the subscription into a queue of admitted requests, refusing the others.
pub(crate) struct RequestGate {
    pub client: Client,
    pub live: LiveConfig,
    /// Where the admissions of every replica are counted.
    pub store: Store,
    pub refused: Counter,
    pub invalid: Counter,
    pub queue: mpsc::Sender<QueuedRequest>,
}

impl RequestGate {
    /// Admits or refuses every request until `token` is cancelled or the subscription ends.
    pub async fn run(self, mut requests: Subscriber, token: CancellationToken) {
        // Logged once per streak of refusals; each one is counted in the metric.
        let mut refusing = false;
        loop {
            let message = tokio::select! {
                biased;
                () = token.cancelled() => break,
                message = requests.next() => message,
            };
            let Some(message) = message else {
                warn!("the run request subscription ended");
                break;
            };
            // A status (no responders, ...) is the server speaking, not a requester.
            if message.status.is_some() {
                self.invalid.inc();
                debug!(subject = %message.subject, status = ?message.status,
                       "ignoring a status message on the run request subject");
                continue;
            }
            let trigger = match trigger_of(&message.payload) {
                Ok(trigger) => trigger,
                Err(error) => {
                    // The first is worth a warning; the rest are counted.
                    if self.invalid.get() == 0 {
                        warn!(%error, "refusing a message on the run request subject that is not a run request");
                    } else {
                        debug!(%error, "refusing a message that is not a run request");
                    }
                    self.invalid.inc();
                    if let Some(reply) = message.reply {
                        let report = RunReport::unstarted(
                            Trigger::Request {
                                requested_by: "unknown".to_owned(),
                                reason: String::new(),
                            },
                            RunOutcome::Failed,
                            format!("no run started: the body is not a run request ({error})"),
                        );
                        send_report(&self.client, reply, &report).await;
                    }
                    continue;
                }
            };
            let per_hour = self.live.get().trainer.max_requested_runs_per_hour;
            let requested_by = match &trigger {
                Trigger::Request { requested_by, .. } => requested_by.clone(),
                other => other.to_string(),
            };
            let admissions = self.store.run_admissions();
            let refusal = match admissions.admit(per_hour, &requested_by).await {
                Ok(RunAdmission::Admitted { id }) => {
                    let queued = QueuedRequest {
                        trigger,
                        reply: message.reply,
                    };
                    match self.queue.try_send(queued) {
                        Ok(()) => {
                            refusing = false;
                            continue;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                        Err(mpsc::error::TrySendError::Full(queued)) => {
                            if let Err(error) = admissions.refund(id).await {
                                warn!(%error, "cannot give back the admission of a request that was not queued");
                            }
                            let reason = format!(
                                "no run started: {QUEUED_REQUESTS} requested runs are already \
                                 waiting for the run in progress; ask again once they are done"
                            );
                            (queued.trigger, queued.reply, reason, None)
                        }
                    }
                }
                Ok(RunAdmission::Refused {
                    in_window,
                    retry_after,
                }) => {
                    let (reason, next) = refusal_reason(per_hour, in_window, retry_after);
                    (trigger, message.reply, reason, next)
                }
                Err(error) => {
                    let reason = format!(
                        "no run started: the rate limit (shared by the trainer replicas in \
                         PostgreSQL) cannot be checked: {error}; ask again once the database answers"
                    );
                    (trigger, message.reply, reason, None)
                }
            };
            let (trigger, reply, reason, next_run_allowed_at) = refusal;
            self.refused.inc();
            if refusing {
                debug!(trigger = %trigger, %reason, "run request refused");
            } else {
                refusing = true;
                // The rest of a streak is counted in vigil_trainer_runs_rate_limited_total.
                info!(trigger = %trigger, %reason, "run request refused by the rate limit");
            }
            let mut report = RunReport::unstarted(trigger, RunOutcome::RateLimited, reason);
            report.next_run_allowed_at = next_run_allowed_at;
            if let Some(reply) = reply {
                send_report(&self.client, reply, &report).await;
            }
        }
    }
}

/// Why a request over the limit is refused, and when the next one is allowed.
fn refusal_reason(
    limit: u32,
    in_window: u64,
    retry_after: Option<Duration>,
) -> (String, Option<chrono::DateTime<Utc>>) {
    match retry_after {
        None => (
            "no run started: trainer.max_requested_runs_per_hour is 0, so the trainer starts no \
             run on request (only on its schedule and on new examples)"
                .to_owned(),
            None,
        ),
        Some(wait) => {
            // Rounded up: asking again at the stated time must not be refused again.
            let wait = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
            let at = chrono::Duration::from_std(wait)
                .ok()
                .and_then(|wait| Utc::now().checked_add_signed(wait));
            let when = at.map_or_else(
                || format!("in {} s", wait.as_secs()),
                |at| {
                    format!(
                        "at {} (in {} s)",
                        at.format("%Y-%m-%dT%H:%M:%SZ"),
                        wait.as_secs()
                    )
                },
            );
            (
                format!(
                    "no run started: {in_window} requested runs in the last hour, and \
                     trainer.max_requested_runs_per_hour is {limit}; the next is allowed {when}"
                ),
                at,
            )
        }
    }
}

/// The trigger of a request: who asked and why, from its body (an empty body is a request by
/// "nats request"); an error when the body is not a [`RunRequest`].
pub(crate) fn trigger_of(payload: &[u8]) -> Result<Trigger, serde_json::Error> {
    let asked: RunRequest = if payload.trim_ascii().is_empty() {
        RunRequest::default()
    } else {
        serde_json::from_slice(payload)?
    };
    let requested_by = if asked.requested_by.trim().is_empty() {
        "nats request".to_string()
    } else {
        asked.requested_by
    };
    Ok(Trigger::Request {
        requested_by,
        reason: asked.reason,
    })
}

/// Sends `report` to the requester and flushes at once: on shutdown the connection closes right
/// after this, and an unflushed reply would leave the requester waiting for nothing.
pub(crate) async fn send_report(client: &Client, reply: Subject, report: &RunReport) {
    let body = serde_json::to_vec(report).unwrap_or_default();
    let sent = client.publish(reply, body.into()).await;
    if let Err(error) = sent
        .map_err(|e| e.to_string())
        .and(client.flush().await.map_err(|e| e.to_string()))
    {
        warn!(%error, run_id = %report.run_id, "cannot reply with the run report");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_why_and_when_to_ask_again() {
        let (reason, at) = refusal_reason(2, 2, Some(Duration::from_millis(1_500)));
        assert!(
            reason.contains("2 requested runs in the last hour")
                && reason.contains("max_requested_runs_per_hour is 2")
                && reason.contains("(in 2 s)"),
            "{reason}"
        );
        let at = at.expect("a time");
        assert!(at > Utc::now() && at <= Utc::now() + chrono::Duration::seconds(3));
        let (reason, at) = refusal_reason(0, 0, None);
        assert!(reason.contains("is 0"), "{reason}");
        assert_eq!(at, None);
    }

    #[test]
    fn only_a_run_request_or_an_empty_body_asks_for_a_run() {
        let anonymous = Trigger::Request {
            requested_by: "nats request".into(),
            reason: String::new(),
        };
        assert_eq!(trigger_of(b"").unwrap(), anonymous);
        assert_eq!(trigger_of(b" \n").unwrap(), anonymous);
        assert_eq!(trigger_of(b"{}").unwrap(), anonymous);
        assert_eq!(
            trigger_of(br#"{"requested_by":"feedback","reason":"200 labels"}"#).unwrap(),
            Trigger::Request {
                requested_by: "feedback".into(),
                reason: "200 labels".into(),
            }
        );
        // What JetStream answers a publish with, pointed at the run subject by its publisher.
        let ack = trigger_of(br#"{"stream":"VIGIL_INGEST", "seq":1}"#).unwrap_err();
        assert!(ack.to_string().contains("unknown field"), "{ack}");
        assert!(trigger_of(b"\xff not json").is_err());
    }
}
