//! The supervisor's bookkeeping, one record per plugin: which incarnation is
//! watched (an epoch), the pending restart and whether it was cancelled, the
//! recent restarts. One `parking_lot` map, locked only inside the small
//! synchronous methods below.
//!
//! The protocol (the steps `supervise.rs` takes, in this order):
//!
//! - **Watch.** Entering `Active` starts a new epoch (and drops any pending
//!   restart: the plugin is up); leaving `Active` ends it. Both happen inside
//!   `Inner::transition`, under the plugin's lifecycle lock. A watcher that saw
//!   a crash acts only if, under the lifecycle lock, its epoch is still the
//!   current one: a crash of an incarnation that was unloaded normally (or
//!   replaced by a new one) is ignored.
//! - **Restart.** The crash handler registers the pending restart under the
//!   lifecycle lock, in the same critical section that writes `Failed`, and
//!   before it ends the watch. The restart runs only if, under the lifecycle
//!   lock again, that restart is still pending and not cancelled; the watch
//!   of the restarted incarnation replaces it in one step. So from the first
//!   watch to the end of the last restart, the record always shows a watch or
//!   a pending restart: the supervisor may still change the state.
//! - **Cancel.** An unload first cancels a pending restart ([`Book::cancel`]),
//!   which also says whether the supervisor may still change the state; only
//!   when it may not, and the plugin is idle, does the unload skip the
//!   lifecycle lock. Otherwise it takes the lock (a crash may be being
//!   recorded, a restart may be mid-initialize or about to start), cancels
//!   again and unloads whatever it finds. So once an unload returned, no
//!   restart started before it survives and none starts after it.
//!
//! The `loom_model` tests at the end run this code with the real [`Gate`]
//! under every interleaving loom explores (`cargo xtask loom`).
//!
//! [`Gate`]: super::super::gate::Gate

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use super::super::gate::sync::Mutex;
use super::policy::{Attempt, RestartOnFailure, Restarts};

/// The supervisor's records, by plugin id.
#[derive(Default)]
pub(crate) struct Book {
    /// Guards: every plugin's watch epoch, its watcher's stop handle, its
    /// pending restart and its recent restarts. Taken only inside the methods
    /// of `Book`, never across `.await`, no other lock taken while held;
    /// handles are dropped and wake-ups sent after it is released.
    records: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    by_id: HashMap<Uuid, Record>,
    /// The last restart ticket handed out.
    tickets: u64,
}

#[derive(Default)]
struct Record {
    /// Bumped whenever the plugin enters or leaves `Active`.
    epoch: u64,
    /// Whether the current incarnation is watched (Active with a crash signal).
    watching: bool,
    /// Dropping it ends the current incarnation's watcher.
    stop: Option<oneshot::Sender<()>>,
    /// The restart scheduled after a crash, if any.
    restart: Option<Pending>,
    restarts: Restarts,
}

struct Pending {
    ticket: u64,
    cancelled: bool,
    /// Wakes the restart's backoff wait when it is cancelled.
    wake: Arc<Notify>,
}

/// A pending restart, as [`Book::begin_restart`] hands it to the restart task.
pub(crate) struct Ticket {
    pub(crate) id: u64,
    /// Notified when the restart is cancelled.
    pub(crate) cancelled: Arc<Notify>,
}

impl Book {
    /// The plugin `id` entered `Active`: a new epoch, watched until `stop` is
    /// dropped; a pending restart is no longer needed. Returns the epoch.
    pub(crate) fn watch(&self, id: Uuid, stop: oneshot::Sender<()>) -> u64 {
        let (epoch, old) = {
            let mut records = self.records.lock();
            let record = records.by_id.entry(id).or_default();
            record.epoch += 1;
            record.restart = None;
            record.watching = true;
            (record.epoch, record.stop.replace(stop))
        };
        drop(old);
        epoch
    }

    /// The plugin `id` left `Active`: its watcher's epoch is over.
    pub(crate) fn unwatch(&self, id: Uuid) {
        let stop = {
            let mut records = self.records.lock();
            // No record: never watched (no crash signal), nothing to end.
            let Some(record) = records.by_id.get_mut(&id) else {
                return;
            };
            record.epoch += 1;
            record.watching = false;
            record.stop.take()
        };
        drop(stop);
    }

    /// Whether `epoch` is still the current incarnation of `id`.
    pub(crate) fn is_current(&self, id: Uuid, epoch: u64) -> bool {
        self.records
            .lock()
            .by_id
            .get(&id)
            .is_some_and(|r| r.epoch == epoch)
    }

    /// Registers a pending restart of `id` (replacing any other).
    pub(crate) fn begin_restart(&self, id: Uuid) -> Ticket {
        let wake = Arc::new(Notify::new());
        let mut records = self.records.lock();
        records.tickets += 1;
        let ticket = records.tickets;
        records.by_id.entry(id).or_default().restart = Some(Pending {
            ticket,
            cancelled: false,
            wake: Arc::clone(&wake),
        });
        Ticket {
            id: ticket,
            cancelled: wake,
        }
    }

    /// Schedules the next restart of `id` by `policy`, or returns the number of
    /// restarts within the window when the limit is reached.
    pub(crate) fn next_attempt(
        &self,
        id: Uuid,
        policy: &RestartOnFailure,
        now: Instant,
    ) -> Result<Attempt, u32> {
        let mut records = self.records.lock();
        records
            .by_id
            .entry(id)
            .or_default()
            .restarts
            .next(policy, now)
    }

    /// Cancels the pending restart of `id`, if any, and wakes its wait.
    /// Returns whether the supervisor may still change the plugin's state (its
    /// incarnation is watched, or a restart was pending): then the caller must
    /// take the lifecycle lock before trusting the state.
    pub(crate) fn cancel(&self, id: Uuid) -> bool {
        let (supervised, wake) = {
            let mut records = self.records.lock();
            match records.by_id.get_mut(&id) {
                None => (false, None),
                Some(record) => {
                    let wake = record.restart.as_mut().map(|pending| {
                        pending.cancelled = true;
                        Arc::clone(&pending.wake)
                    });
                    (record.watching || wake.is_some(), wake)
                }
            }
        };
        if let Some(wake) = wake {
            wake.notify_one();
        }
        supervised
    }

    /// Whether restart `ticket` of `id` is still pending and not cancelled.
    pub(crate) fn may_restart(&self, id: Uuid, ticket: u64) -> bool {
        self.records
            .lock()
            .by_id
            .get(&id)
            .and_then(|r| r.restart.as_ref())
            .is_some_and(|p| p.ticket == ticket && !p.cancelled)
    }

    /// Drops restart `ticket` of `id` (given up or cancelled).
    pub(crate) fn end_restart(&self, id: Uuid, ticket: u64) {
        let mut records = self.records.lock();
        if let Some(record) = records.by_id.get_mut(&id) {
            if record.restart.as_ref().is_some_and(|p| p.ticket == ticket) {
                record.restart = None;
            }
        }
    }

    /// Forgets `id` (unregistered).
    pub(crate) fn forget(&self, id: Uuid) {
        let record = self.records.lock().by_id.remove(&id);
        drop(record);
    }
}

/// The loom model of the supervision protocol: `cargo xtask loom` runs it
/// with the gate's (`RUSTFLAGS="--cfg plugbay_loom" cargo test --lib loom_model`).
/// Each thread takes the steps `supervise.rs` and `unload.rs` take, in their
/// order, on the real [`Book`] and [`Gate`](super::super::gate::Gate); the
/// plugin's tokio lifecycle lock is a loom mutex here.
#[cfg(all(test, plugbay_loom))]
mod loom_model {
    use loom::sync::{Arc, Mutex as Lifecycle};
    use loom::thread;

    use super::*;
    use crate::crash::{CrashReason, CrashReport};
    use crate::error::Error;
    use crate::manager::gate::Gate;
    use crate::manager::lifecycle::PluginState;

    const ID: Uuid = Uuid::from_u128(1);

    fn crashed() -> PluginState {
        PluginState::Failed(Box::new(Error::Crashed {
            plugin: "p".into(),
            report: CrashReport {
                reason: CrashReason::Exited { code: 1 },
                last_stderr: Vec::new(),
            },
        }))
    }

    struct Plugin {
        gate: Gate,
        lifecycle: Lifecycle<()>,
        book: Book,
    }

    /// An Active plugin whose watch epoch is returned.
    fn active() -> (Arc<Plugin>, u64) {
        let plugin = Plugin {
            gate: Gate::new(),
            lifecycle: Lifecycle::new(()),
            book: Book::default(),
        };
        plugin
            .gate
            .write_transition("p", PluginState::Initializing)
            .unwrap();
        plugin
            .gate
            .write_transition("p", PluginState::Active)
            .unwrap();
        let epoch = plugin.book.watch(ID, oneshot::channel().0);
        (Arc::new(plugin), epoch)
    }

    /// The watcher's crash handler (under the lifecycle lock): `Some(ticket)`
    /// when it failed the plugin and scheduled a restart.
    fn on_crash(p: &Plugin, epoch: u64, restart: bool) -> Option<u64> {
        let _lifecycle = p.lifecycle.lock().unwrap();
        if !p.book.is_current(ID, epoch) || !p.gate.state().is_active() {
            return None;
        }
        let ticket = restart.then(|| p.book.begin_restart(ID).id);
        p.gate.write_transition("p", crashed()).unwrap();
        p.book.unwatch(ID);
        ticket
    }

    /// A load under the lifecycle lock (the caller holds it).
    fn load_locked(p: &Plugin) {
        p.gate
            .write_transition("p", PluginState::Initializing)
            .unwrap();
        p.gate.write_transition("p", PluginState::Active).unwrap();
        p.book.watch(ID, oneshot::channel().0);
    }

    /// The restart task after its backoff.
    fn restart(p: &Plugin, ticket: u64) {
        let _lifecycle = p.lifecycle.lock().unwrap();
        if p.book.may_restart(ID, ticket) && p.gate.state().is_idle() {
            load_locked(p);
        } else {
            p.book.end_restart(ID, ticket);
        }
    }

    /// `Inner::unload`: cancel, the idle shortcut, the lock, cancel again, stop.
    fn unload(p: &Plugin) {
        let supervised = p.book.cancel(ID);
        if !supervised && p.gate.state().is_idle() {
            return;
        }
        let _lifecycle = p.lifecycle.lock().unwrap();
        p.book.cancel(ID);
        if !p.gate.state().is_idle() {
            p.gate
                .write_transition("p", PluginState::ShuttingDown)
                .unwrap();
            p.book.unwatch(ID);
            p.gate.write_transition("p", PluginState::Unloaded).unwrap();
        }
    }

    #[test]
    fn a_restart_racing_an_unload_never_brings_the_plugin_back_after_it() {
        loom::model(|| {
            let (plugin, epoch) = active();
            let supervisor = {
                let plugin = Arc::clone(&plugin);
                thread::spawn(move || {
                    if let Some(ticket) = on_crash(&plugin, epoch, true) {
                        restart(&plugin, ticket);
                    }
                })
            };
            unload(&plugin);
            // Whatever the supervisor does from here on (it may still be
            // running), the unload has returned: the plugin must stay down.
            supervisor.join().unwrap();
            assert!(
                !plugin.gate.state().is_active(),
                "restarted after the unload returned"
            );
        });
    }

    #[test]
    fn a_stale_crash_never_fails_the_next_incarnation() {
        loom::model(|| {
            let (plugin, epoch) = active();
            let watcher = {
                let plugin = Arc::clone(&plugin);
                thread::spawn(move || {
                    on_crash(&plugin, epoch, false);
                })
            };
            // A normal unload and a new load, while the old incarnation's
            // watcher reports its crash.
            unload(&plugin);
            {
                let _lifecycle = plugin.lifecycle.lock().unwrap();
                load_locked(&plugin);
            }
            watcher.join().unwrap();
            assert!(
                plugin.gate.state().is_active(),
                "the old incarnation's crash failed the new one: {}",
                plugin.gate.state()
            );
        });
    }
}
