//! Calls into Active plugins, from the embedder or from other plugins.

use std::sync::Arc;

use serde_json::Value;

use super::plugin_code::run_call;
use super::registry::Slot;
use super::Inner;
use crate::context::CallChain;
use crate::error::Result;

impl Inner {
    /// Calls `method` on `slot` on behalf of the plugins on `chain`.
    ///
    /// Takes no lifecycle lock: the call gate admits it only while the plugin is
    /// Active, and the plugin's shutdown waits for it. A plugin already on
    /// `chain` is refused ([`crate::Error::ReentrantCall`]).
    pub(crate) async fn call_slot(
        &self,
        slot: &Arc<Slot>,
        chain: CallChain,
        method: &str,
        args: Value,
    ) -> Result<Value> {
        let chain = chain.enter(&slot.name)?;
        let _admitted = slot.enter_call()?;
        let ctx = self.context(slot, chain);
        run_call(&slot.name, method, slot.plugin.call(ctx, method, args)).await
    }
}
