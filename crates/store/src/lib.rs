//! PostgreSQL pool, migrations and repositories.
//!
//! [`Store`] owns the connection pool and applies the embedded `migrations/` at start-up; each
//! table family has a repository handle borrowed from it ([`Store::workflows`], and
//! [`Store::models`] for the [`ModelRegistry`]). Every query is parameterised. Unique keys in the
//! schema make processing idempotent by event id; a write that hits one comes back as
//! [`Error::AlreadyExists`] (or as [`InsertOutcome::AlreadyPresent`] from the `insert_if_absent`
//! calls), never as a generic failure.

mod batch;
mod config_audit;
mod error;
mod feedback;
mod ids;
mod lock;
mod models;
mod run_admissions;
mod signals;
mod soar;
mod store;
mod training;
mod workflows;

pub use batch::WorkflowBatch;
pub use config_audit::{AuditedChange, ConfigAudit, ConfigChange};
pub use error::{Error, Result};
pub use feedback::{
    Feedback, FeedbackWrite, JudgedOutcome, JudgedSignal, JudgedWorkflow, NewFeedback, Recorded,
    RetrainRequest, RetrainRule, ReviewCandidate,
};
pub use lock::ReplicaLock;
pub use models::{
    ModelEvent, ModelEventKind, ModelRecord, ModelRegistry, NewModelVersion, Promotion,
};
pub use run_admissions::{RUN_ADMISSION_WINDOW, RunAdmission, RunAdmissions};
pub use signals::WorkflowSignals;
pub use soar::{Alerts, IncidentAttachment, IncidentEvent, Incidents, Intent, Remediations};
pub use store::{MIGRATOR, MigrationReport, Store};
pub use training::{EVICTION_ORDER, ExampleSource, NewExample, TrainingExample, TrainingExamples};
pub use workflows::Workflows;

/// Whether an idempotent insert wrote a new row or found one already there under the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The row was written now.
    Inserted,
    /// A row with the same unique key existed; nothing was written.
    AlreadyPresent,
}

impl InsertOutcome {
    /// True when this call wrote the row.
    pub fn is_new(self) -> bool {
        self == InsertOutcome::Inserted
    }

    /// The outcome of an `INSERT ... ON CONFLICT DO NOTHING RETURNING ...`: a returned row means
    /// it was written.
    pub(crate) fn of_returning<T>(returned: Option<T>) -> Self {
        if returned.is_some() {
            InsertOutcome::Inserted
        } else {
            InsertOutcome::AlreadyPresent
        }
    }
}
