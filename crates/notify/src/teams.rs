use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use vigil_config::{ChannelKind, TeamsFormat, TeamsSettings};
use vigil_domain::{Alert, Severity};

use crate::error::{Error, Result};
use crate::http;
use crate::notifier::Sender;
use crate::render::{colour, facts};

/// Microsoft Teams incoming webhook: an Adaptive Card in a message attachment (Workflows
/// webhooks), or a legacy MessageCard (Office 365 connectors).
#[derive(Debug, Clone)]
pub struct TeamsSender {
    url: reqwest::Url,
    format: TeamsFormat,
    client: reqwest::Client,
}

impl TeamsSender {
    /// A sender posting to the configured webhook URL.
    pub fn new(settings: &TeamsSettings, timeout: Duration) -> Result<Self> {
        let url = settings
            .webhook_url
            .expose()
            .parse()
            .map_err(|_| Error::InvalidSettings {
                channel: "teams",
                reason: "webhook_url is not a valid URL".into(),
            })?;
        Ok(Self {
            url,
            format: settings.format,
            client: http::client(timeout)?,
        })
    }
}

/// Teams markdown needs a blank line to break a line.
fn paragraphs(text: &str) -> String {
    text.lines().collect::<Vec<_>>().join("\n\n")
}

fn adaptive_colour(level: Severity) -> &'static str {
    match level {
        Severity::Critical | Severity::High => "Attention",
        Severity::Medium => "Warning",
        Severity::Low => "Default",
    }
}

#[async_trait]
impl Sender for TeamsSender {
    fn channel(&self) -> ChannelKind {
        ChannelKind::Teams
    }

    fn render(&self, alert: &Alert, details: &Value) -> Value {
        let facts = facts(alert, details);
        match self.format {
            TeamsFormat::AdaptiveCard => json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            {
                                "type": "TextBlock",
                                "text": alert.title,
                                "size": "Large",
                                "weight": "Bolder",
                                "color": adaptive_colour(alert.severity),
                                "wrap": true,
                            },
                            {
                                "type": "FactSet",
                                "facts": facts.iter().map(|(t, v)| json!({ "title": t, "value": v })).collect::<Vec<_>>(),
                            },
                            { "type": "TextBlock", "text": paragraphs(&alert.body), "wrap": true },
                        ],
                    },
                }],
            }),
            TeamsFormat::MessageCard => json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": alert.title,
                "themeColor": colour(alert.severity),
                "title": alert.title,
                "text": paragraphs(&alert.body),
                "sections": [{
                    "facts": facts.iter().map(|(n, v)| json!({ "name": n, "value": v })).collect::<Vec<_>>(),
                }],
            }),
        }
    }

    async fn send(&self, payload: &Value) -> Result<()> {
        http::send("teams", self.client.post(self.url.clone()).json(payload)).await
    }
}
