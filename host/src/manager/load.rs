//! Loading one plugin: the transition Registered/Unloaded/Failed → Initializing
//! → Active (or Failed).

use std::sync::Arc;

use tracing::Instrument;

use super::lifecycle::PluginState;
use super::plugin_code::{crash_mark, crashed_during, run_phase, Phase};
use super::reentry;
use super::registry::Slot;
use super::Inner;
use crate::context::CallChain;
use crate::error::{Error, Result};

/// The least time a phase gets, even when restoring state used up the deadline.
const MIN_PHASE: std::time::Duration = std::time::Duration::from_millis(1);

impl Inner {
    /// Brings `slot` to Active (see `PluginManager::load_plugin`).
    pub(crate) async fn load(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<()> {
        if slot.state().is_active() && !slot.is_removed() {
            return Ok(());
        }
        reentry::refuse(slot, PluginState::Active.name())?;
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
        // The load profile's phases (`plugin-host run --profile`): `resolve`
        // finds and holds this plugin's dependencies; `restore_state` and
        // `initialize` follow.
        let holds = tracing::debug_span!("resolve", plugin = %slot.name)
            .in_scope(|| self.hold_dependencies(slot))?;
        slot.gate.set_holds(holds);
        if let Err(e) = self.transition(slot, PluginState::Initializing) {
            self.release_holds(slot);
            return Err(e);
        }
        let started = tokio::time::Instant::now();
        let restored = self
            .restore_state(slot)
            .instrument(tracing::debug_span!("restore_state", plugin = %slot.name))
            .await;
        let outcome = match restored {
            Ok(()) => {
                let ctx = self.context(slot, slot.enter(&CallChain::default())?);
                let mark = crash_mark(&*slot.plugin);
                let work = reentry::entering(slot.id, slot.plugin.initialize(ctx));
                // Restoring and initializing share the init deadline.
                let left = self.config.init_timeout().saturating_sub(started.elapsed());
                run_phase(&slot.name, Phase::Initialize, left.max(MIN_PHASE), work)
                    .instrument(tracing::debug_span!("initialize", plugin = %slot.name))
                    .await
                    .map_err(|e| match e {
                        // Name the configured deadline, the one the user can raise.
                        Error::InitTimeout { plugin, .. } => Error::InitTimeout {
                            plugin,
                            after: self.config.init_timeout(),
                        },
                        // A plugin that died in initialize (its process) failed
                        // with its crash report.
                        other => crashed_during(&*slot.plugin, mark, other),
                    })
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                self.transition(slot, PluginState::Active)?;
                tracing::info!(plugin = %slot.name, "active");
                Ok(())
            }
            Err(cause) => {
                self.release_holds(slot);
                tracing::warn!(plugin = %slot.name, error = %cause, "initialize failed");
                self.transition(slot, PluginState::Failed(Box::new(cause.clone())))?;
                Err(cause)
            }
        }
    }
}
