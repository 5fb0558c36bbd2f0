//! Talking to the feedback service from another program (the CLI, a replay): submitting a
//! verdict, asking for the review queue or the insights; one request, one reply each.

use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use vigil_bus::headers::{APPLICATION_JSON, APPLICATION_PROTOBUF, CONTENT_TYPE};
use vigil_bus::{Bus, Topology, TopologyConfig};
use vigil_domain::FeedbackSubmission;
use vigil_proto::v1;

use crate::SubmitReply;
use crate::insights::{Insights, InsightsReply};
use crate::review::{ReviewItem, ReviewReply};

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

/// How long [`review`] and [`insights`] wait for the feedback service.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a review or insights request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no feedback service answers on {subject}; is it running (vigil up)?")]
    NoService { subject: String },
    #[error("the feedback service did not answer within {} s", .0.as_secs())]
    TimedOut(Duration),
    #[error("the feedback service answered with something that is not a reply: {0}")]
    BadReply(String),
    #[error("the feedback service refused: {0}")]
    Refused(String),
    #[error("cannot ask the feedback service: {0}")]
    Transport(String),
}

/// Sends a JSON request on `subject` and decodes the JSON reply.
async fn ask<R: serde::de::DeserializeOwned>(
    client: &Client,
    subject: String,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<R, QueryError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(CONTENT_TYPE, APPLICATION_JSON);
    let request = async_nats::Request::new()
        .payload(body.into())
        .headers(headers)
        .timeout(Some(timeout));
    let reply = client
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => QueryError::NoService { subject },
            RequestErrorKind::TimedOut => QueryError::TimedOut(timeout),
            _ => QueryError::Transport(e.to_string()),
        })?;
    serde_json::from_slice(&reply.payload).map_err(|e| QueryError::BadReply(e.to_string()))
}

/// The review queue: up to `limit` (1-1000) unjudged workflows an analyst should judge next,
/// highest priority first.
pub async fn review(bus: &Bus, limit: usize) -> Result<Vec<ReviewItem>, QueryError> {
    let body = serde_json::to_vec(&serde_json::json!({ "limit": limit }))
        .map_err(|e| QueryError::Transport(e.to_string()))?;
    let reply: ReviewReply = ask(
        bus.client(),
        bus.topology().feedback_review_subject(),
        body,
        QUERY_TIMEOUT,
    )
    .await?;
    match reply {
        ReviewReply {
            ok: true,
            items: Some(items),
            ..
        } => Ok(items),
        ReviewReply { error, .. } => Err(QueryError::Refused(
            error.unwrap_or_else(|| "no reason given".into()),
        )),
    }
}

/// What the analysts' verdicts say about vigil's verdicts (see [`Insights`]).
pub async fn insights(bus: &Bus) -> Result<Insights, QueryError> {
    let reply: InsightsReply = ask(
        bus.client(),
        bus.topology().feedback_insights_subject(),
        b"{}".to_vec(),
        QUERY_TIMEOUT,
    )
    .await?;
    match reply {
        InsightsReply {
            ok: true,
            insights: Some(insights),
            ..
        } => Ok(insights),
        InsightsReply { error, .. } => Err(QueryError::Refused(
            error.unwrap_or_else(|| "no reason given".into()),
        )),
    }
}
