//! Typed publishing of protobuf messages to JetStream, with de-duplication ids and trace context.

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use tracing::debug;

use crate::error::{Error, Result};
use crate::headers::{self, ContentType};
use crate::trace::TraceParent;

/// What the stream said about a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubAck {
    /// The stream that stored it.
    pub stream: String,
    /// Its sequence in that stream (the original's sequence when `duplicate`).
    pub sequence: u64,
    /// True when a message with the same `Nats-Msg-Id` was already stored within the window,
    /// so this one was dropped.
    pub duplicate: bool,
    /// The trace context that was sent (generated when the caller gave none).
    pub traceparent: TraceParent,
}

/// Headers of one publish: the de-duplication id, the trace context and any extras.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    msg_id: String,
    traceparent: Option<TraceParent>,
    extra: Vec<(&'static str, String)>,
}

impl PublishOptions {
    /// Options with the `Nats-Msg-Id` the stream de-duplicates on (an event id, a fingerprint).
    pub fn new(msg_id: impl Into<String>) -> Self {
        Self {
            msg_id: msg_id.into(),
            traceparent: None,
            extra: Vec::new(),
        }
    }

    /// Continues a trace; without it a fresh trace is started.
    pub fn traceparent(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// Continues a trace if there is one.
    pub fn maybe_traceparent(mut self, traceparent: Option<TraceParent>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// Adds a header; line breaks in the value are replaced by spaces.
    pub fn header(mut self, name: &'static str, value: impl AsRef<str>) -> Self {
        self.extra
            .push((name, headers::sanitize_header_value(value.as_ref(), 4096)));
        self
    }
}

/// Publishes protobuf messages to JetStream and waits for the stream to store them.
#[derive(Clone, Debug)]
pub struct Publisher {
    js: jetstream::Context,
}

impl Publisher {
    /// A publisher on a JetStream context.
    pub fn new(js: jetstream::Context) -> Self {
        Self { js }
    }

    /// Encodes `message` as protobuf, publishes it with `Nats-Msg-Id`, `traceparent` and
    /// `Content-Type: application/protobuf`, and returns the stream's acknowledgement.
    ///
    /// A full stream gives [`Error::StreamFull`]; a subject no stream stores gives
    /// [`Error::NoStream`].
    pub async fn publish<M: prost::Message>(
        &self,
        subject: &str,
        message: &M,
        options: PublishOptions,
    ) -> Result<PubAck> {
        let payload = Bytes::from(message.encode_to_vec());
        self.publish_encoded(subject, payload, ContentType::Protobuf, options)
            .await
    }

    /// [`publish`](Self::publish), waiting while the stream refuses it as full (a sensor's
    /// backlog at its bound, the work queue at capacity): retried with the same `Nats-Msg-Id`
    /// after 50 ms, doubling up to 2 s, for at most `patience`; then the [`Error::StreamFull`]
    /// is returned. Other errors are returned at once.
    pub async fn publish_waiting<M: prost::Message>(
        &self,
        subject: &str,
        message: &M,
        options: PublishOptions,
        patience: std::time::Duration,
    ) -> Result<PubAck> {
        let payload = Bytes::from(message.encode_to_vec());
        let deadline = tokio::time::Instant::now() + patience;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            match self
                .publish_encoded(
                    subject,
                    payload.clone(),
                    ContentType::Protobuf,
                    options.clone(),
                )
                .await
            {
                Err(error) if error.is_stream_full() => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(error);
                    }
                    tokio::time::sleep(pause.min(deadline - now)).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Publishes an already-encoded payload; `content_type` says how it is encoded.
    pub async fn publish_encoded(
        &self,
        subject: &str,
        payload: Bytes,
        content_type: ContentType,
        options: PublishOptions,
    ) -> Result<PubAck> {
        let (headers, traceparent) = build_headers(content_type, &options)?;
        let ack = self.publish_with_headers(subject, headers, payload).await?;
        debug!(
            %subject,
            stream = %ack.stream,
            sequence = ack.sequence,
            duplicate = ack.duplicate,
            "published message"
        );
        Ok(PubAck {
            stream: ack.stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
            traceparent,
        })
    }

    pub(crate) async fn publish_with_headers(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<jetstream::publish::PublishAck> {
        let pending = self
            .js
            .publish_with_headers(subject.to_owned(), headers, payload)
            .await
            .map_err(|err| publish_error(subject, err))?;
        pending.await.map_err(|err| publish_error(subject, err))
    }
}

fn build_headers(
    content_type: ContentType,
    options: &PublishOptions,
) -> Result<(HeaderMap, TraceParent)> {
    if options.msg_id.trim().is_empty() {
        return Err(Error::InvalidHeader {
            name: headers::MSG_ID,
            reason: "must not be empty",
        });
    }
    if options.msg_id.contains(['\r', '\n']) {
        return Err(Error::InvalidHeader {
            name: headers::MSG_ID,
            reason: "must not contain line breaks",
        });
    }
    let traceparent = options
        .traceparent
        .clone()
        .unwrap_or_else(TraceParent::generate);
    let mut map = HeaderMap::new();
    map.insert(async_nats::header::NATS_MESSAGE_ID, options.msg_id.as_str());
    map.insert(headers::TRACEPARENT, traceparent.to_string());
    map.insert(headers::CONTENT_TYPE, content_type.as_str());
    for (name, value) in &options.extra {
        map.append(*name, value.as_str());
    }
    Ok((map, traceparent))
}

/// Maps the client's publish error to ours, recognising a full stream.
fn publish_error(subject: &str, err: PublishError) -> Error {
    match err.kind() {
        PublishErrorKind::StreamNotFound => Error::NoStream {
            subject: subject.to_owned(),
        },
        PublishErrorKind::Other => match stream_full_detail(&err) {
            Some(detail) => {
                debug!(%subject, %detail, "stream full; publish refused");
                Error::StreamFull {
                    subject: subject.to_owned(),
                    detail,
                }
            }
            None => Error::Publish {
                subject: subject.to_owned(),
                source: Box::new(err),
            },
        },
        _ => Error::Publish {
            subject: subject.to_owned(),
            source: Box::new(err),
        },
    }
}

/// The server refuses a message for a stream with discard policy `new` that reached a limit with
/// error code 10077 and a description such as "maximum messages exceeded".
fn stream_full_detail(err: &PublishError) -> Option<String> {
    let source = std::error::Error::source(err)?;
    let js_err = source.downcast_ref::<jetstream::Error>()?;
    let text = js_err.to_string();
    let full = js_err.error_code() == ErrorCode::STREAM_STORE_FAILED
        && (text.contains("maximum messages") || text.contains("maximum bytes"));
    full.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::header_value;

    #[test]
    fn sets_the_standard_headers() {
        let tp = TraceParent::generate();
        let options = PublishOptions::new("evt-1")
            .traceparent(tp.clone())
            .header("X-Extra", "a\nb");
        let (map, sent) = build_headers(ContentType::Protobuf, &options).expect("valid options");
        assert_eq!(sent, tp);
        assert_eq!(header_value(Some(&map), headers::MSG_ID), Some("evt-1"));
        let tp_text = tp.to_string();
        assert_eq!(
            header_value(Some(&map), headers::TRACEPARENT),
            Some(tp_text.as_str())
        );
        assert_eq!(
            header_value(Some(&map), headers::CONTENT_TYPE),
            Some("application/protobuf")
        );
        assert_eq!(header_value(Some(&map), "X-Extra"), Some("a b"));
    }

    #[test]
    fn generates_a_traceparent_when_absent() {
        let (map, sent) =
            build_headers(ContentType::Protobuf, &PublishOptions::new("x")).expect("valid");
        let header = header_value(Some(&map), headers::TRACEPARENT).expect("traceparent set");
        assert_eq!(TraceParent::parse(header).expect("valid format"), sent);
    }

    #[test]
    fn rejects_empty_msg_ids() {
        assert!(build_headers(ContentType::Protobuf, &PublishOptions::new(" ")).is_err());
        assert!(build_headers(ContentType::Protobuf, &PublishOptions::new("a\r\nb")).is_err());
    }
}
