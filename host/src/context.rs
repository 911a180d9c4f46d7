//! What plugin code gets to call back into the host, and the call chain that lets
//! the host refuse a re-entrant call instead of deadlocking.

use std::fmt;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use plugbay_api::LogLevel;
use serde_json::Value;

use crate::error::{Error, Result};

/// The plugins currently executing on one logical call path, outermost first.
/// `greeter.initialize -> hello.call` is the chain `[greeter, hello]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallChain(Arc<[String]>);

impl CallChain {
    /// The chain extended by `plugin`, or [`Error::ReentrantCall`] if `plugin`
    /// is already on it (entering it again would wait on itself).
    pub fn enter(&self, plugin: &str) -> Result<CallChain> {
        if self.0.iter().any(|p| p == plugin) {
            return Err(Error::ReentrantCall {
                plugin: plugin.to_owned(),
                chain: format!("{self} -> {plugin}"),
            });
        }
        // One allocation for the chain (the iterator's length is exact) plus
        // one per name.
        Ok(CallChain(
            self.0
                .iter()
                .cloned()
                .chain(std::iter::once(plugin.to_owned()))
                .collect(),
        ))
    }

    /// The chain holding just `plugin`: what [`CallChain::enter`] gives on an
    /// empty chain.
    pub(crate) fn alone(plugin: &str) -> CallChain {
        CallChain(Arc::from([plugin.to_owned()]))
    }

    /// Whether no plugin is on the chain (a call from outside any plugin).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The plugins on the chain, outermost first.
    pub fn plugins(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for CallChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" -> "))
    }
}

impl fmt::Debug for CallChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallChain[{self}]")
    }
}

/// What the host offers to plugin code. Implemented by the plugin manager.
#[async_trait]
pub trait HostServices: Send + Sync + 'static {
    /// The host application's name.
    fn host_name(&self) -> String;
    /// The host application's version.
    fn host_version(&self) -> String;
    /// The JSON configuration for `plugin` (`Value::Null` when none).
    fn config_for(&self, plugin: &str) -> Value;
    /// The lifecycle state of `plugin` in lower case, if registered.
    fn status_of(&self, plugin: &str) -> Option<String>;
    /// Calls `method` on `target` on behalf of the plugins on `chain` (the
    /// caller's chain, not yet entered by `target`). Implementations refuse a
    /// `target` already on `chain` with [`Error::ReentrantCall`].
    async fn call_from(
        &self,
        chain: CallChain,
        target: &str,
        method: &str,
        args: Value,
    ) -> Result<Value>;

    /// Publishes event `name` with the JSON text `payload_json` from `plugin`
    /// (see [`crate::EventBus`]). The default refuses: a host without events.
    fn publish_from(&self, plugin: &str, name: &str, payload_json: &str) -> Result<()> {
        let _ = (name, payload_json);
        Err(Error::EventsRefused {
            plugin: plugin.to_owned(),
            state: "on a host without events".to_owned(),
        })
    }

    /// Subscribes `plugin` to events matching `pattern` (see [`crate::EventBus`]).
    /// The default refuses: a host without events.
    fn subscribe_for(&self, plugin: &str, pattern: &str) -> Result<()> {
        let _ = pattern;
        Err(Error::EventsRefused {
            plugin: plugin.to_owned(),
            state: "on a host without events".to_owned(),
        })
    }

    /// The private data directory of `plugin`, created on first use. The
    /// default refuses with [`Error::DataDir`]: a host without data directories.
    fn data_dir_for(&self, plugin: &str) -> Result<std::path::PathBuf> {
        Err(Error::DataDir {
            plugin: plugin.to_owned(),
            path: std::path::PathBuf::new(),
            reason: "this host offers no data directories".to_owned(),
        })
    }
}

/// The handle plugin code uses to reach the host: who is calling (the chain) and a
/// weak reference to the host, so a plugin holding it never keeps the host alive.
#[derive(Clone)]
pub struct PluginContext {
    /// The plugin's name, kept only when it is not the chain's last entry
    /// (otherwise read from the chain: no copy of the name per call).
    plugin: Option<String>,
    chain: CallChain,
    host: Weak<dyn HostServices>,
}

impl PluginContext {
    /// A context for code of `plugin` running on `chain` (which ends with `plugin`).
    pub fn new(plugin: &str, chain: CallChain, host: Weak<dyn HostServices>) -> Self {
        let plugin =
            (chain.plugins().last().map(String::as_str) != Some(plugin)).then(|| plugin.to_owned());
        Self {
            plugin,
            chain,
            host,
        }
    }

    /// A context with no host behind it: every callback fails with a clear error.
    /// For driving a plugin outside a manager (tests, tools).
    pub fn detached(plugin: &str) -> Self {
        let host: Weak<dyn HostServices> = Weak::<Detached>::new();
        Self::new(
            plugin,
            CallChain::default().enter(plugin).unwrap_or_default(),
            host,
        )
    }

    /// The plugin this context belongs to.
    pub fn plugin_name(&self) -> &str {
        match &self.plugin {
            Some(name) => name,
            None => self.chain.plugins().last().map_or("", String::as_str),
        }
    }

    /// The call chain ending with this plugin.
    pub fn chain(&self) -> &CallChain {
        &self.chain
    }

    /// Whether a host stands behind this context (false when detached or the
    /// manager was dropped): then no host service is available.
    pub(crate) fn attached(&self) -> bool {
        self.host.upgrade().is_some()
    }

    /// The call chain ending with this plugin, taking the context apart.
    pub fn into_chain(self) -> CallChain {
        self.chain
    }

    pub(crate) fn host_weak(&self) -> Weak<dyn HostServices> {
        self.host.clone()
    }

    fn host(&self) -> Result<Arc<dyn HostServices>> {
        self.host.upgrade().ok_or_else(|| Error::NotActive {
            plugin: self.plugin_name().to_owned(),
            state: "detached from its host (the manager was dropped)".to_owned(),
        })
    }

    /// Logs through the host's `tracing` under the target `plugin`, with the
    /// plugin's name as a field (`RUST_LOG=plugin=debug` shows plugins' debug output).
    pub fn log(&self, level: LogLevel, message: &str) {
        let plugin = self.plugin_name();
        match level {
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
        }
    }

    /// The host's name (empty when detached).
    pub fn host_name(&self) -> String {
        self.host().map(|h| h.host_name()).unwrap_or_default()
    }

    /// The host's version (empty when detached).
    pub fn host_version(&self) -> String {
        self.host().map(|h| h.host_version()).unwrap_or_default()
    }

    /// This plugin's configuration.
    pub fn config(&self) -> Value {
        self.host()
            .map(|h| h.config_for(self.plugin_name()))
            .unwrap_or(Value::Null)
    }

    /// Another plugin's lifecycle state, in lower case.
    pub fn status_of(&self, plugin: &str) -> Option<String> {
        self.host().ok()?.status_of(plugin)
    }

    /// Publishes event `name` with JSON text `payload_json` from this plugin.
    pub fn publish(&self, name: &str, payload_json: &str) -> Result<()> {
        self.host()?
            .publish_from(self.plugin_name(), name, payload_json)
    }

    /// Subscribes this plugin to events matching `pattern`.
    pub fn subscribe(&self, pattern: &str) -> Result<()> {
        self.host()?.subscribe_for(self.plugin_name(), pattern)
    }

    /// This plugin's private data directory, created by the host on first use
    /// (see [`crate::ManagerConfigBuilder::data_root`]).
    pub fn data_dir(&self) -> Result<std::path::PathBuf> {
        self.host()?.data_dir_for(self.plugin_name())
    }

    /// Calls `method` on `target` through the host. Refused with
    /// [`Error::ReentrantCall`] if `target` is already on this call chain (the
    /// host checks it, once, where it admits the call).
    pub async fn call(&self, target: &str, method: &str, args: Value) -> Result<Value> {
        let host = self.host()?;
        host.call_from(self.chain.clone(), target, method, args)
            .await
    }
}

impl fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugin", &self.plugin_name())
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// Never instantiated; only gives [`PluginContext::detached`] a type for its empty `Weak`.
struct Detached;

#[async_trait]
impl HostServices for Detached {
    fn host_name(&self) -> String {
        String::new()
    }
    fn host_version(&self) -> String {
        String::new()
    }
    fn config_for(&self, _: &str) -> Value {
        Value::Null
    }
    fn status_of(&self, _: &str) -> Option<String> {
        None
    }
    async fn call_from(&self, _: CallChain, target: &str, _: &str, _: Value) -> Result<Value> {
        Err(Error::NotFoundByName(target.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_refuses_reentry() {
        let chain = CallChain::default().enter("a").unwrap().enter("b").unwrap();
        assert_eq!(chain.to_string(), "a -> b");
        let err = chain.enter("a").unwrap_err();
        assert_eq!(
            err,
            Error::ReentrantCall {
                plugin: "a".into(),
                chain: "a -> b -> a".into()
            }
        );
    }

    #[test]
    fn a_context_names_its_plugin_whether_or_not_the_chain_ends_with_it() {
        let host: Weak<dyn HostServices> = Weak::<Detached>::new();
        let chain = CallChain::default().enter("a").unwrap().enter("b").unwrap();
        let ctx = PluginContext::new("b", chain.clone(), host.clone());
        assert_eq!(ctx.plugin_name(), "b");
        assert_eq!(ctx.chain(), &chain);
        // A name that is not the chain's last entry is kept as given.
        let ctx = PluginContext::new("x", chain, host.clone());
        assert_eq!(ctx.plugin_name(), "x");
        let ctx = PluginContext::new("y", CallChain::default(), host);
        assert_eq!(ctx.plugin_name(), "y");
        assert_eq!(
            format!("{ctx:?}"),
            "PluginContext { plugin: \"y\", chain: CallChain[], .. }"
        );
    }

    #[tokio::test]
    async fn detached_context_fails_cleanly() {
        let ctx = PluginContext::detached("x");
        assert_eq!(ctx.chain().plugins(), ["x".to_owned()]);
        let err = ctx.call("y", "m", Value::Null).await.unwrap_err();
        assert!(matches!(err, Error::NotActive { .. }), "{err}");
        assert_eq!(ctx.status_of("y"), None);
    }
}
