use std::time::Duration;

use thiserror::Error;
use vigil_domain::{ActionKind, ValidationError};

/// What can go wrong while carrying out or undoing a remediation.
#[derive(Debug, Error)]
pub enum Error {
    /// The executor cannot do this kind of action on this target.
    #[error("{executor} executor cannot {action} {target:?}: {reason}")]
    Unsupported {
        executor: &'static str,
        action: ActionKind,
        target: String,
        reason: String,
    },
    /// The action was carried out by another executor than the one asked to undo it.
    #[error("action {id} was carried out by the {recorded} executor, not {asked}")]
    ExecutorMismatch {
        id: String,
        recorded: String,
        asked: &'static str,
    },
    /// The stored details or undo of an action cannot be replayed.
    #[error("action {id} has unusable {part}: {reason}")]
    MalformedAction {
        id: String,
        part: &'static str,
        reason: String,
    },
    /// An applied nftables action must be undone while applying is switched off.
    #[error(
        "action {id} was applied but nftables.apply is off; set it, or undo by hand: {command}"
    )]
    ApplyDisabled { id: String, command: String },
    /// The command could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The command did not finish in time (it was killed).
    #[error("`{command}` did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    /// The command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    /// The remediation webhook failed: no answer, or an error status (after `attempts`
    /// attempts; 0 when the client could not be built).
    #[error("{error} (after {attempts} attempts)")]
    Webhook {
        attempts: u32,
        #[source]
        error: vigil_notify::Error,
    },
    /// The settings are invalid.
    #[error("invalid remediation settings: {0}")]
    Settings(#[from] ValidationError),
}

/// Result of a soar operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
