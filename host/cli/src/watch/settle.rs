//! Deciding when a library file has stopped changing.
//!
//! A linker writes its output in several steps, a copy tool in chunks, a slow
//! copy with pauses; loading the file in between would admit a half-written
//! library. So a file that is new, changed or gone is *pending* until its
//! fingerprint (size and modification time) has stayed the same for the settle
//! interval with no notification about it meanwhile; only then is it reported,
//! once. The safety pipeline's probe still guards whatever this cannot see (a
//! writer that pauses longer than the interval gets its half-written file
//! refused by the probe, and the file is tried again when it changes again).
//!
//! Pure logic: the caller passes directory listings and the current time, so
//! the tests drive it with a fake clock.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What is compared to tell that a file changed: its size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Size in bytes.
    pub len: u64,
    /// Last modification time, when the platform reports one.
    pub modified: Option<SystemTime>,
}

impl Fingerprint {
    /// The fingerprint of a file with these metadata.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// One directory listing: every library file with its fingerprint.
pub type Snapshot = BTreeMap<PathBuf, Fingerprint>;

/// A file that has settled into a new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A file that was not there before.
    Appeared(PathBuf),
    /// A file that was there before and still is (its bytes may or may not differ:
    /// a notification about it is enough).
    Changed(PathBuf),
    /// A file that was there before and is gone.
    Vanished(PathBuf),
}

impl Change {
    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            Change::Appeared(p) | Change::Changed(p) | Change::Vanished(p) => p,
        }
    }
}

/// A file whose state differs from the settled one, or was notified about.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Its fingerprint when last looked at (`None`: absent).
    seen: Option<Fingerprint>,
    /// When it was last seen to change (or was notified about).
    since: Instant,
}

/// The settled state of one directory and the files still changing in it.
#[derive(Debug)]
pub struct Settler {
    interval: Duration,
    settled: Snapshot,
    pending: BTreeMap<PathBuf, Pending>,
}

impl Settler {
    /// Starts from `initial` as the settled state, with this settle interval.
    pub fn new(interval: Duration, initial: Snapshot) -> Self {
        Self {
            interval,
            settled: initial,
            pending: BTreeMap::new(),
        }
    }

    /// A notification about `path` at `now`: it counts as changing from now on,
    /// whatever its fingerprint says, and once settled it is reported even if its
    /// fingerprint ends up where it was (a same-size rewrite within the clock's
    /// granularity, a permission change).
    pub fn touch(&mut self, path: &Path, now: Instant) {
        let seen = match self.pending.get(path) {
            Some(p) => p.seen,
            None => self.settled.get(path).copied(),
        };
        self.pending
            .insert(path.to_path_buf(), Pending { seen, since: now });
    }

    /// Compares the directory's `current` listing, taken at `now`, with the
    /// settled state. Returns the files that have stayed unchanged for the settle
    /// interval since they last changed, and records them as settled.
    ///
    /// A file that appeared is only reported when nothing else in the directory is
    /// still pending: adding a library admits the directory, and that must not
    /// open a file another writer is still writing.
    pub fn observe(&mut self, current: &Snapshot, now: Instant) -> Vec<Change> {
        for (path, fingerprint) in current {
            if self.settled.get(path) != Some(fingerprint) && !self.pending.contains_key(path) {
                self.pending.insert(
                    path.clone(),
                    Pending {
                        seen: Some(*fingerprint),
                        since: now,
                    },
                );
            }
        }
        for path in self.settled.keys() {
            if !current.contains_key(path) && !self.pending.contains_key(path) {
                self.pending.insert(
                    path.clone(),
                    Pending {
                        seen: None,
                        since: now,
                    },
                );
            }
        }
        let mut ready = Vec::new();
        for (path, pending) in &mut self.pending {
            let seen = current.get(path).copied();
            if seen != pending.seen {
                pending.seen = seen;
                pending.since = now;
            } else if now.saturating_duration_since(pending.since) >= self.interval {
                ready.push(path.clone());
            }
        }
        let all_ready = ready.len() == self.pending.len();
        let mut changes = Vec::new();
        for path in ready {
            let before = self.settled.contains_key(&path);
            let seen = self.pending[&path].seen;
            let change = match (before, seen) {
                (false, None) => None,
                (false, Some(_)) if !all_ready => continue,
                (false, Some(_)) => Some(Change::Appeared(path.clone())),
                (true, Some(_)) => Some(Change::Changed(path.clone())),
                (true, None) => Some(Change::Vanished(path.clone())),
            };
            self.pending.remove(&path);
            match seen {
                Some(fingerprint) => self.settled.insert(path, fingerprint),
                None => self.settled.remove(&path),
            };
            changes.extend(change);
        }
        changes
    }

    /// When the earliest pending file can settle, if any is pending (the caller
    /// looks again then).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.since + self.interval).min()
    }

    /// Drops every pending file, keeping the settled state (the directory went
    /// away: what was being written in it no longer matters, and when it comes
    /// back it is compared with what was settled).
    pub fn forget_pending(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_millis(500);

    fn fp(len: u64, secs: u64) -> Fingerprint {
        Fingerprint {
            len,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }

    fn snapshot(files: &[(&str, Fingerprint)]) -> Snapshot {
        files.iter().map(|(p, f)| (PathBuf::from(p), *f)).collect()
    }

    fn ms(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_file_growing_in_steps_is_reported_once_after_it_stopped_changing() {
        let t0 = Instant::now();
        let mut s = Settler::new(SETTLE, Snapshot::new());
        // A writer appends every 200 ms (shorter than the settle interval).
        for step in 0..10u64 {
            let now = ms(t0, step * 200);
            let seen = snapshot(&[("a.so", fp(step * 1000 + 1, step))]);
            assert_eq!(
                s.observe(&seen, now),
                [],
                "step {step}: still being written"
            );
        }
        let done = snapshot(&[("a.so", fp(9001, 9))]);
        assert_eq!(s.observe(&done, ms(t0, 1999)), []);
        assert_eq!(s.next_deadline(), Some(ms(t0, 1800) + SETTLE));
        assert_eq!(
            s.observe(&done, ms(t0, 2300)),
            [Change::Appeared("a.so".into())]
        );
        assert_eq!(s.observe(&done, ms(t0, 5000)), [], "reported once");
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_notification_restarts_the_clock_even_when_size_and_time_stay_the_same() {
        let t0 = Instant::now();
        let files = snapshot(&[("a.so", fp(10, 1))]);
        let mut s = Settler::new(SETTLE, files.clone());
        assert_eq!(s.observe(&files, t0), [], "nothing changed");
        s.touch(Path::new("a.so"), ms(t0, 100));
        assert_eq!(s.observe(&files, ms(t0, 400)), []);
        s.touch(Path::new("a.so"), ms(t0, 500));
        assert_eq!(s.observe(&files, ms(t0, 900)), [], "touched 400 ms ago");
        assert_eq!(
            s.observe(&files, ms(t0, 1000)),
            [Change::Changed("a.so".into())]
        );
        assert_eq!(s.observe(&files, ms(t0, 3000)), []);
    }

    #[test]
    fn a_file_replaced_through_a_short_absence_is_a_change_not_a_removal() {
        // A linker deletes its output, then writes it again.
        let t0 = Instant::now();
        let mut s = Settler::new(SETTLE, snapshot(&[("a.so", fp(10, 1))]));
        assert_eq!(s.observe(&Snapshot::new(), t0), []);
        let rebuilt = snapshot(&[("a.so", fp(12, 2))]);
        assert_eq!(s.observe(&rebuilt, ms(t0, 300)), []);
        assert_eq!(s.observe(&rebuilt, ms(t0, 700)), []);
        assert_eq!(
            s.observe(&rebuilt, ms(t0, 800)),
            [Change::Changed("a.so".into())]
        );
    }

    #[test]
    fn a_removal_is_reported_once_it_lasted_the_settle_interval() {
        let t0 = Instant::now();
        let mut s = Settler::new(SETTLE, snapshot(&[("a.so", fp(10, 1)), ("b.so", fp(5, 1))]));
        let left = snapshot(&[("b.so", fp(5, 1))]);
        assert_eq!(s.observe(&left, t0), []);
        assert_eq!(
            s.observe(&left, ms(t0, 500)),
            [Change::Vanished("a.so".into())]
        );
        assert_eq!(s.observe(&left, ms(t0, 2000)), []);
    }

    #[test]
    fn a_file_that_came_and_went_before_settling_is_never_reported() {
        let t0 = Instant::now();
        let mut s = Settler::new(SETTLE, Snapshot::new());
        s.touch(Path::new("tmp.so"), t0);
        assert_eq!(
            s.observe(&snapshot(&[("tmp.so", fp(1, 1))]), ms(t0, 100)),
            []
        );
        assert_eq!(s.observe(&Snapshot::new(), ms(t0, 200)), []);
        assert_eq!(s.observe(&Snapshot::new(), ms(t0, 900)), []);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_new_file_waits_until_nothing_else_in_the_directory_is_changing() {
        let t0 = Instant::now();
        let mut s = Settler::new(SETTLE, snapshot(&[("old.so", fp(1, 1))]));
        let both = |len| snapshot(&[("new.so", fp(7, 1)), ("old.so", fp(len, 2))]);
        assert_eq!(s.observe(&both(2), t0), []);
        // old.so keeps changing; new.so is stable but must wait for it.
        assert_eq!(s.observe(&both(3), ms(t0, 400)), []);
        assert_eq!(s.observe(&both(4), ms(t0, 800)), []);
        assert_eq!(s.observe(&both(4), ms(t0, 1200)), []);
        assert_eq!(
            s.observe(&both(4), ms(t0, 1300)),
            [
                Change::Appeared("new.so".into()),
                Change::Changed("old.so".into())
            ]
        );
    }

    #[test]
    fn a_change_elsewhere_does_not_hold_back_a_reload_or_a_removal() {
        let t0 = Instant::now();
        let mut s = Settler::new(
            SETTLE,
            snapshot(&[("a.so", fp(1, 1)), ("gone.so", fp(1, 1))]),
        );
        let writing = |len| snapshot(&[("a.so", fp(2, 2)), ("slow.so", fp(len, 3))]);
        assert_eq!(s.observe(&writing(1), t0), []);
        assert_eq!(s.observe(&writing(2), ms(t0, 300)), []);
        assert_eq!(
            s.observe(&writing(3), ms(t0, 600)),
            [
                Change::Changed("a.so".into()),
                Change::Vanished("gone.so".into())
            ]
        );
    }

    #[test]
    fn forgetting_pending_files_keeps_the_settled_state() {
        let t0 = Instant::now();
        let files = snapshot(&[("a.so", fp(1, 1))]);
        let mut s = Settler::new(SETTLE, files.clone());
        assert_eq!(s.observe(&Snapshot::new(), t0), []);
        s.forget_pending();
        // The directory came back with the same file: nothing to do.
        assert_eq!(s.observe(&files, ms(t0, 5000)), []);
        assert_eq!(s.observe(&files, ms(t0, 9000)), []);
    }
}
