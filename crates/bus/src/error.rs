//! The one error type of the bus crate.

use std::path::PathBuf;
use std::time::Duration;

/// Any error a library this crate wraps may return, boxed so that the enum stays small.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to NATS JetStream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The NATS settings cannot work as given (bad URL, a password without a user, ...).
    #[error("invalid NATS settings: {0}")]
    Settings(String),

    /// A file named in the settings (credentials, CA, client certificate) cannot be used.
    #[error("cannot use NATS {what} file {}: {source}", path.display())]
    File {
        /// Which file this is: "credentials", "CA", "client certificate", ...
        what: &'static str,
        /// The path from the settings.
        path: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: std::io::Error,
    },

    /// The server did not accept a connection (unreachable, TLS or authentication failure).
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The configured URL(s), with any password redacted.
        url: String,
        /// What the client reported.
        #[source]
        source: async_nats::ConnectError,
    },

    /// A name or subject token would produce an invalid or ambiguous subject.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What the value names: "prefix", "ingest kind", "work priority", ...
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The topology configuration is inconsistent (for example more backoff steps than deliveries).
    #[error("invalid topology configuration: {0}")]
    TopologyConfig(String),

    /// Creating or updating a stream, consumer or bucket failed.
    #[error("cannot declare {what}: {source}")]
    Declare {
        /// The stream, consumer or bucket, by name.
        what: String,
        /// What the server or client reported.
        #[source]
        source: BoxError,
    },

    /// Deleting a stream or bucket failed.
    #[error("cannot delete {what}: {source}")]
    Delete {
        /// The stream or bucket, by name.
        what: String,
        /// What the server or client reported.
        #[source]
        source: BoxError,
    },

    /// The stream for the subject is full and refuses new messages (discard policy `new`).
    ///
    /// This is back-pressure, not a failure: retry later (the broker naks its input with a
    /// delay).
    #[error("stream for {subject} is full and refuses new messages: {detail}")]
    StreamFull {
        /// The subject that was published to.
        subject: String,
        /// The server's description of the limit that was hit.
        detail: String,
    },

    /// No stream listens on the subject.
    #[error("no stream stores subject {subject}; is the topology declared?")]
    NoStream {
        /// The subject that was published to.
        subject: String,
    },

    /// Publishing failed for another reason (timeout, connection loss, server error).
    #[error("cannot publish to {subject}: {source}")]
    Publish {
        /// The subject that was published to.
        subject: String,
        /// What the server or client reported.
        #[source]
        source: BoxError,
    },

    /// A header value cannot be sent (empty, or contains a line break).
    #[error("invalid value for header {name}: {reason}")]
    InvalidHeader {
        /// The header name.
        name: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A `traceparent` value does not follow the W3C trace-context format.
    #[error("invalid traceparent {value:?}: {reason}")]
    InvalidTraceParent {
        /// The rejected value.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// Looking up a consumer or pulling messages from it failed.
    #[error("cannot pull from consumer {consumer} on stream {stream}: {source}")]
    Consume {
        /// The stream name.
        stream: String,
        /// The durable consumer name.
        consumer: String,
        /// What the server or client reported.
        #[source]
        source: BoxError,
    },

    /// Pulling messages did not finish in time.
    #[error("pulling from consumer {consumer} on stream {stream} timed out after {after:?}")]
    ConsumeTimeout {
        /// The stream name.
        stream: String,
        /// The durable consumer name.
        consumer: String,
        /// How long the client waited.
        after: Duration,
    },

    /// Acknowledging (ack, nak, in-progress, term) a message failed.
    #[error("cannot {action} message {sequence} of stream {stream}: {source}")]
    Ack {
        /// The acknowledgement that was sent.
        action: &'static str,
        /// The stream the message came from.
        stream: String,
        /// The stream sequence of the message.
        sequence: u64,
        /// What the client reported.
        #[source]
        source: BoxError,
    },

    /// Copying a message to the dead-letter stream failed; the message was left unacknowledged.
    #[error("cannot dead-letter message {sequence} of stream {stream}: {source}")]
    DeadLetter {
        /// The stream the message came from.
        stream: String,
        /// The stream sequence of the message.
        sequence: u64,
        /// Why the copy failed.
        #[source]
        source: Box<Error>,
    },

    /// Subscribing to a core NATS subject failed.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject (or wildcard).
        subject: String,
        /// What the client reported.
        #[source]
        source: BoxError,
    },

    /// Moving a message that exhausted its deliveries to the dead-letter stream failed.
    #[error("cannot rescue message {sequence} of stream {stream}: {source}")]
    Rescue {
        /// The stream the message is in.
        stream: String,
        /// The stream sequence of the message.
        sequence: u64,
        /// What the server or client reported.
        #[source]
        source: BoxError,
    },

    /// An operation on the live configuration bucket failed.
    #[error("config bucket {bucket}: cannot {operation}: {source}")]
    ConfigBucket {
        /// The bucket name.
        bucket: String,
        /// What was attempted: "open", "get key", "put key", "watch", ...
        operation: String,
        /// What the server or client reported.
        #[source]
        source: BoxError,
    },

    /// A compare-and-swap write lost: the key changed since the writer read it.
    #[error(
        "{key} changed since it was read (expected {}, it is now at revision {}); read it again \
         and retry",
        expected.map_or_else(|| "no value".to_owned(), |r| format!("revision {r}")),
        current.map_or_else(|| "none".to_owned(), |r| r.to_string())
    )]
    ConfigConflict {
        /// The key written.
        key: String,
        /// The revision the writer expected (`None`: that the key had no value).
        expected: Option<u64>,
        /// The key's revision found after the write was refused, when it could be read.
        current: Option<u64>,
    },
}

impl Error {
    /// True when a publish was refused because the target stream is full; retry later.
    pub fn is_stream_full(&self) -> bool {
        matches!(self, Error::StreamFull { .. })
    }

    pub(crate) fn config_bucket(
        bucket: &str,
        operation: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::ConfigBucket {
            bucket: bucket.to_owned(),
            operation: operation.into(),
            source: source.into(),
        }
    }
}
