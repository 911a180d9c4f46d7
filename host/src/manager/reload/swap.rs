//! A reload's swap, under the plugin's lifecycle lock with its call gate
//! held: drain, save, shutdown, install, restore, initialize, and the rollback.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use plugbay_api::{panic_message, ErrorKind, PluginError};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::ReloadStep;
use crate::context::{CallChain, PluginContext};
use crate::error::{Error, Result};
use crate::manager::lifecycle::PluginState;
use crate::manager::registry::Slot;
use crate::manager::{reentry, Inner};
use crate::plugin::Plugin;

impl Inner {
    /// The swap under the lifecycle lock. Returns whether the plugin was Active
    /// and how long its calls were held.
    pub(super) async fn swap(
        &self,
        slot: &Arc<Slot>,
        old: Arc<dyn Plugin>,
        new: Arc<dyn Plugin>,
        image: Option<String>,
    ) -> Result<(bool, Duration)> {
        let _lifecycle = slot.lifecycle.lock().await;
        self.refuse_during_unload_all(slot)?;
        if slot.is_removed() {
            return Err(Error::NotFound(slot.id));
        }
        if !Arc::ptr_eq(slot.plugin.current(), &old) {
            // Only a reload swaps, and reloads of one plugin never overlap.
            return Err(Error::ReloadInProgress {
                plugin: slot.name.clone(),
            });
        }
        if slot.state().is_idle() {
            slot.plugin.install(new, image);
            return Ok((false, Duration::ZERO));
        }
        let breaking = self.breaking_dependents(slot, &new.info().version);
        if !breaking.is_empty() {
            // A dependent started since the check.
            return Err(self.breaks(slot, &new.info().version, &breaking));
        }
        let held_at = Instant::now();
        slot.gate.hold(&slot.name)?;
        let swap = ActiveSwap {
            inner: self,
            slot,
            old_index: slot.plugin.current_index(),
            old_version: old.info().version.to_string(),
            deadline: held_at + self.config.reload_timeout(),
        };
        let result = swap.run(&old, new, image).await;
        slot.gate.release_hold();
        result.map(|()| (true, held_at.elapsed()))
    }
}

/// One swap of an Active plugin; the lifecycle lock is held and the gate too.
struct ActiveSwap<'a> {
    inner: &'a Inner,
    slot: &'a Arc<Slot>,
    old_index: usize,
    old_version: String,
    deadline: Instant,
}

impl ActiveSwap<'_> {
    fn failed(&self, step: ReloadStep, cause: Error) -> Error {
        Error::ReloadFailed {
            plugin: self.slot.name.clone(),
            step,
            cause: Box::new(cause),
            running: self.old_version.clone(),
        }
    }

    async fn run(
        &self,
        old: &Arc<dyn Plugin>,
        new: Arc<dyn Plugin>,
        image: Option<String>,
    ) -> Result<()> {
        let slot = self.slot;
        if tokio::time::timeout_at(self.deadline, slot.gate.drain_calls())
            .await
            .is_err()
        {
            return Err(self.failed(ReloadStep::Drain, self.timeout()));
        }
        // Until the old version stopped, failing leaves it running: nothing to undo.
        let saved = self
            .plugin_step(ReloadStep::SaveState, self.deadline, old.save_state())
            .await
            .map_err(|e| self.failed(ReloadStep::SaveState, e))?;
        let ctx = self.context()?;
        let shutdown = reentry::entering(slot.id, old.shutdown(ctx));
        let stopped = self
            .plugin_step(ReloadStep::Shutdown, self.deadline, shutdown)
            .await;
        // The old incarnation's end is no crash: the supervisor stops watching it.
        self.supervise(false);
        if let Err(e) = stopped {
            return self.roll_back(old, ReloadStep::Shutdown, e, &saved).await;
        }
        // The old version's event subscriptions end with it.
        self.inner.bus.unsubscribe_plugin(&slot.name);
        let old_holds = slot.gate.take_holds();
        slot.plugin.install(Arc::clone(&new), image);
        let new_holds = match self.inner.hold_dependencies(slot) {
            Ok(holds) => holds,
            Err(e) => {
                slot.gate.set_holds(old_holds);
                return self
                    .roll_back(old, ReloadStep::Dependencies, e, &saved)
                    .await;
            }
        };
        let started = self
            .plugin_step(
                ReloadStep::LoadState,
                self.deadline,
                new.load_state(saved.clone(), &self.old_version),
            )
            .await
            .map_err(|e| (ReloadStep::LoadState, e));
        let started = match started {
            Ok(()) => {
                let ctx = self.context()?;
                let init = reentry::entering(slot.id, new.initialize(ctx));
                self.plugin_step(ReloadStep::Initialize, self.deadline, init)
                    .await
                    .map_err(|e| (ReloadStep::Initialize, e))
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(()) => {
                release_dropped(slot, &old_holds, &new_holds);
                slot.gate.set_holds(new_holds);
                self.supervise(true);
                Ok(())
            }
            Err((step, e)) => {
                release_dropped(slot, &new_holds, &old_holds);
                slot.gate.set_holds(old_holds);
                // Whatever the new version subscribed to ends with it.
                self.inner.bus.unsubscribe_plugin(&slot.name);
                self.roll_back(old, step, e, &saved).await
            }
        }
    }

    /// Puts the old version back with the state it saved and initializes it.
    async fn roll_back(
        &self,
        old: &Arc<dyn Plugin>,
        step: ReloadStep,
        cause: Error,
        saved: &Value,
    ) -> Result<()> {
        let slot = self.slot;
        slot.plugin.switch_to(self.old_index);
        let deadline = Instant::now() + self.inner.config.reload_timeout();
        let restored = async {
            self.plugin_step(
                ReloadStep::LoadState,
                deadline,
                old.load_state(saved.clone(), &self.old_version),
            )
            .await?;
            let ctx = self.context()?;
            let init = reentry::entering(slot.id, old.initialize(ctx));
            self.plugin_step(ReloadStep::Initialize, deadline, init)
                .await
        }
        .await;
        match restored {
            Ok(()) => {
                self.supervise(true);
                Err(self.failed(step, cause))
            }
            Err(rollback) => {
                let error = Error::ReloadRollbackFailed {
                    plugin: slot.name.clone(),
                    step,
                    cause: Box::new(cause),
                    version: self.old_version.clone(),
                    rollback: Box::new(rollback),
                };
                self.inner.release_holds(slot);
                self.inner.bus.unsubscribe_plugin(&slot.name);
                self.inner
                    .transition(slot, PluginState::Failed(Box::new(error.clone())))?;
                Err(error)
            }
        }
    }

    /// Starts (`true`) or ends the supervisor's watch of the current
    /// incarnation, as entering or leaving `Active` would.
    fn supervise(&self, watch: bool) {
        let (active, other) = (PluginState::Active, PluginState::Initializing);
        let (from, to) = if watch {
            (&other, &active)
        } else {
            (&active, &other)
        };
        self.inner.supervisor.on_transition(self.slot, from, to);
    }

    fn context(&self) -> Result<PluginContext> {
        let chain = self.slot.enter(&CallChain::default())?;
        Ok(self.inner.context(self.slot, chain))
    }

    fn timeout(&self) -> Error {
        Error::ReloadTimeout {
            plugin: self.slot.name.clone(),
            after: self.inner.config.reload_timeout(),
        }
    }

    /// Runs one step's plugin code before `deadline`, catching panics.
    async fn plugin_step<T>(
        &self,
        step: ReloadStep,
        deadline: Instant,
        work: impl Future<Output = std::result::Result<T, PluginError>>,
    ) -> Result<T> {
        let plugin = self.slot.name.clone();
        let guarded = AssertUnwindSafe(work).catch_unwind();
        match tokio::time::timeout_at(deadline, guarded).await {
            Err(_) => Err(self.timeout()),
            Ok(Err(payload)) => Err(Error::PluginPanicked {
                plugin,
                operation: step.to_string(),
                message: panic_message(&*payload),
            }),
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) if e.kind == ErrorKind::Panicked => Err(Error::PluginPanicked {
                plugin,
                operation: step.to_string(),
                message: e.message().to_owned(),
            }),
            Ok(Ok(Err(e))) => Err(Error::PluginFailed {
                plugin,
                operation: step.to_string(),
                kind: e.kind,
                reason: e.message().to_owned(),
            }),
        }
    }
}

/// Releases `slot`'s hold on each plugin in `before` that is not in `after`.
fn release_dropped(slot: &Slot, before: &[Arc<Slot>], after: &[Arc<Slot>]) {
    let kept: BTreeSet<Uuid> = after.iter().map(|d| d.id).collect();
    for d in before.iter().filter(|d| !kept.contains(&d.id)) {
        d.gate.release_user(slot.id);
    }
}
