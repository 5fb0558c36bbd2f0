//! Errors: why the service stopped ([`Error`]) and why a request was refused ([`ApiError`]).
//!
//! [`ApiError`] is the one mapping from error kinds to gRPC codes; handlers return it and never
//! build a `tonic::Status` themselves.

use std::net::SocketAddr;
use std::path::PathBuf;

use tonic::{Code, Status};
use vigil_proto::ConversionError;

/// Why the predictor could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] vigil_bus::Error),
    #[error(transparent)]
    Store(#[from] vigil_store::Error),
    #[error("cannot subscribe to {subject}: {message}")]
    Subscribe { subject: String, message: String },
    #[error("predictor.grpc_addr {addr:?}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("gRPC server on {addr}: {source}")]
    Transport {
        addr: SocketAddr,
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Tls(#[from] vigil_runtime::grpc_tls::TlsError),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("predictor.model_file {}: {message}", path.display())]
    ModelFile { path: PathBuf, message: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Result of starting or running the predictor.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one request was refused; converts to the matching gRPC status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: missing or invalid signal, wrong tensor name, type or shape.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request names a model or model version this server does not serve.
    #[error("{0}")]
    NotFound(String),
    /// No model is loaded yet.
    #[error(
        "no model is loaded: the registry has no production ensemble yet (train and promote one, \
         or set predictor.model_file)"
    )]
    NoModel,
    /// A fault of the server, not of the request.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::NoModel => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        }
    }

    /// A label for metrics: the snake_case name of the code.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "invalid_argument",
            ApiError::NotFound(_) => "not_found",
            ApiError::NoModel => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The same error, its message prefixed with where it happened (`signals[3]`).
    pub(crate) fn at(self, place: &str) -> Self {
        match self {
            ApiError::InvalidArgument(m) => ApiError::InvalidArgument(format!("{place}: {m}")),
            ApiError::NotFound(m) => ApiError::NotFound(format!("{place}: {m}")),
            ApiError::Internal(m) => ApiError::Internal(format!("{place}: {m}")),
            ApiError::NoModel => ApiError::NoModel,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidArgument(message.into())
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        Status::new(error.code(), error.to_string())
    }
}

impl From<ConversionError> for ApiError {
    fn from(error: ConversionError) -> Self {
        ApiError::InvalidArgument(format!("invalid signal: {error}"))
    }
}

impl From<vigil_ml::Error> for ApiError {
    fn from(error: vigil_ml::Error) -> Self {
        match error {
            // The signal cannot be scored: the caller's to fix (the message says what).
            vigil_ml::Error::InvalidSignal(_) | vigil_ml::Error::InvalidData(_) => {
                ApiError::InvalidArgument(error.to_string())
            }
            other => ApiError::Internal(format!("prediction failed: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_code() {
        let cases = [
            (ApiError::invalid("x"), Code::InvalidArgument),
            (ApiError::NotFound("x".into()), Code::NotFound),
            (ApiError::NoModel, Code::Unavailable),
            (ApiError::Internal("x".into()), Code::Internal),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn invalid_signals_are_the_callers_fault_and_keep_their_message() {
        let error = ApiError::from(vigil_ml::Error::InvalidSignal("numeric.x is NaN".into()));
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.to_string().contains("numeric.x is NaN"));
        let error = ApiError::from(vigil_ml::Error::NotAnArtifact);
        assert_eq!(error.code(), Code::Internal);
        let placed = ApiError::invalid("bad").at("signals[2]");
        assert_eq!(placed.to_string(), "signals[2]: bad");
    }
}
