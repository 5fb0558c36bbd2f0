//! Delivery around the senders: retries, backoff, `Retry-After`, the fallback channel, reports.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::Value;
use vigil_config::{ChannelKind, ChannelSettings, DeliverySettings, RetryPolicy};
use vigil_domain::{Alert, AlertStatus};

use crate::error::{Error, Result};
use crate::{
    EmailSender, OpsgenieSender, PagerDutySender, SlackSender, TeamsSender, WebhookSender,
};

/// One alert channel.
#[async_trait]
pub trait Sender: Send + Sync + fmt::Debug {
    /// The channel it delivers to.
    fn channel(&self) -> ChannelKind;

    /// The alert in this channel's wire format, without credentials; stored as what was sent.
    fn render(&self, alert: &Alert, details: &Value) -> Value;

    /// One delivery attempt of a rendered payload.
    async fn send(&self, payload: &Value) -> Result<()>;
}

/// The outcome of delivering one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    /// The alert with its final status (`Delivered` or `Failed`, or untouched when it was not
    /// pending), `attempts`, `last_error` and `delivered_at`.
    pub alert: Alert,
    /// What was sent, without credentials; `Null` when nothing was.
    pub payload: Value,
    /// For a fallback delivery, the channels whose failure it stands in for.
    pub fallback_for: Vec<String>,
}

impl DeliveryReport {
    /// Whether the alert reached its channel.
    pub fn delivered(&self) -> bool {
        self.alert.status == AlertStatus::Delivered
    }
}

/// Delivers alerts through the configured senders.
#[derive(Debug, Clone)]
pub struct Notifier {
    senders: BTreeMap<ChannelKind, Arc<dyn Sender>>,
    retry: RetryPolicy,
    fallback: Option<ChannelKind>,
}

impl Notifier {
    /// A notifier with a sender for every configured channel.
    pub fn from_settings(channels: &ChannelSettings, delivery: &DeliverySettings) -> Result<Self> {
        let timeout = Duration::from_millis(delivery.request_timeout_ms);
        let mut notifier = Self::new(delivery.retry.clone(), delivery.fallback);
        if let Some(s) = &channels.slack {
            notifier = notifier.with_sender(Arc::new(SlackSender::new(s, timeout)?));
        }
        if let Some(s) = &channels.pagerduty {
            notifier = notifier.with_sender(Arc::new(PagerDutySender::new(s, timeout)?));
        }
        if let Some(s) = &channels.opsgenie {
            notifier = notifier.with_sender(Arc::new(OpsgenieSender::new(s, timeout)?));
        }
        if let Some(s) = &channels.teams {
            notifier = notifier.with_sender(Arc::new(TeamsSender::new(s, timeout)?));
        }
        if let Some(s) = &channels.email {
            notifier = notifier.with_sender(Arc::new(EmailSender::new(s)?));
        }
        if let Some(s) = &channels.webhook {
            notifier = notifier.with_sender(Arc::new(WebhookSender::new(s, timeout)?));
        }
        Ok(notifier)
    }

    /// A notifier without senders.
    pub fn new(retry: RetryPolicy, fallback: Option<ChannelKind>) -> Self {
        Self {
            senders: BTreeMap::new(),
            retry,
            fallback,
        }
    }

    /// Adds (or replaces) the sender of its channel.
    pub fn with_sender(mut self, sender: Arc<dyn Sender>) -> Self {
        self.senders.insert(sender.channel(), sender);
        self
    }

    /// The channels it can deliver to (give these to the router).
    pub fn channels(&self) -> Vec<ChannelKind> {
        self.senders.keys().copied().collect()
    }

    /// What `alert` looks like on its channel (the exact payload [`deliver`](Self::deliver)
    /// sends), or `None` when its channel has no sender. Stored with the alert before it is
    /// sent, so that a later attempt sends the same bytes.
    pub fn render(&self, alert: &Alert, details: &Value) -> Option<Value> {
        self.sender_for(alert)
            .map(|sender| sender.render(alert, details))
    }

    fn sender_for(&self, alert: &Alert) -> Option<&Arc<dyn Sender>> {
        alert
            .channel
            .parse::<ChannelKind>()
            .ok()
            .and_then(|c| self.senders.get(&c))
    }

    /// Delivers one alert to its own channel, with retries; no fallback.
    pub async fn deliver(&self, alert: &Alert, details: &Value) -> DeliveryReport {
        match self.render(alert, details) {
            Some(payload) => self.resend(alert, payload).await,
            None => self.not_configured(alert),
        }
    }

    /// Delivers one alert with a payload rendered earlier (see [`render`](Self::render)), with
    /// retries; no fallback. How an alert left pending by an interrupted attempt is sent.
    pub async fn resend(&self, alert: &Alert, payload: Value) -> DeliveryReport {
        let mut alert = alert.clone();
        let Some(sender) = self.sender_for(&alert).cloned() else {
            return self.not_configured(&alert);
        };
        let max_attempts = self.retry.max_attempts.max(1);
        let first_attempt = alert.attempts;
        loop {
            alert.attempts += 1;
            match sender.send(&payload).await {
                Ok(()) => {
                    tracing::info!(channel = %alert.channel, alert_id = %alert.id, attempts = alert.attempts, "alert delivered");
                    alert.status = AlertStatus::Delivered;
                    alert.last_error = None;
                    alert.delivered_at = Some(Utc::now());
                    break;
                }
                Err(e) if e.is_retryable() && alert.attempts - first_attempt < max_attempts => {
                    let wait = self
                        .retry
                        .delay(alert.attempts - first_attempt, e.retry_after());
                    tracing::warn!(channel = %alert.channel, alert_id = %alert.id, attempt = alert.attempts, error = %e, ?wait, "alert delivery failed; retrying");
                    alert.last_error = Some(e.to_string());
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::error!(channel = %alert.channel, alert_id = %alert.id, attempts = alert.attempts, error = %e, "alert delivery failed");
                    alert.status = AlertStatus::Failed;
                    alert.last_error = Some(e.to_string());
                    break;
                }
            }
        }
        DeliveryReport {
            alert,
            payload,
            fallback_for: Vec::new(),
        }
    }

    fn not_configured(&self, alert: &Alert) -> DeliveryReport {
        let mut alert = alert.clone();
        let err = Error::NotConfigured {
            channel: alert.channel.clone(),
        };
        alert.status = AlertStatus::Failed;
        alert.last_error = Some(err.to_string());
        DeliveryReport {
            alert,
            payload: Value::Null,
            fallback_for: Vec::new(),
        }
    }

    /// Delivers the pending alerts of one event concurrently, then, if any failed for good,
    /// sends the alert once to the fallback channel.
    ///
    /// Returns one report per input alert, in order (alerts that were not pending come back
    /// untouched), plus one for a fallback delivery. If the event already had an alert for the
    /// fallback channel that was grouped or rate-limited, the fallback reuses that alert (one
    /// row per event and channel); if that channel already delivered or failed, there is no
    /// fallback.
    pub async fn deliver_all(&self, alerts: Vec<Alert>, details: &Value) -> Vec<DeliveryReport> {
        let mut reports: Vec<DeliveryReport> =
            futures::future::join_all(alerts.into_iter().map(|alert| async move {
                if alert.status == AlertStatus::Pending {
                    self.deliver(&alert, details).await
                } else {
                    DeliveryReport {
                        alert,
                        payload: Value::Null,
                        fallback_for: Vec::new(),
                    }
                }
            }))
            .await;

        let failed: Vec<usize> = reports
            .iter()
            .enumerate()
            .filter(|(_, r)| r.alert.status == AlertStatus::Failed)
            .map(|(i, _)| i)
            .collect();
        let Some(fallback) = self.fallback else {
            return reports;
        };
        let Some(&first_failed) = failed.first() else {
            return reports;
        };
        if !self.senders.contains_key(&fallback) {
            tracing::error!(%fallback, "fallback channel has no sender");
            return reports;
        }
        let existing = reports
            .iter()
            .position(|r| r.alert.channel == fallback.as_str());
        if let Some(i) = existing
            && matches!(
                reports[i].alert.status,
                AlertStatus::Delivered | AlertStatus::Failed
            )
        {
            // It already got the alert, or just failed itself.
            return reports;
        }

        let failures: Vec<String> = failed
            .iter()
            .map(|&i| {
                format!(
                    "{} ({})",
                    reports[i].alert.channel,
                    reports[i]
                        .alert
                        .last_error
                        .as_deref()
                        .unwrap_or("unknown error")
                )
            })
            .collect();
        let fallback_for: Vec<String> = failed
            .iter()
            .map(|&i| reports[i].alert.channel.clone())
            .collect();
        let mut alert = match existing {
            Some(i) => reports[i].alert.clone(),
            None => {
                let mut a = reports[first_failed].alert.clone();
                a.id = uuid::Uuid::now_v7().to_string();
                a.channel = fallback.as_str().to_owned();
                a
            }
        };
        alert.status = AlertStatus::Pending;
        alert.attempts = 0;
        alert.last_error = None;
        alert.delivered_at = None;
        alert.body = format!(
            "Delivery failed on {}; sent to the fallback channel.\n\n{}",
            failures.join(", "),
            alert.body
        );
        tracing::warn!(%fallback, failed = ?fallback_for, "alert goes to the fallback channel");
        let mut report = self.deliver(&alert, details).await;
        report.fallback_for = fallback_for;
        match existing {
            Some(i) => reports[i] = report,
            None => reports.push(report),
        }
        reports
    }
}
