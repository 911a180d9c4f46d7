//! The call gate of one plugin: its lifecycle state, the calls admitted while
//! it is `Active`, the dependents holding it up, and the wake-up a shutdown
//! waits on until the admitted calls have drained.
//!
//! Every rule that needs "check and act in one step" lives here, in one
//! critical section of [`Gate::cell`]:
//!
//! - a call is admitted only while the state is `Active`, and counted in the
//!   same step ([`Gate::admit`]);
//! - a shutdown closes the gate (`Active → ShuttingDown`) only when no
//!   dependent holds the plugin up, in the same step ([`Gate::write_transition`]);
//! - a dependent holds the plugin up only while it is `Active`, recorded in the
//!   same step ([`Gate::acquire_user`]);
//! - the last admitted call to finish wakes the shutdown waiting for the drain,
//!   and the shutdown registers for that wake-up before it checks the count
//!   ([`Gate::drain_calls`]), so the wake-up cannot be lost;
//! - a reload *holds* an `Active` gate ([`Gate::hold`]): a call is then told to
//!   wait ([`Admission::Held`]), listens before asking again, and
//!   [`Gate::release_hold`] clears the hold before it wakes the listeners.
//!
//! The primitives come from the small [`sync`] shim: `parking_lot` and tokio's
//! `Notify` in normal builds, loom's in the model checker (`--cfg plugbay_loom`,
//! run by `cargo xtask loom`). The `loom_model` tests at the end of this file
//! run this very code under every interleaving loom can produce. Loom cannot
//! reach inside tokio, so under the model the drain wake-up is a condition
//! variable with a generation count; the model checks the gate's protocol
//! (count under the lock, listen before checking, wake on reaching zero), and
//! relies on tokio's documented guarantee that an `enable`d `Notified` receives
//! every later `notify_waiters`.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::lifecycle::PluginState;
use super::registry::Slot;
use crate::error::{Error, Result};

/// The primitives the gate is built from: the real ones, or loom's.
#[cfg(not(plugbay_loom))]
pub(super) mod sync {
    use std::pin::Pin;

    pub(crate) use parking_lot::Mutex;
    use tokio::sync::futures::Notified;
    use tokio::sync::Notify;

    /// A wake-up for everyone listening at the moment it is sent.
    #[derive(Default)]
    pub(crate) struct Signal(Notify);

    /// Interest in the next [`Signal::wake_all`], registered when created.
    pub(crate) struct Listener<'a>(Pin<Box<Notified<'a>>>);

    impl Signal {
        /// Registers interest now: a wake-up sent after this returns is not lost.
        pub(crate) fn listen(&self) -> Listener<'_> {
            let mut notified = Box::pin(self.0.notified());
            notified.as_mut().enable();
            Listener(notified)
        }

        /// Wakes every current listener.
        pub(crate) fn wake_all(&self) {
            self.0.notify_waiters();
        }
    }

    impl Listener<'_> {
        /// Waits for a wake-up sent since the listener was created.
        pub(crate) async fn wait(self) {
            self.0.await;
        }
    }
}

/// The primitives the gate is built from, as loom models them.
#[cfg(plugbay_loom)]
pub(super) mod sync {
    /// `parking_lot`'s lock API (no poisoning) over loom's mutex.
    #[derive(Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().expect("the model never poisons a lock")
        }
    }

    /// A generation count and a condition variable: loom's stand-in for
    /// tokio's `Notify::notify_waiters` with `enable`d listeners.
    #[derive(Default)]
    pub(crate) struct Signal {
        generation: loom::sync::Mutex<u64>,
        changed: loom::sync::Condvar,
    }

    /// The generation seen when the listener was created.
    pub(crate) struct Listener<'a> {
        signal: &'a Signal,
        seen: u64,
    }

    impl Signal {
        pub(crate) fn listen(&self) -> Listener<'_> {
            let seen = *self.generation.lock().expect("not poisoned");
            Listener { signal: self, seen }
        }

        pub(crate) fn wake_all(&self) {
            *self.generation.lock().expect("not poisoned") += 1;
            self.changed.notify_all();
        }
    }

    impl Listener<'_> {
        /// Blocks the (loom) thread until the generation moves on.
        pub(crate) async fn wait(self) {
            let mut generation = self.signal.generation.lock().expect("not poisoned");
            while *generation == self.seen {
                generation = self.signal.changed.wait(generation).expect("not poisoned");
            }
        }
    }
}

use sync::{Mutex, Signal};

/// One plugin's state, call gate and dependency holds.
pub(crate) struct Gate {
    /// Guards: the plugin's lifecycle state, its in-flight call count, the
    /// dependents holding it up, the dependencies it holds, and its removed flag.
    ///
    /// A `parking_lot` mutex because every access is a few field reads or writes:
    /// it is locked only inside the synchronous methods of `Gate`, never held
    /// across `.await`, and no other lock is taken while it is held.
    cell: Mutex<Cell>,
    /// Wakes a shutdown waiting for the in-flight calls to drain. Not a lock.
    drained: Signal,
    /// Wakes the calls waiting for a reload to reopen the gate. Not a lock.
    reopened: Signal,
}

/// What the gate says to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Admitted and counted: end it with [`Gate::exit_call`].
    Admitted,
    /// A reload holds the gate: not counted; wait for the reopening and ask again.
    Held,
}

/// The mutable part of a [`Gate`], behind `Gate::cell`.
struct Cell {
    state: PluginState,
    /// Calls admitted by the gate and not yet finished.
    in_flight: usize,
    /// Dependents that hold this plugin up (they are initializing, active or
    /// shutting down); while any does, this plugin cannot leave `Active`.
    users: BTreeMap<Uuid, String>,
    /// The dependencies this plugin holds up while it is not idle.
    holds: Vec<Arc<Slot>>,
    /// Set once the plugin is unregistered; every later operation sees `NotFound`.
    removed: bool,
    /// Set while a reload swaps the plugin: calls wait instead of entering.
    held: bool,
}

impl Gate {
    /// A closed gate in state `Registered`.
    pub(crate) fn new() -> Self {
        Self {
            cell: Mutex::new(Cell {
                state: PluginState::Registered,
                in_flight: 0,
                users: BTreeMap::new(),
                holds: Vec::new(),
                removed: false,
                held: false,
            }),
            drained: Signal::default(),
            reopened: Signal::default(),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> PluginState {
        self.cell.lock().state.clone()
    }

    /// Whether the plugin has been unregistered.
    pub(crate) fn is_removed(&self) -> bool {
        self.cell.lock().removed
    }

    /// Writes `to` if the rules allow it and returns the previous state.
    ///
    /// The rules: the state machine ([`PluginState::can_become`]), and a plugin
    /// held up by dependents cannot shut down ([`Error::InUse`]), checked in
    /// the same critical section that closes the gate. A crash
    /// (`Active → Failed(Crashed)`) is not refused: the plugin is already gone,
    /// and the supervisor stops its dependents next. Only
    /// `Inner::transition` (`lifecycle.rs`) calls this: it also publishes the event.
    pub(crate) fn write_transition(&self, plugin: &str, to: PluginState) -> Result<PluginState> {
        let mut cell = self.cell.lock();
        if !cell.state.can_become(&to) {
            return Err(Error::InvalidTransition {
                plugin: plugin.to_owned(),
                from: cell.state.name().to_owned(),
                to: to.name().to_owned(),
            });
        }
        if to == PluginState::ShuttingDown && !cell.users.is_empty() {
            return Err(Error::InUse {
                plugin: plugin.to_owned(),
                dependents: sorted_names(&cell.users),
            });
        }
        Ok(std::mem::replace(&mut cell.state, to))
    }

    /// Records `dependent` as holding this plugin up, if this plugin is Active
    /// (and registered). Otherwise returns the state that prevents it.
    pub(crate) fn acquire_user(&self, dependent: Uuid, name: &str) -> Result<(), PluginState> {
        let mut cell = self.cell.lock();
        if cell.removed {
            return Err(PluginState::Unloaded);
        }
        if !cell.state.is_active() {
            return Err(cell.state.clone());
        }
        cell.users.insert(dependent, name.to_owned());
        Ok(())
    }

    /// Forgets `dependent` as a user.
    pub(crate) fn release_user(&self, dependent: Uuid) {
        self.cell.lock().users.remove(&dependent);
    }

    /// The names of the dependents currently holding this plugin up, sorted.
    pub(crate) fn users(&self) -> Vec<String> {
        sorted_names(&self.cell.lock().users)
    }

    /// The ids of the dependents currently holding this plugin up.
    pub(crate) fn user_ids(&self) -> Vec<Uuid> {
        self.cell.lock().users.keys().copied().collect()
    }

    /// Stores the dependencies this plugin now holds up.
    pub(crate) fn set_holds(&self, holds: Vec<Arc<Slot>>) {
        self.cell.lock().holds = holds;
    }

    /// Takes the dependencies this plugin holds up (to release them).
    pub(crate) fn take_holds(&self) -> Vec<Arc<Slot>> {
        std::mem::take(&mut self.cell.lock().holds)
    }

    /// Admits one call if the plugin is Active and its gate is not held by a
    /// reload, counting it in the same step. Every admitted call must be ended
    /// with [`Gate::exit_call`]; a held one is not counted.
    pub(crate) fn admit(&self, plugin: &str) -> Result<Admission> {
        let mut cell = self.cell.lock();
        cell.serving(plugin)?;
        if cell.held {
            return Ok(Admission::Held);
        }
        cell.in_flight += 1;
        Ok(Admission::Admitted)
    }

    /// Registers interest in the next reopening: a [`Gate::release_hold`] after
    /// this returns wakes the listener. Listen first, then [`Gate::admit`].
    pub(crate) fn listen_reopen(&self) -> sync::Listener<'_> {
        self.reopened.listen()
    }

    /// Holds the gate for a reload: new calls wait, admitted ones go on (drain
    /// them with [`Gate::drain_calls`]). Only while the plugin is Active and
    /// registered; refused with [`Error::ReloadInProgress`] if already held.
    pub(crate) fn hold(&self, plugin: &str) -> Result<()> {
        let mut cell = self.cell.lock();
        cell.serving(plugin)?;
        if cell.held {
            return Err(Error::ReloadInProgress {
                plugin: plugin.to_owned(),
            });
        }
        cell.held = true;
        Ok(())
    }

    /// Reopens a held gate and wakes every call waiting for it.
    pub(crate) fn release_hold(&self) {
        self.cell.lock().held = false;
        self.reopened.wake_all();
    }

    /// Ends one admitted call; the last one wakes a waiting shutdown.
    pub(crate) fn exit_call(&self) {
        let now_idle = {
            let mut cell = self.cell.lock();
            cell.in_flight -= 1;
            cell.in_flight == 0
        };
        if now_idle {
            self.drained.wake_all();
        }
    }

    /// Waits until no admitted call is running. Call after the gate is closed
    /// (state `ShuttingDown`), or new calls may keep arriving.
    pub(crate) async fn drain_calls(&self) {
        loop {
            // Listen before checking, so a wake-up between the check and the
            // wait is not lost.
            let listener = self.drained.listen();
            if self.cell.lock().in_flight == 0 {
                return;
            }
            listener.wait().await;
        }
    }

    /// Marks the plugin removed if it is idle and nobody holds it up; otherwise
    /// returns the error that prevents it.
    pub(crate) fn mark_removed(&self, plugin: &str) -> Result<()> {
        let mut cell = self.cell.lock();
        if !cell.users.is_empty() {
            return Err(Error::InUse {
                plugin: plugin.to_owned(),
                dependents: sorted_names(&cell.users),
            });
        }
        if !cell.state.is_idle() {
            return Err(Error::InvalidTransition {
                plugin: plugin.to_owned(),
                from: cell.state.name().to_owned(),
                to: "unregistered".to_owned(),
            });
        }
        cell.removed = true;
        Ok(())
    }
}

impl Cell {
    /// Ok while the plugin is registered and Active; else why it serves no call.
    fn serving(&self, plugin: &str) -> Result<()> {
        if self.removed {
            return Err(Error::NotFoundByName(plugin.to_owned()));
        }
        if !self.state.is_active() {
            // A crashed plugin refuses calls with its crash (or its restart limit).
            if let Some(crash) = self.state.crash() {
                return Err(crash.clone());
            }
            return Err(Error::NotActive {
                plugin: plugin.to_owned(),
                state: self.state.to_string(),
            });
        }
        Ok(())
    }
}

/// The names in a users map, sorted by name.
fn sorted_names(users: &BTreeMap<Uuid, String>) -> Vec<String> {
    let mut names: Vec<String> = users.values().cloned().collect();
    names.sort();
    names
}

#[cfg(all(test, not(plugbay_loom)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_admits_only_while_active_and_holds_refuse_a_shutdown() {
        let gate = Gate::new();
        assert!(matches!(gate.admit("p"), Err(Error::NotActive { .. })));
        gate.write_transition("p", PluginState::Initializing)
            .unwrap();
        gate.write_transition("p", PluginState::Active).unwrap();
        assert_eq!(gate.admit("p").unwrap(), Admission::Admitted);
        let dependent = Uuid::from_u128(7);
        gate.acquire_user(dependent, "d").unwrap();
        let refused = gate
            .write_transition("p", PluginState::ShuttingDown)
            .unwrap_err();
        assert!(
            matches!(&refused, Error::InUse { dependents, .. } if dependents == &["d"]),
            "{refused:?}"
        );
        assert!(
            gate.state().is_active(),
            "a refused transition writes nothing"
        );
        gate.release_user(dependent);
        assert_eq!(
            gate.write_transition("p", PluginState::ShuttingDown)
                .unwrap(),
            PluginState::Active
        );
        assert!(matches!(gate.admit("p"), Err(Error::NotActive { .. })));
        assert_eq!(
            gate.acquire_user(dependent, "d"),
            Err(PluginState::ShuttingDown)
        );
        // The admitted call is still running: the drain waits for it.
        let drain = gate.drain_calls();
        tokio::pin!(drain);
        assert!(futures::poll!(drain.as_mut()).is_pending());
        gate.exit_call();
        drain.await;
    }

    #[tokio::test]
    async fn a_held_gate_tells_calls_to_wait_and_the_release_wakes_them() {
        let gate = Gate::new();
        assert!(matches!(gate.hold("p"), Err(Error::NotActive { .. })));
        for to in [PluginState::Initializing, PluginState::Active] {
            gate.write_transition("p", to).unwrap();
        }
        assert_eq!(gate.admit("p"), Ok(Admission::Admitted));
        gate.hold("p").unwrap();
        let again = gate.hold("p");
        assert!(matches!(again, Err(Error::ReloadInProgress { .. })));
        let reopened = gate.listen_reopen();
        assert_eq!(gate.admit("p"), Ok(Admission::Held), "neither in nor out");
        let wait = reopened.wait();
        tokio::pin!(wait);
        assert!(futures::poll!(wait.as_mut()).is_pending());
        // The call admitted before the hold keeps the drain waiting.
        let drain = gate.drain_calls();
        tokio::pin!(drain);
        assert!(futures::poll!(drain.as_mut()).is_pending());
        gate.exit_call();
        drain.await;
        gate.release_hold();
        wait.await;
        assert_eq!(gate.admit("p"), Ok(Admission::Admitted));
    }
}

/// The loom model of the gate: `cargo xtask loom` runs it
/// (`RUSTFLAGS="--cfg plugbay_loom" cargo test --lib loom_model`).
#[cfg(all(test, plugbay_loom))]
mod loom_model {
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use loom::sync::Arc;
    use loom::thread;

    use super::*;

    /// A gate already Active (as after a successful initialize).
    fn active_gate() -> Gate {
        let gate = Gate::new();
        gate.write_transition("p", PluginState::Initializing)
            .expect("registered → initializing");
        gate.write_transition("p", PluginState::Active)
            .expect("initializing → active");
        gate
    }

    /// Two callers race a shutdown: the shutdown's drain always wakes (loom
    /// reports a deadlock for a lost wake-up), no call runs once the drain has
    /// returned, and no call is admitted after the gate closed.
    #[test]
    fn shutdown_waits_for_admitted_calls_and_admits_no_new_ones() {
        loom::model(|| {
            let gate = Arc::new(active_gate());
            let running = Arc::new(AtomicUsize::new(0));
            let drained = Arc::new(AtomicBool::new(false));
            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let (gate, running, drained) = (
                        Arc::clone(&gate),
                        Arc::clone(&running),
                        Arc::clone(&drained),
                    );
                    thread::spawn(move || {
                        if gate.admit("p") == Ok(Admission::Admitted) {
                            running.fetch_add(1, SeqCst);
                            assert!(
                                !drained.load(SeqCst),
                                "a call runs after the shutdown's drain returned"
                            );
                            running.fetch_sub(1, SeqCst);
                            gate.exit_call();
                        }
                    })
                })
                .collect();
            gate.write_transition("p", PluginState::ShuttingDown)
                .expect("no dependents: the gate closes");
            loom::future::block_on(gate.drain_calls());
            assert_eq!(running.load(SeqCst), 0, "the drain returned under a call");
            drained.store(true, SeqCst);
            assert!(gate.admit("p").is_err(), "admitted after shutdown began");
            for caller in callers {
                caller.join().expect("caller thread");
            }
        });
    }

    /// Two callers race a reload: the reload holds the gate, drains the calls
    /// already admitted, swaps (no call may run meanwhile) and reopens. Every
    /// caller that found the gate held waits and is admitted after the
    /// reopening (loom reports a deadlock for a lost wake-up); none is refused,
    /// and none runs during the swap.
    #[test]
    fn reload_holds_calls_and_admits_them_after_the_swap() {
        loom::model(|| {
            let gate = Arc::new(active_gate());
            let running = Arc::new(AtomicUsize::new(0));
            let swapping = Arc::new(AtomicBool::new(false));
            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let (gate, running, swapping) = (
                        Arc::clone(&gate),
                        Arc::clone(&running),
                        Arc::clone(&swapping),
                    );
                    thread::spawn(move || loop {
                        let reopened = gate.listen_reopen();
                        match gate.admit("p") {
                            Ok(Admission::Admitted) => {
                                running.fetch_add(1, SeqCst);
                                assert!(!swapping.load(SeqCst), "a call runs during the swap");
                                running.fetch_sub(1, SeqCst);
                                gate.exit_call();
                                return;
                            }
                            Ok(Admission::Held) => loom::future::block_on(reopened.wait()),
                            Err(e) => panic!("a call was refused during a reload: {e:?}"),
                        }
                    })
                })
                .collect();
            gate.hold("p").expect("an active gate can be held");
            loom::future::block_on(gate.drain_calls());
            swapping.store(true, SeqCst);
            assert_eq!(running.load(SeqCst), 0, "the drain returned under a call");
            assert_eq!(
                gate.admit("p"),
                Ok(Admission::Held),
                "admitted during the swap"
            );
            swapping.store(false, SeqCst);
            gate.release_hold();
            for caller in callers {
                caller.join().expect("caller thread");
            }
        });
    }

    /// A dependent starting races its dependency's shutdown: either the
    /// dependent holds the dependency (and the shutdown is refused with
    /// `InUse`) or the shutdown wins (and the hold is refused); the dependency
    /// is never seen leaving `Active` under a holder.
    #[test]
    fn dependency_never_stops_under_an_active_dependent() {
        loom::model(|| {
            let dependency = Arc::new(active_gate());
            let holding = Arc::new(AtomicBool::new(false));
            let dependent = {
                let (dependency, holding) = (Arc::clone(&dependency), Arc::clone(&holding));
                thread::spawn(move || {
                    let id = Uuid::from_u128(1);
                    if dependency.acquire_user(id, "dependent").is_ok() {
                        holding.store(true, SeqCst);
                        assert!(
                            dependency.state().is_active(),
                            "the dependency left Active under its dependent"
                        );
                        holding.store(false, SeqCst);
                        dependency.release_user(id);
                    }
                })
            };
            match dependency.write_transition("dep", PluginState::ShuttingDown) {
                Ok(_) => assert!(
                    !holding.load(SeqCst),
                    "shutdown began while a dependent held the dependency"
                ),
                Err(e) => assert!(matches!(e, Error::InUse { .. }), "{e:?}"),
            }
            dependent.join().expect("dependent thread");
        });
    }
}
