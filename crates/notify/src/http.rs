//! What the HTTP senders share: one client, one way to read an answer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderValue, RETRY_AFTER};

use crate::error::{Error, Result};

/// A client with the delivery timeout and vigil's user agent.
pub fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(Error::Client)
}

/// Sends a request; a 2xx is success, anything else an [`Error::Status`] with the body and
/// `Retry-After`.
pub async fn send(channel: &'static str, request: reqwest::RequestBuilder) -> Result<()> {
    let response = request
        .send()
        .await
        // Without the URL: webhook URLs carry credentials (Slack, Teams), and this error reaches
        // logs, the alerts table and events.
        .map_err(|source| Error::Request {
            channel,
            source: source.without_url(),
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = parse_retry_after(response.headers().get(RETRY_AFTER), Utc::now());
    let body = response.text().await.unwrap_or_default();
    Err(Error::Status {
        channel,
        status: status.as_u16(),
        body: truncate(body.trim(), 512),
        retry_after,
    })
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(
    value: Option<&HeaderValue>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?;
    Some(
        at.with_timezone(&Utc)
            .signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// At most `max` characters, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            parse_retry_after(Some(&v("1")), now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after(Some(&v("Wed, 21 Oct 2015 07:28:30 GMT")), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(Some(&v("Wed, 21 Oct 2015 07:00:00 GMT")), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(Some(&v("soon")), now), None);
        assert_eq!(parse_retry_after(None, now), None);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("héllo wörld", 5).chars().count(), 5);
    }
}
