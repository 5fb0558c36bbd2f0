//! One transaction for the records of many workflows (group commit).
//!
//! A workflow writes its remediation actions, its incident, its own row and its signal;
//! written one commit each, PostgreSQL's commits bound the event path. A [`WorkflowBatch`] takes
//! the writes of many workflows and commits them together: all of them land, or none does.

use sqlx::{Postgres, Transaction};
use vigil_domain::{RemediationAction, WorkflowExecution};

use crate::soar::{self, IncidentAttachment, IncidentEvent};
use crate::{NewExample, Result, signals, training, workflows};

/// An open transaction that records workflows; dropped without [`commit`](Self::commit), it
/// rolls back.
pub struct WorkflowBatch {
    tx: Transaction<'static, Postgres>,
}

impl std::fmt::Debug for WorkflowBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowBatch").finish_non_exhaustive()
    }
}

impl WorkflowBatch {
    pub(crate) fn new(tx: Transaction<'static, Postgres>) -> Self {
        Self { tx }
    }

    /// Labelled examples, skipping (source, source_ref) keys already present; returns how many
    /// were new.
    pub async fn record_examples(&mut self, examples: &[NewExample<'_>]) -> Result<u64> {
        training::insert_examples(&mut self.tx, examples).await
    }

    /// Remediation actions, skipping (event, action, target) keys already present; returns how
    /// many were new.
    pub async fn record_actions(&mut self, actions: &[RemediationAction]) -> Result<u64> {
        soar::insert_actions(&mut self.tx, actions).await
    }

    /// Puts each event (and its actions) on the timeline of its threat's unresolved incident,
    /// opening the incidents that do not exist yet and raising severities, with two statements
    /// for the whole batch; one attachment per event, in order. See
    /// [`Incidents::open_or_attach`](crate::Incidents::open_or_attach).
    pub async fn open_or_attach_incidents(
        &mut self,
        events: &[IncidentEvent<'_>],
    ) -> Result<Vec<IncidentAttachment>> {
        soar::open_or_attach_many(&mut self.tx, events).await
    }

    /// Workflow rows: inserted, or saved over an earlier attempt's row for the same event (its
    /// id and start time are kept). Each event id may appear once per call.
    pub async fn save_workflows(&mut self, workflows: &[&WorkflowExecution]) -> Result<()> {
        workflows::save_all(&mut self.tx, workflows).await
    }

    /// The signal each workflow processed (event id, signal), unlabelled: observed traffic,
    /// never a training example by itself. Write the workflows first; an event that already
    /// has its signal keeps it. Returns how many were new.
    pub async fn record_signals(
        &mut self,
        signals: &[(&str, &vigil_domain::ThreatSignal)],
    ) -> Result<u64> {
        signals::insert_signals(&mut self.tx, signals).await
    }

    /// Makes every write of the batch durable at once.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
