//! Submitting a verdict from another program (the CLI, a replay): one request, one reply.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use vigil_bus::headers::{APPLICATION_PROTOBUF, CONTENT_TYPE};
use vigil_bus::{Topology, TopologyConfig};
use vigil_domain::FeedbackSubmission;
use vigil_proto::v1;

use crate::SubmitReply;

/// The submission subject under `prefix` (empty in production): `vigil.feedback.submit`.
pub fn submit_subject(prefix: &str) -> Result<String, SubmitError> {
    let topology = Topology::new(prefix.to_owned(), TopologyConfig::default())
        .map_err(|e| SubmitError::Transport(e.to_string()))?;
    Ok(topology.feedback_submit_subject())
}

/// Why a submission got no reply (a refusal is a reply: [`SubmitReply::ok`] is false).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("no feedback service answers on {subject}; is it running (vigil up)?")]
    NoService { subject: String },
    #[error("the feedback service did not answer within {} s", .0.as_secs())]
    TimedOut(Duration),
    #[error("the feedback service answered with something that is not a reply: {0}")]
    BadReply(String),
    #[error("cannot submit: {0}")]
    Transport(String),
}

/// Sends one verdict as protobuf and waits up to `timeout` for the service's reply.
pub async fn submit(
    client: &Client,
    prefix: &str,
    submission: &FeedbackSubmission,
    timeout: Duration,
) -> Result<SubmitReply, SubmitError> {
    let subject = submit_subject(prefix)?;
    let wire = v1::FeedbackRecord::from(submission.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(CONTENT_TYPE, APPLICATION_PROTOBUF);
    let request = async_nats::Request::new()
        .payload(prost::Message::encode_to_vec(&wire).into())
        .headers(headers)
        .timeout(Some(timeout));
    let reply = client
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => SubmitError::NoService { subject },
            RequestErrorKind::TimedOut => SubmitError::TimedOut(timeout),
            _ => SubmitError::Transport(e.to_string()),
        })?;
    serde_json::from_slice(&reply.payload).map_err(|e| SubmitError::BadReply(e.to_string()))
}
