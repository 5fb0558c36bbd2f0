use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use vigil_config::{ChannelKind, OpsgenieSettings, Secret};
use vigil_domain::{Alert, Severity};

use crate::error::{Error, Result};
use crate::http::{self, truncate};
use crate::notifier::Sender;
use crate::render::source;

/// Opsgenie Alert API v2: `POST <api_url>/v2/alerts` with `Authorization: GenieKey <key>`;
/// the alias (the threat key) deduplicates open alerts.
#[derive(Debug, Clone)]
pub struct OpsgenieSender {
    url: reqwest::Url,
    api_key: Secret,
    tags: Vec<String>,
    client: reqwest::Client,
}

/// P1 (critical) to P4 (low); P5 is left for informational alerts vigil does not send.
fn priority(level: Severity) -> &'static str {
    match level {
        Severity::Critical => "P1",
        Severity::High => "P2",
        Severity::Medium => "P3",
        Severity::Low => "P4",
    }
}

/// Opsgenie details are a flat map of strings.
fn flat_details(details: &Value) -> Map<String, Value> {
    let Value::Object(map) = details else {
        return Map::new();
    };
    map.iter()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::Null => return None,
                Value::String(s) => s.clone(),
                Value::Array(items) if key == "factors" => items
                    .iter()
                    .map(|f| {
                        format!(
                            "{} {:+.2}",
                            f["name"].as_str().unwrap_or("?"),
                            f["contribution"].as_f64().unwrap_or(0.0)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            Some((key.clone(), Value::String(truncate(&text, 1000))))
        })
        .collect()
}

impl OpsgenieSender {
    /// A sender for the configured API integration.
    pub fn new(settings: &OpsgenieSettings, timeout: Duration) -> Result<Self> {
        let url = format!("{}/v2/alerts", settings.api_url.trim_end_matches('/'))
            .parse()
            .map_err(|_| Error::InvalidSettings {
                channel: "opsgenie",
                reason: format!("api_url {:?} is not a valid URL", settings.api_url),
            })?;
        Ok(Self {
            url,
            api_key: settings.api_key.clone(),
            tags: settings.tags.clone(),
            client: http::client(timeout)?,
        })
    }
}

#[async_trait]
impl Sender for OpsgenieSender {
    fn channel(&self) -> ChannelKind {
        ChannelKind::Opsgenie
    }

    fn render(&self, alert: &Alert, details: &Value) -> Value {
        let mut tags = self.tags.clone();
        tags.push(alert.severity.as_str().to_owned());
        if let Some(t) = details["threat_type"].as_str() {
            tags.push(t.to_owned());
        }
        let mut flat = flat_details(details);
        flat.insert("alert_id".into(), Value::String(alert.id.clone()));
        json!({
            "message": truncate(&alert.title, 130),
            "alias": truncate(&alert.threat_key, 512),
            "description": truncate(&alert.body, 15_000),
            "priority": priority(alert.severity),
            "source": "vigil",
            "entity": truncate(&source(details), 512),
            "tags": tags,
            "details": flat,
        })
    }

    async fn send(&self, payload: &Value) -> Result<()> {
        let request = self
            .client
            .post(self.url.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                format!("GenieKey {}", self.api_key.expose()),
            )
            .json(payload);
        http::send("opsgenie", request).await
    }
}
