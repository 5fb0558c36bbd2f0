use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use vigil_config::{ChannelKind, PagerDutySettings, Secret};
use vigil_domain::{Alert, Severity};

use crate::error::{Error, Result};
use crate::http::{self, truncate};
use crate::notifier::Sender;
use crate::render::{detail, source};

/// PagerDuty Events API v2: `POST <api_url>/v2/enqueue` with a `trigger` event deduplicated by
/// the threat key.
#[derive(Debug, Clone)]
pub struct PagerDutySender {
    url: reqwest::Url,
    routing_key: Secret,
    client: reqwest::Client,
}

/// PagerDuty's four severities.
fn severity(level: Severity) -> &'static str {
    match level {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "info",
    }
}

impl PagerDutySender {
    /// A sender for the configured service.
    pub fn new(settings: &PagerDutySettings, timeout: Duration) -> Result<Self> {
        let url = format!("{}/v2/enqueue", settings.api_url.trim_end_matches('/'))
            .parse()
            .map_err(|_| Error::InvalidSettings {
                channel: "pagerduty",
                reason: format!("api_url {:?} is not a valid URL", settings.api_url),
            })?;
        Ok(Self {
            url,
            routing_key: settings.routing_key.clone(),
            client: http::client(timeout)?,
        })
    }
}

#[async_trait]
impl Sender for PagerDutySender {
    fn channel(&self) -> ChannelKind {
        ChannelKind::PagerDuty
    }

    /// The event without `routing_key` (added when sending, so it is never stored).
    fn render(&self, alert: &Alert, details: &Value) -> Value {
        let mut custom = match details {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        custom.insert("alert_id".into(), Value::String(alert.id.clone()));
        custom.insert("explanation".into(), Value::String(alert.body.clone()));
        let mut payload = json!({
            "summary": truncate(&alert.title, 1024),
            "source": source(details),
            "severity": severity(alert.severity),
            "timestamp": alert.created_at.to_rfc3339(),
            "custom_details": custom,
        });
        if let Some(class) = detail(details, "threat_type") {
            payload["class"] = Value::String(class);
        }
        if let Some(group) = detail(details, "sensor") {
            payload["group"] = Value::String(group);
        }
        if let Some(component) = detail(details, "destination_ip") {
            payload["component"] = Value::String(component);
        }
        json!({
            "event_action": "trigger",
            "dedup_key": truncate(&alert.threat_key, 255),
            "payload": payload,
            "client": "vigil",
        })
    }

    async fn send(&self, payload: &Value) -> Result<()> {
        let mut body = payload.clone();
        body["routing_key"] = Value::String(self.routing_key.expose().to_owned());
        http::send("pagerduty", self.client.post(self.url.clone()).json(&body)).await
    }
}
