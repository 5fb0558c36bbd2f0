//! The `training_examples` table: labelled threat signals the trainer learns from.
//!
//! A label comes from a person (an analyst's verdict) or an imported data set, never from
//! vigil's own assessment: the signals workflows process are kept unlabelled beside them
//! ([`crate::WorkflowSignals`]) and reach this table only through an analyst's verdict.
//!
//! One row per (source, source_ref), so collecting the same item twice stores it once. The same
//! signal can be labelled by both sources under one `source_ref` (the event id): the analyst's
//! verdict overrides the data set's label.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use vigil_domain::{ThreatSignal, ValidationError};

use crate::{Error, InsertOutcome, Result};

/// Where a label came from: a person or a data set. There is deliberately no source for
/// vigil's own verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExampleSource {
    /// An analyst's verdict on a workflow's signal; `source_ref` is the workflow's event id.
    Feedback,
    /// A curated, labelled data set (NSL-KDD, a CSV file).
    Dataset,
}

impl ExampleSource {
    /// Every source, in the order the trainer's cap keeps them: analyst-labelled rows first,
    /// then data-set rows (see [`TrainingExamples::load`]).
    pub const ALL: [ExampleSource; 2] = [ExampleSource::Feedback, ExampleSource::Dataset];

    /// The name stored in PostgreSQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ExampleSource::Feedback => "feedback",
            ExampleSource::Dataset => "dataset",
        }
    }
}

impl fmt::Display for ExampleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExampleSource {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, ValidationError> {
        ExampleSource::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| ValidationError::Invalid {
                field: "source",
                reason: format!("unknown example source {s:?}"),
            })
    }
}

/// A labelled example to record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewExample<'a> {
    /// The observation, stored as JSON.
    pub signal: &'a ThreatSignal,
    /// `true` when the signal is a real threat.
    pub label: bool,
    pub source: ExampleSource,
    /// The item it came from: the workflow's event id for feedback, the row id for data sets.
    /// A replayed data-set row keeps its id as event id, so a verdict on its workflow
    /// overrides the row's imported label.
    pub source_ref: &'a str,
    /// Relative importance, finite and positive (1.0 normally).
    pub weight: f64,
}

/// A stored example, after the label of its signal was resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingExample {
    pub signal: ThreatSignal,
    pub label: bool,
    /// The source whose label won.
    pub source: ExampleSource,
    pub weight: f64,
    pub source_ref: String,
    pub created_at: DateTime<Utc>,
}

/// The `training_examples` repository.
#[derive(Debug, Clone, Copy)]
pub struct TrainingExamples<'a> {
    pool: &'a PgPool,
}

#[derive(sqlx::FromRow)]
struct ExampleRow {
    signal: serde_json::Value,
    label: bool,
    source: String,
    weight: f64,
    source_ref: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<ExampleRow> for TrainingExample {
    type Error = Error;

    fn try_from(row: ExampleRow) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptRow {
            table: "training_examples",
            reason: format!("{}: {reason}", row.source_ref),
        };
        let source = ExampleSource::from_str(&row.source).map_err(|e| corrupt(e.to_string()))?;
        let signal: ThreatSignal = serde_json::from_value(row.signal.clone())
            .map_err(|e| corrupt(format!("signal: {e}")))?;
        Ok(TrainingExample {
            signal,
            label: row.label,
            source,
            weight: row.weight,
            source_ref: row.source_ref,
            created_at: row.created_at,
        })
    }
}

/// Which label wins when both sources label one `source_ref` (a human verdict over curated
/// data), and which rows the trainer's cap keeps first. A macro so the query stays a
/// compile-time constant.
macro_rules! source_priority {
    () => {
        "CASE source WHEN 'feedback' THEN 0 ELSE 1 END"
    };
}

impl<'a> TrainingExamples<'a> {
    pub(crate) fn new(pool: &'a PgPool) -> Self {
        Self { pool }
    }

    /// Stores an example unless one with the same (source, source_ref) exists; a second call
    /// with the same key returns [`InsertOutcome::AlreadyPresent`] and changes nothing.
    pub async fn record(&self, example: &NewExample<'_>) -> Result<InsertOutcome> {
        validate(example)?;
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO training_examples (id, signal, label, source, weight, source_ref) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (source, source_ref) DO NOTHING RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(Json(example.signal))
        .bind(example.label)
        .bind(example.source.as_str())
        .bind(example.weight)
        .bind(example.source_ref)
        .fetch_optional(self.pool)
        .await?;
        Ok(InsertOutcome::of_returning(inserted))
    }

    /// Stores many examples in one statement (data set imports), skipping those already
    /// present; returns how many were new. Every example is validated before anything is
    /// written.
    pub async fn record_batch(&self, examples: &[NewExample<'_>]) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        insert_examples(&mut conn, examples).await
    }

    /// How many examples (of any source) were recorded after `since`.
    pub async fn count_since(&self, since: DateTime<Utc>) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM training_examples WHERE created_at > $1")
                .bind(since)
                .fetch_one(self.pool)
                .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// How many examples there are per source (before labels are resolved).
    pub async fn count_by_source(&self) -> Result<Vec<(ExampleSource, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT source, count(*) FROM training_examples GROUP BY source ORDER BY source",
        )
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|(source, count)| {
                let source = ExampleSource::from_str(&source).map_err(|e| Error::CorruptRow {
                    table: "training_examples",
                    reason: e.to_string(),
                })?;
                Ok((source, u64::try_from(count).unwrap_or_default()))
            })
            .collect()
    }

    /// At most `limit` signals with one resolved label each: when both sources label the same
    /// `source_ref`, the analyst's verdict wins (and the newest row within a source).
    ///
    /// The cap keeps analyst-labelled signals first, then data-set rows; within a source the
    /// newest are kept, so the oldest data-set rows are the first to go ([`EVICTION_ORDER`]).
    /// Rows holding only features, not a signal, are skipped. Ordered by `source_ref`, so the
    /// same rows always come back in the same order.
    pub async fn load(&self, limit: u64) -> Result<Vec<TrainingExample>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<ExampleRow> = sqlx::query_as(concat!(
            "SELECT signal, label, source, weight, source_ref, created_at FROM ( \
                 SELECT * FROM ( \
                     SELECT DISTINCT ON (source_ref) \
                            signal, label, source, weight, source_ref, created_at \
                     FROM training_examples WHERE signal IS NOT NULL \
                     ORDER BY source_ref, ",
            source_priority!(),
            ", created_at DESC \
                 ) resolved \
                 ORDER BY ",
            source_priority!(),
            ", created_at DESC, source_ref LIMIT $1 \
             ) kept ORDER BY source_ref"
        ))
        .bind(limit)
        .fetch_all(self.pool)
        .await?;
        rows.into_iter().map(TrainingExample::try_from).collect()
    }

    /// How many signals [`load`](Self::load) could return without a cap, by the source whose
    /// label wins for each: what a capped load is measured against.
    pub async fn resolved_by_source(&self) -> Result<Vec<(ExampleSource, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(concat!(
            "SELECT source, count(*) FROM ( \
                 SELECT DISTINCT ON (source_ref) source FROM training_examples \
                 WHERE signal IS NOT NULL ORDER BY source_ref, ",
            source_priority!(),
            ", created_at DESC \
             ) resolved GROUP BY source ORDER BY source"
        ))
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|(source, count)| {
                let source = ExampleSource::from_str(&source).map_err(|e| Error::CorruptRow {
                    table: "training_examples",
                    reason: e.to_string(),
                })?;
                Ok((source, u64::try_from(count).unwrap_or_default()))
            })
            .collect()
    }
}

/// The order in which [`TrainingExamples::load`]'s cap drops signals, first dropped first.
pub const EVICTION_ORDER: [&str; 2] = ["dataset, oldest first", "feedback, oldest first"];

/// Inserts examples with one statement per 5,000, skipping (source, source_ref) keys already
/// present; returns how many were new. Shared by [`TrainingExamples::record_batch`] and the
/// workflow batch transaction.
pub(crate) async fn insert_examples(
    conn: &mut PgConnection,
    examples: &[NewExample<'_>],
) -> Result<u64> {
    for example in examples {
        validate(example)?;
    }
    let mut inserted = 0;
    // Bounded statements: one huge array parameter would hold the whole file twice in memory.
    for chunk in examples.chunks(5_000) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut signals = Vec::with_capacity(chunk.len());
        let mut labels = Vec::with_capacity(chunk.len());
        let mut sources = Vec::with_capacity(chunk.len());
        let mut weights = Vec::with_capacity(chunk.len());
        let mut refs = Vec::with_capacity(chunk.len());
        for example in chunk {
            ids.push(Uuid::now_v7());
            signals.push(Json(example.signal));
            labels.push(example.label);
            sources.push(example.source.as_str());
            weights.push(example.weight);
            refs.push(example.source_ref);
        }
        let result = sqlx::query(
            "INSERT INTO training_examples (id, signal, label, source, weight, source_ref) \
             SELECT * FROM UNNEST($1::uuid[], $2::jsonb[], $3::bool[], $4::text[], \
                                  $5::float8[], $6::text[]) \
             ON CONFLICT (source, source_ref) DO NOTHING",
        )
        .bind(&ids)
        .bind(&signals)
        .bind(&labels)
        .bind(&sources)
        .bind(&weights)
        .bind(&refs)
        .execute(&mut *conn)
        .await?;
        inserted += result.rows_affected();
    }
    Ok(inserted)
}

/// Sets the analyst's label of one workflow's signal (`source_ref` = its event id): a later
/// verdict replaces the label of an earlier one, and the row counts as new again for the
/// trainer's threshold. Used inside the feedback transaction.
pub(crate) async fn set_feedback_label(
    conn: &mut PgConnection,
    event_id: &str,
    signal: &serde_json::Value,
    label: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO training_examples (id, signal, label, source, weight, source_ref) \
         VALUES ($1, $2, $3, 'feedback', 1.0, $4) \
         ON CONFLICT (source, source_ref) DO UPDATE \
             SET label = EXCLUDED.label, signal = EXCLUDED.signal, created_at = now() \
             WHERE training_examples.label IS DISTINCT FROM EXCLUDED.label",
    )
    .bind(Uuid::now_v7())
    .bind(signal)
    .bind(label)
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Checked before the database would, so the caller gets a message naming the field.
fn validate(example: &NewExample<'_>) -> Result<()> {
    if example.source_ref.trim().is_empty() {
        return Err(ValidationError::Empty {
            field: "source_ref",
        }
        .into());
    }
    if !example.weight.is_finite() || example.weight <= 0.0 {
        return Err(ValidationError::Invalid {
            field: "weight",
            reason: format!("must be a positive finite number, got {}", example.weight),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_round_trip() {
        for source in ExampleSource::ALL {
            assert_eq!(ExampleSource::from_str(source.as_str()).ok(), Some(source));
        }
        assert!(ExampleSource::from_str("analyst").is_err());
        assert!(
            ExampleSource::from_str("assessment").is_err(),
            "vigil's own verdicts are not a source of labels"
        );
    }
}
