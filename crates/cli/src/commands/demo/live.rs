//! Replaying the chosen records as threat signals while a live line counts what the domain
//! events on `vigil.events.>` say happened, until the database holds every workflow.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message as _;
use vigil_bus::{Bus, StreamKind};
use vigil_domain::WorkflowExecution;
use vigil_ml::LabeledExample;
use vigil_proto::v1;
use vigil_store::Store;

use super::super::replay::publish_signals;

/// The subject kind replayed signals are published under (`vigil.ingest.nsl-kdd`).
const INGEST_KIND: &str = "nsl-kdd";
/// How long the replay may go without any progress before the demo gives up.
const STALL_PATIENCE: Duration = Duration::from_secs(120);

/// What the replay observed.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Replayed {
    pub(super) published: usize,
    pub(super) duplicates: usize,
    /// THREAT_DETECTED events seen for the replayed records.
    pub(super) detected: usize,
    /// From the first publish until every workflow was done.
    pub(super) seconds: f64,
}

/// Domain events seen for the replayed records, by type.
#[derive(Debug, Default)]
struct LiveCounts {
    seen: HashSet<String>,
    detected: usize,
    workflows: usize,
    alerts: usize,
    remediations: usize,
    incidents: usize,
}

impl LiveCounts {
    fn observe(&mut self, message: &async_nats::Message, ids: &HashSet<&str>) {
        let Ok(event) = v1::SecurityEvent::decode(message.payload.clone()) else {
            return;
        };
        if !ids.contains(event.correlation_id.as_str()) || !self.seen.insert(event.id) {
            return;
        }
        let kind = message.subject.rsplit('.').next().unwrap_or_default();
        match kind {
            "threat_detected" => self.detected += 1,
            "workflow_completed" => self.workflows += 1,
            "alert_routed" => self.alerts += 1,
            "remediation_executed" => self.remediations += 1,
            "incident_created" => self.incidents += 1,
            _ => {}
        }
    }
}

pub(super) async fn replay(
    bus: &Bus,
    store: &Store,
    rows: &[LabeledExample],
) -> anyhow::Result<Replayed> {
    let ids: HashSet<&str> = rows.iter().map(|e| e.signal.id.as_str()).collect();
    let id_list: Vec<&str> = ids.iter().copied().collect();
    let expected = ids.len();
    let events_subject = bus.topology().stream_subjects(StreamKind::Events);
    let mut events = bus
        .client()
        .subscribe(events_subject.clone())
        .await
        .with_context(|| format!("cannot subscribe to {events_subject}"))?;
    // The subscription is known to the server before the first signal goes out.
    bus.client()
        .flush()
        .await
        .context("cannot confirm the events subscription")?;

    let bar = ProgressBar::new(expected as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} workflows  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let published = Arc::new(AtomicUsize::new(0));
    let signals: Vec<v1::ThreatSignal> = rows
        .iter()
        .map(|e| v1::ThreatSignal::from(e.signal.clone()))
        .collect();
    let started = Instant::now();
    let mut publishing = {
        let bus = bus.clone();
        let published = published.clone();
        tokio::spawn(async move {
            publish_signals(&bus, INGEST_KIND, &signals, 0, move |_| {
                published.fetch_add(1, Ordering::Relaxed);
            })
            .await
        })
    };
    let mut tally = None;
    let mut live = LiveCounts::default();
    let mut recorded = 0usize;
    let mut reconcile = tokio::time::interval(Duration::from_secs(1));
    let mut last_change = Instant::now();
    let mut last_state = (0, 0, 0);
    loop {
        let done = live.workflows.max(recorded);
        if tally.is_some() && done >= expected {
            break;
        }
        tokio::select! {
            message = events.next() => {
                let Some(message) = message else {
                    bail!("the subscription to {events_subject} ended");
                };
                live.observe(&message, &ids);
            }
            joined = &mut publishing, if tally.is_none() => {
                let joined = joined.context("the publishing task failed")??;
                tally = Some(joined);
            }
            _ = reconcile.tick() => {
                // The database is the record: it also counts workflows whose events this
                // subscription missed.
                recorded = count_workflows(store, &id_list).await?;
            }
        }
        let sent = published.load(Ordering::Relaxed);
        let state = (sent, live.workflows.max(recorded), live.detected);
        if state != last_state {
            last_state = state;
            last_change = Instant::now();
        } else if last_change.elapsed() > STALL_PATIENCE {
            bar.abandon();
            bail!(
                "no progress for {} s: {} of {expected} signals published, {} detected, {} \
                 workflows done. Is the orchestrator running for NATS prefix {:?}?",
                STALL_PATIENCE.as_secs(),
                sent,
                live.detected,
                state.1,
                bus.topology().prefix()
            );
        }
        bar.set_position(state.1.min(expected) as u64);
        bar.set_message(format!(
            "published {sent}/{expected} · workflows {} · alerts {} · remediations {} · incidents {}",
            state.1, live.alerts, live.remediations, live.incidents
        ));
    }
    bar.finish_and_clear();
    let tally = tally.context("publishing did not finish")?;
    Ok(Replayed {
        published: tally.published,
        duplicates: tally.duplicates,
        detected: live.detected,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn count_workflows(store: &Store, ids: &[&str]) -> anyhow::Result<usize> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM workflows WHERE event_id = ANY($1)")
        .persistent(false)
        .bind(ids)
        .fetch_one(store.pool())
        .await
        .context("cannot count the demo's workflows")?;
    Ok(usize::try_from(count).unwrap_or_default())
}

pub(super) async fn workflows_of(
    store: &Store,
    ids: &[&str],
) -> anyhow::Result<Vec<WorkflowExecution>> {
    let mut workflows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(2_000) {
        workflows.extend(store.workflows().get_by_event_ids(chunk).await?);
    }
    Ok(workflows)
}
