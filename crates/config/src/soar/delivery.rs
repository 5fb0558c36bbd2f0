//! `[soar.delivery]`: retries, the fallback channel and HTTP timeouts of alert delivery.

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
