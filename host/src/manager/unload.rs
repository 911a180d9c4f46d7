//! Unloading one plugin (Active → ShuttingDown → Unloaded or Failed) and
//! unregistering it.

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};

use super::lifecycle::PluginState;
use super::plugin_code::{run_phase, Phase};
use super::reentry;
use super::registry::Slot;
use super::Inner;
use crate::context::CallChain;
use crate::error::{Error, Result};

impl Inner {
    /// Shuts `slot` down (see `PluginManager::unload_plugin`).
    pub(crate) async fn unload(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<()> {
        // A pending restart is cancelled first. While the supervisor may still
        // change the state (a crash being recorded, a restart starting the
        // plugin), the lock is always taken (protocol: supervise/book.rs).
        let supervised = self.supervisor.cancel_restart(slot.id);
        if !supervised && slot.state().is_idle() {
            return if slot.is_removed() {
                Err(Error::NotFound(slot.id))
            } else {
                Ok(())
            };
        }
        reentry::refuse(slot, PluginState::Unloaded.name())?;
        let _lifecycle = slot.lifecycle.lock().await;
        self.supervisor.cancel_restart(slot.id);
        if slot.is_removed() {
            return Err(Error::NotFound(slot.id));
        }
        self.unload_locked(slot).await
    }

    /// Shuts `slot` down if it is Active; the caller holds `slot.lifecycle`.
    pub(crate) async fn unload_locked(&self, slot: &Arc<Slot>) -> Result<()> {
        if slot.state().is_idle() {
            // Only the lifecycle lock's holder changes the state: still idle.
            return Ok(());
        }
        // Closes the call gate, or refuses with `InUse` while dependents hold
        // the plugin up (checked in the same step).
        self.transition(slot, PluginState::ShuttingDown)?;
        let ctx = self.context(slot, slot.enter(&CallChain::default())?);
        let work = reentry::entering(slot.id, async {
            // The gate is closed; let the calls already inside finish first.
            slot.gate.drain_calls().await;
            slot.plugin.shutdown(ctx).await
        });
        let mut outcome = run_phase(
            &slot.name,
            Phase::Shutdown,
            self.config.shutdown_timeout(),
            work,
        )
        .await;
        if outcome.is_ok() {
            // The final state, after the plugin stopped. A plugin whose shutdown
            // failed or timed out is not asked (it may be stuck or inconsistent);
            // its previous state file stays as it was.
            outcome = self.persist_state(slot).await;
        }
        self.release_holds(slot);
        match outcome {
            Ok(()) => {
                self.transition(slot, PluginState::Unloaded)?;
                tracing::info!(plugin = %slot.name, "unloaded");
                Ok(())
            }
            Err(cause) => {
                tracing::warn!(plugin = %slot.name, error = %cause, "shutdown failed");
                self.transition(slot, PluginState::Failed(Box::new(cause.clone())))?;
                Err(cause)
            }
        }
    }

    /// Unloads the plugins holding `slot` up (recursively, independent ones in
    /// parallel), then `slot`. If a dependent comes back up meanwhile (someone
    /// loaded it again), goes around again, a few times, before giving up with
    /// `InUse`. Returns the first error of a dependent's shutdown even when
    /// `slot` itself ended Unloaded (that dependent is Failed; see its state).
    pub(crate) fn unload_cascade(
        self: Arc<Self>,
        slot: Arc<Slot>,
    ) -> BoxFuture<'static, Result<()>> {
        async move {
            const ROUNDS: usize = 8;
            let mut first_error = None;
            for _ in 0..ROUNDS {
                let dependents: Vec<_> = slot
                    .user_ids()
                    .into_iter()
                    .filter_map(|id| self.registry.get(id))
                    .map(|d| Arc::clone(&self).unload_cascade(d))
                    .collect();
                for result in futures::future::join_all(dependents).await {
                    match result {
                        Ok(()) | Err(Error::InUse { .. }) => {}
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                match self.unload(&slot).await {
                    Err(Error::InUse { .. }) => continue,
                    Err(e) => return Err(e),
                    Ok(()) => return first_error.map_or(Ok(()), Err),
                }
            }
            self.unload(&slot).await
        }
        .boxed()
    }

    /// Shuts `slot` down if needed and removes it from the registry.
    pub(crate) async fn unregister(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<()> {
        reentry::refuse(slot, "unregistered")?;
        let _lifecycle = slot.lifecycle.lock().await;
        self.supervisor.cancel_restart(slot.id);
        if slot.is_removed() {
            return Err(Error::NotFound(slot.id));
        }
        self.unload_locked(slot).await?;
        slot.gate.mark_removed(&slot.name)?;
        self.registry.remove(slot.id);
        self.supervisor.forget(slot.id);
        tracing::info!(plugin = %slot.name, "unregistered");
        Ok(())
    }
}
