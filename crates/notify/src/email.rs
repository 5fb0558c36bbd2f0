use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use vigil_config::{ChannelKind, EmailSettings, SmtpTls};
use vigil_domain::Alert;

use crate::error::{Error, Result};
use crate::notifier::Sender;
use crate::render::facts;

/// Email over SMTP: a plain-text message with the alert title as subject.
#[derive(Debug, Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

fn mailbox(field: &str, text: &str) -> Result<Mailbox> {
    text.trim().parse().map_err(|e| Error::InvalidSettings {
        channel: "email",
        reason: format!("{field} {text:?} is not an address: {e}"),
    })
}

impl EmailSender {
    /// A sender for the configured SMTP server.
    pub fn new(settings: &EmailSettings) -> Result<Self> {
        let from = mailbox("from", &settings.from)?;
        let to = settings
            .to
            .iter()
            .map(|t| mailbox("to", t))
            .collect::<Result<Vec<_>>>()?;
        if to.is_empty() {
            return Err(Error::InvalidSettings {
                channel: "email",
                reason: "no recipients (to)".into(),
            });
        }
        let host = settings.host.trim();
        let builder = match settings.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
        };
        let mut builder = builder
            .port(settings.port)
            .timeout(Some(Duration::from_millis(settings.timeout_ms.max(1))));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            to,
        })
    }
}

#[async_trait]
impl Sender for EmailSender {
    fn channel(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn render(&self, alert: &Alert, details: &Value) -> Value {
        let facts: String = facts(alert, details)
            .into_iter()
            .map(|(label, value)| format!("{label}: {value}\n"))
            .collect();
        let body = format!(
            "{}\n\n{facts}\n{}\n\n-- \nvigil alert {}\n",
            alert.title, alert.body, alert.id
        );
        json!({
            "from": self.from.to_string(),
            "to": self.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
            // Header values must not contain line breaks.
            "subject": alert.title.replace(['\r', '\n'], " "),
            "body": body,
        })
    }

    async fn send(&self, payload: &Value) -> Result<()> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(payload["subject"].as_str().unwrap_or("vigil alert"))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message.body(payload["body"].as_str().unwrap_or_default().to_owned())?;
        self.transport.send(message).await?;
        Ok(())
    }
}
