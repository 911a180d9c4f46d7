//! Calls into Active plugins, from the embedder or from other plugins.
//!
//! Every call goes through [`Inner::call_slot`] (JSON values) or
//! [`Inner::call_slot_json`] (JSON text): the call chain is entered once there
//! (refusing re-entry), the call gate admits it while the plugin is Active, and
//! the plugin's code runs with panics caught. Where a native plugin's code runs
//! (inline or on the blocking pool) is the plugin's business: see
//! [`crate::CallMode`].

use std::sync::Arc;

use serde_json::Value;

use super::plugin_code::{crashed_or, run_call};
use super::registry::Slot;
use super::{Inner, PluginManager, Target};
use crate::call_policy::CallPath;
use crate::context::CallChain;
use crate::error::Result;

impl Inner {
    /// Calls `method` on `slot` on behalf of the plugins on `chain` (the caller's
    /// chain; empty for the embedder).
    ///
    /// Takes no lifecycle lock: the call gate admits it only while the plugin is
    /// Active, and the plugin's shutdown waits for it. While a reload swaps the
    /// plugin the call waits (at most the reload timeout) and then runs in the
    /// new (or, after a rollback, the old) version. A plugin already on
    /// `chain` is refused ([`crate::Error::ReentrantCall`]).
    pub(crate) async fn call_slot(
        &self,
        slot: &Arc<Slot>,
        chain: CallChain,
        method: &str,
        args: Value,
    ) -> Result<Value> {
        let chain = slot.enter(&chain)?;
        let _admitted = slot.enter_call(self.config.reload_timeout()).await?;
        let ctx = self.context(slot, chain);
        run_call(&slot.name, method, slot.plugin.call(ctx, method, args))
            .await
            .map_err(|e| crashed_or(&*slot.plugin, e))
    }

    /// [`Inner::call_slot`] with JSON text in and out.
    pub(crate) async fn call_slot_json(
        &self,
        slot: &Arc<Slot>,
        chain: CallChain,
        method: &str,
        args: &str,
    ) -> Result<String> {
        let chain = slot.enter(&chain)?;
        let _admitted = slot.enter_call(self.config.reload_timeout()).await?;
        let ctx = self.context(slot, chain);
        run_call(&slot.name, method, slot.plugin.call_json(ctx, method, args))
            .await
            .map_err(|e| crashed_or(&*slot.plugin, e))
    }
}

impl PluginManager {
    /// [`PluginManager::call`] for callers that hold JSON text: `args` is JSON
    /// text (empty means `null`) and so is the result. A native plugin gets the
    /// text as it is and its answer comes back as it wrote it (checked to be
    /// JSON), so nothing is parsed and re-encoded on the host side.
    pub async fn call_json(
        &self,
        target: impl Into<Target>,
        method: &str,
        args: &str,
    ) -> Result<String> {
        let slot = self.inner.slot_of(&target.into())?;
        self.inner
            .call_slot_json(&slot, CallChain::default(), method, args)
            .await
    }

    /// Where the calls of a native plugin run now (inline or on the blocking
    /// pool) and how often an overstaying inline call sent it back to the pool;
    /// `None` for an in-process plugin. See [`crate::CallMode`] for the policy.
    pub fn call_path(&self, target: impl Into<Target>) -> Result<Option<CallPath>> {
        Ok(self.inner.slot_of(&target.into())?.plugin.call_path())
    }
}
