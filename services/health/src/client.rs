//! Asking the health service for the system status over NATS (`vigil status`).

use std::time::Duration;

use vigil_bus::Bus;
use vigil_bus::async_nats::RequestErrorKind;

use crate::StatusReport;

/// Why the status could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no health service answers on {subject}; is it running (vigil up, or vigil-health)?")]
    NoService { subject: String },
    #[error("the health service did not answer within {:.1} s", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("the health service answered with something that is not a status: {0}")]
    BadReply(String),
    #[error("cannot ask the health service: {0}")]
    Transport(String),
}

/// The system status from whichever health service replica answers first.
pub async fn status(bus: &Bus, timeout: Duration) -> Result<StatusReport, StatusError> {
    let subject = bus.topology().health_status_subject();
    let request = vigil_bus::async_nats::Request::new()
        .payload("{}".into())
        .timeout(Some(timeout));
    let reply = bus
        .client()
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => StatusError::NoService { subject },
            RequestErrorKind::TimedOut => StatusError::TimedOut(timeout),
            _ => StatusError::Transport(e.to_string()),
        })?;
    serde_json::from_slice(&reply.payload).map_err(|e| StatusError::BadReply(e.to_string()))
}
