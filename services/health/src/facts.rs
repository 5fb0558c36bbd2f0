//! What the health service looks up besides heartbeats: stream backlogs, dead letters as they
//! arrive, the model registry, and the activity figures of the status report.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use vigil_bus::async_nats::jetstream::consumer::{DeliverPolicy, push};
use vigil_bus::{Bus, StreamKind};
use vigil_domain::ModelType;
use vigil_store::Store;

use crate::report::{
    DeadLetterSummary, FeedbackSummary, ModelRef, ModelSummary, RecentActivity, StreamReport,
};
use crate::rules::{Facts, QueueFacts};

/// The component that consumes a stream, whose health its backlog and dead letters count
/// against.
pub fn consumer_of(stream: StreamKind) -> Option<&'static str> {
    match stream {
        StreamKind::Ingest => Some("broker"),
        StreamKind::Work => Some("orchestrator"),
        StreamKind::Events | StreamKind::DeadLetter => None,
    }
}

/// Each stream's backlog; a stream that cannot be read is named in the second list.
pub async fn streams(
    bus: &Bus,
    now: DateTime<Utc>,
) -> (BTreeMap<String, StreamReport>, Vec<String>) {
    let mut reports = BTreeMap::new();
    let mut unavailable = Vec::new();
    for kind in StreamKind::ALL {
        let name = bus.topology().stream_name(kind);
        match bus.jetstream().get_stream(&name).await {
            Ok(stream) => {
                let state = &stream.cached_info().state;
                let oldest_age_secs = (state.messages > 0).then(|| {
                    let first_ms =
                        i64::try_from(state.first_timestamp.unix_timestamp_nanos() / 1_000_000)
                            .unwrap_or_default();
                    let age_ms = now.timestamp_millis() - first_ms;
                    age_ms.max(0) as f64 / 1_000.0
                });
                reports.insert(
                    kind.base_name().to_owned(),
                    StreamReport {
                        messages: state.messages,
                        oldest_age_secs,
                    },
                );
            }
            Err(error) => unavailable.push(format!("stream {name}: {error}")),
        }
    }
    (reports, unavailable)
}

/// The backlog of each consumed stream, by component.
pub fn queues(streams: &BTreeMap<String, StreamReport>) -> BTreeMap<String, QueueFacts> {
    StreamKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let component = consumer_of(kind)?;
            let report = streams.get(kind.base_name())?;
            Some((
                component.to_owned(),
                QueueFacts {
                    depth: report.messages,
                    oldest_age_secs: report.oldest_age_secs,
                },
            ))
        })
        .collect()
}

/// Dead letters that arrived within the window, by the stream they came from, fed by an
/// ordered consumer of the dead-letter stream that starts one window back.
#[derive(Debug, Default)]
pub struct DeadLetterWindow {
    arrivals: VecDeque<(DateTime<Utc>, String)>,
}

impl DeadLetterWindow {
    /// One dead letter from `stream` (base name), stored at `at`.
    pub fn push(&mut self, at: DateTime<Utc>, stream: String) {
        self.arrivals.push_back((at, stream));
    }

    /// Drops arrivals older than `window` and counts the rest by stream.
    pub fn count(&mut self, window: Duration, now: DateTime<Utc>) -> BTreeMap<String, u64> {
        while self
            .arrivals
            .front()
            .is_some_and(|(at, _)| now.signed_duration_since(*at) > window)
        {
            self.arrivals.pop_front();
        }
        let mut counts = BTreeMap::new();
        for (_, stream) in &self.arrivals {
            *counts.entry(stream.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// The dead letters as they arrive (stored time, source stream), from `window` ago on.
pub async fn follow_dead_letters(
    bus: &Bus,
    window: Duration,
) -> anyhow::Result<impl futures::Stream<Item = (DateTime<Utc>, String)> + use<>> {
    let name = bus.topology().stream_name(StreamKind::DeadLetter);
    let stream = bus
        .jetstream()
        .get_stream(&name)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open stream {name}: {e}"))?;
    let start = Utc::now()
        .checked_sub_signed(window)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let start_time = time::OffsetDateTime::from_unix_timestamp(start.timestamp())
        .map_err(|e| anyhow::anyhow!("invalid start time: {e}"))?;
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: bus.client().new_inbox(),
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            headers_only: true,
            description: Some("health: dead letters of the last window".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot follow the dead letters on {name}: {e}"))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("cannot follow the dead letters on {name}: {e}"))?;
    Ok(messages.filter_map(|message| async move {
        let message = message
            .map_err(|error| tracing::warn!(%error, "reading the dead letters failed"))
            .ok()?;
        let at = message
            .info()
            .ok()
            .and_then(|info| {
                let ms = i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).ok()?;
                DateTime::from_timestamp_millis(ms)
            })
            .unwrap_or_else(Utc::now);
        // `[<prefix>.]vigil.dlq.<STREAM>`
        let source = message
            .subject
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        Some((at, source))
    }))
}

/// Dead letters within the window by component, for the rules.
pub fn dead_letters_by_component(recent: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    StreamKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let component = consumer_of(kind)?;
            let count = recent.get(kind.base_name()).copied()?;
            Some((component.to_owned(), count))
        })
        .collect()
}

/// The facts of the rules: queues, dead letters, whether a production ensemble exists.
pub fn rule_facts(
    streams: &BTreeMap<String, StreamReport>,
    dead_letters: &BTreeMap<String, u64>,
    production_model: Option<bool>,
) -> Facts {
    Facts {
        queues: queues(streams),
        dead_letters: dead_letters_by_component(dead_letters),
        production_model,
    }
}

/// The registry's ensemble in staging and in production.
pub async fn models(store: &Store) -> Result<ModelSummary, String> {
    let registry = store.models();
    let to_ref = |record: vigil_store::ModelRecord| ModelRef {
        id: record.version.id,
        model_type: record.version.model_type.as_str().to_owned(),
        version: record.version.version,
        trained_at: record.version.trained_at,
    };
    let production = registry
        .production(ModelType::Ensemble)
        .await
        .map_err(|e| format!("model registry: {e}"))?;
    let active = registry
        .active(ModelType::Ensemble)
        .await
        .map_err(|e| format!("model registry: {e}"))?;
    Ok(ModelSummary {
        active: active.map(to_ref),
        production: production.map(to_ref),
    })
}

/// Workflows by status, the activity of the window, and feedback accuracy.
pub async fn activity(
    store: &Store,
    window_secs: u64,
) -> Result<(BTreeMap<String, u64>, RecentActivity, FeedbackSummary), String> {
    let pool = store.pool();
    let failed = |what: &str, e: sqlx::Error| format!("{what}: {e}");
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM workflows GROUP BY status")
            .fetch_all(pool)
            .await
            .map_err(|e| failed("workflows by status", e))?;
    let window = window_secs as f64;
    let count_recent = |table: &'static str| async move {
        // The table name is one of three constants, never input.
        let sql = format!(
            "SELECT count(*) FROM {table} WHERE created_at > now() - make_interval(secs => $1)"
        );
        sqlx::query_scalar::<_, i64>(&sql)
            .bind(window)
            .fetch_one(pool)
            .await
            .map(|n| u64::try_from(n).unwrap_or_default())
            .map_err(|e| failed(table, e))
    };
    let recent = RecentActivity {
        window_secs,
        alerts: Some(count_recent("alerts").await?),
        remediations: Some(count_recent("remediations").await?),
        workflows: Some(count_recent("workflows").await?),
    };
    let (agreed, judged): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE label = system_label), count(*) FROM feedback \
         WHERE superseded_by IS NULL AND label IS NOT NULL AND system_label IS NOT NULL",
    )
    .fetch_one(pool)
    .await
    .map_err(|e| failed("feedback accuracy", e))?;
    let feedback = FeedbackSummary {
        judged: Some(u64::try_from(judged).unwrap_or_default()),
        accuracy: (judged > 0).then(|| agreed as f64 / judged as f64),
    };
    Ok((
        by_status
            .into_iter()
            .map(|(status, n)| (status, u64::try_from(n).unwrap_or_default()))
            .collect(),
        recent,
        feedback,
    ))
}

/// Dead letters stored and within the window.
pub fn dead_letter_summary(
    streams: &BTreeMap<String, StreamReport>,
    window_secs: u64,
    recent: BTreeMap<String, u64>,
) -> DeadLetterSummary {
    DeadLetterSummary {
        stored: streams
            .get(StreamKind::DeadLetter.base_name())
            .map(|s| s.messages),
        window_secs,
        recent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid time")
    }

    #[test]
    fn dead_letters_leave_the_window_and_count_against_their_consumer() {
        let mut window = DeadLetterWindow::default();
        window.push(t(0), "VIGIL_INGEST".into());
        window.push(t(50), "VIGIL_WORK".into());
        window.push(t(60), "VIGIL_WORK".into());
        let counts = window.count(Duration::seconds(30), t(70));
        assert_eq!(counts, BTreeMap::from([("VIGIL_WORK".to_owned(), 2)]));
        assert_eq!(
            dead_letters_by_component(&counts),
            BTreeMap::from([("orchestrator".to_owned(), 2)])
        );
    }

    #[test]
    fn backlogs_count_against_the_consumer_of_their_stream() {
        let streams = BTreeMap::from([
            (
                "VIGIL_INGEST".to_owned(),
                StreamReport {
                    messages: 3,
                    oldest_age_secs: Some(2.0),
                },
            ),
            ("VIGIL_EVENTS".to_owned(), StreamReport::default()),
        ]);
        let queues = queues(&streams);
        assert_eq!(queues.len(), 1);
        assert_eq!(queues["broker"].depth, 3);
    }
}
