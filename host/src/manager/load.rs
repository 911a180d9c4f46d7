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

impl Inner {
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
        let ctx = self.context(slot, CallChain::default().enter(&slot.name)?);
        let work = path::entering(slot.id, slot.plugin.initialize(ctx));
        let outcome = run_phase(
            &slot.name,
            Phase::Initialize,
            self.config.init_timeout(),
            work,
        )
        .await;
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
