//! The orchestrator: pulls `VIGIL_WORK` (weighted by urgency: of every 15 slots critical gets 8,
//! high 4, medium 2, low 1, so no lane starves) with a
//! bounded number of workflows in flight, and runs the workflow of the seed design for each
//! threat signal: assess, predict, route alerts, remediate, open or update an incident, record
//! the workflow. Every effect is keyed by event id in PostgreSQL, so a redelivered or replayed
//! signal never yields a second workflow, alert, remediation or incident; the input is acked
//! only after the workflow is committed. Alerts and remediations are recorded as intended
//! before they happen and with their outcome after (see `effects`), so an attempt stopped
//! anywhere is finished by the next without repeating what was done.

mod commit;
mod effects;
mod events;
mod metrics;
mod sweeper;
mod workflow;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use vigil_bus::{ConsumerKind, StreamKind, TypedConsumer, WorkPriority};
use vigil_config::Config;
use vigil_proto::v1;
use vigil_runtime::ServiceContext;
use vigil_store::Store;

pub use workflow::{Decoded, Earlier, Orchestrator, decode};

/// Why the orchestrator stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] vigil_bus::Error),
    #[error(transparent)]
    Store(#[from] vigil_store::Error),
    #[error("invalid alerting or remediation settings: {0}")]
    Setup(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The slots of workflows in flight, resized when `orchestrator.max_workflows` changes live.
struct Capacity {
    slots: Arc<Semaphore>,
    /// Slots the semaphore holds in all, free or taken.
    total: usize,
    /// Pull at least this many at once under load, rather than a message or two whenever one
    /// slot frees up.
    min_pull: usize,
}

impl Capacity {
    fn new(max_workflows: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_workflows)),
            total: max_workflows,
            min_pull: min_pull(max_workflows),
        }
    }

    /// Grows at once; shrinks as workflows in flight finish (their slots are taken and never
    /// given back).
    fn follow(&mut self, max_workflows: usize) {
        if max_workflows == self.total || max_workflows == 0 {
            return;
        }
        if max_workflows > self.total {
            self.slots.add_permits(max_workflows - self.total);
        } else {
            let surplus = u32::try_from(self.total - max_workflows).unwrap_or(u32::MAX);
            let slots = self.slots.clone();
            tokio::spawn(async move {
                if let Ok(taken) = slots.acquire_many_owned(surplus).await {
                    taken.forget();
                }
            });
        }
        tracing::info!(
            from = self.total,
            to = max_workflows,
            "workflows in flight resized"
        );
        self.total = max_workflows;
        self.min_pull = min_pull(max_workflows);
    }

    /// Waits for every workflow in flight to finish.
    async fn drain(&self) {
        let total = u32::try_from(self.total).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(total).await;
    }
}

fn min_pull(max_workflows: usize) -> usize {
    (max_workflows / 8).clamp(1, 32)
}

/// Result of running the orchestrator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs a standalone orchestrator (with its own `/metrics` endpoint) until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    vigil_runtime::run_standalone(config, shutdown, run_in).await
}

/// Runs the orchestrator in a shared context until `token` is cancelled. Shutdown stops pulling,
/// lets in-flight workflows finish and ack, then returns.
pub async fn run_in(ctx: ServiceContext, token: CancellationToken) -> Result<()> {
    let config = ctx.config.clone();
    let store = Store::connect_and_migrate(&config.database).await?;
    let bus = vigil_runtime::connect_bus(&ctx, &token).await?;
    let orchestrator = Arc::new(Orchestrator::new(
        &config,
        ctx.live.clone(),
        bus.clone(),
        store.clone(),
        &ctx.metrics,
    )?);

    let mut lanes = Vec::new();
    for priority in WorkPriority::ALL {
        lanes.push(
            bus.consumer::<v1::ThreatSignal>(ConsumerKind::Orchestrator(priority))
                .await?,
        );
    }
    // Work that a crashed or hung orchestrator never answered goes to the dead-letter stream,
    // and the sweeper finishes the effects its workflow left pending.
    let _rescuer = bus.rescue_exhausted(StreamKind::Work).await?;
    let sweeper = tokio::spawn(sweeper::run(
        orchestrator.effects(),
        store.clone(),
        ctx.live.clone(),
        token.clone(),
    ));
    let beat = ctx.pulse.register("orchestrator");
    beat.check_postgres(store.pool().clone());
    ctx.readiness.set("orchestrator", true);
    tracing::info!(
        max_workflows = config.orchestrator.max_workflows,
        "orchestrator consuming"
    );

    // The doorbell: a core-NATS subscription to the work lanes that gets a copy of every queued
    // signal, so an idle orchestrator sleeps until work arrives instead of polling four lanes.
    // The work itself is still pulled (and acked) from the stream; the backoff poll below
    // catches a ring that came before its message was pullable, or one lost to a reconnect.
    let mut doorbell = bus
        .client()
        .subscribe(bus.topology().stream_subjects(StreamKind::Work))
        .await
        .map_err(|e| Error::Other(anyhow::anyhow!("subscribing to the work lanes: {e}")))?;

    let mut capacity = Capacity::new(config.orchestrator.max_workflows);
    let mut schedule = LaneSchedule::default();
    let mut idle = Duration::from_millis(1);
    while !token.is_cancelled() {
        capacity.follow(ctx.live.get().orchestrator.max_workflows);
        let free = capacity.slots.available_permits();
        if free < capacity.min_pull {
            // Wait until a batch's worth of slots is free, or for shutdown.
            let wanted = u32::try_from(capacity.min_pull).unwrap_or(1);
            tokio::select! {
                () = token.cancelled() => break,
                permits = capacity.slots.clone().acquire_many_owned(wanted) => drop(permits),
            }
            continue;
        }
        // Rings for what is about to be pulled are spent.
        while let Some(Some(_)) = doorbell.next().now_or_never() {}
        let taken = pull_by_priority(&lanes, free, &mut schedule).await;
        if taken.is_empty() {
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(idle) => idle = (idle * 2).min(IDLE_POLL),
                _ = doorbell.next() => idle = Duration::from_millis(1),
            }
            continue;
        }
        idle = Duration::from_millis(1);
        // A slot per signal now (there are at least as many free), so the loop pulls again at
        // once: what is known of the batch's ids is looked up (and the ids claimed) beside it,
        // instead of every signal that arrives meanwhile waiting for that round trip.
        let mut permits = Vec::with_capacity(taken.len());
        for _ in 0..taken.len() {
            let Ok(permit) = capacity.slots.clone().acquire_owned().await else {
                break;
            };
            permits.push(permit);
        }
        tokio::spawn(start_batch(
            orchestrator.clone(),
            store.clone(),
            beat.clone(),
            taken,
            permits,
        ));
    }
    // Drain: every slot back means every in-flight workflow finished and acked.
    capacity.drain().await;
    let _ = sweeper.await;
    ctx.readiness.remove("orchestrator");
    tracing::info!("orchestrator stopped");
    Ok(())
}

/// Runs the workflow of each pulled signal that has a slot (`permits`, in order; a signal
/// without one is not acked and comes back), once what is known of the batch's ids is looked
/// up; each slot is given back when its workflow has finished and acked.
async fn start_batch(
    orchestrator: Arc<Orchestrator>,
    store: Store,
    beat: vigil_runtime::Beat,
    taken: Vec<vigil_bus::Delivery<v1::ThreatSignal>>,
    permits: Vec<tokio::sync::OwnedSemaphorePermit>,
) {
    let decoded: Vec<Decoded> = taken.iter().map(workflow::decode).collect();
    let recorded = earlier_attempts(&store, &taken, &decoded).await;
    for ((delivery, decoded), permit) in taken.into_iter().zip(decoded).zip(permits) {
        let recorded = match &recorded {
            // A second delivery of one id in the batch learns the same.
            Ok(found) => Ok(found
                .get(&delivery.payload().id)
                .cloned()
                .unwrap_or_default()),
            Err(reason) => Err(reason.clone()),
        };
        let orchestrator = orchestrator.clone();
        let beat = beat.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let ok = orchestrator.handle(delivery, decoded, recorded).await;
            beat.record(ok, started.elapsed());
            drop(permit);
        });
    }
}

/// The longest an idle orchestrator goes without polling its lanes (should the doorbell miss).
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Whose turn each slot of a pull is, lanes by index (0 critical, 1 high, 2 medium, 3 low): out of
/// every 15 slots critical gets 8, high 4, medium 2 and low 1, interleaved.
const LANE_TURNS: [usize; 15] = [0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0];

/// Weighted turns across pulls: the cursor carries over, so even pulls of a slot or two give
/// every lane its share over time.
#[derive(Debug, Default)]
struct LaneSchedule {
    cursor: usize,
}

impl LaneSchedule {
    /// How many of `slots` each of `lanes` lanes gets this pull.
    fn quotas(&mut self, slots: usize, lanes: usize) -> Vec<usize> {
        let mut quotas = vec![0; lanes];
        for _ in 0..slots {
            let lane = LANE_TURNS[self.cursor % LANE_TURNS.len()].min(lanes.saturating_sub(1));
            quotas[lane] += 1;
            self.cursor = (self.cursor + 1) % LANE_TURNS.len();
        }
        quotas
    }
}

/// Takes up to `max` waiting signals, weighted by urgency ([`LANE_TURNS`]); the slots of a lane
/// with nothing waiting go to the others, most urgent first. A flood of critical signals
/// therefore keeps most of the capacity without stopping the other lanes: strict priority
/// would leave a low signal waiting for as long as the flood lasts.
async fn pull_by_priority(
    lanes: &[TypedConsumer<v1::ThreatSignal>],
    max: usize,
    schedule: &mut LaneSchedule,
) -> Vec<vigil_bus::Delivery<v1::ThreatSignal>> {
    let quotas = schedule.quotas(max, lanes.len());
    // Every lane's quota at once: one round trip to the server instead of one per lane, which
    // a lone signal would otherwise wait for before its workflow starts.
    let pulled =
        futures::future::join_all(lanes.iter().zip(&quotas).map(|(lane, &quota)| async move {
            if quota == 0 {
                Vec::new()
            } else {
                fetch(lane, quota).await
            }
        }))
        .await;
    let mut taken = Vec::new();
    let mut filled = vec![false; lanes.len()];
    for (i, got) in pulled.into_iter().enumerate() {
        filled[i] = quotas[i] == 0 || got.len() == quotas[i];
        taken.extend(got);
    }
    // What the quieter lanes left goes to the busy ones, most urgent first.
    for (i, lane) in lanes.iter().enumerate() {
        if taken.len() >= max {
            break;
        }
        if filled[i] {
            taken.extend(fetch(lane, max - taken.len()).await);
        }
    }
    taken
}

async fn fetch(
    lane: &TypedConsumer<v1::ThreatSignal>,
    want: usize,
) -> Vec<vigil_bus::Delivery<v1::ThreatSignal>> {
    match lane.fetch_available(want).await {
        Ok(batch) => batch,
        Err(error) => {
            tracing::warn!(%error, lane = lane.name(), "pulling work failed");
            Vec::new()
        }
    }
}

/// What is known of each event id of a pulled batch before its workflow runs: the id's claim
/// (made now for the ids nobody has claimed, see `Workflows::claim_event_ids`) and the workflow
/// an earlier attempt stored. Two statements for the batch instead of two per signal.
async fn earlier_attempts(
    store: &Store,
    taken: &[vigil_bus::Delivery<v1::ThreatSignal>],
    decoded: &[Decoded],
) -> Result<HashMap<String, Earlier>, String> {
    // Signals that do not convert, or have no id, are dead-lettered by the workflow, unclaimed.
    let claims: Vec<(&str, &str)> = taken
        .iter()
        .zip(decoded)
        .filter(|(d, _)| !d.payload().id.is_empty())
        .filter_map(|(d, decoded)| {
            let (_, digest) = decoded.as_ref().ok()?;
            Some((d.payload().id.as_str(), digest.as_str()))
        })
        .collect();
    let ids: Vec<&str> = claims.iter().map(|(id, _)| *id).collect();
    // Independent of each other: one round trip of waiting instead of two.
    let workflows = store.workflows();
    let (claimed, recorded) = tokio::join!(
        workflows.claim_event_ids(&claims),
        workflows.get_by_event_ids(&ids)
    );
    let claimed = claimed.map_err(|error| format!("claiming the event ids failed: {error}"))?;
    let recorded =
        recorded.map_err(|error| format!("looking up earlier attempts failed: {error}"))?;
    let mut earlier: HashMap<String, Earlier> = claimed
        .into_iter()
        .map(|(id, digest)| {
            let known = Earlier {
                claimed_for: Some(digest),
                ..Earlier::default()
            };
            (id, known)
        })
        .collect();
    for workflow in recorded {
        let id = workflow.event_id.clone();
        earlier.entry(id).or_default().workflow = Some(workflow);
    }
    Ok(earlier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lane_gets_its_share_even_of_small_pulls() {
        let mut schedule = LaneSchedule::default();
        let mut total = vec![0; 4];
        // 30 pulls of two slots: 60 slots, four rounds of the 15 turns.
        for _ in 0..30 {
            for (lane, n) in schedule.quotas(2, 4).into_iter().enumerate() {
                total[lane] += n;
            }
        }
        assert_eq!(total, [32, 16, 8, 4]);
        // With fewer lanes the turns of the missing ones fall to the last lane there is.
        assert_eq!(LaneSchedule::default().quotas(15, 1), [15]);
    }
}
