//! Alert channel senders: Slack, PagerDuty, Opsgenie, Teams, email, webhook.
//!
//! Each [`Sender`] renders an [`Alert`](vigil_domain::Alert) into its channel's real wire format
//! and makes one delivery attempt. The [`Notifier`] adds what delivery needs around them:
//! retries with exponential backoff that honour HTTP 429 `Retry-After`, a bounded number of
//! attempts, one fallback channel, and a [`DeliveryReport`] for every alert (delivered, or failed
//! with the last error), so nothing is lost silently.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod email;
mod error;
pub mod http;
mod notifier;
mod opsgenie;
mod pagerduty;
mod render;
mod slack;
mod teams;
pub mod webhook;

pub use email::EmailSender;
pub use error::{Error, Result};
pub use notifier::{DeliveryReport, Notifier, Sender};
pub use opsgenie::OpsgenieSender;
pub use pagerduty::PagerDutySender;
pub use slack::SlackSender;
pub use teams::TeamsSender;
pub use webhook::WebhookSender;
