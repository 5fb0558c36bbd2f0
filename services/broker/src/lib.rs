//! The broker: pulls threat signals from `VIGIL_INGEST` (protobuf, or JSON read by
//! [`vigil_proto::signal_json`]), validates them (refusals become dead letters with a reason
//! naming the field), deduplicates by fingerprint through JetStream's `Nats-Msg-Id` on
//! `VIGIL_WORK` (so dedup holds across replicas and restarts), and queues them by priority on
//! `vigil.work.<critical|high|medium|low>`. A full work queue pushes back: the signal is held
//! and retried (and the pull loop stalls), never dropped.

mod fingerprint;
mod metrics;

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vigil_bus::{Bus, ConsumerKind, Delivery, PublishOptions, StreamKind, WorkPriority};
use vigil_config::Config;
use vigil_domain::{EventType, SecurityEvent, Severity, ThreatSignal};
use vigil_proto::{signal_json, v1};
use vigil_runtime::{Beat, ServiceContext};

pub use fingerprint::{FINGERPRINT_FIELDS, fingerprint};
use metrics::BrokerMetrics;

/// Why the broker stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] vigil_bus::Error),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Telemetry(#[from] anyhow::Error),
}

/// Result of running the broker.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs a standalone broker (with its own `/metrics` endpoint) until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    vigil_runtime::run_standalone(config, shutdown, run_in).await
}

/// Runs the broker in a shared context until `token` is cancelled; in-flight signals are
/// finished and acked before it returns.
pub async fn run_in(ctx: ServiceContext, token: CancellationToken) -> Result<()> {
    let config = &ctx.config;
    fingerprint::validate_fields(&config.broker.fingerprint_fields).map_err(Error::Config)?;
    let bus = vigil_runtime::connect_bus(&ctx, &token).await?;
    // The broker owns the duplicate window of the streams it dedups on: the live value now,
    // and whenever it changes.
    bus.set_dedup_window(dedup_window(&ctx.live.get())).await?;
    tokio::spawn(follow_dedup_window(
        bus.clone(),
        ctx.live.clone(),
        token.clone(),
    ));
    // JSON signals are read leniently (aliases, severities as people write them); a refusal's
    // dead-letter reason names the field, the value and what would be accepted.
    let consumer = bus
        .consumer::<v1::ThreatSignal>(ConsumerKind::Broker)
        .await?
        .with_json_decoder(|json| {
            signal_json::decode(json).map_err(|error| format!("invalid threat signal: {error}"))
        });
    // Signals that a crashed or hung broker never answered go to the dead-letter stream.
    let _rescuer = bus.rescue_exhausted(StreamKind::Ingest).await?;
    let broker = Broker {
        bus: bus.clone(),
        metrics: BrokerMetrics::register(&ctx.metrics),
        fingerprint_fields: config.broker.fingerprint_fields.clone(),
        backpressure_delay: Duration::from_millis(config.broker.backpressure_delay_ms),
        shutdown: token.clone(),
        beat: ctx.pulse.register("broker"),
    };
    ctx.readiness.set("broker", true);
    tracing::info!(consumer = consumer.name(), "broker consuming");

    let batch = config.broker.batch_size;
    let mut deliveries = Box::pin(
        consumer
            .deliveries(batch, Duration::from_millis(500))
            .ready_chunks(batch),
    );
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            next = deliveries.next() => {
                let Some(chunk) = next else { break };
                // A batch is processed concurrently; each delivery is acked on its own.
                futures::future::join_all(chunk.into_iter().map(|d| async {
                    match d {
                        Ok(delivery) => broker.handle_guarded(&delivery).await,
                        Err(error) => tracing::warn!(%error, "pulling from the ingest stream failed"),
                    }
                }))
                .await;
            }
        }
    }
    ctx.readiness.remove("broker");
    tracing::info!("broker stopped");
    Ok(())
}

fn dedup_window(config: &Config) -> Duration {
    Duration::from_secs(config.streams.dedup_window_secs)
}

/// Applies every live change of `streams.dedup_window_secs` to the streams, until `token`.
async fn follow_dedup_window(bus: Bus, live: vigil_runtime::LiveConfig, token: CancellationToken) {
    let mut changes = live.changed();
    let mut applied = dedup_window(&live.get());
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        let wanted = dedup_window(&live.get());
        if wanted == applied {
            continue;
        }
        match bus.set_dedup_window(wanted).await {
            Ok(()) => applied = wanted,
            Err(error) => tracing::warn!(%error, "cannot change the duplicate window"),
        }
    }
}

struct Broker {
    bus: Bus,
    metrics: BrokerMetrics,
    fingerprint_fields: Vec<String>,
    backpressure_delay: Duration,
    shutdown: CancellationToken,
    /// One operation per signal, in the heartbeats.
    beat: Beat,
}

/// The queue a signal goes to: the sensor's severity when it gives one, else its confidence.
pub fn priority(signal: &ThreatSignal) -> WorkPriority {
    let severity = signal.severity.unwrap_or(match signal.confidence {
        c if c >= 0.9 => Severity::Critical,
        c if c >= 0.7 => Severity::High,
        c if c >= 0.4 => Severity::Medium,
        _ => Severity::Low,
    });
    match severity {
        Severity::Critical => WorkPriority::Critical,
        Severity::High => WorkPriority::High,
        Severity::Medium => WorkPriority::Medium,
        Severity::Low => WorkPriority::Low,
    }
}

impl Broker {
    /// [`Broker::handle`], with a panic (a bug, never expected) failing only its own signal: it
    /// is retried, then dead-lettered with the panic's message, and the broker goes on.
    async fn handle_guarded(&self, delivery: &Delivery<v1::ThreatSignal>) {
        let started = Instant::now();
        let span = vigil_runtime::trace::follow(
            tracing::info_span!("broker.signal", subject = delivery.subject()),
            delivery.traceparent().as_ref(),
        );
        let handled = std::panic::AssertUnwindSafe(self.handle(delivery).instrument(span))
            .catch_unwind()
            .await;
        self.beat
            .record(matches!(handled, Ok(true)), started.elapsed());
        if let Err(panic) = handled {
            let reason = format!(
                "the broker panicked on this signal: {}",
                vigil_runtime::panic_message(&*panic)
            );
            tracing::error!(subject = delivery.subject(), %reason);
            if let Err(error) = delivery
                .retry_or_dead_letter(&reason, self.backpressure_delay)
                .await
            {
                tracing::warn!(%error, "failed to nak a signal the broker panicked on");
            }
        }
    }

    /// Queues one signal; false when it was refused or could not be queued.
    async fn handle(&self, delivery: &Delivery<v1::ThreatSignal>) -> bool {
        self.metrics.received.inc();
        let mut wire = delivery.payload().clone();
        // A sensor that sends no timestamp means "now".
        if wire.timestamp.is_none() {
            wire.timestamp = Some(Utc::now().into());
        }
        let mut signal = match ThreatSignal::try_from(wire) {
            Ok(signal) => signal,
            Err(error) => {
                self.metrics.invalid.inc();
                let reason = format!("invalid threat signal: {error}");
                tracing::info!(subject = delivery.subject(), %reason, "refusing signal");
                if let Err(error) = delivery.dead_letter(&reason).await {
                    tracing::warn!(%error, "failed to dead-letter an invalid signal");
                }
                return false;
            }
        };
        signal.id = fingerprint(&signal, &self.fingerprint_fields);
        let priority = priority(&signal);
        let subject = self.bus.topology().work_subject_for(priority);
        let traceparent = vigil_runtime::trace::outgoing(delivery.traceparent());
        let message = v1::ThreatSignal::from(signal.clone());
        // Deduplicated by id and content: a redelivery or a repeat of the signal is stored once,
        // while another signal reusing its id (another sensor, other content) reaches the
        // orchestrator, which dead-letters it with the reason instead of dropping it unseen.
        let digest = signal.content_digest();
        let work_msg_id = format!("{}#{}", signal.id, &digest[..16]);
        let ack = loop {
            let options =
                PublishOptions::new(work_msg_id.clone()).maybe_traceparent(traceparent.clone());
            match self
                .bus
                .publisher()
                .publish(&subject, &message, options)
                .await
            {
                Ok(ack) => break ack,
                // Backpressure: hold the message and retry, telling JetStream it is still being
                // worked on. A nak would spend one of its `max_deliver` attempts per retry and a
                // long burst would exhaust them; holding also stalls the pull loop, which is the
                // throttle we want. On shutdown it goes back with a delay.
                Err(error) if error.is_stream_full() => {
                    self.metrics.backpressure.inc();
                    tracing::debug!(id = %signal.id, "work queue full, holding signal");
                    tokio::select! {
                        () = self.shutdown.cancelled() => {
                            if let Err(error) = delivery.nak_with_delay(self.backpressure_delay).await {
                                tracing::warn!(%error, "failed to nak a held signal on shutdown");
                            }
                            return true;
                        }
                        () = tokio::time::sleep(self.backpressure_delay) => {}
                    }
                    if let Err(error) = delivery.in_progress().await {
                        tracing::warn!(%error, "failed to extend the ack deadline of a held signal");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, id = %signal.id, "failed to queue signal");
                    let reason = format!("cannot queue signal: {error}");
                    // Backing off lets the attempts outlast a NATS restart.
                    if let Err(error) = delivery
                        .retry_or_dead_letter(&reason, delivery.backoff())
                        .await
                    {
                        tracing::warn!(%error, "failed to nak after a publish failure");
                    }
                    return false;
                }
            }
        };
        if ack.duplicate {
            self.metrics.duplicate.inc();
        } else {
            self.metrics.queued.inc();
        }
        // On a redelivery we cannot know whether the event went out last time; the events
        // stream's own duplicate window keeps a re-publish from doubling it.
        if !ack.duplicate || delivery.delivery_count() > 1 {
            self.publish_detected(&signal, priority, ack.traceparent)
                .await;
        }
        if let Err(error) = delivery.ack().await {
            tracing::warn!(%error, id = %signal.id, "failed to ack ingest message");
        }
        true
    }

    async fn publish_detected(
        &self,
        signal: &ThreatSignal,
        priority: WorkPriority,
        traceparent: vigil_bus::TraceParent,
    ) {
        let event = SecurityEvent {
            id: format!("threat_detected:{}", signal.id),
            event_type: EventType::ThreatDetected,
            timestamp: Utc::now(),
            source: "broker".into(),
            correlation_id: signal.id.clone(),
            severity: signal.severity,
            data: serde_json::json!({
                "threat_type": signal.threat_type,
                "priority": priority.as_str(),
                "source_ip": signal.source_ip.map(|a| a.to_string()),
                "sensor": signal.sensor,
                "confidence": signal.confidence,
            }),
        };
        let subject = match self
            .bus
            .topology()
            .event_subject(EventType::ThreatDetected.as_str())
        {
            Ok(subject) => subject,
            Err(error) => {
                tracing::warn!(%error, "cannot name the threat_detected subject");
                return;
            }
        };
        let options = PublishOptions::new(event.id.clone()).traceparent(traceparent);
        if let Err(error) = self
            .bus
            .publisher()
            .publish(&subject, &v1::SecurityEvent::from(event), options)
            .await
        {
            tracing::warn!(%error, id = %signal.id, "failed to publish threat_detected");
        }
    }
}
