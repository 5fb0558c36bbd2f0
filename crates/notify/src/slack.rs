use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use vigil_config::{ChannelKind, SlackSettings};
use vigil_domain::Alert;

use crate::error::{Error, Result};
use crate::http::{self, truncate};
use crate::notifier::Sender;
use crate::render::facts;

/// Slack incoming webhook: `text` (the notification fallback) plus Block Kit `blocks`.
#[derive(Debug, Clone)]
pub struct SlackSender {
    url: reqwest::Url,
    client: reqwest::Client,
}

/// Slack mrkdwn treats `&`, `<` and `>` as control characters.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl SlackSender {
    /// A sender posting to the configured webhook URL.
    pub fn new(settings: &SlackSettings, timeout: Duration) -> Result<Self> {
        let url = settings
            .webhook_url
            .expose()
            .parse()
            .map_err(|_| Error::InvalidSettings {
                channel: "slack",
                reason: "webhook_url is not a valid URL".into(),
            })?;
        Ok(Self {
            url,
            client: http::client(timeout)?,
        })
    }
}

#[async_trait]
impl Sender for SlackSender {
    fn channel(&self) -> ChannelKind {
        ChannelKind::Slack
    }

    fn render(&self, alert: &Alert, details: &Value) -> Value {
        let fields: Vec<Value> = facts(alert, details)
            .into_iter()
            .map(|(label, value)| json!({ "type": "mrkdwn", "text": format!("*{label}*\n{}", escape(&value)) }))
            .collect();
        json!({
            "text": escape(&alert.title),
            "blocks": [
                {
                    "type": "header",
                    "text": { "type": "plain_text", "text": truncate(&alert.title, 150), "emoji": true },
                },
                { "type": "section", "fields": fields },
                {
                    "type": "section",
                    "text": { "type": "mrkdwn", "text": truncate(&escape(&alert.body), 3000) },
                },
                {
                    "type": "context",
                    "elements": [{
                        "type": "mrkdwn",
                        "text": format!("vigil alert `{}` · event `{}`", alert.id, escape(&alert.event_id)),
                    }],
                },
            ],
        })
    }

    async fn send(&self, payload: &Value) -> Result<()> {
        http::send("slack", self.client.post(self.url.clone()).json(payload)).await
    }
}
