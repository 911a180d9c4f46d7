//! The host-side plugin trait: the stable surface for embedders.
//!
//! Native libraries are adapted to it by [`crate::ffi::FfiPlugin`]; applications
//! can implement it directly for in-process plugins (and tests do).

use async_trait::async_trait;
use plugbay_api::PluginError;
use serde_json::Value;

use crate::call_policy::CallPath;
use crate::context::PluginContext;
use crate::crash::CrashSignal;
use crate::info::PluginInfo;

/// A plugin as the manager drives it. All methods may be called from any task.
/// The manager serializes lifecycle calls per plugin: `initialize`, `shutdown`,
/// `load_state` and `save_state` (also a checkpoint by
/// [`crate::PluginManager::save_all_states`]) run one at a time, under the
/// plugin's lifecycle lock. `call` runs only while the plugin is Active and may
/// run concurrently with other calls and with a checkpoint's `save_state`.
///
/// A panic inside any method is caught by the manager and reported as
/// [`crate::Error::PluginPanicked`].
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// Name, version, dependencies, source. Must be cheap and constant.
    fn info(&self) -> &PluginInfo;

    /// Starts the plugin. `ctx` lets it call back into the host.
    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError>;

    /// Stops the plugin.
    async fn shutdown(&self, ctx: PluginContext) -> Result<(), PluginError>;

    /// The plugin's state to persist (`Value::Null`: nothing to save).
    async fn save_state(&self) -> Result<Value, PluginError>;

    /// Restores state saved earlier by `saved_by_version` of this plugin.
    async fn load_state(&self, state: Value, saved_by_version: &str) -> Result<(), PluginError>;

    /// Runs an operation the plugin exposes.
    async fn call(
        &self,
        ctx: PluginContext,
        method: &str,
        args: Value,
    ) -> Result<Value, PluginError>;

    /// [`Plugin::call`] with JSON text in and out, for callers that already hold
    /// JSON text. The default parses `args`, calls [`Plugin::call`] and serializes
    /// the result; a native plugin passes the text through, so it is encoded
    /// once each way instead of twice.
    async fn call_json(
        &self,
        ctx: PluginContext,
        method: &str,
        args: &str,
    ) -> Result<String, PluginError> {
        let args: Value = if args.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(args)
                .map_err(|e| PluginError::invalid_input(format!("invalid JSON args: {e}")))?
        };
        Ok(self.call(ctx, method, args).await?.to_string())
    }

    /// Where a native plugin's calls run ([`crate::CallMode`]) and how often
    /// they were sent back to the blocking pool; `None` for in-process plugins,
    /// whose calls always run on the caller's task.
    fn call_path(&self) -> Option<CallPath> {
        None
    }

    /// For a plugin that can die on its own (e.g. one running in another
    /// process): the signal that reports its death ([`crate::CrashSignal`]).
    /// The manager watches it while the plugin is Active. `None` (the default)
    /// for plugins that share the host's fate.
    fn crash_signal(&self) -> Option<CrashSignal> {
        None
    }
}
