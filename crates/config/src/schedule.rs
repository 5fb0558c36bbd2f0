//! The cron schedule of training runs.

use std::str::FromStr;

use chrono::{DateTime, Utc};

/// A cron expression with seconds: `sec min hour day-of-month month day-of-week`, in UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    inner: cron::Schedule,
}

impl Schedule {
    /// Parses `expression`; the error quotes it and names the key.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(format!(
                "trainer.schedule {expression:?} has {fields} fields; expected 6 \
                 (sec min hour day-of-month month day-of-week), e.g. \"0 0 3 * * *\""
            ));
        }
        let inner = cron::Schedule::from_str(expression).map_err(|e| {
            format!("trainer.schedule {expression:?} is not a cron expression: {e}")
        })?;
        Ok(Self { inner })
    }

    /// The first time the schedule fires after `now`, if it ever does again.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.inner.after(&now).next()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_default_schedule_fires_daily_at_three() {
        let schedule = Schedule::parse("0 0 3 * * *").expect("valid");
        let now = Utc
            .with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
            .single()
            .expect("valid time");
        assert_eq!(
            schedule.next_after(now),
            Utc.with_ymd_and_hms(2026, 5, 2, 3, 0, 0).single()
        );
    }

    #[test]
    fn malformed_expressions_are_refused_with_a_hint() {
        let error = Schedule::parse("0 3 * * *").expect_err("five fields");
        assert!(error.contains("expected 6"), "{error}");
        assert!(Schedule::parse("0 0 25 * * *").is_err());
    }
}
