use std::time::Duration;

use thiserror::Error;

/// Why an alert could not be delivered (or a sender not built).
#[derive(Debug, Error)]
pub enum Error {
    /// The alert names a channel that has no settings.
    #[error("channel {channel} is not configured")]
    NotConfigured { channel: String },
    /// A channel's settings cannot be used.
    #[error("invalid {channel} settings: {reason}")]
    InvalidSettings {
        channel: &'static str,
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The request did not get an answer (connection refused, timeout, ...).
    #[error("{channel}: request failed: {source}")]
    Request {
        channel: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The channel answered with an error status.
    #[error("{channel}: HTTP {status}: {body}")]
    Status {
        channel: &'static str,
        status: u16,
        body: String,
        /// From a `Retry-After` header.
        retry_after: Option<Duration>,
    },
    /// The email could not be built.
    #[error("email: cannot build the message: {0}")]
    Message(#[from] lettre::error::Error),
    /// The SMTP exchange failed.
    #[error("email: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl Error {
    /// Whether another attempt may succeed: network errors, 408, 425, 429, 5xx, transient SMTP
    /// errors. Bad settings and other 4xx are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Request { source, .. } => !source.is_builder(),
            Error::Status { status, .. } => matches!(status, 408 | 425 | 429 | 500..=599),
            Error::Smtp(e) => !e.is_permanent(),
            Error::NotConfigured { .. }
            | Error::InvalidSettings { .. }
            | Error::Client(_)
            | Error::Message(_) => false,
        }
    }

    /// How long the channel asked us to wait before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Result of a notify operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
