//! Plugin state persistence around the lifecycle: restore before `initialize`,
//! save after a clean `shutdown`, and checkpoints of every Active plugin. Each
//! runs while the plugin's lifecycle lock is held, so a plugin's state is never
//! saved or restored while its `initialize` or `shutdown` runs.

use std::sync::Arc;

use super::registry::Slot;
use super::Inner;
use crate::error::{Error, Result};
use crate::state::SaveOutcome;

impl Inner {
    /// Restores `slot`'s saved state before it initializes (when a state dir is
    /// configured); the caller holds `slot.lifecycle`. A quarantined (corrupt)
    /// file is not an error: the plugin starts empty and the bytes stay on disk.
    /// Any other failure (unreadable file, the plugin refusing the state) fails
    /// the load, so the plugin never runs, and later overwrites its saved state,
    /// without it.
    pub(super) async fn restore_state(&self, slot: &Arc<Slot>) -> Result<()> {
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
    /// configured), within the shutdown deadline; the caller holds `slot.lifecycle`.
    pub(super) async fn persist_state(&self, slot: &Arc<Slot>) -> Result<()> {
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

    /// Saves the state of every Active plugin, concurrently, each under its
    /// lifecycle lock (see `PluginManager::save_all_states`).
    pub(super) async fn checkpoint(&self) -> Vec<(String, Result<SaveOutcome>)> {
        let Some(Ok(state)) = &self.state else {
            return Vec::new();
        };
        let saves = self
            .registry
            .snapshot()
            .into_iter()
            .filter(|slot| slot.state().is_active())
            .map(|slot| async move {
                // A held lock means an unload (whose shutdown saves the state
                // itself) or another checkpoint is under way. Never wait for
                // it: the caller may be that plugin's own call, which the
                // shutdown is draining.
                let _lifecycle = slot.lifecycle.try_lock().ok()?;
                if !slot.state().is_active() || slot.is_removed() {
                    return None;
                }
                Some((slot.name.clone(), state.save_state(&*slot.plugin).await))
            });
        futures::future::join_all(saves)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}
