use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::Duration;
use serde_json::{Value, json};
use vigil_config::RemediationWebhookSettings;
use vigil_domain::{ActionKind, ActionStatus, RemediationAction};

use super::{Executor, PreparedAction, ensure_executor};
use crate::error::{Error, Result};

/// Calls an external firewall / EDR API: `POST <url>` with JSON
/// `{"operation": "apply" | "undo", "action", "target", "duration_seconds", "action_id",
/// "event_id"}`, an `Idempotency-Key` header (the action id, `:undo` appended for the undo) and
/// `Authorization: Bearer <token>` when a token is set, and an HMAC-SHA256 signature
/// (`X-Vigil-Timestamp`, `X-Vigil-Signature`, as the alert webhook's) when a secret is set. Any
/// 2xx means done.
///
/// The action id is derived from the event, the action and the target
/// ([`super::action_id`]), so every attempt and every redelivery of one event sends the same
/// key and the API can deduplicate. A transient failure (no connection, a timeout, HTTP
/// 408/425/429/5xx) is retried under `retry`, honouring `Retry-After`; anything else fails at
/// once.
#[derive(Debug, Clone)]
pub struct WebhookExecutor {
    settings: RemediationWebhookSettings,
    client: reqwest::Client,
}

impl WebhookExecutor {
    /// An executor posting to the configured URL.
    pub fn new(settings: RemediationWebhookSettings) -> Result<Self> {
        settings.validate()?;
        let client =
            vigil_notify::http::client(StdDuration::from_millis(settings.timeout_ms_or_default()))
                .map_err(|error| Error::Webhook { attempts: 0, error })?;
        Ok(Self { settings, client })
    }

    async fn send(
        &self,
        action: &RemediationAction,
        part: &'static str,
        stored: &Value,
        key: String,
    ) -> Result<()> {
        let malformed = |reason: &str| Error::MalformedAction {
            id: action.id.clone(),
            part,
            reason: reason.to_owned(),
        };
        // The configured URL, not the stored one: the record keeps it without credentials.
        let url = self.settings.url.as_str();
        let request = &stored["request"];
        let mut body = request["body"].clone();
        let fields = body
            .as_object_mut()
            .ok_or_else(|| malformed("request.body is not an object"))?;
        fields.insert("action_id".into(), Value::String(action.id.clone()));
        fields.insert("event_id".into(), Value::String(action.event_id.clone()));
        let policy = &self.settings.retry;
        let mut attempts = 0;
        // The exact bytes that go on the wire, so a signature covers them.
        let body = serde_json::to_vec(&body).map_err(|e| malformed(&e.to_string()))?;
        loop {
            attempts += 1;
            let mut request = self
                .client
                .post(url)
                .header("Idempotency-Key", key.as_str())
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(token) = &self.settings.token {
                request = request.bearer_auth(token.expose());
            }
            if let Some(secret) = &self.settings.secret {
                let timestamp = chrono::Utc::now().timestamp();
                let signature =
                    vigil_notify::webhook::sign(secret.expose().as_bytes(), timestamp, &body);
                request = request
                    .header(
                        vigil_notify::webhook::TIMESTAMP_HEADER,
                        timestamp.to_string(),
                    )
                    .header(vigil_notify::webhook::SIGNATURE_HEADER, signature);
            }
            let request = request.body(body.clone());
            match vigil_notify::http::send("remediation webhook", request).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_retryable() && attempts < policy.max_attempts => {
                    let wait = policy.delay(attempts, error.retry_after());
                    tracing::warn!(action_id = %action.id, attempts, %error, ?wait,
                                   "remediation webhook failed; retrying with the same key");
                    tokio::time::sleep(wait).await;
                }
                Err(error) => return Err(Error::Webhook { attempts, error }),
            }
        }
    }
}

#[async_trait]
impl Executor for WebhookExecutor {
    fn name(&self) -> &'static str {
        "webhook"
    }

    /// The remote side receives `duration_seconds` but is not trusted to expire the action;
    /// the undo is replayed at `expires_at`.
    fn expires_by_itself(&self) -> bool {
        false
    }

    fn prepare(
        &self,
        kind: ActionKind,
        target: &str,
        duration: Option<Duration>,
    ) -> Result<PreparedAction> {
        let request = |operation: &str| {
            json!({
                "request": {
                    "method": "POST",
                    // Recorded without credentials (an API key in the query); calls use the
                    // configured URL.
                    "url": vigil_config::redact_url_password(&self.settings.url),
                    "body": {
                        "operation": operation,
                        "action": kind,
                        "target": target,
                        "duration_seconds": duration.map(|d| d.num_seconds()),
                    },
                },
            })
        };
        Ok(PreparedAction {
            details: request("apply"),
            undo: request("undo"),
        })
    }

    async fn execute(&self, action: &RemediationAction) -> Result<ActionStatus> {
        ensure_executor(action, self.name())?;
        self.send(action, "details", &action.details, action.id.clone())
            .await?;
        Ok(ActionStatus::Applied)
    }

    async fn undo(&self, action: &RemediationAction) -> Result<()> {
        ensure_executor(action, self.name())?;
        if matches!(action.status, ActionStatus::Refused) {
            return Ok(());
        }
        self.send(action, "undo", &action.undo, format!("{}:undo", action.id))
            .await
    }
}
