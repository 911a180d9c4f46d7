//! Supervision: watching Active plugins that can die on their own, turning a
//! death into `Failed(Crashed)`, stopping the plugins that depend on it, and
//! restarting it by its [`RestartPolicy`] (then its dependents).
//!
//! - **Watch.** Entering `Active` ([`Inner::transition`]) spawns one watcher
//!   task per plugin that has a [`crate::CrashSignal`]; leaving `Active` ends
//!   it (its stop handle is dropped). No lock is held while it waits.
//! - **Crash.** Under the plugin's lifecycle lock, if the watched incarnation
//!   is still the current one: `Active → Failed(Crashed)` (the call gate
//!   closes, so new calls fail with that error; calls already inside are failed
//!   by the plugin itself), its dependency holds are released, the lifecycle
//!   event is published, and a restart is registered when the policy allows.
//! - **Dependents.** The plugins holding it up are stopped (shut down, state
//!   saved, dependents first) outside its lock; after a successful restart the
//!   ones stopped are started again. A plugin is Active only while its
//!   dependencies are.
//! - **Restart.** Backoff, then, under the lifecycle lock, a normal load
//!   (state restored, then `initialize`), unless an unload cancelled it. The
//!   limit of restarts within the window ends it with `Failed(RestartLimit)`.
//!
//! The bookkeeping and the protocol's loom model are in `supervise/book.rs`;
//! the policy in `supervise/policy.rs`; the events in `supervise/event.rs`.

mod book;
mod event;
mod policy;

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

pub use event::SupervisorEvent;
pub use policy::{RestartOnFailure, RestartPolicy};

use super::lifecycle::PluginState;
use super::registry::Slot;
use super::Inner;
use crate::crash::{CrashReport, CrashSignal};
use crate::error::Error;
use book::{Book, Ticket};

/// How many supervisor events a slow subscriber may lag behind.
const EVENT_CAPACITY: usize = 256;

/// The manager's supervisor: its records and its event channel.
pub(crate) struct Supervisor {
    /// The manager, for the watcher tasks (weak: they never keep it alive).
    inner: Weak<Inner>,
    /// Per-plugin records (its lock is documented on [`Book`]).
    book: Book,
    /// Supervisor events; `send` never blocks. Not a lock.
    events: broadcast::Sender<SupervisorEvent>,
}

impl Supervisor {
    pub(crate) fn new(inner: Weak<Inner>) -> Self {
        Self {
            inner,
            book: Book::default(),
            events: broadcast::channel(EVENT_CAPACITY).0,
        }
    }

    /// Receives every supervisor event from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.events.subscribe()
    }

    /// Called by `Inner::transition` after `slot` went from `from` to `to`,
    /// under its lifecycle lock: starts or ends the watch.
    pub(crate) fn on_transition(&self, slot: &Slot, from: &PluginState, to: &PluginState) {
        if to.is_active() {
            self.watch(slot);
        } else if from.is_active() {
            self.book.unwatch(slot.id);
        }
    }

    /// Starts watching `slot`'s new incarnation, if it can die on its own.
    fn watch(&self, slot: &Slot) {
        let Some(signal) = slot.plugin.crash_signal() else {
            // Shares the host's fate: never crashes on its own, never restarted.
            return;
        };
        let (stop, stopped) = oneshot::channel();
        let epoch = self.book.watch(slot.id, stop);
        let inner = self.inner.clone();
        let id = slot.id;
        tokio::spawn(async move {
            let Some(report) = wait_for_crash(signal, stopped).await else {
                return;
            };
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let Some(slot) = inner.registry.get(id) else {
                return;
            };
            inner.on_crash(&slot, epoch, report).await;
        });
    }

    /// Cancels a pending restart of `id`; returns whether the supervisor may
    /// still change its state (then the caller must take the lifecycle lock).
    /// The unload and unregister paths call it before looking at the state and
    /// again under the lifecycle lock (see `book.rs` for why both).
    pub(crate) fn cancel_restart(&self, id: Uuid) -> bool {
        self.book.cancel(id)
    }

    /// Forgets an unregistered plugin.
    pub(crate) fn forget(&self, id: Uuid) {
        self.book.forget(id);
    }

    fn emit(&self, bus: &crate::events::EventBus, event: SupervisorEvent) {
        tracing::info!(plugin = %event.plugin(), "{event}");
        let name = format!("plugbay.supervisor.{}", event.kind());
        // The names are fixed and valid, the payload small: nothing to report.
        let _ = bus.publish(crate::events::LIFECYCLE_SOURCE, &name, event.payload());
        let _ = self.events.send(event);
    }
}

/// Waits until the signal reports a death (`Some`), or the watch is stopped
/// (`None`), or the plugin dropped its side (`None`).
async fn wait_for_crash(
    mut signal: CrashSignal,
    stopped: oneshot::Receiver<()>,
) -> Option<CrashReport> {
    tokio::select! {
        crashed = signal.wait_for(Option::is_some) => crashed.ok().and_then(|r| r.clone()),
        _ = stopped => None,
    }
}

impl Inner {
    fn emit(&self, event: SupervisorEvent) {
        self.supervisor.emit(&self.bus, event);
    }

    /// Handles the crash of `slot`'s incarnation `epoch`.
    async fn on_crash(self: &Arc<Self>, slot: &Arc<Slot>, epoch: u64, report: CrashReport) {
        let policy = self.config.restart_policy(&slot.name).clone();
        let cause = Error::Crashed {
            plugin: slot.name.clone(),
            report: report.clone(),
        };
        let ticket = {
            let _lifecycle = slot.lifecycle.lock().await;
            if !self.supervisor.book.is_current(slot.id, epoch)
                || !slot.state().is_active()
                || slot.is_removed()
            {
                // Unloaded normally (or replaced) before the crash was seen.
                return;
            }
            tracing::warn!(plugin = %slot.name, %report, "crashed");
            // The restart is registered before the watch ends (in the
            // transition): an unload always finds one of them (book.rs).
            let ticket = match &policy {
                RestartPolicy::Never => None,
                RestartPolicy::OnFailure(_) => Some(self.supervisor.book.begin_restart(slot.id)),
            };
            if let Err(e) = self.transition(slot, PluginState::Failed(Box::new(cause.clone()))) {
                tracing::error!(plugin = %slot.name, error = %e, "cannot record the crash");
                if let Some(ticket) = &ticket {
                    self.supervisor.book.end_restart(slot.id, ticket.id);
                }
                return;
            }
            self.release_holds(slot);
            self.emit(SupervisorEvent::Crashed {
                plugin: slot.name.clone(),
                report,
            });
            ticket
        };
        let stopped = self.stop_dependents(slot).await;
        if let (Some(ticket), RestartPolicy::OnFailure(policy)) = (ticket, policy) {
            self.restart(slot, &policy, ticket, cause, stopped).await;
        }
    }

    /// Stops every plugin holding `slot` up (transitively, dependents first)
    /// and returns those now stopped.
    async fn stop_dependents(self: &Arc<Self>, slot: &Arc<Slot>) -> Vec<Arc<Slot>> {
        let direct = slot.user_ids();
        if direct.is_empty() {
            return Vec::new();
        }
        // Everyone above `slot`, collected before anything stops.
        let mut seen: BTreeSet<Uuid> = BTreeSet::new();
        let mut queue: VecDeque<Uuid> = direct.iter().copied().collect();
        let mut above = Vec::new();
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            if let Some(s) = self.registry.get(id) {
                queue.extend(s.user_ids());
                above.push(s);
            }
        }
        let stops = direct
            .into_iter()
            .filter_map(|id| self.registry.get(id))
            .map(|d| Arc::clone(self).unload_cascade(d));
        for result in futures::future::join_all(stops).await {
            if let Err(e) = result {
                tracing::warn!(plugin = %slot.name, error = %e, "stopping a dependent failed");
            }
        }
        let stopped: Vec<Arc<Slot>> = above
            .into_iter()
            .filter(|s| s.state() == PluginState::Unloaded)
            .collect();
        if !stopped.is_empty() {
            self.emit(SupervisorEvent::DependentsStopped {
                plugin: slot.name.clone(),
                dependents: sorted_names(&stopped),
            });
        }
        stopped
    }

    /// Restarts `slot` by `policy` until it is Active, cancelled, or the limit
    /// is reached; then starts the `stopped` dependents again.
    async fn restart(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        policy: &RestartOnFailure,
        ticket: Ticket,
        mut last: Error,
        stopped: Vec<Arc<Slot>>,
    ) {
        let book = &self.supervisor.book;
        loop {
            let attempt = match book.next_attempt(slot.id, policy, Instant::now()) {
                Ok(attempt) => attempt,
                Err(restarts) => {
                    self.give_up(slot, policy, &ticket, restarts, last).await;
                    return;
                }
            };
            self.emit(SupervisorEvent::Restarting {
                plugin: slot.name.clone(),
                attempt: attempt.number,
                limit: policy.limit,
                window: policy.window,
                delay: attempt.delay,
            });
            tokio::select! {
                () = tokio::time::sleep(attempt.delay) => {}
                () = ticket.cancelled.notified() => {}
            }
            let outcome = {
                let lifecycle = slot.lifecycle.lock().await;
                if !book.may_restart(slot.id, ticket.id)
                    || slot.is_removed()
                    || !slot.state().is_idle()
                {
                    book.end_restart(slot.id, ticket.id);
                    drop(lifecycle);
                    self.emit(SupervisorEvent::RestartCancelled {
                        plugin: slot.name.clone(),
                    });
                    return;
                }
                let loaded = self.load_locked(slot).await;
                drop(lifecycle);
                loaded
            };
            match outcome {
                Ok(()) => {
                    self.emit(SupervisorEvent::Restarted {
                        plugin: slot.name.clone(),
                        attempt: attempt.number,
                    });
                    self.start_dependents(slot, stopped).await;
                    return;
                }
                Err(error) => {
                    self.emit(SupervisorEvent::RestartFailed {
                        plugin: slot.name.clone(),
                        attempt: attempt.number,
                        error: error.clone(),
                    });
                    last = error;
                }
            }
        }
    }

    /// The limit is reached: `Failed(RestartLimit)`, unless the restart was
    /// cancelled meanwhile.
    async fn give_up(
        &self,
        slot: &Arc<Slot>,
        policy: &RestartOnFailure,
        ticket: &Ticket,
        restarts: u32,
        last: Error,
    ) {
        let book = &self.supervisor.book;
        let lifecycle = slot.lifecycle.lock().await;
        let pending = book.may_restart(slot.id, ticket.id);
        book.end_restart(slot.id, ticket.id);
        if !pending || slot.is_removed() || !slot.state().is_idle() {
            drop(lifecycle);
            self.emit(SupervisorEvent::RestartCancelled {
                plugin: slot.name.clone(),
            });
            return;
        }
        let cause = Error::RestartLimit {
            plugin: slot.name.clone(),
            restarts,
            window: policy.window,
            last: Box::new(last),
        };
        // Failed → Failed: always allowed.
        let _ = self.transition(slot, PluginState::Failed(Box::new(cause)));
        drop(lifecycle);
        self.emit(SupervisorEvent::GaveUp {
            plugin: slot.name.clone(),
            restarts,
            window: policy.window,
        });
    }

    /// Starts again the dependents stopped when `slot` went down (those still
    /// registered and stopped), dependencies first.
    async fn start_dependents(self: &Arc<Self>, slot: &Arc<Slot>, stopped: Vec<Arc<Slot>>) {
        let targets: Vec<Uuid> = stopped
            .iter()
            .filter(|s| !s.is_removed() && s.state() == PluginState::Unloaded)
            .map(|s| s.id)
            .collect();
        if targets.is_empty() {
            return;
        }
        let plan = self.plan();
        let mut results = self.start(&plan, &targets).await;
        let (mut started, mut failed) = (Vec::new(), Vec::new());
        for s in &stopped {
            match results.remove(&s.id) {
                Some(Ok(())) => started.push(s.name.clone()),
                Some(Err(e)) => failed.push((s.name.clone(), e)),
                None => {}
            }
        }
        started.sort();
        failed.sort_by(|a, b| a.0.cmp(&b.0));
        self.emit(SupervisorEvent::DependentsStarted {
            plugin: slot.name.clone(),
            started,
            failed,
        });
    }
}

fn sorted_names(slots: &[Arc<Slot>]) -> Vec<String> {
    let mut names: Vec<String> = slots.iter().map(|s| s.name.clone()).collect();
    names.sort();
    names
}
