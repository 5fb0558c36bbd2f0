//! The bound on requested training runs (`trainer.max_requested_runs_per_hour`): anyone allowed
//! to publish on `vigil.trainer.run` can ask for a run, and a run costs minutes of every core,
//! so a flood of requests must not become a flood of runs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window the limit counts over.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// What the limit says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The request may start a run.
    Admitted,
    /// Refused: `in_window` requests were admitted within the last hour, the limit is `limit`,
    /// and the next one is allowed after `retry_after` (`None`: the limit is 0, never).
    Refused {
        limit: u32,
        in_window: usize,
        retry_after: Option<Duration>,
    },
}

/// A sliding one-hour window of the requests admitted, on one trainer replica.
#[derive(Debug, Default)]
pub struct RequestWindow {
    admitted: VecDeque<Instant>,
}

impl RequestWindow {
    /// Admits a request at `now` when fewer than `per_hour` were admitted in the hour before;
    /// an admitted request is counted from `now` on.
    pub fn admit(&mut self, now: Instant, per_hour: u32) -> Admission {
        while self
            .admitted
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= WINDOW)
        {
            self.admitted.pop_front();
        }
        let limit = usize::try_from(per_hour).unwrap_or(usize::MAX);
        if self.admitted.len() < limit {
            self.admitted.push_back(now);
            return Admission::Admitted;
        }
        // The limit may have been lowered live below what the window holds: one more fits once
        // all but `limit - 1` have aged out, i.e. when the one at `len - limit` (oldest first)
        // has.
        let freeing = self.admitted.len() - limit;
        let retry_after = self
            .admitted
            .get(freeing)
            .map(|at| WINDOW.saturating_sub(now.saturating_duration_since(*at)));
        Admission::Refused {
            limit: per_hour,
            in_window: self.admitted.len(),
            retry_after,
        }
    }

    /// Gives back the last admission (the request could not be queued after all).
    pub fn refund(&mut self) {
        self.admitted.pop_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_refuses_until_the_oldest_ages_out() {
        let start = Instant::now();
        let mut window = RequestWindow::default();
        assert_eq!(window.admit(start, 2), Admission::Admitted);
        let later = start + Duration::from_secs(600);
        assert_eq!(window.admit(later, 2), Admission::Admitted);
        let refused = window.admit(later + Duration::from_secs(1), 2);
        assert_eq!(
            refused,
            Admission::Refused {
                limit: 2,
                in_window: 2,
                retry_after: Some(Duration::from_secs(2999)),
            }
        );
        // Refusals do not count: once the first admission is an hour old, one more fits.
        assert_eq!(window.admit(start + WINDOW, 2), Admission::Admitted);
        assert!(matches!(
            window.admit(start + WINDOW, 2),
            Admission::Refused { .. }
        ));
    }

    #[test]
    fn a_limit_of_zero_refuses_every_request_for_good() {
        let mut window = RequestWindow::default();
        assert_eq!(
            window.admit(Instant::now(), 0),
            Admission::Refused {
                limit: 0,
                in_window: 0,
                retry_after: None,
            }
        );
    }

    #[test]
    fn a_lowered_limit_waits_for_enough_admissions_to_age_out() {
        let start = Instant::now();
        let mut window = RequestWindow::default();
        for minute in 0..3 {
            let at = start + Duration::from_secs(60 * minute);
            assert_eq!(window.admit(at, 3), Admission::Admitted);
        }
        let now = start + Duration::from_secs(300);
        // Down to 1: all three must age out before one more fits, so the newest decides.
        assert_eq!(
            window.admit(now, 1),
            Admission::Refused {
                limit: 1,
                in_window: 3,
                retry_after: Some(WINDOW - Duration::from_secs(180)),
            }
        );
        // Down to 2: the two oldest must age out, so the second oldest decides.
        assert_eq!(
            window.admit(now, 2),
            Admission::Refused {
                limit: 2,
                in_window: 3,
                retry_after: Some(WINDOW - Duration::from_secs(240)),
            }
        );
    }

    #[test]
    fn a_refunded_admission_frees_its_slot() {
        let now = Instant::now();
        let mut window = RequestWindow::default();
        assert_eq!(window.admit(now, 1), Admission::Admitted);
        window.refund();
        assert_eq!(window.admit(now, 1), Admission::Admitted);
    }
}
