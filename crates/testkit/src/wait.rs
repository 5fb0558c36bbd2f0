//! Waiting on observed state instead of sleeping: [`eventually`] polls a check until it reports
//! done, and fails naming what it waited for, for how long, and what it saw last.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] looks again.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// What a check passed to [`eventually`] may return.
///
/// - `bool`: done when `true`;
/// - `Option<T>`: done with `T` when `Some`;
/// - `Result<T, E>`: done with `T` when `Ok`; `Err` carries what was observed instead (a count,
///   a status), which the failure message shows, e.g. `if n >= 2 { Ok(n) } else { Err(n) }`.
pub trait Observation {
    /// What a successful wait returns.
    type Value;
    /// The value when done, else a description of what was observed.
    fn done(self) -> Result<Self::Value, String>;
}

impl Observation for bool {
    type Value = ();
    fn done(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".into()) }
    }
}

impl<T> Observation for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

impl<T, E: Debug> Observation for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:?}"))
    }
}

/// Runs `check` until it reports done (see [`Observation`]) and returns its value; panics after
/// `timeout` with what was awaited, how long, and the last observation.
///
/// The timeout is a guard against a hung system, not a speed requirement: make it generous.
pub async fn eventually<F, Fut, O>(timeout: Duration, what: &str, mut check: F) -> O::Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: Observation,
{
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let last = match check().await.done() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "timed out after {:.1?} waiting for {what} ({attempts} checks); last observed: {last}",
                started.elapsed()
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_check_is_done() {
        let mut n = 0;
        let got = eventually(Duration::from_secs(5), "the third look", || {
            n += 1;
            let seen = n;
            async move { if seen >= 3 { Ok(seen) } else { Err(seen) } }
        })
        .await;
        assert_eq!(got, 3);
        let some = eventually(Duration::from_secs(5), "a value", || async { Some("x") }).await;
        assert_eq!(some, "x");
        eventually(Duration::from_secs(5), "true", || async { true }).await;
    }

    #[tokio::test]
    async fn a_timeout_names_what_how_long_and_the_last_observation() {
        let failed = tokio::spawn(async {
            eventually(Duration::from_millis(120), "two workflows", || async {
                Err::<(), _>("1 row")
            })
            .await;
        })
        .await
        .expect_err("the wait must fail");
        let panic = failed.into_panic();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("waiting for two workflows"), "{message}");
        assert!(message.contains("timed out after"), "{message}");
        assert!(message.contains("last observed: \"1 row\""), "{message}");
    }
}
