//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in vigil-ml; each message says what to fix.
#[derive(Debug, Error)]
pub enum Error {
    /// A data row could not be turned into a labelled example.
    #[error("line {line}: {message}")]
    MalformedRow { line: u64, message: String },
    /// The input as a whole is unusable (no header, no label column, no rows).
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// A threat signal cannot be scored (e.g. a non-finite attribute).
    #[error("invalid signal: {0}")]
    InvalidSignal(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Training could not proceed (too few rows, a single class, a learner failure).
    #[error("training failed: {0}")]
    Training(String),
    /// XGBoost reported an error.
    #[error("xgboost: {0}")]
    Xgboost(String),
    /// The bytes do not start with the artifact magic: not a vigil model file.
    #[error("not a vigil model artifact (bad magic bytes)")]
    NotAnArtifact,
    /// The artifact was written by a different, incompatible format version.
    #[error(
        "model artifact format version {found} is not supported (this build reads version {expected}); retrain or convert the model"
    )]
    UnsupportedFormatVersion { found: u32, expected: u32 },
    /// The artifact is truncated or its checksum does not match.
    #[error("model artifact is corrupt: {0}")]
    CorruptArtifact(String),
    /// (De)serialisation of a model or feature spec failed.
    #[error("serialisation: {0}")]
    Serialization(#[from] serde_json::Error),
    /// Reading the CSV input failed.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    /// Reading the input failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
