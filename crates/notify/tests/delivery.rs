//! Retries, `Retry-After`, fallback and failure reports, against real receivers on loopback.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Answer, Receiver, alert, details, quick_retry};
use vigil_config::{
    ChannelKind, ChannelSettings, DeliverySettings, PagerDutySettings, Secret, SlackSettings,
};
use vigil_domain::AlertStatus;
use vigil_notify::Notifier;

fn slack(rx: &Receiver) -> Option<SlackSettings> {
    Some(SlackSettings {
        webhook_url: Secret::new(rx.url("/slack")),
    })
}

fn pagerduty(base: String) -> Option<PagerDutySettings> {
    Some(PagerDutySettings {
        routing_key: Secret::new("key"),
        api_url: base,
    })
}

fn notifier(channels: ChannelSettings, attempts: u32, fallback: Option<ChannelKind>) -> Notifier {
    let delivery = DeliverySettings {
        retry: quick_retry(attempts),
        fallback,
        request_timeout_ms: 10_000,
    };
    Notifier::from_settings(&channels, &delivery).unwrap()
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured_and_the_alert_arrives_once() {
    let rx = Receiver::start(
        vec![Answer::status(429, "rate_limited").with_header("retry-after", "1")],
        Answer::status(200, "ok"),
    )
    .await;
    let n = notifier(
        ChannelSettings {
            slack: slack(&rx),
            ..ChannelSettings::default()
        },
        4,
        None,
    );
    let report = n.deliver(&alert("slack"), &details()).await;
    assert_eq!(report.alert.status, AlertStatus::Delivered, "{report:?}");
    assert_eq!(report.alert.attempts, 2);

    let requests = rx.requests();
    assert_eq!(requests.len(), 2, "one refused, one accepted");
    assert_eq!(
        requests[0].body, requests[1].body,
        "the same alert both times"
    );
    // The backoff alone would have waited 10 ms; Retry-After asked for a second.
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
}

#[tokio::test]
async fn a_failing_channel_falls_back_and_the_failure_is_reported() {
    let pd = Receiver::answering(
        400,
        r#"{"status":"invalid event","errors":["'routing_key' is invalid"]}"#,
    )
    .await;
    let fallback = Receiver::answering(200, "ok").await;
    let n = notifier(
        ChannelSettings {
            pagerduty: pagerduty(pd.base.clone()),
            slack: slack(&fallback),
            ..ChannelSettings::default()
        },
        3,
        Some(ChannelKind::Slack),
    );
    let reports = n.deliver_all(vec![alert("pagerduty")], &details()).await;
    assert_eq!(reports.len(), 2, "{reports:#?}");

    let failed = &reports[0].alert;
    assert_eq!(failed.channel, "pagerduty");
    assert_eq!(failed.status, AlertStatus::Failed);
    assert_eq!(failed.attempts, 1, "a 400 is not retried");
    let error = failed.last_error.as_deref().unwrap();
    assert!(
        error.contains("HTTP 400") && error.contains("routing_key"),
        "{error}"
    );
    assert_eq!(pd.requests().len(), 1);

    let rescued = &reports[1];
    assert!(rescued.delivered());
    assert_eq!(rescued.alert.channel, "slack");
    assert_ne!(rescued.alert.id, failed.id);
    assert_eq!(rescued.alert.event_id, failed.event_id);
    assert_eq!(rescued.fallback_for, ["pagerduty"]);
    let received = fallback.requests();
    assert_eq!(received.len(), 1);
    let text = received[0].json()["blocks"][2]["text"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.starts_with("Delivery failed on pagerduty (pagerduty: HTTP 400"),
        "{text}"
    );
}

#[tokio::test]
async fn retries_are_bounded_and_the_last_error_is_kept() {
    let rx = Receiver::answering(503, "upstream unavailable").await;
    let n = notifier(
        ChannelSettings {
            slack: slack(&rx),
            ..ChannelSettings::default()
        },
        3,
        None,
    );
    let started = Instant::now();
    let reports = n.deliver_all(vec![alert("slack")], &details()).await;
    assert_eq!(reports.len(), 1);
    let a = &reports[0].alert;
    assert_eq!(a.status, AlertStatus::Failed);
    assert_eq!(a.attempts, 3);
    assert_eq!(rx.requests().len(), 3);
    assert_eq!(
        a.last_error.as_deref(),
        Some("slack: HTTP 503: upstream unavailable")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "backed off 10 + 20 ms"
    );
}

#[tokio::test]
async fn an_unreachable_channel_is_retried_then_reported() {
    // A port that was just free: connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let n = notifier(
        ChannelSettings {
            pagerduty: pagerduty(base),
            ..ChannelSettings::default()
        },
        2,
        None,
    );
    let report = n.deliver(&alert("pagerduty"), &details()).await;
    assert_eq!(report.alert.status, AlertStatus::Failed);
    assert_eq!(report.alert.attempts, 2);
    let error = report.alert.last_error.unwrap();
    assert!(error.starts_with("pagerduty: request failed"), "{error}");
}

#[tokio::test]
async fn held_back_alerts_pass_through_and_the_fallback_reuses_their_row() {
    let pd = Receiver::answering(500, "boom").await;
    let fallback = Receiver::answering(200, "ok").await;
    let n = notifier(
        ChannelSettings {
            pagerduty: pagerduty(pd.base.clone()),
            slack: slack(&fallback),
            ..ChannelSettings::default()
        },
        1,
        Some(ChannelKind::Slack),
    );

    // Everything grouped: nothing is sent, nothing falls back.
    let mut grouped = vec![alert("pagerduty"), alert("slack")];
    for a in &mut grouped {
        a.status = AlertStatus::Grouped;
    }
    let reports = n.deliver_all(grouped, &details()).await;
    assert!(
        reports
            .iter()
            .all(|r| r.alert.status == AlertStatus::Grouped && r.payload.is_null())
    );
    assert!(pd.requests().is_empty() && fallback.requests().is_empty());

    // Slack was rate-limited for this event; PagerDuty fails; Slack's row carries the fallback.
    let mut limited = alert("slack");
    limited.id = "alert-slack".into();
    limited.status = AlertStatus::RateLimited;
    let reports = n
        .deliver_all(vec![alert("pagerduty"), limited], &details())
        .await;
    assert_eq!(reports.len(), 2, "{reports:#?}");
    assert_eq!(reports[0].alert.status, AlertStatus::Failed);
    assert_eq!(reports[1].alert.id, "alert-slack");
    assert_eq!(reports[1].alert.status, AlertStatus::Delivered);
    assert_eq!(reports[1].fallback_for, ["pagerduty"]);
    assert_eq!(fallback.requests().len(), 1);
}

#[tokio::test]
async fn an_alert_for_an_unconfigured_channel_fails_and_falls_back() {
    let fallback = Receiver::answering(200, "ok").await;
    let n = notifier(
        ChannelSettings {
            slack: slack(&fallback),
            ..ChannelSettings::default()
        },
        3,
        Some(ChannelKind::Slack),
    );
    assert_eq!(n.channels(), [ChannelKind::Slack]);
    let reports = n.deliver_all(vec![alert("teams")], &details()).await;
    assert_eq!(reports[0].alert.status, AlertStatus::Failed);
    assert_eq!(reports[0].alert.attempts, 0);
    assert_eq!(
        reports[0].alert.last_error.as_deref(),
        Some("channel teams is not configured")
    );
    assert!(reports[1].delivered());

    // When the fallback channel itself got the alert, it is not sent twice.
    let reports = n
        .deliver_all(vec![alert("teams"), alert("slack")], &details())
        .await;
    assert_eq!(reports.len(), 2);
    assert_eq!(fallback.requests().len(), 2, "one per event");
}
