//! MODEL_PROMOTED: the event that tells every predictor to load the production ensemble now,
//! sent by a training run that promotes and by an operator's `vigil models promote
//! --production` or `vigil models rollback`.

use chrono::{DateTime, Utc};
use tracing::{info, warn};
use vigil_bus::{Bus, PublishOptions};
use vigil_domain::{EventType, SecurityEvent};
use vigil_proto::v1;
use vigil_store::Promotion;

/// Publishes a MODEL_PROMOTED event on `vigil.events.model_promoted`, trying three times; the
/// event's id makes a retried publish count once. Returns whether the stream stored it.
pub async fn publish_model_promoted(bus: &Bus, event: &SecurityEvent) -> bool {
    let subject = match bus
        .topology()
        .event_subject(EventType::ModelPromoted.as_str())
    {
        Ok(subject) => subject,
        Err(error) => {
            warn!(%error, "cannot name the model_promoted subject");
            return false;
        }
    };
    let message = v1::SecurityEvent::from(event.clone());
    for attempt in 1..=3u32 {
        match bus
            .publisher()
            .publish(&subject, &message, PublishOptions::new(event.id.clone()))
            .await
        {
            Ok(_) => {
                info!(event_id = %event.id, "published model_promoted");
                return true;
            }
            Err(error) => {
                warn!(%error, attempt, event_id = %event.id, "failed to publish model_promoted");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
            }
        }
    }
    false
}

/// The MODEL_PROMOTED event for a version an operator put into production by hand (a
/// promotion or a rollback). Its id names the moment, so promoting the same version again
/// after a rollback is announced again.
pub fn hand_promotion(
    promotion: &Promotion,
    actor: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> SecurityEvent {
    let version = &promotion.promoted.version;
    SecurityEvent {
        id: format!(
            "model_promoted:{}:{}",
            version.id,
            at.timestamp_nanos_opt().unwrap_or_default()
        ),
        event_type: EventType::ModelPromoted,
        timestamp: at,
        source: actor.to_owned(),
        correlation_id: String::new(),
        severity: None,
        data: serde_json::json!({
            "model_id": version.id,
            "model_type": version.model_type.as_str(),
            "version": version.version,
            "previous_model_id": promotion.replaced.as_ref().map(|m| m.version.id.clone()),
            "reason": reason,
            "by_hand": true,
        }),
    }
}
