//! Where a native plugin's calls run: the measured policy that moves a plugin's
//! calls inline once they prove short and back to the blocking pool when one
//! overstays ([`CallMode`]), and the cheap clock that times inline calls.
//! [`crate::FfiPlugin`] applies it; `host/src/ffi.rs` holds the call paths.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

/// A call whose plugin code runs longer than this (wall time) is long: calls
/// shorter than this may run inline on an async worker, and an inline call that
/// takes longer sends its plugin back to the blocking path. Well under the 1 ms
/// of scheduling lateness the host allows itself.
pub const INLINE_LIMIT: Duration = Duration::from_micros(50);

/// An inline call at least this long sends its plugin back to the blocking path
/// at once. A shorter overstay (past [`INLINE_LIMIT`]) is only a *strike*: on a
/// busy machine a call that was merely preempted looks like that (measured on
/// the reference VM: ~1 µs calls reported 50 µs to 1.2 ms several times a
/// second), so it demotes only when a second strike follows within
/// [`STRIKE_WINDOW`] inline calls.
pub const DEMOTE_AT_ONCE: Duration = Duration::from_millis(2);

/// Inline calls within which a second strike (see [`DEMOTE_AT_ONCE`]) demotes
/// the plugin: a plugin whose calls keep overstaying is demoted on its second
/// slow call, while a preempted call now and then among a thousand fast ones is
/// forgiven.
pub const STRIKE_WINDOW: u64 = 1024;

/// Short calls in a row, on the blocking path, before a plugin's calls first run
/// inline. Doubles with each demotion, up to [`MAX_PROMOTE_AFTER`].
pub const PROMOTE_AFTER: u32 = 16;

/// The most short calls in a row a plugin that keeps overstaying must make
/// before it runs inline again.
pub const MAX_PROMOTE_AFTER: u32 = 1 << 16;

/// Where a native plugin's calls run.
///
/// Every plugin starts [`CallMode::Blocking`]. After [`PROMOTE_AFTER`] calls in a
/// row each shorter than [`INLINE_LIMIT`] (on a multi-thread runtime), its calls
/// run [`CallMode::Inline`]: on the calling thread, for about what the plugin's
/// own work costs; an instance busy with another call sends the call to the
/// blocking pool instead, so an async worker never waits for it. An inline call
/// that takes [`DEMOTE_AT_ONCE`] or longer (noticed when it returns, or by a
/// caller that finds it still running), or two that take longer than
/// [`INLINE_LIMIT`] within [`STRIKE_WINDOW`] inline calls of each other, move the
/// plugin back, logged as a warning; it then needs twice as many short calls (up
/// to [`MAX_PROMOTE_AFTER`]) to run inline again. A plugin whose calls start to
/// block stalls one worker for one call (two, if each blocks for less than
/// [`DEMOTE_AT_ONCE`]) before it moves back; one that blocks from the start never
/// leaves the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// On tokio's blocking pool, one hand-off per call.
    Blocking,
    /// On the calling thread (an async worker included).
    Inline,
}

/// A snapshot of a native plugin's call policy, for status displays and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPath {
    /// Where its calls run now.
    pub mode: CallMode,
    /// How often an inline call overstayed [`INLINE_LIMIT`] and sent it back to
    /// the blocking path.
    pub demotions: u32,
    /// Short calls in a row the next move to [`CallMode::Inline`] needs.
    pub promote_after: u32,
}

/// The adaptive call policy of one plugin. Only atomics: read and updated on
/// every call without a lock; races between concurrent calls only make the
/// counters approximate, never unsafe.
pub(crate) struct CallPolicy {
    /// Whether calls run inline now.
    inline: AtomicBool,
    /// Short calls in a row on the blocking path.
    streak: AtomicU32,
    /// Short calls in a row needed for the next promotion.
    needed: AtomicU32,
    /// Demotions so far.
    demotions: AtomicU32,
    /// When the running inline call started (a [`clock::now`] reading), 0 when
    /// none runs: lets a caller that finds the instance busy see an
    /// overstaying inline call before it returns.
    inline_since: AtomicU64,
    /// Inline calls finished since the plugin was created.
    inline_calls: AtomicU64,
    /// The `inline_calls` count at the last strike since the last promotion, 0
    /// for none.
    last_strike: AtomicU64,
}

/// The clock that times inline calls: read twice per call, so it must be cheap.
/// On x86-64, where the kernel itself keeps time with the TSC (so it is
/// invariant and synchronized across cores), the TSC: ≈ 25 ns a read on the
/// reference VM against ≈ 70 ns for `Instant::now()`. Elsewhere, nanoseconds
/// since a process-wide `Instant`.
mod clock {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// How the clock reads, settled once.
    struct Calibration {
        /// Whether [`now`] reads the TSC.
        tsc: bool,
        /// Clock units per nanosecond.
        per_ns: f64,
        /// The origin of the `Instant` fallback.
        origin: Instant,
    }

    static CALIBRATION: OnceLock<Calibration> = OnceLock::new();

    /// Settles the clock. Busy-waits 1 ms the first time on x86-64 (to measure
    /// the TSC's rate), so it is first called from a blocking-pool thread, when
    /// a plugin is about to be promoted.
    pub(super) fn calibrate() {
        let _ = calibration();
    }

    fn calibration() -> &'static Calibration {
        CALIBRATION.get_or_init(|| {
            let origin = Instant::now();
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            {
                let source = std::fs::read_to_string(
                    "/sys/devices/system/clocksource/clocksource0/current_clocksource",
                )
                .unwrap_or_default();
                if source.trim() == "tsc" {
                    let (t0, c0) = (Instant::now(), tsc());
                    while t0.elapsed() < Duration::from_millis(1) {
                        std::hint::spin_loop();
                    }
                    let ns = t0.elapsed().as_nanos() as f64;
                    let ticks = tsc().wrapping_sub(c0) as f64;
                    if ticks > 0.0 && ns > 0.0 {
                        return Calibration {
                            tsc: true,
                            per_ns: ticks / ns,
                            origin,
                        };
                    }
                }
            }
            Calibration {
                tsc: false,
                per_ns: 1.0,
                origin,
            }
        })
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn tsc() -> u64 {
        // SAFETY: `rdtsc` has no preconditions; it exists on every x86-64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    fn tsc() -> u64 {
        0
    }

    /// The current reading (never 0).
    pub(super) fn now() -> u64 {
        let c = calibration();
        let raw = if c.tsc {
            tsc()
        } else {
            u64::try_from(c.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
        };
        raw.max(1)
    }

    /// The time between two readings.
    pub(super) fn between(start: u64, end: u64) -> Duration {
        let per_ns = calibration().per_ns;
        Duration::from_nanos((end.saturating_sub(start) as f64 / per_ns) as u64)
    }
}

impl CallPolicy {
    /// A policy for a plugin that has made no call yet (blocking).
    pub(crate) fn new() -> Self {
        Self {
            inline: AtomicBool::new(false),
            streak: AtomicU32::new(0),
            needed: AtomicU32::new(PROMOTE_AFTER),
            demotions: AtomicU32::new(0),
            inline_since: AtomicU64::new(0),
            inline_calls: AtomicU64::new(0),
            last_strike: AtomicU64::new(0),
        }
    }

    /// Where calls run now, for status displays.
    pub(crate) fn snapshot(&self) -> CallPath {
        CallPath {
            mode: if self.inline.load(Ordering::Relaxed) {
                CallMode::Inline
            } else {
                CallMode::Blocking
            },
            demotions: self.demotions.load(Ordering::Relaxed),
            promote_after: self.needed.load(Ordering::Relaxed),
        }
    }

    /// Records a call that ran on the blocking path for `took`.
    pub(crate) fn record_blocking(&self, plugin: &str, took: Duration) {
        if took >= INLINE_LIMIT {
            self.streak.store(0, Ordering::Relaxed);
            return;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < self.needed.load(Ordering::Relaxed) || !in_multi_thread_runtime() {
            return;
        }
        // On this blocking thread, before the first inline call needs the clock.
        clock::calibrate();
        if self
            .inline
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(
                plugin,
                short_calls = streak,
                limit_us = INLINE_LIMIT.as_micros() as u64,
                "calls now run inline: every recent call was short"
            );
        }
    }

    /// Whether calls run inline now.
    pub(crate) fn inline(&self) -> bool {
        self.inline.load(Ordering::Relaxed)
    }

    /// Marks an inline call as started; returns the start to hand to
    /// [`CallPolicy::end_inline`].
    pub(crate) fn begin_inline(&self) -> u64 {
        let start = clock::now();
        self.inline_since.store(start, Ordering::Relaxed);
        start
    }

    /// Marks the inline call that began at `start` as finished, demoting the
    /// plugin if it overstayed (see [`CallPolicy::record_inline`]).
    pub(crate) fn end_inline(&self, plugin: &str, method: &str, start: u64) {
        self.inline_since.store(0, Ordering::Relaxed);
        let took = clock::between(start, clock::now());
        self.record_inline(plugin, method, took);
    }

    /// Records an inline call that took `took`: [`DEMOTE_AT_ONCE`] or more
    /// demotes the plugin; past [`INLINE_LIMIT`] is a strike, and a second
    /// strike within [`STRIKE_WINDOW`] inline calls demotes it.
    fn record_inline(&self, plugin: &str, method: &str, took: Duration) {
        // A load and a store, not a locked read-modify-write: inline calls of
        // one plugin run one at a time (the instance lock), and a lost count
        // would only stretch the window.
        let calls = self.inline_calls.load(Ordering::Relaxed) + 1;
        self.inline_calls.store(calls, Ordering::Relaxed);
        if took < INLINE_LIMIT {
            return;
        }
        if took >= DEMOTE_AT_ONCE {
            self.demote(plugin, method, took, false);
            return;
        }
        let last = self.last_strike.swap(calls, Ordering::Relaxed);
        if last != 0 && calls - last <= STRIKE_WINDOW {
            self.demote(plugin, method, took, false);
        } else {
            tracing::debug!(
                plugin,
                method,
                took_us = took.as_micros() as u64,
                "an inline call overstayed once (a strike; a second within the window demotes)"
            );
        }
    }

    /// Sends the plugin back to the blocking path after an inline call took `took`.
    fn demote(&self, plugin: &str, method: &str, took: Duration, still_running: bool) {
        if self
            .inline
            .compare_exchange(true, false, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.streak.store(0, Ordering::Relaxed);
        // Strikes count from the next promotion.
        self.last_strike.store(0, Ordering::Relaxed);
        let demotions = self.demotions.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = self
            .needed
            .load(Ordering::Relaxed)
            .saturating_mul(2)
            .min(MAX_PROMOTE_AFTER);
        self.needed.store(needed, Ordering::Relaxed);
        tracing::warn!(
            plugin,
            method,
            took_us = took.as_micros() as u64,
            still_running,
            limit_us = INLINE_LIMIT.as_micros() as u64,
            demotions,
            promote_after = needed,
            "an inline call overstayed: calls go back to the blocking pool"
        );
    }

    /// Called when the instance was busy: demotes the plugin if the inline call
    /// holding it has already run for [`DEMOTE_AT_ONCE`] (a shorter overstay is
    /// recorded as a strike when that call returns).
    pub(crate) fn check_overstay(&self, plugin: &str, method: &str) {
        let since = self.inline_since.load(Ordering::Relaxed);
        if since == 0 {
            return;
        }
        let took = clock::between(since, clock::now());
        if took >= DEMOTE_AT_ONCE {
            self.demote(plugin, method, took, true);
        }
    }
}

/// Whether this thread runs inside a multi-thread runtime (its workers and
/// blocking pool included): the only place a plugin is promoted to inline calls,
/// because a host callback from inline code moves off the worker with
/// `block_in_place`, which a current-thread runtime does not offer.
fn in_multi_thread_runtime() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy whose plugin runs inline (as after a promotion).
    fn inline_policy() -> CallPolicy {
        let policy = CallPolicy::new();
        policy.inline.store(true, Ordering::Relaxed);
        policy
    }

    const FAST: Duration = Duration::from_micros(1);
    const PREEMPTED: Duration = Duration::from_micros(300);

    #[test]
    fn one_overstay_among_fast_calls_is_a_strike_not_a_demotion() {
        let policy = inline_policy();
        policy.record_inline("p", "m", PREEMPTED);
        assert_eq!(policy.snapshot().mode, CallMode::Inline);
        // A second one, but past the window: still inline.
        for _ in 0..STRIKE_WINDOW {
            policy.record_inline("p", "m", FAST);
        }
        policy.record_inline("p", "m", PREEMPTED);
        assert_eq!(policy.snapshot().mode, CallMode::Inline);
        assert_eq!(policy.snapshot().demotions, 0);
    }

    #[test]
    fn a_second_overstay_within_the_window_demotes() {
        let policy = inline_policy();
        policy.record_inline("p", "m", PREEMPTED);
        for _ in 0..STRIKE_WINDOW - 2 {
            policy.record_inline("p", "m", FAST);
        }
        policy.record_inline("p", "m", PREEMPTED);
        let path = policy.snapshot();
        assert_eq!(path.mode, CallMode::Blocking);
        assert_eq!(path.demotions, 1);
        assert_eq!(path.promote_after, 2 * PROMOTE_AFTER);
    }

    #[test]
    fn a_long_overstay_demotes_at_once_and_strikes_restart_after_a_promotion() {
        let policy = inline_policy();
        policy.record_inline("p", "m", PREEMPTED);
        policy.record_inline("p", "m", DEMOTE_AT_ONCE);
        assert_eq!(policy.snapshot().mode, CallMode::Blocking);
        assert_eq!(policy.snapshot().demotions, 1);
        // Promoted again: the strike from before the demotion is forgotten.
        policy.inline.store(true, Ordering::Relaxed);
        policy.record_inline("p", "m", PREEMPTED);
        assert_eq!(policy.snapshot().mode, CallMode::Inline);
    }
}
