//! Loading one plugin: the transition Registered/Unloaded/Failed → Initializing
//! → Active (or Failed).

use std::sync::Arc;

use super::guard::{run_phase, Phase};
use super::lifecycle::PluginState;
use super::path;
use super::registry::Slot;
use super::Inner;
use crate::context::CallChain;
use crate::error::{Error, Result};

/// The least time a phase gets, even when restoring state used up the deadline.
const MIN_PHASE: std::time::Duration = std::time::Duration::from_millis(1);

impl Inner {
    /// Restores `slot`'s saved state before it initializes (when a state dir is
    /// configured). A quarantined (corrupt) file is not an error: the plugin starts
    /// empty and the bytes stay on disk. Any other failure (unreadable file, the
    /// plugin refusing the state) fails the load, so the plugin never runs, and
    /// later overwrites its saved state, without it.
    async fn restore_state(&self, slot: &Arc<Slot>) -> Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let state = state.as_ref().map_err(Clone::clone)?;
        let restore = state.load_state(&*slot.plugin);
        match tokio::time::timeout(self.config.init_timeout(), restore).await {
            Err(_) => Err(Error::InitTimeout {
                plugin: slot.name.clone(),
                after: self.config.init_timeout(),
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(outcome)) => {
                tracing::debug!(plugin = %slot.name, ?outcome, "state restored");
                Ok(())
            }
        }
    }

    /// Saves `slot`'s final state after a clean shutdown (when a state dir is
    /// configured), within the shutdown deadline.
    pub(crate) async fn persist_state(&self, slot: &Arc<Slot>) -> Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let state = state.as_ref().map_err(Clone::clone)?;
        let save = state.save_state(&*slot.plugin);
        match tokio::time::timeout(self.config.shutdown_timeout(), save).await {
            Err(_) => Err(Error::ShutdownTimeout {
                plugin: slot.name.clone(),
                after: self.config.shutdown_timeout(),
            }),
            Ok(result) => result.map(|outcome| {
                tracing::debug!(plugin = %slot.name, ?outcome, "state saved");
            }),
        }
    }

    /// Refuses a lifecycle request on `slot` from code running inside its own
    /// lifecycle phase (its lock is held further up: waiting would never end).
    pub(crate) fn refuse_reentry(&self, slot: &Slot, requested: &str) -> Result<()> {
        if path::contains(slot.id) {
            return Err(Error::InvalidTransition {
                plugin: slot.name.clone(),
                from: slot.state().name().to_owned(),
                to: requested.to_owned(),
            });
        }
        Ok(())
    }

    /// Brings `slot` to Active (see `PluginManager::load_plugin`).
    pub(crate) async fn load(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<()> {
        if slot.state().is_active() && !slot.is_removed() {
            return Ok(());
        }
        self.refuse_reentry(slot, PluginState::Active.name())?;
        let _lifecycle = slot.lifecycle.lock().await;
        self.load_locked(slot).await
    }

    /// The body of [`Inner::load`]; the caller holds `slot.lifecycle`.
    pub(crate) async fn load_locked(&self, slot: &Arc<Slot>) -> Result<()> {
        if slot.is_removed() {
            return Err(Error::NotFound(slot.id));
        }
        if slot.state().is_active() {
            return Ok(());
        }
        let holds = self.hold_dependencies(slot)?;
        slot.set_holds(holds);
        if let Err(e) = self.set_state(slot, PluginState::Initializing) {
            self.release_holds(slot);
            return Err(e);
        }
        let started = tokio::time::Instant::now();
        let outcome = match self.restore_state(slot).await {
            Ok(()) => {
                let ctx = self.context(slot, CallChain::default().enter(&slot.name)?);
                let work = path::entering(slot.id, slot.plugin.initialize(ctx));
                // Restoring and initializing share the init deadline.
                let left = self.config.init_timeout().saturating_sub(started.elapsed());
                run_phase(&slot.name, Phase::Initialize, left.max(MIN_PHASE), work)
                    .await
                    .map_err(|e| match e {
                        // Name the configured deadline, the one the user can raise.
                        Error::InitTimeout { plugin, .. } => Error::InitTimeout {
                            plugin,
                            after: self.config.init_timeout(),
                        },
                        other => other,
                    })
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                self.set_state(slot, PluginState::Active)?;
                tracing::info!(plugin = %slot.name, "active");
                Ok(())
            }
            Err(cause) => {
                self.release_holds(slot);
                tracing::warn!(plugin = %slot.name, error = %cause, "initialize failed");
                self.set_state(slot, PluginState::Failed(Box::new(cause.clone())))?;
                Err(cause)
            }
        }
    }
}
