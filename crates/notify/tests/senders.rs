//! Each sender against a real receiver on loopback, asserting the wire format it receives.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Receiver, SmtpSink, alert, details, quick_retry};
use serde_json::Value;
use vigil_config::{
    ChannelSettings, DeliverySettings, EmailSettings, OpsgenieSettings, PagerDutySettings, Secret,
    SlackSettings, SmtpTls, TeamsFormat, TeamsSettings, WebhookSettings,
};
use vigil_domain::AlertStatus;
use vigil_notify::{DeliveryReport, Notifier, webhook};

fn notifier(channels: ChannelSettings) -> Notifier {
    let delivery = DeliverySettings {
        retry: quick_retry(1),
        ..DeliverySettings::default()
    };
    Notifier::from_settings(&channels, &delivery).unwrap()
}

async fn deliver(channels: ChannelSettings, channel: &str) -> DeliveryReport {
    let report = notifier(channels)
        .deliver(&alert(channel), &details())
        .await;
    assert_eq!(report.alert.status, AlertStatus::Delivered, "{report:?}");
    assert_eq!(report.alert.attempts, 1);
    assert!(report.alert.delivered_at.is_some());
    assert_eq!(report.alert.last_error, None);
    report
}

#[tokio::test]
async fn slack_receives_text_and_blocks() {
    let rx = Receiver::answering(200, "ok").await;
    let channels = ChannelSettings {
        slack: Some(SlackSettings {
            webhook_url: Secret::new(rx.url("/services/T0/B0/XYZ")),
        }),
        ..ChannelSettings::default()
    };
    let report = deliver(channels, "slack").await;
    let requests = rx.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.path, "/services/T0/B0/XYZ");
    assert_eq!(req.header("content-type"), "application/json");
    let body = req.json();
    assert_eq!(
        body["text"],
        "[CRITICAL] brute_force from 203.0.113.7 (risk 9.4/10)"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[1]["fields"][0]["text"], "*Severity*\ncritical");
    assert_eq!(blocks[2]["text"]["type"], "mrkdwn");
    // mrkdwn control characters are escaped.
    let text = blocks[2]["text"]["text"].as_str().unwrap();
    assert!(text.contains("203.0.113.7 -&gt; 10.0.0.5:22/tcp"), "{text}");
    assert_eq!(blocks[3]["type"], "context");
    assert_eq!(report.payload, body);
}

#[tokio::test]
async fn pagerduty_receives_an_events_v2_trigger() {
    let rx = Receiver::answering(202, r#"{"status":"success","message":"Event processed"}"#).await;
    let channels = ChannelSettings {
        pagerduty: Some(PagerDutySettings {
            routing_key: Secret::new("R0UTINGKEY0123456789abcdef012345"),
            api_url: rx.base.clone(),
        }),
        ..ChannelSettings::default()
    };
    let report = deliver(channels, "pagerduty").await;
    let req = &rx.requests()[0];
    assert_eq!(req.path, "/v2/enqueue");
    let body = req.json();
    assert_eq!(body["routing_key"], "R0UTINGKEY0123456789abcdef012345");
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["dedup_key"], "brute_force:203.0.113.7");
    let payload = &body["payload"];
    assert_eq!(
        payload["summary"],
        "[CRITICAL] brute_force from 203.0.113.7 (risk 9.4/10)"
    );
    assert_eq!(payload["source"], "203.0.113.7");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["class"], "brute_force");
    assert_eq!(payload["timestamp"], "1970-01-01T00:00:00+00:00");
    assert_eq!(payload["custom_details"]["risk_score"], 9.4);
    assert_eq!(payload["custom_details"]["alert_id"], "alert-0001");
    // The stored payload never holds the routing key.
    assert!(report.payload.get("routing_key").is_none());
    assert!(!report.payload.to_string().contains("R0UTINGKEY"));
}

#[tokio::test]
async fn opsgenie_receives_an_alert_with_genie_key() {
    let rx = Receiver::answering(
        202,
        r#"{"result":"Request will be processed","took":0.2,"requestId":"r1"}"#,
    )
    .await;
    let channels = ChannelSettings {
        opsgenie: Some(OpsgenieSettings {
            api_key: Secret::new("genie-123"),
            api_url: format!("{}/", rx.base),
            tags: vec!["vigil".into(), "soc".into()],
        }),
        ..ChannelSettings::default()
    };
    deliver(channels, "opsgenie").await;
    let req = &rx.requests()[0];
    assert_eq!(req.path, "/v2/alerts");
    assert_eq!(req.header("authorization"), "GenieKey genie-123");
    let body = req.json();
    assert_eq!(
        body["message"],
        "[CRITICAL] brute_force from 203.0.113.7 (risk 9.4/10)"
    );
    assert_eq!(body["alias"], "brute_force:203.0.113.7");
    assert_eq!(body["priority"], "P1");
    assert_eq!(body["entity"], "203.0.113.7");
    assert_eq!(
        body["tags"],
        serde_json::json!(["vigil", "soc", "critical", "brute_force"])
    );
    let details = body["details"].as_object().unwrap();
    assert!(details.values().all(Value::is_string), "{details:?}");
    assert_eq!(details["risk_score"], "9.4");
    assert_eq!(details["factors"], "type_weight +3.00");
    assert!(!details.contains_key("ml_score"), "nulls are left out");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .starts_with("Risk 9.4/10")
    );
}

#[tokio::test]
async fn teams_receives_an_adaptive_card_or_a_message_card() {
    let rx = Receiver::answering(202, "").await;
    let channels = |format| ChannelSettings {
        teams: Some(TeamsSettings {
            webhook_url: Secret::new(rx.url("/workflows/abc")),
            format,
        }),
        ..ChannelSettings::default()
    };
    deliver(channels(TeamsFormat::AdaptiveCard), "teams").await;
    deliver(channels(TeamsFormat::MessageCard), "teams").await;
    let requests = rx.requests();

    let card = requests[0].json();
    assert_eq!(card["type"], "message");
    let attachment = &card["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let content = &attachment["content"];
    assert_eq!(content["type"], "AdaptiveCard");
    assert_eq!(content["version"], "1.4");
    assert_eq!(
        content["body"][0]["text"],
        "[CRITICAL] brute_force from 203.0.113.7 (risk 9.4/10)"
    );
    assert_eq!(content["body"][1]["type"], "FactSet");
    assert_eq!(
        content["body"][1]["facts"][0],
        serde_json::json!({"title": "Severity", "value": "critical"})
    );

    let legacy = requests[1].json();
    assert_eq!(legacy["@type"], "MessageCard");
    assert_eq!(legacy["themeColor"], "B00020");
    assert_eq!(
        legacy["summary"],
        "[CRITICAL] brute_force from 203.0.113.7 (risk 9.4/10)"
    );
    assert_eq!(
        legacy["sections"][0]["facts"][1],
        serde_json::json!({"name": "Risk", "value": "9.4/10"})
    );
}

#[tokio::test]
async fn the_webhook_receives_json_whose_hmac_verifies() {
    let rx = Receiver::answering(204, "").await;
    let secret = "a-webhook-secret-of-32-bytes!!!!";
    let channels = ChannelSettings {
        webhook: Some(WebhookSettings {
            url: rx.url("/hooks/vigil"),
            secret: Secret::new(secret),
            headers: [("X-Tenant".to_owned(), "acme".to_owned())].into(),
        }),
        ..ChannelSettings::default()
    };
    deliver(channels, "webhook").await;
    let req = &rx.requests()[0];
    assert_eq!(req.path, "/hooks/vigil");
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(req.header("x-tenant"), "acme");
    assert_eq!(req.header(webhook::ALERT_ID_HEADER), "alert-0001");
    let timestamp = req.header(webhook::TIMESTAMP_HEADER);
    let signature = req.header(webhook::SIGNATURE_HEADER);
    assert!(signature.starts_with("sha256="), "{signature}");
    let now = chrono::Utc::now().timestamp();
    let tolerance = Duration::from_secs(300);
    assert!(webhook::verify(
        secret.as_bytes(),
        timestamp,
        &req.body,
        signature,
        now,
        tolerance
    ));
    // The contract, computed independently: HMAC-SHA256(secret, "<timestamp>.<body>").
    {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&req.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(signature, expected);
    }
    // The signature covers the exact body and the timestamp.
    let mut tampered = req.body.to_vec();
    tampered[req.body.len() / 2] ^= 1;
    assert!(!webhook::verify(
        secret.as_bytes(),
        timestamp,
        &tampered,
        signature,
        now,
        tolerance
    ));
    assert!(!webhook::verify(
        b"another-secret-entirely",
        timestamp,
        &req.body,
        signature,
        now,
        tolerance
    ));

    let body = req.json();
    assert_eq!(body["type"], "vigil.alert");
    assert_eq!(body["id"], "alert-0001");
    assert_eq!(body["event_id"], "event-42");
    assert_eq!(body["threat_key"], "brute_force:203.0.113.7");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["details"]["destination_port"], 22);
}

#[tokio::test]
async fn email_reaches_an_smtp_server_as_plain_text() {
    let sink = SmtpSink::start().await;
    let channels = ChannelSettings {
        email: Some(EmailSettings {
            host: "127.0.0.1".into(),
            port: sink.port,
            tls: SmtpTls::None,
            from: "Vigil <vigil@example.com>".into(),
            to: vec![
                "soc@example.com".into(),
                "On Call <oncall@example.com>".into(),
            ],
            ..EmailSettings::default()
        }),
        ..ChannelSettings::default()
    };
    let report = deliver(channels, "email").await;
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.mail_from, "MAIL FROM:<vigil@example.com>");
    assert_eq!(
        mail.rcpt_to,
        ["RCPT TO:<soc@example.com>", "RCPT TO:<oncall@example.com>"]
    );
    let data = &mail.data;
    assert!(
        data.contains("From: Vigil <vigil@example.com>\r\n"),
        "{data}"
    );
    assert!(
        data.contains("Subject: [CRITICAL] brute_force from 203.0.113.7 (risk 9.4/10)\r\n"),
        "{data}"
    );
    assert!(
        data.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{data}"
    );
    assert!(data.contains("soc@example.com"), "{data}");
    assert!(
        data.contains("Threat: brute_force 203.0.113.7 -> 10.0.0.5:22/tcp"),
        "{data}"
    );
    assert!(data.contains("Destination: 10.0.0.5:22"), "{data}");
    assert!(data.contains("vigil alert alert-0001"), "{data}");
    assert_eq!(
        report.payload["subject"],
        "[CRITICAL] brute_force from 203.0.113.7 (risk 9.4/10)"
    );
}
