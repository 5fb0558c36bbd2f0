//! Group commit: finished workflows queue their records here, and one task writes whatever has
//! queued up in a single transaction, so PostgreSQL commits once per batch instead of two to
//! four times per workflow. At low load a batch is one workflow and nothing waits for company;
//! under load the batches grow by themselves. A batch that fails is retried one workflow per
//! transaction, so one bad record fails only its own workflow.

use std::collections::HashSet;
use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{Semaphore, mpsc, oneshot};
use vigil_domain::{RemediationAction, Severity, ThreatSignal, WorkflowExecution};
use vigil_store::{IncidentEvent, Store};

use crate::events::{IncidentResult, WorkflowResults};

/// The incident a workflow opens or attaches to; its id is known only once committed.
#[derive(Debug, Clone)]
pub(crate) struct IncidentRequest {
    pub threat_key: String,
    pub title: String,
    pub severity: Severity,
    /// `soar.incidents.window_seconds` when the workflow ran (a live key).
    pub window: std::time::Duration,
}

/// Everything one workflow writes, committed together.
#[derive(Debug)]
pub(crate) struct WorkflowRecord {
    /// Kept unlabelled beside the workflow: vigil's verdict is never a training label; an
    /// analyst's verdict on the workflow turns it into one (the feedback service).
    pub signal: ThreatSignal,
    pub actions: Vec<RemediationAction>,
    pub incident: Option<IncidentRequest>,
    pub results: WorkflowResults,
    /// Saved with `results` filled in.
    pub workflow: WorkflowExecution,
}

type Reply = oneshot::Sender<Result<WorkflowRecord, String>>;

/// Hands records to the commit task; cheap to clone.
#[derive(Clone)]
pub(crate) struct Committer {
    queue: mpsc::UnboundedSender<(WorkflowRecord, Reply)>,
}

impl Committer {
    /// Starts the commit task; it ends once every `Committer` clone is dropped and the queue
    /// is empty.
    pub fn start(store: Store, batch_max: usize, concurrency: usize, sizes: Histogram) -> Self {
        let (queue, incoming) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(
            store,
            incoming,
            batch_max.max(1),
            concurrency.max(1),
            sizes,
        ));
        Self { queue }
    }

    /// Commits `record` (with whatever else is queued) and gives it back with its incident
    /// filled in, or the reason it could not be written.
    pub async fn commit(&self, record: WorkflowRecord) -> Result<WorkflowRecord, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((record, reply))
            .map_err(|_| "the commit task has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the commit task dropped the workflow".to_owned())?
    }
}

async fn commit_loop(
    store: Store,
    mut incoming: mpsc::UnboundedReceiver<(WorkflowRecord, Reply)>,
    batch_max: usize,
    concurrency: usize,
    sizes: Histogram,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    loop {
        // Take a slot first: while every transaction is busy, records keep queueing and the
        // next batch is bigger.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = incoming.recv().await else {
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < batch_max {
            match incoming.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        sizes.observe(jobs.len() as f64);
        let store = store.clone();
        tokio::spawn(async move {
            commit_jobs(&store, jobs).await;
            drop(slot);
        });
    }
}

async fn commit_jobs(store: &Store, jobs: Vec<(WorkflowRecord, Reply)>) {
    // One row per event and statement: a second record for the same event (a redelivery that
    // raced its first delivery) goes in a transaction of its own.
    let mut seen = HashSet::new();
    let (first, repeats): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .partition(|(record, _)| seen.insert(record.workflow.event_id.clone()));
    let (mut records, replies): (Vec<_>, Vec<_>) = first.into_iter().unzip();
    match write(store, &mut records).await {
        Ok(()) => {
            for (record, reply) in records.into_iter().zip(replies) {
                let _ = reply.send(Ok(record));
            }
        }
        Err(error) if records.len() == 1 => {
            for reply in replies {
                let _ = reply.send(Err(error.to_string()));
            }
        }
        Err(error) => {
            tracing::warn!(%error, batch = records.len(), "batch commit failed; committing one by one");
            for job in records.into_iter().zip(replies) {
                commit_alone(store, job).await;
            }
        }
    }
    for job in repeats {
        commit_alone(store, job).await;
    }
}

async fn commit_alone(store: &Store, (record, reply): (WorkflowRecord, Reply)) {
    let mut records = vec![record];
    let outcome = write(store, &mut records).await;
    let _ = reply.send(match outcome {
        Ok(()) => Ok(records.remove(0)),
        Err(error) => Err(error.to_string()),
    });
}

/// Writes the records in one transaction: actions, incidents and their timelines, then the
/// workflow rows and their signals.
async fn write(store: &Store, records: &mut [WorkflowRecord]) -> vigil_store::Result<()> {
    let mut batch = store.begin_batch().await?;
    let actions: Vec<RemediationAction> = records
        .iter()
        .flat_map(|r| r.actions.iter().cloned())
        .collect();
    batch.record_actions(&actions).await?;

    let action_ids: Vec<Vec<String>> = records
        .iter()
        .map(|r| r.actions.iter().map(|a| a.id.clone()).collect())
        .collect();
    // The records that open or join an incident, with the event each puts on a timeline.
    let (with_incident, events): (Vec<usize>, Vec<IncidentEvent<'_>>) = records
        .iter()
        .enumerate()
        .filter_map(|(i, record)| {
            let request = record.incident.as_ref()?;
            let event = IncidentEvent {
                threat_key: &request.threat_key,
                title: &request.title,
                severity: request.severity,
                event_id: &record.workflow.event_id,
                action_ids: &action_ids[i],
                window: Some(request.window),
            };
            Some((i, event))
        })
        .unzip();
    let attachments = batch.open_or_attach_incidents(&events).await?;
    for (i, attachment) in with_incident.into_iter().zip(attachments) {
        let record = &mut records[i];
        let key = record.incident.as_ref().map(|r| r.threat_key.as_str());
        record.results.incident = IncidentResult::Attached {
            incident_id: attachment.incident_id,
            threat_key: key.map(str::to_owned),
            created: attachment.created,
        };
    }

    for record in records.iter_mut() {
        record.workflow.results = serde_json::to_value(&record.results).map_err(|e| {
            vigil_domain::ValidationError::Invalid {
                field: "results",
                reason: e.to_string(),
            }
        })?;
    }
    let workflows: Vec<&WorkflowExecution> = records.iter().map(|r| &r.workflow).collect();
    batch.save_workflows(&workflows).await?;
    let signals: Vec<(&str, &ThreatSignal)> = records
        .iter()
        .map(|r| (r.workflow.event_id.as_str(), &r.signal))
        .collect();
    batch.record_signals(&signals).await?;
    batch.commit().await
}
