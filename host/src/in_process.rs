//! In-process plugins from closures: for applications that embed the host and
//! want to offer Rust code as plugins, and for tests.
//!
//! ```
//! use plugbay_host::{InProcessPlugin, PluginManager};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> plugbay_host::Result<()> {
//! let echo = InProcessPlugin::builder("echo", "1.0.0")
//!     .on_call(|_ctx, method, args| async move {
//!         match method.as_str() {
//!             "echo" => Ok(args),
//!             _ => Err(plugbay_api::PluginError::unknown_method(&method)),
//!         }
//!     })
//!     .build()?;
//! let manager = PluginManager::default();
//! let id = manager.register_plugin(echo.clone())?;
//! manager.load_plugin(id).await?;
//! assert_eq!(manager.call("echo", "echo", json!(7)).await?, json!(7));
//! assert_eq!(echo.counters().initializations(), 1);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use plugbay_api::PluginError;
use serde_json::Value;

use crate::context::PluginContext;
use crate::error::Error;
use crate::info::{DependencySpec, PluginInfo};
use crate::plugin::Plugin;

type LifecycleFn =
    dyn Fn(PluginContext) -> BoxFuture<'static, Result<(), PluginError>> + Send + Sync;
type CallFn = dyn Fn(PluginContext, String, Value) -> BoxFuture<'static, Result<Value, PluginError>>
    + Send
    + Sync;
type SaveFn = dyn Fn() -> Result<Value, PluginError> + Send + Sync;
type RestoreFn = dyn Fn(Value, String) -> Result<(), PluginError> + Send + Sync;

/// What happened to an [`InProcessPlugin`], counted as it happens. Tests use it
/// to check lifecycle invariants.
#[derive(Debug, Default)]
pub struct Counters {
    initializations: AtomicU64,
    shutdowns: AtomicU64,
    calls: AtomicU64,
    violations: AtomicU64,
    live: AtomicBool,
    in_lifecycle: AtomicBool,
}

impl Counters {
    /// How many times `initialize` was entered.
    pub fn initializations(&self) -> u64 {
        self.initializations.load(Ordering::SeqCst)
    }

    /// How many times `shutdown` was entered.
    pub fn shutdowns(&self) -> u64 {
        self.shutdowns.load(Ordering::SeqCst)
    }

    /// How many times `call` was entered.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many protocol violations the plugin saw: `initialize` while already
    /// initialized, `shutdown` while not initialized, `call` while not
    /// initialized, or two lifecycle methods running at the same time.
    /// A correct manager keeps this at zero.
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::SeqCst)
    }

    /// Whether the last `initialize` succeeded and no `shutdown` started since.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    fn violation(&self) {
        self.violations.fetch_add(1, Ordering::SeqCst);
    }

    /// Marks the start of a lifecycle method; a second one at once is a violation.
    fn enter_lifecycle(&self) -> LifecycleMark<'_> {
        if self.in_lifecycle.swap(true, Ordering::SeqCst) {
            self.violation();
        }
        LifecycleMark(self)
    }
}

/// Clears `in_lifecycle` when a lifecycle method ends (also on panic or cancel).
struct LifecycleMark<'a>(&'a Counters);

impl Drop for LifecycleMark<'_> {
    fn drop(&mut self) {
        self.0.in_lifecycle.store(false, Ordering::SeqCst);
    }
}

/// A plugin made of closures, running in the host process. Build one with
/// [`InProcessPlugin::builder`].
pub struct InProcessPlugin {
    info: PluginInfo,
    on_initialize: Option<Box<LifecycleFn>>,
    on_shutdown: Option<Box<LifecycleFn>>,
    on_call: Option<Box<CallFn>>,
    on_save_state: Option<Box<SaveFn>>,
    on_load_state: Option<Box<RestoreFn>>,
    counters: Arc<Counters>,
}

impl InProcessPlugin {
    /// Starts building a plugin called `name` at `version` (semver: an invalid
    /// one makes [`InProcessBuilder::build`] fail).
    pub fn builder(name: &str, version: &str) -> InProcessBuilder {
        let (info, invalid) = match PluginInfo::in_process(name, version) {
            Ok(info) => (info, None),
            Err(e) => (
                PluginInfo::in_process_at(name, semver::Version::new(0, 0, 0)),
                Some(e),
            ),
        };
        InProcessBuilder {
            invalid,
            plugin: InProcessPlugin {
                info,
                on_initialize: None,
                on_shutdown: None,
                on_call: None,
                on_save_state: None,
                on_load_state: None,
                counters: Arc::default(),
            },
        }
    }

    /// The plugin's counters (shared: they keep counting after registration).
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }
}

/// Builds an [`InProcessPlugin`]. Every hook is optional: by default
/// `initialize` and `shutdown` succeed, `call` answers "unknown method", the
/// state is `null`.
#[must_use]
pub struct InProcessBuilder {
    plugin: InProcessPlugin,
    /// The first invalid input (version, dependency requirement), reported by `build`.
    invalid: Option<Error>,
}

impl InProcessBuilder {
    /// Sets the description.
    pub fn description(mut self, description: &str) -> Self {
        self.plugin.info.description = description.to_owned();
        self
    }

    /// Adds a required dependency (an invalid requirement makes `build` fail).
    pub fn depends_on(self, name: &str, requirement: &str) -> Self {
        self.dependency(DependencySpec::required(name, requirement))
    }

    /// Adds an optional dependency (an invalid requirement makes `build` fail).
    pub fn optionally_depends_on(self, name: &str, requirement: &str) -> Self {
        self.dependency(DependencySpec::optional(name, requirement))
    }

    fn dependency(mut self, spec: Result<DependencySpec, Error>) -> Self {
        match spec {
            Ok(spec) => self.plugin.info.dependencies.push(spec),
            Err(e) => {
                self.invalid.get_or_insert(e);
            }
        }
        self
    }

    /// Runs `f` as the plugin's `initialize`.
    pub fn on_initialize<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(PluginContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), PluginError>> + Send + 'static,
    {
        self.plugin.on_initialize = Some(Box::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Runs `f` as the plugin's `shutdown`.
    pub fn on_shutdown<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(PluginContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), PluginError>> + Send + 'static,
    {
        self.plugin.on_shutdown = Some(Box::new(move |ctx| Box::pin(f(ctx))));
        self
    }

    /// Runs `f(ctx, method, args)` for every `call`.
    pub fn on_call<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(PluginContext, String, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, PluginError>> + Send + 'static,
    {
        self.plugin.on_call = Some(Box::new(move |ctx, method, args| {
            Box::pin(f(ctx, method, args))
        }));
        self
    }

    /// Runs `f` to produce the state to persist.
    pub fn on_save_state<F>(mut self, f: F) -> Self
    where
        F: Fn() -> Result<Value, PluginError> + Send + Sync + 'static,
    {
        self.plugin.on_save_state = Some(Box::new(f));
        self
    }

    /// Runs `f(state, saved_by_version)` to restore persisted state.
    pub fn on_load_state<F>(mut self, f: F) -> Self
    where
        F: Fn(Value, String) -> Result<(), PluginError> + Send + Sync + 'static,
    {
        self.plugin.on_load_state = Some(Box::new(f));
        self
    }

    /// The finished plugin, in an `Arc` so it can be registered and still
    /// observed. Fails with [`Error::Config`] naming the plugin (or the
    /// dependency) when its version or a dependency requirement is not semver.
    pub fn build(self) -> Result<Arc<InProcessPlugin>, Error> {
        match self.invalid {
            Some(e) => Err(e),
            None => Ok(Arc::new(self.plugin)),
        }
    }
}

#[async_trait]
impl Plugin for InProcessPlugin {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        let c = &self.counters;
        let _mark = c.enter_lifecycle();
        c.initializations.fetch_add(1, Ordering::SeqCst);
        if c.is_live() {
            c.violation();
        }
        if let Some(f) = &self.on_initialize {
            f(ctx).await?;
        }
        c.live.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn shutdown(&self, ctx: PluginContext) -> Result<(), PluginError> {
        let c = &self.counters;
        let _mark = c.enter_lifecycle();
        c.shutdowns.fetch_add(1, Ordering::SeqCst);
        if !c.live.swap(false, Ordering::SeqCst) {
            c.violation();
        }
        match &self.on_shutdown {
            Some(f) => f(ctx).await,
            None => Ok(()),
        }
    }

    async fn save_state(&self) -> Result<Value, PluginError> {
        match &self.on_save_state {
            Some(f) => f(),
            None => Ok(Value::Null),
        }
    }

    async fn load_state(&self, state: Value, saved_by_version: &str) -> Result<(), PluginError> {
        match &self.on_load_state {
            Some(f) => f(state, saved_by_version.to_owned()),
            None => Ok(()),
        }
    }

    async fn call(
        &self,
        ctx: PluginContext,
        method: &str,
        args: Value,
    ) -> Result<Value, PluginError> {
        let c = &self.counters;
        c.calls.fetch_add(1, Ordering::SeqCst);
        if !c.is_live() {
            c.violation();
        }
        match &self.on_call {
            Some(f) => f(ctx, method.to_owned(), args).await,
            None => Err(PluginError::unknown_method(method)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_is_an_error_from_build() {
        let err = InProcessPlugin::builder("x", "not-semver")
            .build()
            .err()
            .unwrap();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("plugin `x` has an invalid version")),
            "{err:?}"
        );
        let err = InProcessPlugin::builder("x", "1.0.0")
            .depends_on("y", "not a requirement")
            .build()
            .err()
            .unwrap();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("dependency `y` has an invalid requirement")),
            "{err:?}"
        );
        let ok = InProcessPlugin::builder("x", "1.0.0")
            .optionally_depends_on("y", "^1")
            .build()
            .unwrap();
        assert!(ok.info().dependencies[0].optional);
    }
}
