//! The sweeper: finishes effects whose workflow will never come back to them. An attempt
//! interrupted between recording an effect and recording its outcome is normally finished by
//! the next delivery of its work message; when there is none (the message was dead-lettered
//! after its last attempt), the alert would stay pending and the remediation's outcome unknown
//! for ever. Once [`Config::effects_settled_after`] has passed since such an effect was
//! recorded, no attempt can still be running, and the sweeper sends the alert or calls the
//! executor again, with the key recorded then, and records the outcome.
//!
//! One replica sweeps at a time (a PostgreSQL advisory lock), every
//! [`SWEEP_EVERY`] or sooner when the settle time is shorter.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use vigil_config::Config;
use vigil_runtime::LiveConfig;
use vigil_store::Store;

use crate::effects::Effects;

/// The longest between two sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Effects finished per kind in one sweep; the rest wait for the next.
const SWEEP_BATCH: i64 = 100;

/// What one sweep finished.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swept {
    pub alerts: usize,
    pub remediations: usize,
}

/// Sweeps until `token` is cancelled.
pub(crate) async fn run(
    effects: Arc<Effects>,
    store: Store,
    live: LiveConfig,
    token: CancellationToken,
) {
    loop {
        let every = interval(&live.get());
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        // Shutdown does not wait for a sweep: one stopped mid-effect leaves it pending, as a
        // crash would, and the next sweep (here or on another replica) finishes it.
        let config = live.get();
        let swept = tokio::select! {
            () = token.cancelled() => return,
            swept = sweep(&effects, &store, &config) => swept,
        };
        match swept {
            Ok(swept) if swept != Swept::default() => {
                tracing::info!(
                    alerts = swept.alerts,
                    remediations = swept.remediations,
                    "finished effects that interrupted workflows left pending"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "sweeping pending effects failed"),
        }
    }
}

/// A quarter of the settle time, between one second and [`SWEEP_EVERY`].
fn interval(config: &Config) -> Duration {
    (config.effects_settled_after() / 4).clamp(Duration::from_secs(1), SWEEP_EVERY)
}

/// One sweep, if no other replica is sweeping.
pub(crate) async fn sweep(
    effects: &Effects,
    store: &Store,
    config: &Config,
) -> Result<Swept, vigil_store::Error> {
    let Some(lock) = store.try_lock("orchestrator.sweeper").await? else {
        return Ok(Swept::default());
    };
    let settled =
        chrono::Duration::from_std(config.effects_settled_after()).unwrap_or(chrono::Duration::MAX);
    let older_than = Utc::now()
        .checked_sub_signed(settled)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let mut swept = Swept::default();
    let outcome = async {
        for (alert, payload) in store
            .alerts()
            .stale_pending(older_than, SWEEP_BATCH)
            .await?
        {
            tracing::warn!(alert_id = %alert.id, event_id = %alert.event_id, channel = %alert.channel,
                "sending an alert an interrupted workflow left pending");
            effects.resend_alert(&alert, payload).await?;
            swept.alerts += 1;
        }
        for action in store
            .remediations()
            .stale_pending(older_than, SWEEP_BATCH)
            .await?
        {
            tracing::warn!(action_id = %action.id, event_id = %action.event_id, target = %action.target,
                "finishing a remediation an interrupted workflow left pending");
            effects.finish(action).await?;
            swept.remediations += 1;
        }
        Ok::<_, vigil_store::Error>(())
    }
    .await;
    lock.release().await?;
    outcome.map(|()| swept)
}
