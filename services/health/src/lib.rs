//! The health service: listens to every service's heartbeats
//! (`vigil.health.heartbeat.<service>.<instance>`), keeps per-instance and per-component state,
//! judges each component healthy, degraded or critical by the rules of docs/health.md
//! ([`rules`]), announces every change as HEALTH_CHANGED on `vigil.events.health_changed`, and
//! answers the seed design's `get_system_status` ([`StatusReport`]) on `/status` and on the
//! request/reply subject `vigil.health.status`.

mod client;
mod facts;
mod metrics;
mod report;
pub mod rules;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use vigil_bus::{Bus, PublishOptions};
use vigil_config::{Config, HealthSettings};
use vigil_domain::{EventType, HealthState, Heartbeat, SecurityEvent, Severity};
use vigil_proto::v1;
use vigil_runtime::ServiceContext;
use vigil_store::Store;

pub use client::{StatusError, status};
pub use report::{
    ComponentReport, DeadLetterSummary, FeedbackSummary, InstanceReport, InstanceStatus, ModelRef,
    ModelSummary, RecentActivity, StatusReport, StreamReport,
};

use facts::DeadLetterWindow;
use metrics::HealthMetrics;
use rules::Registry;

/// The readiness check and heartbeat name of the health service.
pub const SERVICE: &str = "health";

/// Replicas of the health service share status requests as this queue group.
const QUEUE_GROUP: &str = "vigil-health";

/// Why the health service stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] vigil_bus::Error),
    #[error(transparent)]
    Store(#[from] vigil_store::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Result of running the health service.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs a standalone health service (with its own `/metrics` and `/status` endpoint) until
/// `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    vigil_runtime::run_standalone(config, shutdown, run_in).await
}

/// Runs the health service in a shared context until `token` is cancelled; `/status` of the
/// context's HTTP server is served while it runs.
pub async fn run_in(ctx: ServiceContext, token: CancellationToken) -> Result<()> {
    let config = ctx.config.clone();
    let settings = config.health.clone();
    let store = Store::connect_and_migrate(&config.database).await?;
    let bus = vigil_runtime::connect_bus(&ctx, &token).await?;

    let beat = ctx.pulse.register(SERVICE);
    {
        let store = store.clone();
        beat.check("postgres", move || {
            let store = store.clone();
            async move {
                store
                    .ping()
                    .await
                    .map(|()| String::new())
                    .map_err(|e| e.to_string())
            }
        });
    }
    let monitor = Arc::new(Monitor {
        settings: settings.clone(),
        config: serde_json::to_value(&*config).unwrap_or(serde_json::Value::Null),
        instance: ctx.instance.clone(),
        bus: bus.clone(),
        store,
        metrics: HealthMetrics::register(&ctx.metrics),
        listening_since: Utc::now(),
        state: Mutex::default(),
    });

    let client = bus.client().clone();
    let wildcard = bus.topology().heartbeat_wildcard();
    let mut heartbeats = client
        .subscribe(wildcard.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to heartbeats on {wildcard}: {e}"))?;
    let status_subject = bus.topology().health_status_subject();
    let mut requests = client
        .queue_subscribe(status_subject.clone(), QUEUE_GROUP.to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {status_subject}: {e}"))?;
    let dead_letter_window = seconds(settings.dead_letter_window_secs);
    let mut dead_letters = Box::pin(facts::follow_dead_letters(&bus, dead_letter_window).await?);
    // A round trip, so the subscriptions are in place before we report ready.
    client
        .flush()
        .await
        .map_err(|e| anyhow::anyhow!("cannot confirm the subscriptions: {e}"))?;

    {
        let monitor = Arc::clone(&monitor);
        ctx.status.install(move || {
            let monitor = Arc::clone(&monitor);
            async move { monitor.report_json().await }
        });
    }
    ctx.readiness.set(SERVICE, true);
    info!(%wildcard, %status_subject, "health service listening");

    let mut ticks =
        tokio::time::interval(Duration::from_millis(settings.heartbeat_interval_ms.max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            message = heartbeats.next() => {
                let Some(message) = message else {
                    warn!("the heartbeat subscription ended");
                    break;
                };
                monitor.observe(&message.subject, &message.payload);
            }
            Some((at, source)) = dead_letters.next() => monitor.dead_letter(at, source),
            Some(request) = requests.next() => {
                let monitor = Arc::clone(&monitor);
                let client = client.clone();
                in_flight.spawn(async move {
                    let started = Instant::now();
                    let body = monitor.report_json().await;
                    let Some(reply) = request.reply else {
                        debug!("a status request came without a reply subject");
                        return;
                    };
                    if let Err(error) = client.publish(reply, body.into()).await {
                        warn!(%error, "cannot answer a status request");
                    }
                    debug!(elapsed_ms = started.elapsed().as_millis() as u64, "answered a status request");
                });
            }
            _ = ticks.tick() => {
                let started = Instant::now();
                let ok = monitor.evaluate().await;
                beat.record(ok, started.elapsed());
            }
        }
    }
    ctx.status.remove();
    ctx.readiness.remove(SERVICE);
    if let Err(error) = requests.unsubscribe().await {
        warn!(%error, "cannot unsubscribe from status requests");
    }
    while in_flight.join_next().await.is_some() {}
    if let Err(error) = client.flush().await {
        warn!(%error, "cannot flush the last replies");
    }
    info!("health service stopped");
    Ok(())
}

fn seconds(secs: u64) -> chrono::Duration {
    rules::secs(secs)
}

/// The health service's state and the handles it looks things up with.
struct Monitor {
    settings: HealthSettings,
    /// The effective configuration, secrets redacted by its `Serialize`.
    config: serde_json::Value,
    instance: String,
    bus: Bus,
    store: Store,
    metrics: HealthMetrics,
    listening_since: DateTime<Utc>,
    state: Mutex<MonitorState>,
}

#[derive(Default)]
struct MonitorState {
    registry: Registry,
    dead_letters: DeadLetterWindow,
    /// Each component's state at the last evaluation.
    last: BTreeMap<String, HealthState>,
}

impl Monitor {
    fn lock(&self) -> std::sync::MutexGuard<'_, MonitorState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in one heartbeat message.
    fn observe(&self, subject: &str, payload: &[u8]) {
        let heartbeat = match v1::Heartbeat::decode(payload)
            .map_err(|e| e.to_string())
            .and_then(|w| Heartbeat::try_from(w).map_err(|e| e.to_string()))
        {
            Ok(heartbeat) => heartbeat,
            Err(error) => {
                debug!(%subject, %error, "ignoring an undecodable heartbeat");
                return;
            }
        };
        self.metrics.heartbeats.inc();
        self.lock()
            .registry
            .observe(&heartbeat, Utc::now(), &self.settings);
    }

    fn dead_letter(&self, at: DateTime<Utc>, source: String) {
        self.lock().dead_letters.push(at, source);
    }

    fn dead_letters_recent(&self, now: DateTime<Utc>) -> BTreeMap<String, u64> {
        self.lock()
            .dead_letters
            .count(seconds(self.settings.dead_letter_window_secs), now)
    }

    async fn production_model(&self) -> Option<bool> {
        match self
            .store
            .models()
            .production(vigil_domain::ModelType::Ensemble)
            .await
        {
            Ok(found) => Some(found.is_some()),
            Err(error) => {
                debug!(%error, "cannot ask the registry for the production model");
                None
            }
        }
    }

    /// Judges every component now and announces the changes; false when a fact could not be
    /// gathered.
    async fn evaluate(&self) -> bool {
        let now = Utc::now();
        let (streams, unavailable) = facts::streams(&self.bus, now).await;
        let production = self.production_model().await;
        let recent = self.dead_letters_recent(now);
        self.metrics.set_facts(&streams, &recent);
        let facts = facts::rule_facts(&streams, &recent, production);
        let (components, changes) = {
            let mut state = self.lock();
            for (component, instance) in state.registry.forget(&self.settings, now) {
                info!(%component, %instance, "forgot a missing instance");
            }
            let components = rules::judge_all(
                &state.registry,
                &facts,
                &self.settings,
                self.listening_since,
                now,
            );
            let changes = rules::changes(&state.last, &components);
            state.last = components
                .iter()
                .map(|(n, c)| (n.clone(), c.state))
                .collect();
            (components, changes)
        };
        for (name, component) in &components {
            self.metrics.set_state(name, component.state);
        }
        for (component, from, to) in changes {
            let report = &components[&component];
            info!(%component, %from, %to, reasons = ?report.reasons, "component health changed");
            self.metrics.changes.inc();
            self.announce(&component, from, to, report, now).await;
        }
        unavailable.is_empty() && production.is_some()
    }

    /// Publishes HEALTH_CHANGED for one component.
    async fn announce(
        &self,
        component: &str,
        from: HealthState,
        to: HealthState,
        report: &ComponentReport,
        now: DateTime<Utc>,
    ) {
        let event = health_changed(component, from, to, report, &self.instance, now);
        let subject = match self
            .bus
            .topology()
            .event_subject(EventType::HealthChanged.as_str())
        {
            Ok(subject) => subject,
            Err(error) => {
                warn!(%error, "cannot name the health_changed subject");
                return;
            }
        };
        if let Err(error) = self
            .bus
            .publisher()
            .publish(
                &subject,
                &v1::SecurityEvent::from(event.clone()),
                PublishOptions::new(event.id.clone()),
            )
            .await
        {
            warn!(%error, %component, "failed to publish health_changed");
        }
    }

    /// The full status, gathered now.
    async fn report(&self) -> StatusReport {
        let now = Utc::now();
        let (streams, mut unavailable) = facts::streams(&self.bus, now).await;
        let models = match facts::models(&self.store).await {
            Ok(models) => Some(models),
            Err(error) => {
                unavailable.push(error);
                None
            }
        };
        let production = models.as_ref().map(|m| m.production.is_some());
        let (workflows, recent, feedback) =
            match facts::activity(&self.store, self.settings.dead_letter_window_secs).await {
                Ok((workflows, recent, feedback)) => (Some(workflows), recent, feedback),
                Err(error) => {
                    unavailable.push(error);
                    (
                        None,
                        RecentActivity {
                            window_secs: self.settings.dead_letter_window_secs,
                            ..RecentActivity::default()
                        },
                        FeedbackSummary::default(),
                    )
                }
            };
        let recent_dead = self.dead_letters_recent(now);
        let facts = facts::rule_facts(&streams, &recent_dead, production);
        let components = {
            let state = self.lock();
            rules::judge_all(
                &state.registry,
                &facts,
                &self.settings,
                self.listening_since,
                now,
            )
        };
        let (state, reason) = rules::overall(&components);
        StatusReport {
            state,
            reason,
            timestamp: now,
            reported_by: self.instance.clone(),
            components,
            events_processed: workflows.as_ref().map(|w| w.values().sum()),
            workflows: workflows.unwrap_or_default(),
            recent,
            feedback,
            models: models.unwrap_or_default(),
            dead_letters: facts::dead_letter_summary(
                &streams,
                self.settings.dead_letter_window_secs,
                recent_dead,
            ),
            streams,
            config: self.config.clone(),
            unavailable,
        }
    }

    async fn report_json(&self) -> String {
        let report = self.report().await;
        serde_json::to_string(&report).unwrap_or_else(|error| {
            serde_json::json!({ "error": format!("cannot render the status: {error}") }).to_string()
        })
    }
}

/// The HEALTH_CHANGED event of one component's change.
pub fn health_changed(
    component: &str,
    from: HealthState,
    to: HealthState,
    report: &ComponentReport,
    reported_by: &str,
    at: DateTime<Utc>,
) -> SecurityEvent {
    SecurityEvent {
        id: format!(
            "health_changed:{component}:{}",
            at.timestamp_nanos_opt().unwrap_or_default()
        ),
        event_type: EventType::HealthChanged,
        timestamp: at,
        source: SERVICE.to_owned(),
        correlation_id: component.to_owned(),
        severity: match to {
            HealthState::Healthy => None,
            HealthState::Degraded => Some(Severity::Medium),
            HealthState::Critical => Some(Severity::Critical),
        },
        data: serde_json::json!({
            "component": component,
            "from": from,
            "to": to,
            "reasons": report.reasons,
            "alive": report.alive,
            "missing": report.missing,
            "reported_by": reported_by,
        }),
    }
}
