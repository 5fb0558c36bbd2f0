//! Generic webhook: the alert as JSON, signed with HMAC-SHA256.
//!
//! Headers: `X-Vigil-Timestamp` (Unix seconds), `X-Vigil-Signature: sha256=<hex>` where the MAC is
//! computed over `<timestamp>.<exact body bytes>` (binding the timestamp defeats replays), and
//! `X-Vigil-Alert-Id` (stable across retries, for idempotent receivers). [`verify`] is the
//! receiver side.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sha2::Sha256;
use vigil_config::{ChannelKind, Secret, WebhookSettings};
use vigil_domain::Alert;

use crate::error::{Error, Result};
use crate::http;
use crate::notifier::Sender;

/// Header with the signature.
pub const SIGNATURE_HEADER: &str = "x-vigil-signature";
/// Header with the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-vigil-timestamp";
/// Header with the alert id.
pub const ALERT_ID_HEADER: &str = "x-vigil-alert-id";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `sha256=<hex>` of HMAC-SHA256(secret, `<timestamp>.<body>`).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks a signature in constant time, and that the timestamp is within `tolerance` of `now`
/// (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: i64,
    tolerance: Duration,
) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.saturating_sub(ts).abs() > tolerance {
        return false;
    }
    let Some(hex_sig) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(bytes) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, ts, body).verify_slice(&bytes).is_ok()
}

/// Posts signed alert JSON to the configured URL.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    url: reqwest::Url,
    secret: Secret,
    headers: HeaderMap,
    client: reqwest::Client,
}

impl WebhookSender {
    /// A sender for the configured URL and secret.
    pub fn new(settings: &WebhookSettings, timeout: Duration) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidSettings {
            channel: "webhook",
            reason,
        };
        let url = settings
            .url
            .parse()
            .map_err(|_| invalid(format!("url {:?} is not a valid URL", settings.url)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &settings.headers {
            let name: HeaderName = name
                .parse()
                .map_err(|_| invalid(format!("header name {name:?} is invalid")))?;
            let value: HeaderValue = value
                .parse()
                .map_err(|_| invalid(format!("value of header {name} is invalid")))?;
            headers.insert(name, value);
        }
        Ok(Self {
            url,
            secret: settings.secret.clone(),
            headers,
            client: http::client(timeout)?,
        })
    }
}

#[async_trait]
impl Sender for WebhookSender {
    fn channel(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    fn render(&self, alert: &Alert, details: &Value) -> Value {
        json!({
            "type": "vigil.alert",
            "version": 1,
            "id": alert.id,
            "event_id": alert.event_id,
            "threat_key": alert.threat_key,
            "severity": alert.severity,
            "title": alert.title,
            "body": alert.body,
            "created_at": alert.created_at,
            "details": details,
        })
    }

    async fn send(&self, payload: &Value) -> Result<()> {
        // Sign the exact bytes that go on the wire.
        let body = serde_json::to_vec(payload).unwrap_or_default();
        let timestamp = Utc::now().timestamp();
        let signature = sign(self.secret.expose().as_bytes(), timestamp, &body);
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature);
        if let Some(id) = payload["id"].as_str() {
            request = request.header(ALERT_ID_HEADER, id);
        }
        http::send("webhook", request.body(body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let body = br#"{"id":"a1"}"#;
        let sig = sign(b"0123456789abcdef", 1_700_000_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        let ok = |secret: &[u8], ts: &str, body: &[u8], sig: &str, now: i64| {
            verify(secret, ts, body, sig, now, Duration::from_secs(300))
        };
        assert!(ok(
            b"0123456789abcdef",
            "1700000000",
            body,
            &sig,
            1_700_000_100
        ));
        assert!(!ok(
            b"0123456789abcdeX",
            "1700000000",
            body,
            &sig,
            1_700_000_100
        ));
        assert!(!ok(
            b"0123456789abcdef",
            "1700000001",
            body,
            &sig,
            1_700_000_100
        ));
        assert!(!ok(
            b"0123456789abcdef",
            "1700000000",
            br#"{"id":"a2"}"#,
            &sig,
            1_700_000_100
        ));
        assert!(
            !ok(b"0123456789abcdef", "1700000000", body, &sig, 1_700_001_000),
            "too old"
        );
        assert!(!ok(
            b"0123456789abcdef",
            "1700000000",
            body,
            "sha256=zz",
            1_700_000_000
        ));
    }
}
