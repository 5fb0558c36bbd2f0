//! The effects of a workflow: alerts sent and remediations carried out. Each is recorded as
//! intended before it happens and with its outcome after, so an attempt that stops anywhere
//! (a crash, a kill, a lost connection) is finished by the next one without repeating what was
//! done:
//!
//! - an outcome already recorded is never acted on again;
//! - an intent without an outcome is acted on again with the same key (an alert's id, a
//!   remediation's action id) and, for alerts, the same bytes, so a receiver that deduplicates
//!   by key applies it once;
//! - intents no attempt of their workflow will ever come back to (its message was
//!   dead-lettered) are finished by the [sweeper](crate::sweeper).

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;
use vigil_domain::{ActionStatus, Alert, AlertStatus, RemediationAction};
use vigil_notify::{DeliveryReport, Notifier};
use vigil_soar::{PlannedAction, Prepared, Remediator, RoutingDecision};
use vigil_store::{Intent, Store};

use crate::metrics::OrchestratorMetrics;

/// Sends alerts and carries out remediations, recording each before and after.
pub(crate) struct Effects {
    store: Store,
    pub notifier: Notifier,
    pub remediator: Remediator,
    metrics: OrchestratorMetrics,
}

impl Effects {
    pub fn new(
        store: Store,
        notifier: Notifier,
        remediator: Remediator,
        metrics: OrchestratorMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            notifier,
            remediator,
            metrics,
        })
    }

    /// Records the alerts of `decision` (rendered: what is recorded is what is sent), sends the
    /// new ones and any an earlier attempt recorded but never sent, and records how each
    /// delivery ended. Returns the event's alerts as recorded, oldest first.
    pub async fn send_alerts(
        &self,
        event_id: &str,
        decision: &RoutingDecision,
    ) -> Result<Vec<Alert>, vigil_store::Error> {
        let alerts = self.store.alerts();
        let mut fresh = Vec::new();
        let mut earlier_attempt = false;
        for alert in &decision.alerts {
            let payload = self
                .notifier
                .render(alert, &decision.details)
                .unwrap_or(Value::Null);
            if alerts.insert_if_absent(alert, &payload).await?.is_new() {
                fresh.push(alert.clone());
            } else {
                earlier_attempt = true;
            }
        }
        // An earlier attempt that stopped between recording its alerts and recording their
        // delivery left them pending: send those now, with the id and bytes recorded then.
        let left = if earlier_attempt {
            alerts.pending_for_event(event_id).await?
        } else {
            Vec::new()
        };
        let resent = futures::future::join_all(
            left.into_iter()
                .filter(|(alert, _)| !fresh.iter().any(|f| f.channel == alert.channel))
                .map(|(alert, payload)| async move {
                    self.metrics.alerts_resent.inc();
                    self.notifier.resend(&alert, payload).await
                }),
        );
        let (mut reports, resent) =
            futures::future::join(self.notifier.deliver_all(fresh, &decision.details), resent)
                .await;
        reports.extend(resent);
        for report in &reports {
            // A grouped or rate-limited alert the fallback did not take over is final as
            // recorded; every other one has a delivery to record.
            if !matches!(
                report.alert.status,
                AlertStatus::Grouped | AlertStatus::RateLimited
            ) {
                self.record_delivery(report).await?;
            }
        }
        if earlier_attempt {
            // Some were recorded by that attempt: read them all back.
            return alerts.for_event(event_id).await;
        }
        // Every alert of the event was recorded just now and has its report here, as it ended
        // (one per channel: a fallback that takes over an alert's row replaces its report).
        let mut recorded: Vec<Alert> = reports.into_iter().map(|report| report.alert).collect();
        recorded.sort_by(|a, b| {
            // The database keeps microseconds: order as `Alerts::for_event` would.
            let micros = |alert: &Alert| alert.created_at.timestamp_micros();
            (micros(a), &a.channel).cmp(&(micros(b), &b.channel))
        });
        Ok(recorded)
    }

    /// Sends an alert an abandoned attempt left pending (the sweeper) and records the result.
    pub async fn resend_alert(
        &self,
        alert: &Alert,
        payload: Value,
    ) -> Result<AlertStatus, vigil_store::Error> {
        self.metrics.alerts_resent.inc();
        let report = self.notifier.resend(alert, payload).await;
        self.record_delivery(&report).await?;
        Ok(report.alert.status)
    }

    async fn record_delivery(&self, report: &DeliveryReport) -> Result<(), vigil_store::Error> {
        let alerts = self.store.alerts();
        let a = &report.alert;
        // A fallback delivery adds a row for its channel.
        alerts.record_delivery(a, &report.payload).await?;
        match a.status {
            AlertStatus::Delivered => self.metrics.alerts_delivered.inc(),
            AlertStatus::Failed => {
                tracing::warn!(channel = %a.channel, error = ?a.last_error, event_id = %a.event_id, "alert delivery failed");
                self.metrics.alerts_failed.inc()
            }
            _ => 0,
        };
        Ok(())
    }

    /// Carries out the planned actions of one event: each passes the safety checks, is
    /// recorded as intended under the cap shared by every replica, is executed, and has its
    /// outcome recorded. An action an earlier attempt recorded is not taken again: its outcome
    /// is reused, or (still pending) it is executed again with the same key.
    pub async fn remediate(
        &self,
        event_id: &str,
        planned: &[PlannedAction],
        risk_score: f64,
    ) -> Result<Vec<RemediationAction>, vigil_store::Error> {
        let cap = self.remediator.settings().max_actions_per_minute;
        let mut actions = Vec::with_capacity(planned.len());
        for planned in planned {
            let mut action =
                match self
                    .remediator
                    .prepare(event_id, planned, risk_score, Utc::now())
                {
                    Prepared::Final(action) => {
                        actions.push(action);
                        continue;
                    }
                    Prepared::Ready(action) => action,
                };
            match self
                .store
                .remediations()
                .record_intent(&action, cap)
                .await?
            {
                Intent::Recorded => {}
                Intent::CapReached { cap } => {
                    self.remediator.refuse(
                        &mut action,
                        format!(
                            "the cap of {cap} actions per minute (soar.remediation.\
                             max_actions_per_minute, shared by every replica) is reached"
                        ),
                    );
                    actions.push(action);
                    continue;
                }
                Intent::Exists(earlier) if earlier.status == ActionStatus::Pending => {
                    // Interrupted between the call and its answer: call again, same key.
                    self.metrics.remediations_resumed.inc();
                    action = earlier;
                }
                Intent::Exists(earlier) => {
                    actions.push(earlier);
                    continue;
                }
            }
            actions.push(self.finish(action).await?);
        }
        Ok(actions)
    }

    /// Executes a recorded intent and records its outcome.
    pub async fn finish(
        &self,
        action: RemediationAction,
    ) -> Result<RemediationAction, vigil_store::Error> {
        let done = self.remediator.execute(action).await;
        self.store.remediations().record_outcome(&done).await?;
        Ok(done)
    }
}
