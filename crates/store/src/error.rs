use sqlx::error::ErrorKind;
use vigil_domain::{ModelType, ValidationError};

/// Everything that can go wrong talking to PostgreSQL.
///
/// Constraint violations get their own variants so callers can tell "already exists" (a
/// redelivered event, a second production model) from a broken database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL in the settings cannot be parsed.
    #[error("invalid database URL {url}: {cause}")]
    InvalidUrl {
        /// The URL with its password redacted.
        url: String,
        cause: sqlx::Error,
    },
    /// PostgreSQL did not answer, or refused the connection.
    #[error("cannot connect to PostgreSQL at {target}: {cause}")]
    Connect {
        /// Host, port, user and database, never the password.
        target: String,
        cause: sqlx::Error,
    },
    /// Applying the embedded migrations failed.
    #[error("applying database migrations failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A row with the same unique key already exists.
    #[error("already exists: {message} (constraint {constraint})")]
    AlreadyExists { constraint: String, message: String },
    /// A CHECK constraint refused a value (out of range, unknown enum name, ...).
    #[error("refused by check constraint {constraint}: {message}")]
    CheckViolation { constraint: String, message: String },
    /// The row refers to another row that does not exist.
    #[error("refers to a missing row: {message} (constraint {constraint})")]
    MissingReference { constraint: String, message: String },
    /// The value breaks a domain rule before it reaches the database.
    #[error("invalid input: {0}")]
    Invalid(#[from] ValidationError),
    /// An update or lookup that needs an existing row found none.
    #[error("{entity} {key} not found")]
    NotFound { entity: &'static str, key: String },
    /// A stored row does not decode into its domain type.
    #[error("corrupt row in {table}: {reason}")]
    CorruptRow { table: &'static str, reason: String },
    /// A stored model artifact no longer hashes to the checksum recorded when it was registered;
    /// the bytes must not be served.
    #[error(
        "artifact of model version {id} is corrupt: recorded sha256 {expected}, stored bytes hash \
         to {actual}"
    )]
    CorruptArtifact {
        id: String,
        expected: String,
        actual: String,
    },
    /// A rollback found no version to return to; nothing was changed.
    #[error("cannot roll back {model_type}: {reason}")]
    NothingToRollBack {
        model_type: ModelType,
        reason: &'static str,
    },
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when a unique key refused the write.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::AlreadyExists { .. })
    }

    /// The violated constraint (or unique index) name, for constraint errors.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Error::AlreadyExists { constraint, .. }
            | Error::CheckViolation { constraint, .. }
            | Error::MissingReference { constraint, .. } => Some(constraint),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        let Some(db) = err.as_database_error() else {
            return Error::Database(err);
        };
        let constraint = db.constraint().unwrap_or("unknown").to_owned();
        let message = db.message().to_owned();
        match db.kind() {
            ErrorKind::UniqueViolation => Error::AlreadyExists {
                constraint,
                message,
            },
            ErrorKind::CheckViolation => Error::CheckViolation {
                constraint,
                message,
            },
            ErrorKind::ForeignKeyViolation => Error::MissingReference {
                constraint,
                message,
            },
            _ => Error::Database(err),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Error::Migrate(err)
    }
}
