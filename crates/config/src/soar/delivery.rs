//! `[soar.delivery]`: retries, the fallback channel and HTTP timeouts of alert delivery.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ChannelKind, Result, invalid, require_finite_range};

/// How alerts are delivered: retries, the fallback channel, HTTP timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    pub retry: RetryPolicy,
    /// Receives the alert once when a routed channel fails for good.
    pub fallback: Option<ChannelKind>,
    /// Timeout of one HTTP request to a channel.
    pub request_timeout_ms: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            fallback: None,
            request_timeout_ms: 10_000,
        }
    }
}

impl DeliverySettings {
    /// Positive timeout and a sane retry policy.
    pub fn validate(&self) -> Result<()> {
        if self.request_timeout_ms == 0 {
            return Err(invalid(
                "soar.delivery.request_timeout_ms",
                "must be positive",
            ));
        }
        self.retry.validate()
    }
}

/// Exponential backoff with a bounded number of attempts; HTTP 429 `Retry-After` wins over the
/// computed delay (capped at `max_retry_after_seconds`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub multiplier: f64,
    pub max_retry_after_seconds: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            multiplier: 2.0,
            max_retry_after_seconds: 300,
        }
    }
}

impl RetryPolicy {
    /// How long to wait after `failed_attempts` failures: exponential from
    /// `initial_backoff_ms`, capped at `max_backoff_ms`; a `Retry-After` the server sent wins,
    /// capped at `max_retry_after_seconds`.
    pub fn delay(&self, failed_attempts: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(Duration::from_secs(self.max_retry_after_seconds));
        }
        let exponent = i32::try_from(failed_attempts.saturating_sub(1)).unwrap_or(i32::MAX);
        let ms = self.initial_backoff_ms as f64 * self.multiplier.powi(exponent);
        let capped = if ms.is_finite() {
            ms.min(self.max_backoff_ms as f64)
        } else {
            self.max_backoff_ms as f64
        };
        Duration::from_millis(capped.max(0.0) as u64)
    }

    /// The longest a whole retry sequence can wait between attempts (without `Retry-After`):
    /// what a caller holding a message while it retries must keep it for.
    pub fn total_delay(&self) -> Duration {
        (1..self.max_attempts.max(1))
            .map(|n| self.delay(n, None))
            .sum()
    }

    /// The longest every attempt together can take, each given `timeout`, with the computed
    /// delays between them (a server's `Retry-After` can stretch a delay up to
    /// `max_retry_after_seconds`).
    pub fn budget(&self, timeout: Duration) -> Duration {
        timeout.saturating_mul(self.max_attempts.max(1)) + self.total_delay()
    }

    /// At least one attempt, at most 20; multiplier within 1-10; max backoff >= initial.
    pub fn validate(&self) -> Result<()> {
        if !(1..=20).contains(&self.max_attempts) {
            return Err(invalid(
                "soar.delivery.retry.max_attempts",
                format!("must be within 1..=20, got {}", self.max_attempts),
            ));
        }
        require_finite_range("soar.delivery.retry.multiplier", self.multiplier, 1.0, 10.0)?;
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err(invalid(
                "soar.delivery.retry.max_backoff_ms",
                format!(
                    "must be >= initial_backoff_ms ({}), got {}",
                    self.initial_backoff_ms, self.max_backoff_ms
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_and_retry_after_wins() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            multiplier: 2.0,
            max_retry_after_seconds: 60,
        };
        let ms = |n| p.delay(n, None).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(60)],
            [100, 200, 400, 800, 1_000, 1_000]
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        // 100 + 200 + 400 + 800 + 5 x 1000 between ten attempts.
        assert_eq!(p.total_delay(), Duration::from_millis(6_500));
    }
}
