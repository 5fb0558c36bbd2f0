//! Typed consumption from durable pull consumers, with dead-lettering of messages vigil cannot
//! or will not process.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::{error, warn};

use crate::error::{BoxError, Error, Result};
use crate::headers::{self, ContentType, header_value};
use crate::publish::Publisher;
use crate::topology::{ConsumerKind, Topology};
use crate::trace::TraceParent;

/// A message type the bus can decode: protobuf by default, the proto3 JSON mapping when the
/// message says `Content-Type: application/json`.
pub trait Payload: prost::Message + Default + DeserializeOwned + Send + Sync + 'static {}

impl<T> Payload for T where T: prost::Message + Default + DeserializeOwned + Send + Sync + 'static {}

/// Reads a JSON payload in place of `T`'s own serde impl (see
/// [`TypedConsumer::with_json_decoder`]); the error is the dead-letter reason.
pub type JsonDecoder<T> = fn(&[u8]) -> std::result::Result<T, String>;

/// Counters of one consumer since it was bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Messages decoded and handed to the caller.
    pub delivered: u64,
    /// Messages that could not be decoded (each is dead-lettered).
    pub undecodable: u64,
    /// Messages copied to the dead-letter stream and terminated.
    pub dead_lettered: u64,
}

/// Server facts about one delivery of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMeta {
    /// The subject the message was published on.
    pub subject: String,
    /// The stream that stores it.
    pub stream: String,
    /// The durable consumer that delivered it.
    pub consumer: String,
    /// Its sequence in the stream.
    pub stream_sequence: u64,
    /// Its sequence in this consumer's deliveries.
    pub consumer_sequence: u64,
    /// How many times it has been delivered, this time included (1 on first delivery).
    pub delivery_count: u64,
    /// Messages still waiting for this consumer.
    pub pending: u64,
    /// Its `Nats-Msg-Id`, if the publisher set one.
    pub msg_id: Option<String>,
    /// Its trace context, if it carried a valid one.
    pub traceparent: Option<TraceParent>,
}

/// What [`Delivery::retry_or_dead_letter`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The message was nak'd and comes back after `delay`.
    Retrying {
        /// The delivery that failed (1 = first).
        attempt: u64,
        /// When it will be redelivered.
        delay: Duration,
    },
    /// It was the last permitted delivery: the message is in the dead-letter stream.
    DeadLettered,
}

struct Shared {
    consumer: PullConsumer,
    publisher: Publisher,
    stream: String,
    consumer_name: String,
    dlq_subject: String,
    max_deliver: i64,
    /// The consumer's redelivery backoff (`ack_wait` when it has none).
    backoff: Vec<Duration>,
    request_timeout: Duration,
    delivered: AtomicU64,
    undecodable: AtomicU64,
    dead_lettered: AtomicU64,
}

/// A durable pull consumer whose messages decode to `T`.
///
/// Messages that cannot be decoded never reach the caller: they are copied to the dead-letter
/// subject with the reason in headers, terminated, logged and counted.
pub struct TypedConsumer<T> {
    shared: Arc<Shared>,
    json: Option<JsonDecoder<T>>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> Clone for TypedConsumer<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            json: self.json,
            _payload: PhantomData,
        }
    }
}

impl<T> fmt::Debug for TypedConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedConsumer")
            .field("stream", &self.shared.stream)
            .field("consumer", &self.shared.consumer_name)
            .field("payload", &std::any::type_name::<T>())
            .finish()
    }
}

/// A wait shorter than this is not worth a long poll.
const MIN_WAIT: Duration = Duration::from_millis(20);
/// Pause before pulling again after a failed pull in [`TypedConsumer::deliveries`].
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Longest dead-letter reason sent in a header.
const MAX_REASON_CHARS: usize = 1024;

impl<T: Payload> TypedConsumer<T> {
    /// Binds to one of vigil's durable consumers (declared by [`Topology::declare`]).
    pub async fn bind(
        js: &jetstream::Context,
        topology: &Topology,
        kind: ConsumerKind,
    ) -> Result<Self> {
        let stream = topology.stream_name(kind.stream());
        let name = kind.durable_name();
        let consumer: PullConsumer =
            js.get_consumer_from_stream(&name, &stream)
                .await
                .map_err(|err| Error::Consume {
                    stream: stream.clone(),
                    consumer: name.clone(),
                    source: Box::new(err),
                })?;
        Ok(Self::from_pull_consumer(
            consumer,
            Publisher::new(js.clone()),
            topology.dlq_subject(kind.stream()),
        ))
    }

    /// Wraps any pull consumer; undecodable messages go to `dlq_subject`.
    pub fn from_pull_consumer(
        consumer: PullConsumer,
        publisher: Publisher,
        dlq_subject: String,
    ) -> Self {
        let info = consumer.cached_info();
        let shared = Shared {
            stream: info.stream_name.clone(),
            consumer_name: info.name.clone(),
            max_deliver: info.config.max_deliver,
            backoff: if info.config.backoff.is_empty() {
                vec![info.config.ack_wait]
            } else {
                info.config.backoff.clone()
            },
            consumer,
            publisher,
            dlq_subject,
            request_timeout: Duration::from_secs(10),
            delivered: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
        };
        Self {
            shared: Arc::new(shared),
            json: None,
            _payload: PhantomData,
        }
    }

    /// Reads JSON payloads with `decode` instead of `T`'s serde impl: for a format more lenient
    /// than proto3 JSON, or refusals that say more. Protobuf payloads are unaffected.
    pub fn with_json_decoder(mut self, decode: JsonDecoder<T>) -> Self {
        self.json = Some(decode);
        self
    }

    /// The stream this consumer reads.
    pub fn stream(&self) -> &str {
        &self.shared.stream
    }

    /// The durable consumer name.
    pub fn name(&self) -> &str {
        &self.shared.consumer_name
    }

    /// Deliveries the server allows per message (`-1` or `0`: unlimited).
    pub fn max_deliver(&self) -> i64 {
        self.shared.max_deliver
    }

    /// Counters since this consumer was bound (shared by clones).
    pub fn stats(&self) -> ConsumerStats {
        ConsumerStats {
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            undecodable: self.shared.undecodable.load(Ordering::Relaxed),
            dead_lettered: self.shared.dead_lettered.load(Ordering::Relaxed),
        }
    }

    /// Up to `max` messages that are available now; empty at once when there are none.
    ///
    /// This is what a caller polling several consumers in priority order wants.
    pub async fn fetch_available(&self, max: usize) -> Result<Vec<Delivery<T>>> {
        Ok(self.pull(max.max(1), None).await?.0)
    }

    /// Waits up to `wait` for a message, then returns it with whatever else is available at
    /// once, up to `max` in all. Empty when `wait` passed with nothing to deliver.
    pub async fn next_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery<T>>> {
        let max = max.max(1);
        let deadline = Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < MIN_WAIT {
                return self.fetch_available(max).await;
            }
            // Long-poll for a single message so that no pull request outlives this call, then
            // top up with what is already there.
            let (mut out, received) = self.pull(1, Some(remaining)).await?;
            if received == 0 {
                return Ok(out);
            }
            if !out.is_empty() {
                if max > out.len() {
                    let (more, _) = self.pull(max - out.len(), None).await?;
                    out.extend(more);
                }
                return Ok(out);
            }
            // The one message was undecodable and went to the dead-letter stream; keep waiting.
        }
    }

    /// An endless stream of deliveries, pulled `batch` at a time with long polls of `wait`.
    ///
    /// A failed pull yields one `Err` and the stream pauses a second before pulling again.
    pub fn deliveries(
        &self,
        batch: usize,
        wait: Duration,
    ) -> impl Stream<Item = Result<Delivery<T>>> + Send + 'static {
        let state = (self.clone(), VecDeque::<Delivery<T>>::new(), false);
        futures::stream::unfold(
            state,
            move |(consumer, mut buffered, mut failed)| async move {
                loop {
                    if let Some(delivery) = buffered.pop_front() {
                        return Some((Ok(delivery), (consumer, buffered, false)));
                    }
                    if failed {
                        tokio::time::sleep(ERROR_PAUSE).await;
                        failed = false;
                    }
                    match consumer.next_batch(batch, wait).await {
                        Ok(batch) => buffered.extend(batch),
                        Err(err) => return Some((Err(err), (consumer, buffered, true))),
                    }
                }
            },
        )
    }

    /// Pulls up to `max` messages; `wait: None` asks only for what is there now. Returns the
    /// decoded deliveries and how many messages arrived (undecodable ones included).
    async fn pull(&self, max: usize, wait: Option<Duration>) -> Result<(Vec<Delivery<T>>, usize)> {
        let shared = &self.shared;
        let consume_error = |source: BoxError| Error::Consume {
            stream: shared.stream.clone(),
            consumer: shared.consumer_name.clone(),
            source,
        };
        let batch = match wait {
            Some(expires) => {
                shared
                    .consumer
                    .batch()
                    .max_messages(max)
                    .expires(expires)
                    .messages()
                    .await
            }
            None => shared.consumer.fetch().max_messages(max).messages().await,
        }
        .map_err(|err| consume_error(Box::new(err)))?;

        let limit = wait.unwrap_or_default() + shared.request_timeout;
        let mut raw = Vec::new();
        let collected = tokio::time::timeout(limit, async {
            let mut batch = batch;
            while let Some(item) = batch.next().await {
                raw.push(item?);
            }
            Ok::<(), BoxError>(())
        })
        .await;
        match collected {
            Ok(Ok(())) => {}
            // Messages already received are handed out; the failure shows again on the next pull.
            Ok(Err(err)) if !raw.is_empty() => {
                warn!(stream = %shared.stream, consumer = %shared.consumer_name, %err, "pull ended early");
            }
            Ok(Err(err)) => return Err(consume_error(err)),
            Err(_) if !raw.is_empty() => {
                warn!(stream = %shared.stream, consumer = %shared.consumer_name, "pull did not finish in time");
            }
            Err(_) => {
                return Err(Error::ConsumeTimeout {
                    stream: shared.stream.clone(),
                    consumer: shared.consumer_name.clone(),
                    after: limit,
                });
            }
        }

        let received = raw.len();
        let mut out = Vec::with_capacity(received);
        for message in raw {
            if let Some(delivery) = self.accept(message).await {
                out.push(delivery);
            }
        }
        Ok((out, received))
    }

    /// Decodes a message, or dead-letters it and returns `None`.
    async fn accept(&self, message: jetstream::Message) -> Option<Delivery<T>> {
        let shared = &self.shared;
        let meta = match delivery_meta(&message) {
            Ok(meta) => meta,
            Err(err) => {
                // Without JetStream metadata the message cannot be acked either; it will be
                // redelivered after the ack wait.
                error!(subject = %message.subject, %err, "message without jetstream metadata");
                return None;
            }
        };
        match decode::<T>(message.headers.as_ref(), &message.payload, self.json) {
            Ok((payload, content_type)) => {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                Some(Delivery {
                    payload,
                    content_type,
                    meta,
                    message,
                    shared: Arc::clone(shared),
                })
            }
            Err(reason) => {
                shared.undecodable.fetch_add(1, Ordering::Relaxed);
                warn!(
                    stream = %meta.stream,
                    subject = %meta.subject,
                    sequence = meta.stream_sequence,
                    %reason,
                    "undecodable message"
                );
                if let Err(err) = dead_letter(shared, &message, &meta, &reason).await {
                    error!(%err, "failed to dead-letter undecodable message; it will be redelivered");
                }
                None
            }
        }
    }
}

/// One delivery of a decoded message, with the means to acknowledge it.
///
/// Ack only after the work is durable. A delivery that is neither acked, nak'd nor terminated
/// is redelivered after the consumer's ack wait.
pub struct Delivery<T> {
    payload: T,
    content_type: ContentType,
    meta: DeliveryMeta,
    message: jetstream::Message,
    shared: Arc<Shared>,
}

impl<T: fmt::Debug> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("meta", &self.meta)
            .field("content_type", &self.content_type)
            .field("payload", &self.payload)
            .finish()
    }
}

impl<T> Delivery<T> {
    /// The decoded message.
    pub fn payload(&self) -> &T {
        &self.payload
    }

    /// How the payload was encoded on the wire.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// Subject, stream, sequences, delivery count, message id and trace context.
    pub fn meta(&self) -> &DeliveryMeta {
        &self.meta
    }

    /// The subject the message was published on.
    pub fn subject(&self) -> &str {
        &self.meta.subject
    }

    /// The message's `Nats-Msg-Id`, if any.
    pub fn msg_id(&self) -> Option<&str> {
        self.meta.msg_id.as_deref()
    }

    /// The message's trace context, if it carried a valid one.
    pub fn traceparent(&self) -> Option<TraceParent> {
        self.meta.traceparent.clone()
    }

    /// How many times this message has been delivered, this time included.
    pub fn delivery_count(&self) -> u64 {
        self.meta.delivery_count
    }

    /// The message's sequence in its stream.
    pub fn stream_sequence(&self) -> u64 {
        self.meta.stream_sequence
    }

    /// How long to wait before the next attempt after this one failed: the consumer's backoff
    /// for this delivery (its last step once past the end), so that the attempts of one message
    /// span an outage of a dependency (PostgreSQL restarting) rather than spend themselves in
    /// seconds.
    pub fn backoff(&self) -> Duration {
        let step =
            usize::try_from(self.meta.delivery_count.saturating_sub(1)).unwrap_or(usize::MAX);
        let backoff = &self.shared.backoff;
        backoff
            .get(step)
            .or(backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }

    /// True when the server will not deliver the message again after this delivery.
    pub fn is_last_attempt(&self) -> bool {
        let max = self.shared.max_deliver;
        max > 0 && self.meta.delivery_count >= u64::try_from(max).unwrap_or(u64::MAX)
    }

    /// All headers as received.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.message.headers.as_ref()
    }

    /// One header's last value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(self.message.headers.as_ref(), name)
    }

    /// The raw payload bytes.
    pub fn raw_payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// Acknowledges the message (fire and forget; see [`Delivery::double_ack`]).
    pub async fn ack(&self) -> Result<()> {
        self.send_ack(AckKind::Ack, "ack").await
    }

    /// Acknowledges the message and waits for the server to confirm it.
    pub async fn double_ack(&self) -> Result<()> {
        self.message
            .double_ack()
            .await
            .map_err(|source| self.ack_error("double-ack", source))
    }

    /// Asks for redelivery after `delay`.
    pub async fn nak_with_delay(&self, delay: Duration) -> Result<()> {
        self.send_ack(AckKind::Nak(Some(delay)), "nak").await
    }

    /// Tells the server the work is still going on, resetting the ack wait.
    pub async fn in_progress(&self) -> Result<()> {
        self.send_ack(AckKind::Progress, "mark in progress").await
    }

    /// Stops redelivery without processing the message. Prefer [`Delivery::dead_letter`],
    /// which keeps a copy.
    pub async fn term(&self) -> Result<()> {
        self.send_ack(AckKind::Term, "terminate").await
    }

    /// Copies the message to the dead-letter stream with `reason`, then terminates it; for
    /// messages that will never succeed (validation failures). When the copy fails the message
    /// is left unacknowledged and an error returned.
    pub async fn dead_letter(&self, reason: &str) -> Result<()> {
        dead_letter(&self.shared, &self.message, &self.meta, reason).await
    }

    /// After a handler failure: naks with `delay`, or, when this was the last permitted
    /// delivery, dead-letters the message with `reason`.
    pub async fn retry_or_dead_letter(
        &self,
        reason: &str,
        delay: Duration,
    ) -> Result<RetryOutcome> {
        if self.is_last_attempt() {
            self.dead_letter(reason).await?;
            return Ok(RetryOutcome::DeadLettered);
        }
        warn!(
            stream = %self.meta.stream,
            subject = %self.meta.subject,
            sequence = self.meta.stream_sequence,
            attempt = self.meta.delivery_count,
            ?delay,
            %reason,
            "processing failed; will retry"
        );
        self.nak_with_delay(delay).await?;
        Ok(RetryOutcome::Retrying {
            attempt: self.meta.delivery_count,
            delay,
        })
    }

    async fn send_ack(&self, kind: AckKind, action: &'static str) -> Result<()> {
        self.message.ack_with(kind).await.map_err(|source| {
            warn!(
                subject = %self.meta.subject,
                sequence = self.meta.stream_sequence,
                attempt = self.meta.delivery_count,
                %source,
                "failed to {action} message"
            );
            self.ack_error(action, source)
        })
    }

    fn ack_error(&self, action: &'static str, source: BoxError) -> Error {
        Error::Ack {
            action,
            stream: self.meta.stream.clone(),
            sequence: self.meta.stream_sequence,
            source,
        }
    }
}

fn delivery_meta(message: &jetstream::Message) -> Result<DeliveryMeta, BoxError> {
    let info = message.info()?;
    let headers = message.headers.as_ref();
    let traceparent = header_value(headers, headers::TRACEPARENT).and_then(|value| {
        TraceParent::parse(value)
            .map_err(|err| warn!(subject = %message.subject, %err, "ignoring invalid traceparent"))
            .ok()
    });
    Ok(DeliveryMeta {
        subject: message.subject.to_string(),
        stream: info.stream.to_owned(),
        consumer: info.consumer.to_owned(),
        stream_sequence: info.stream_sequence,
        consumer_sequence: info.consumer_sequence,
        delivery_count: u64::try_from(info.delivered).unwrap_or(0),
        pending: info.pending,
        msg_id: header_value(headers, headers::MSG_ID).map(str::to_owned),
        traceparent,
    })
}

/// Decodes a payload by its `Content-Type` (protobuf when absent), JSON with `json` when given;
/// the error is the reason recorded on the dead letter.
pub(crate) fn decode<T: Payload>(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    json: Option<JsonDecoder<T>>,
) -> std::result::Result<(T, ContentType), String> {
    let type_name = std::any::type_name::<T>();
    let content_type = match header_value(headers, headers::CONTENT_TYPE) {
        None => ContentType::Protobuf,
        Some(value) => ContentType::from_header(value).ok_or_else(|| {
            format!(
                "unsupported content type {value:?}; expected {} or {}",
                headers::APPLICATION_PROTOBUF,
                headers::APPLICATION_JSON
            )
        })?,
    };
    let decoded = match content_type {
        ContentType::Protobuf => T::decode(payload)
            .map_err(|err| format!("cannot decode {type_name} from protobuf: {err}"))?,
        ContentType::Json => match json {
            Some(decode) => decode(payload)?,
            None => serde_json::from_slice(payload)
                .map_err(|err| format!("cannot decode {type_name} from JSON: {err}"))?,
        },
    };
    Ok((decoded, content_type))
}

/// Where a dead letter came from.
pub(crate) struct Origin<'a> {
    pub stream: &'a str,
    pub subject: &'a str,
    pub consumer: &'a str,
    pub sequence: u64,
    pub deliveries: u64,
}

/// The headers of a dead letter: the original's (without JetStream control headers, which must
/// not act on the copy), one `Nats-Msg-Id` per original message (a retried copy is stored
/// once), and the `Vigil-Dlq-*` headers saying where it came from and why.
pub(crate) fn dead_letter_headers(
    original: Option<&HeaderMap>,
    origin: &Origin<'_>,
    reason: &str,
) -> HeaderMap {
    let reason = headers::sanitize_header_value(reason, MAX_REASON_CHARS);
    let mut copy = HeaderMap::new();
    if let Some(original) = original {
        for (name, values) in original.iter() {
            let name_bytes: &[u8] = name.as_ref();
            if name_bytes.len() >= 5 && name_bytes[..5].eq_ignore_ascii_case(b"Nats-") {
                continue;
            }
            for value in values {
                copy.append(name.clone(), value.clone());
            }
        }
    }
    copy.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("dlq:{}:{}", origin.stream, origin.sequence),
    );
    copy.insert(headers::DLQ_REASON, reason.as_str());
    copy.insert(headers::DLQ_STREAM, origin.stream);
    copy.insert(headers::DLQ_SUBJECT, origin.subject);
    copy.insert(headers::DLQ_CONSUMER, origin.consumer);
    copy.insert(headers::DLQ_SEQUENCE, origin.sequence.to_string());
    copy.insert(headers::DLQ_DELIVERIES, origin.deliveries.to_string());
    if let Some(msg_id) = header_value(original, headers::MSG_ID) {
        copy.insert(headers::DLQ_ORIGINAL_MSG_ID, msg_id);
    }
    copy
}

/// Copies a message to the dead-letter subject, then terminates it.
async fn dead_letter(
    shared: &Shared,
    message: &jetstream::Message,
    meta: &DeliveryMeta,
    reason: &str,
) -> Result<()> {
    let reason = headers::sanitize_header_value(reason, MAX_REASON_CHARS);
    let copy = dead_letter_headers(
        message.headers.as_ref(),
        &Origin {
            stream: &meta.stream,
            subject: &meta.subject,
            consumer: &meta.consumer,
            sequence: meta.stream_sequence,
            deliveries: meta.delivery_count,
        },
        &reason,
    );
    let wrap = |source: Error| Error::DeadLetter {
        stream: meta.stream.clone(),
        sequence: meta.stream_sequence,
        source: Box::new(source),
    };
    shared
        .publisher
        .publish_with_headers(&shared.dlq_subject, copy, message.payload.clone())
        .await
        .map_err(wrap)?;
    message.ack_with(AckKind::Term).await.map_err(|source| {
        wrap(Error::Ack {
            action: "terminate",
            stream: meta.stream.clone(),
            sequence: meta.stream_sequence,
            source,
        })
    })?;
    shared.dead_lettered.fetch_add(1, Ordering::Relaxed);
    warn!(
        stream = %meta.stream,
        subject = %meta.subject,
        sequence = meta.stream_sequence,
        attempt = meta.delivery_count,
        dlq = %shared.dlq_subject,
        %reason,
        "dead-lettered message"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
    struct Probe {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(uint32, tag = "2")]
        count: u32,
    }

    fn with_content_type(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(headers::CONTENT_TYPE, value);
        map
    }

    #[test]
    fn decodes_protobuf_by_default() {
        let probe = Probe {
            name: "a".into(),
            count: 3,
        };
        let bytes = prost::Message::encode_to_vec(&probe);
        let (decoded, ct) = decode::<Probe>(None, &bytes, None).expect("valid protobuf");
        assert_eq!(decoded, probe);
        assert_eq!(ct, ContentType::Protobuf);
    }

    #[test]
    fn decodes_json_when_asked() {
        let headers = with_content_type("application/json; charset=utf-8");
        let (decoded, ct) = decode::<Probe>(Some(&headers), br#"{"name":"a","count":3}"#, None)
            .expect("valid JSON");
        assert_eq!(decoded.count, 3);
        assert_eq!(ct, ContentType::Json);
    }

    #[test]
    fn a_json_decoder_reads_json_and_leaves_protobuf_alone() {
        fn name_only(json: &[u8]) -> std::result::Result<Probe, String> {
            match json.strip_prefix(b"name=") {
                Some(name) => Ok(Probe {
                    name: String::from_utf8_lossy(name).into_owned(),
                    count: 0,
                }),
                None => Err("not name=...".to_owned()),
            }
        }
        let headers = with_content_type("application/json");
        let (decoded, _) =
            decode::<Probe>(Some(&headers), b"name=x", Some(name_only)).expect("custom JSON");
        assert_eq!(decoded.name, "x");
        let err = decode::<Probe>(Some(&headers), br#"{"name":"a"}"#, Some(name_only))
            .expect_err("the decoder, not serde, decides");
        assert_eq!(err, "not name=...");
        let probe = Probe {
            name: "p".into(),
            count: 1,
        };
        let bytes = prost::Message::encode_to_vec(&probe);
        let (decoded, _) = decode::<Probe>(None, &bytes, Some(name_only)).expect("protobuf");
        assert_eq!(decoded, probe);
    }

    #[test]
    fn explains_what_cannot_be_decoded() {
        let err = decode::<Probe>(None, &[0xff, 0xff, 0xff], None).expect_err("garbage");
        assert!(err.contains("protobuf"), "{err}");
        let headers = with_content_type("application/json");
        let err = decode::<Probe>(Some(&headers), b"{nope", None).expect_err("bad JSON");
        assert!(err.contains("JSON"), "{err}");
        let headers = with_content_type("text/csv");
        let err = decode::<Probe>(Some(&headers), b"a,b", None).expect_err("unsupported");
        assert!(err.contains("text/csv"), "{err}");
    }
}
