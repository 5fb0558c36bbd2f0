//! Messages that used up every delivery without an answer.
//!
//! A handler that fails dead-letters the message itself on its last attempt. But when the
//! process handling a message crashes, or hangs past the ack wait, on every attempt, nobody
//! answers: the server stops delivering it, and in a work-queue stream it then sits where no
//! consumer will ever see it again. The server announces each such message on
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`; the rescuer copies it to the
//! dead-letter stream with a reason, then removes it from its stream. Replicas share the
//! advisories through a queue group, and the copy's `Nats-Msg-Id` (the same one a handler's own
//! dead letter would carry) keeps a message from being dead-lettered twice.

use async_nats::Subscriber;
use async_nats::jetstream::{self, stream::RawMessageErrorKind};
use futures::StreamExt;
use serde::Deserialize;
use tracing::{error, warn};

use crate::consume::{Origin, dead_letter_headers};
use crate::error::{BoxError, Error, Result};
use crate::{Bus, StreamKind, publish::Publisher};

/// The fields of a max-deliveries advisory that say which message it is.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Rescues the exhausted messages of one stream until dropped.
#[derive(Debug)]
pub struct ExhaustedRescuer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ExhaustedRescuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Bus {
    /// Starts moving the messages of `kind` that exhaust their deliveries to the dead-letter
    /// stream; the advisories are subscribed to before this returns.
    pub async fn rescue_exhausted(&self, kind: StreamKind) -> Result<ExhaustedRescuer> {
        let stream = self.topology().stream_name(kind);
        let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*");
        let advisories = self
            .client()
            .queue_subscribe(subject.clone(), format!("{stream}_rescuers"))
            .await
            .map_err(|e| Error::Subscribe {
                subject,
                source: Box::new(e),
            })?;
        // The subscription must be known to the server before a caller relies on it.
        self.client().flush().await.map_err(|e| Error::Subscribe {
            subject: format!("{stream} max-deliveries advisories"),
            source: Box::new(e),
        })?;
        let rescuer = Rescuer {
            jetstream: self.jetstream().clone(),
            publisher: self.publisher(),
            dlq_subject: self.topology().dlq_subject(kind),
        };
        Ok(ExhaustedRescuer {
            task: tokio::spawn(rescuer.run(advisories)),
        })
    }
}

struct Rescuer {
    jetstream: jetstream::Context,
    publisher: Publisher,
    dlq_subject: String,
}

impl Rescuer {
    async fn run(self, mut advisories: Subscriber) {
        while let Some(advisory) = advisories.next().await {
            let parsed: MaxDeliveries = match serde_json::from_slice(&advisory.payload) {
                Ok(parsed) => parsed,
                Err(err) => {
                    warn!(%err, subject = %advisory.subject, "unreadable max-deliveries advisory");
                    continue;
                }
            };
            if let Err(err) = self.rescue(&parsed).await {
                error!(
                    %err,
                    stream = %parsed.stream,
                    sequence = parsed.stream_seq,
                    "could not dead-letter a message that exhausted its deliveries"
                );
            }
        }
    }

    async fn rescue(&self, exhausted: &MaxDeliveries) -> Result<()> {
        let stream_error = |source: BoxError| Error::Rescue {
            stream: exhausted.stream.clone(),
            sequence: exhausted.stream_seq,
            source,
        };
        let stream = self
            .jetstream
            .get_stream(&exhausted.stream)
            .await
            .map_err(|e| stream_error(Box::new(e)))?;
        let message = match stream.get_raw_message(exhausted.stream_seq).await {
            Ok(message) => message,
            // Acked or dead-lettered after all (a slow handler finished): nothing to rescue.
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => return Ok(()),
            Err(err) => return Err(stream_error(Box::new(err))),
        };
        let reason = format!(
            "delivered {} times without an answer: the process handling it crashed or hung on \
             every attempt",
            exhausted.deliveries
        );
        let copy = dead_letter_headers(
            Some(&message.headers),
            &Origin {
                stream: &exhausted.stream,
                subject: message.subject.as_str(),
                consumer: &exhausted.consumer,
                sequence: exhausted.stream_seq,
                deliveries: exhausted.deliveries,
            },
            &reason,
        );
        self.publisher
            .publish_with_headers(&self.dlq_subject, copy, message.payload.clone())
            .await?;
        stream
            .delete_message(exhausted.stream_seq)
            .await
            .map_err(|e| stream_error(Box::new(e)))?;
        warn!(
            stream = %exhausted.stream,
            sequence = exhausted.stream_seq,
            deliveries = exhausted.deliveries,
            dlq = %self.dlq_subject,
            "dead-lettered a message that exhausted its deliveries"
        );
        Ok(())
    }
}
