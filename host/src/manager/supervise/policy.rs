//! Restart policies ([`RestartPolicy`]) and the count of recent restarts that
//! enforces their limit ([`Restarts`]). Pure: no locks, no tasks, no clock
//! reads (the caller passes the instant).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the manager does when a plugin crashes while Active (its
/// [`crate::CrashSignal`] reports a death). Set per plugin with
/// [`crate::ManagerConfigBuilder::restart_policy`] (and for every other plugin
/// with [`crate::ManagerConfigBuilder::default_restart_policy`]).
///
/// Only crashes at run time trigger it: a plugin whose `initialize` or
/// `shutdown` fails on a request of the embedder stays `Failed` as before.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Leave the plugin `Failed(Crashed)` (the default).
    #[default]
    Never,
    /// Restart it after a backoff, up to a limit of restarts within a window,
    /// like systemd's `Restart=on-failure` with `StartLimitBurst` and
    /// `StartLimitIntervalSec`.
    OnFailure(RestartOnFailure),
}

impl RestartPolicy {
    /// [`RestartPolicy::OnFailure`] with at most `limit` restarts within
    /// `window`, and the default backoff ([`RestartOnFailure::DEFAULT_INITIAL_BACKOFF`]
    /// doubling up to [`RestartOnFailure::DEFAULT_MAX_BACKOFF`]).
    pub fn on_failure(limit: u32, window: Duration) -> Self {
        RestartPolicy::OnFailure(RestartOnFailure {
            limit,
            window,
            ..RestartOnFailure::default()
        })
    }

    /// This policy with the backoff set (no change for [`RestartPolicy::Never`]).
    #[must_use]
    pub fn with_backoff(self, initial: Duration, max: Duration) -> Self {
        match self {
            RestartPolicy::Never => RestartPolicy::Never,
            RestartPolicy::OnFailure(p) => RestartPolicy::OnFailure(RestartOnFailure {
                initial_backoff: initial,
                max_backoff: max,
                ..p
            }),
        }
    }
}

/// The settings of [`RestartPolicy::OnFailure`].
///
/// Restart `n` (counted within the window) waits `initial_backoff * 2^(n-1)`,
/// at most `max_backoff`. When `limit` restarts already happened within the
/// last `window`, the plugin is not restarted again: it stays `Failed` with
/// [`crate::Error::RestartLimit`] until it is loaded again by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartOnFailure {
    /// The wait before the first restart within the window.
    pub initial_backoff: Duration,
    /// The longest wait before a restart.
    pub max_backoff: Duration,
    /// At most this many restarts within `window` (at least 1).
    pub limit: u32,
    /// The window the restarts are counted in (longer than zero).
    pub window: Duration,
}

impl RestartOnFailure {
    /// The default first backoff (systemd's `RestartSec` default).
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
    /// The default longest backoff.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
    /// The default restart limit (systemd's `StartLimitBurst` default).
    pub const DEFAULT_LIMIT: u32 = 5;
    /// The default window (systemd's `StartLimitIntervalSec` default).
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

    /// The wait before restart `attempt` (1 for the first within the window).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }

    /// Why the settings are unusable, if they are.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.limit == 0 {
            return Some(
                "the restart limit must be at least 1 (use RestartPolicy::Never for no restarts)",
            );
        }
        if self.window.is_zero() {
            return Some("the restart window must be longer than zero");
        }
        if self.initial_backoff > self.max_backoff {
            return Some("the initial backoff must not be longer than the maximum backoff");
        }
        None
    }
}

impl Default for RestartOnFailure {
    fn default() -> Self {
        Self {
            initial_backoff: Self::DEFAULT_INITIAL_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
            limit: Self::DEFAULT_LIMIT,
            window: Self::DEFAULT_WINDOW,
        }
    }
}

/// When the recent restarts of one plugin were scheduled.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    at: VecDeque<Instant>,
}

/// The next restart, as [`Restarts::next`] schedules it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// 1 for the first restart within the window.
    pub(crate) number: u32,
    /// The wait before it.
    pub(crate) delay: Duration,
}

impl Restarts {
    /// Schedules the next restart at `now`, or returns how many restarts
    /// already happened within the window when the limit is reached.
    pub(crate) fn next(&mut self, policy: &RestartOnFailure, now: Instant) -> Result<Attempt, u32> {
        while let Some(first) = self.at.front() {
            if now.saturating_duration_since(*first) >= policy.window {
                self.at.pop_front();
            } else {
                break;
            }
        }
        let done = u32::try_from(self.at.len()).unwrap_or(u32::MAX);
        if done >= policy.limit {
            return Err(done);
        }
        self.at.push_back(now);
        let number = done + 1;
        Ok(Attempt {
            number,
            delay: policy.delay(number),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u32, window_s: u64) -> RestartOnFailure {
        RestartOnFailure {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            limit,
            window: Duration::from_secs(window_s),
        }
    }

    #[test]
    fn the_backoff_doubles_up_to_its_maximum() {
        let p = policy(9, 60);
        let delays: Vec<u128> = (1..=5).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350, 350]);
        assert_eq!(p.delay(u32::MAX), Duration::from_millis(350));
        let huge = RestartOnFailure {
            max_backoff: Duration::MAX,
            ..p
        };
        assert!(huge.delay(200) >= Duration::from_secs(1), "no overflow");
    }

    #[test]
    fn the_limit_counts_restarts_within_the_window_only() {
        let p = policy(2, 10);
        let t0 = Instant::now();
        let mut r = Restarts::default();
        assert_eq!(r.next(&p, t0).map(|a| a.number), Ok(1));
        assert_eq!(
            r.next(&p, t0 + Duration::from_secs(1)),
            Ok(Attempt {
                number: 2,
                delay: Duration::from_millis(200)
            })
        );
        assert_eq!(r.next(&p, t0 + Duration::from_secs(2)), Err(2));
        // The first restart leaves the window: one more is allowed.
        assert_eq!(
            r.next(&p, t0 + Duration::from_secs(10)).map(|a| a.number),
            Ok(2)
        );
    }

    #[test]
    fn unusable_settings_are_named() {
        assert!(policy(0, 1).problem().unwrap().contains("limit"));
        assert!(policy(1, 0).problem().unwrap().contains("window"));
        let slow_first = RestartOnFailure {
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(1),
            ..policy(1, 1)
        };
        assert!(slow_first.problem().unwrap().contains("initial backoff"));
        assert_eq!(RestartOnFailure::default().problem(), None);
    }
}
