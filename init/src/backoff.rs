//! Restart policy and the backoff schedule: a pure function of the failure history.
//!
//! The first restart comes after `initial` (at once by default, well within 100 ms), the
//! second after `step` (100 ms), each further one after twice the previous delay, up to
//! `cap` (60 s). A unit that stayed up for `healthy_after` counts as
//! healthy again and its schedule starts over. More than `burst` restarts within
//! `burst_window` is a crash loop: the unit gives up ([`crate::UnitState::GaveUp`]) instead of
//! restarting forever.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a unit that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// Whatever the exit.
    Always,
    /// After a non-zero exit, a signal, a failed readiness check or an OOM kill.
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay before the first restart after a healthy run.
    pub initial: Duration,
    /// Delay before the second; doubled for each further one.
    pub step: Duration,
    pub cap: Duration,
    /// Uptime after which the schedule resets.
    pub healthy_after: Duration,
    /// Restarts allowed inside `burst_window` before giving up.
    pub burst: u32,
    pub burst_window: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::ZERO,
            step: Duration::from_millis(100),
            cap: Duration::from_secs(60),
            healthy_after: Duration::from_secs(30),
            burst: 10,
            burst_window: Duration::from_secs(120),
        }
    }
}

/// The restart history of one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartHistory {
    /// Consecutive restarts since the unit was last healthy.
    pub consecutive: u32,
    /// Times (since the engine started) of recent restarts, for the burst limit.
    pub recent: Vec<Duration>,
}

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RestartAfter(Duration),
    GiveUp,
    Stay,
}

impl Backoff {
    /// The delay before the `n`th consecutive restart (0-based): `initial`, then
    /// step · 2ⁿ⁻¹, capped.
    pub fn delay(&self, n: u32) -> Duration {
        if n == 0 {
            return self.initial.min(self.cap);
        }
        let factor = 1u32.checked_shl((n - 1).min(31)).unwrap_or(u32::MAX);
        self.step.saturating_mul(factor).min(self.cap)
    }

    /// Decide after an exit at `now` of a run that lasted `uptime`; updates `history`.
    pub fn decide(
        &self,
        mode: RestartMode,
        failed: bool,
        uptime: Duration,
        now: Duration,
        history: &mut RestartHistory,
    ) -> Decision {
        let restart = match mode {
            RestartMode::Always => true,
            RestartMode::OnFailure => failed,
            RestartMode::Never => false,
        };
        if !restart {
            return Decision::Stay;
        }
        if uptime >= self.healthy_after {
            history.consecutive = 0;
        }
        history.recent.retain(|t| now.saturating_sub(*t) < self.burst_window);
        if history.recent.len() >= self.burst as usize {
            return Decision::GiveUp;
        }
        let delay = self.delay(history.consecutive);
        history.consecutive = history.consecutive.saturating_add(1);
        history.recent.push(now);
        Decision::RestartAfter(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn restart_backoff_doubles_up_to_the_cap() {
        let b = Backoff::default();
        let delays: Vec<u128> = (0..13).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000]);
        assert_eq!(b.delay(u32::MAX), b.cap);
    }

    #[test]
    fn a_healthy_run_resets_the_schedule() {
        let b = Backoff { burst: 100, ..Backoff::default() };
        let mut h = RestartHistory::default();
        let mut now = Duration::ZERO;
        for want in [0, 100, 200] {
            now += Duration::from_secs(1);
            assert_eq!(b.decide(RestartMode::Always, true, MS, now, &mut h), Decision::RestartAfter(want * MS));
        }
        now += Duration::from_secs(60);
        assert_eq!(
            b.decide(RestartMode::Always, true, Duration::from_secs(31), now, &mut h),
            Decision::RestartAfter(Duration::ZERO)
        );
    }

    #[test]
    fn a_burst_of_crashes_gives_up() {
        let b = Backoff { burst: 3, burst_window: Duration::from_secs(10), ..Backoff::default() };
        let mut h = RestartHistory::default();
        for i in 0..3 {
            let d = b.decide(RestartMode::OnFailure, true, MS, Duration::from_secs(i), &mut h);
            assert!(matches!(d, Decision::RestartAfter(_)));
        }
        assert_eq!(b.decide(RestartMode::OnFailure, true, MS, Duration::from_secs(4), &mut h), Decision::GiveUp);
        // Outside the window the unit may restart again.
        let mut h2 = h.clone();
        assert!(matches!(
            b.decide(RestartMode::OnFailure, true, MS, Duration::from_secs(60), &mut h2),
            Decision::RestartAfter(_)
        ));
    }

    #[test]
    fn policies_decide_whether_to_restart() {
        let b = Backoff::default();
        let mut h = RestartHistory::default();
        assert_eq!(b.decide(RestartMode::Never, true, MS, MS, &mut h), Decision::Stay);
        assert_eq!(b.decide(RestartMode::OnFailure, false, MS, MS, &mut h), Decision::Stay);
        assert!(matches!(b.decide(RestartMode::Always, false, MS, MS, &mut h), Decision::RestartAfter(_)));
    }
}
