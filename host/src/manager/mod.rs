//! The plugin manager: registers plugins, drives their lifecycle, routes calls
//! between them, and never holds a lock across an `.await`.
//!
//! See the "Locking" section of ARCHITECTURE.md for every lock, what it guards and the
//! ordering rule. In short: registry data sits behind `parking_lot` locks taken
//! only in small synchronous functions; each plugin's lifecycle is serialized by
//! its own `tokio` mutex; calls never take a lifecycle lock.

mod append_only;
mod batch_report;
mod call;
mod config;
mod dependency_holds;
mod directory;
mod gate;
mod lifecycle;
mod load;
mod persistence;
mod plugin_cell;
mod plugin_code;
mod reentry;
mod registry;
mod reload;
mod schedule;
mod services;
mod supervise;
mod tasks;
mod unload;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::broadcast;
use uuid::Uuid;

pub use batch_report::{BatchReport, PluginOutcome};
pub use config::{
    ManagerConfig, ManagerConfigBuilder, DEFAULT_MAX_PARALLEL, DEFAULT_PHASE_TIMEOUT,
    DEFAULT_RELOAD_TIMEOUT, DEFAULT_RETAINED_IMAGES_WARNING,
};
pub use directory::{DirectoryReport, RegisteredLibrary};
pub use lifecycle::{LifecycleEvent, PluginState};
pub use reload::{ReloadEvent, ReloadOptions, ReloadOutcome, ReloadStep};
pub use supervise::{RestartOnFailure, RestartPolicy, SupervisorEvent};

use crate::context::{CallChain, HostServices, PluginContext};
use crate::error::{Error, Result};
use crate::events::{EventBus, EventReceiver};
use crate::info::{DependencySpec, PluginInfo};
use crate::plugin::Plugin;
use crate::resolve::Plan;
use crate::state::{PluginStateManager, SaveOutcome};
use registry::{Registry, Slot};
use services::ManagerServices;

/// Names a plugin for [`PluginManager::call`]: by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// By id.
    Id(Uuid),
    /// By name.
    Name(String),
}

impl From<Uuid> for Target {
    fn from(id: Uuid) -> Self {
        Target::Id(id)
    }
}

impl From<&str> for Target {
    fn from(name: &str) -> Self {
        Target::Name(name.to_owned())
    }
}

impl From<String> for Target {
    fn from(name: String) -> Self {
        Target::Name(name)
    }
}

/// Options for [`PluginManager::unload_plugin_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnloadOptions {
    /// Unload the plugins that hold this one up first, instead of refusing with
    /// [`Error::InUse`].
    pub cascade: bool,
}

impl UnloadOptions {
    /// Options with `cascade` set.
    pub fn cascade() -> Self {
        Self { cascade: true }
    }
}

/// One plugin as listed by [`PluginManager::plugins`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSummary {
    /// Its id.
    pub id: Uuid,
    /// Its metadata.
    pub info: PluginInfo,
    /// Its current state.
    pub state: PluginState,
    /// Dependents currently holding it up (they are not idle), sorted.
    pub dependents: Vec<String>,
    /// Library images of this plugin that reloads keep mapped beside the one
    /// in use (see [`PluginManager::reload_plugin`]).
    pub retained_images: usize,
}

impl PluginSummary {
    /// Its declared dependencies.
    pub fn dependencies(&self) -> &[DependencySpec] {
        &self.info.dependencies
    }
}

/// Registers plugins and drives them through their lifecycle.
///
/// Cheap to clone (an `Arc` inside); every method takes `&self` and may be called
/// from any task, concurrently. Lifecycle operations (`load_plugin`,
/// `unload_plugin`, `unregister_plugin`) run on their own tokio task, so dropping
/// the future that awaits one does not leave a plugin half-initialized.
///
/// Plugins are not shut down when the manager is dropped: call
/// [`PluginManager::unload_all_plugins`] first.
#[derive(Clone)]
pub struct PluginManager {
    inner: Arc<Inner>,
}

/// The shared state behind a [`PluginManager`].
pub(crate) struct Inner {
    config: ManagerConfig,
    /// All plugins (locks documented on [`Registry`] and [`Slot`]).
    registry: Registry,
    /// Guards: the JSON configuration of each plugin, by name (starts as the
    /// config's). A `parking_lot` lock taken only in `plugin_config` /
    /// `set_plugin_config`, never across `.await`, never with another lock held.
    plugin_config: RwLock<HashMap<String, Value>>,
    /// Lifecycle events; `send` never blocks. Not a lock.
    events: broadcast::Sender<LifecycleEvent>,
    /// The event bus for plugins and the embedder (its lock is documented on
    /// [`EventBus`]).
    bus: Arc<EventBus>,
    /// What plugin contexts point at (weakly), so plugins never keep the manager alive.
    services: Arc<ManagerServices>,
    /// Persistence: `None` without a configured state dir; otherwise the opened
    /// state manager, or the error opening it (then every load fails with it,
    /// so no plugin runs, and later overwrites, without its saved state).
    /// Not a lock; the state manager's own locks are documented in `state/`.
    state: Option<std::result::Result<Arc<PluginStateManager>, Error>>,
    /// How many `unload_all_plugins` are running; reloads are refused meanwhile.
    /// Atomic, not a lock.
    unloading_all: AtomicUsize,
    /// Watches Active plugins that can crash and restarts them by policy (its
    /// lock is documented on `supervise::book::Book`).
    supervisor: supervise::Supervisor,
}

impl Inner {
    /// A context for code of `slot` running on `chain`.
    fn context(&self, slot: &Slot, chain: CallChain) -> PluginContext {
        // Downgraded as the concrete type, then unsized: no strong count touched.
        let host: Weak<ManagerServices> = Arc::downgrade(&self.services);
        let host: Weak<dyn HostServices> = host;
        PluginContext::new(&slot.name, chain, host)
    }

    fn slot(&self, id: Uuid) -> Result<Arc<Slot>> {
        self.registry.get(id).ok_or(Error::NotFound(id))
    }

    fn slot_of(&self, target: &Target) -> Result<Arc<Slot>> {
        match target {
            Target::Id(id) => self.slot(*id),
            Target::Name(name) => self
                .registry
                .get_by_name(name)
                .ok_or_else(|| Error::NotFoundByName(name.clone())),
        }
    }
}

impl Default for PluginManager {
    fn default() -> Self {
        Self::new(ManagerConfig::default())
    }
}

impl PluginManager {
    /// A manager with `config` and no plugins.
    ///
    /// With a state dir configured this opens it right here, with blocking file
    /// I/O (create, lock, clean stale temp files); async code should prefer
    /// [`PluginManager::open`], which does that on the blocking pool and returns
    /// the error (e.g. [`Error::StateDirLocked`]) at once. If opening fails here,
    /// every `load_plugin` fails with that error instead.
    pub fn new(config: ManagerConfig) -> Self {
        let state = config
            .state_dir()
            .map(|dir| PluginStateManager::open(dir.clone()).map(Arc::new));
        Self::with_state(config, state)
    }

    /// A manager with `config`, its state dir (if any) opened off the async
    /// workers. Fails when the state dir cannot be used, e.g. another host holds it.
    pub async fn open(config: ManagerConfig) -> Result<Self> {
        let state = match config.state_dir() {
            Some(dir) => Some(Ok(Arc::new(
                PluginStateManager::open_async(dir.clone()).await?,
            ))),
            None => None,
        };
        Ok(Self::with_state(config, state))
    }

    fn with_state(
        config: ManagerConfig,
        state: Option<std::result::Result<Arc<PluginStateManager>, Error>>,
    ) -> Self {
        let (events, _) = broadcast::channel(config.event_capacity());
        let plugin_config = RwLock::new(config.plugin_config().clone());
        let inner = Arc::new_cyclic(|weak| Inner {
            config,
            registry: Registry::default(),
            plugin_config,
            events,
            bus: Arc::new(EventBus::new()),
            services: Arc::new(ManagerServices::new(weak.clone())),
            state,
            unloading_all: AtomicUsize::new(0),
            supervisor: supervise::Supervisor::new(weak.clone()),
        });
        Self { inner }
    }

    /// The state manager persisting plugin state, when a state dir is configured
    /// (and could be opened).
    pub fn state_manager(&self) -> Option<&Arc<PluginStateManager>> {
        self.inner.state.as_ref().and_then(|s| s.as_ref().ok())
    }

    /// Saves the state of every Active plugin now, concurrently (a checkpoint;
    /// states are also saved when each plugin unloads). Without a state dir,
    /// returns nothing.
    ///
    /// Each save runs under the plugin's lifecycle lock, like every other
    /// state operation, so it never overlaps that plugin's `initialize` or
    /// `shutdown`: an unload that starts meanwhile waits for the save. A plugin
    /// whose lifecycle lock is already held is skipped, not waited for: an
    /// unload is under way (its shutdown saves the state itself) or another
    /// checkpoint is saving it.
    pub async fn save_all_states(&self) -> Vec<(String, Result<SaveOutcome>)> {
        self.inner.checkpoint().await
    }

    /// The configuration the manager was built with.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// The event bus plugins publish to and subscribe on; the embedder may too
    /// ([`EventBus::publish`] with its own source name, [`EventBus::subscribe`]).
    /// Lifecycle transitions appear on it as `plugbay.plugin.<state>` events.
    pub fn event_bus(&self) -> &Arc<EventBus> {
        &self.inner.bus
    }

    /// Publishes `name` with `payload` to the event bus from source `host`.
    pub fn publish(&self, name: &str, payload: Value) -> Result<usize> {
        self.inner.bus.publish("host", name, payload)
    }

    /// Subscribes the embedder to events matching `pattern` (`name` or
    /// `prefix*`), with a queue of `capacity` events.
    pub fn subscribe_events(&self, pattern: &str, capacity: usize) -> Result<EventReceiver> {
        self.inner.bus.subscribe(pattern, capacity)
    }

    /// Receives every lifecycle transition from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.inner.events.subscribe()
    }

    /// Receives every supervisor event from now on: crashes, dependents
    /// stopped and started again, restarts scheduled, done, failed, cancelled
    /// or given up (see [`RestartPolicy`]).
    pub fn subscribe_supervisor(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.inner.supervisor.subscribe()
    }

    /// Registers `plugin` (state `Registered`) and returns its new id. Refused
    /// with [`Error::DuplicateName`], naming both sources, when a plugin of the
    /// same name is registered.
    pub fn register_plugin(&self, plugin: Arc<dyn Plugin>) -> Result<Uuid> {
        let slot = self.inner.registry.insert(plugin)?;
        tracing::info!(plugin = %slot.name, id = %slot.id, source = %slot.source, "registered");
        Ok(slot.id)
    }

    /// Shuts the plugin down if it is active, then forgets it. Refused with
    /// [`Error::InUse`] while active dependents hold it up. If its shutdown fails
    /// the plugin stays registered as `Failed` (unregistering again removes it).
    pub async fn unregister_plugin(&self, id: Uuid) -> Result<()> {
        let slot = self.inner.slot(id)?;
        let inner = Arc::clone(&self.inner);
        let name = slot.name.clone();
        tasks::detached(
            &name,
            "unregister",
            async move { inner.unregister(&slot).await },
        )
        .await
    }

    /// Initializes the plugin and makes it `Active`, bringing its dependencies
    /// up first, transitively (independent ones in parallel). Ok and nothing
    /// done if it already is Active. Concurrent calls for one plugin initialize
    /// it once.
    ///
    /// When it cannot start because of its dependencies it ends `Failed` with the
    /// reason, which is also returned, and its `initialize` does not run:
    /// [`Error::MissingDependency`], [`Error::VersionConflict`],
    /// [`Error::DependencyCycle`], or [`Error::DependencyFailed`] when a
    /// dependency's own start failed. If a dependency is unloaded concurrently,
    /// the result is [`Error::DependencyNotActive`] and the state is unchanged.
    /// If `initialize` fails, panics or passes the init timeout, the plugin ends
    /// `Failed` with that cause; loading it again retries.
    pub async fn load_plugin(&self, id: Uuid) -> Result<()> {
        let slot = self.inner.slot(id)?;
        let inner = Arc::clone(&self.inner);
        let name = slot.name.clone();
        tasks::detached(&name, "load", async move {
            inner.load_with_dependencies(&slot).await
        })
        .await
    }

    /// Shuts the plugin down (`Unloaded`); it may be loaded again. Ok and nothing
    /// done if it is not active. Refused with [`Error::InUse`] while dependents
    /// hold it up (see [`PluginManager::unload_plugin_with`] to unload them too).
    /// Waits for calls already running in it (within the shutdown timeout) and
    /// admits no new ones.
    pub async fn unload_plugin(&self, id: Uuid) -> Result<()> {
        self.unload_plugin_with(id, UnloadOptions::default()).await
    }

    /// [`PluginManager::unload_plugin`] with options. With `cascade`, the plugins
    /// holding it up are unloaded first (dependents before their dependencies,
    /// independent ones in parallel); a dependent's shutdown error is returned
    /// after the plugin itself is unloaded.
    pub async fn unload_plugin_with(&self, id: Uuid, options: UnloadOptions) -> Result<()> {
        let slot = self.inner.slot(id)?;
        let inner = Arc::clone(&self.inner);
        let name = slot.name.clone();
        tasks::detached(&name, "unload", async move {
            if options.cascade {
                inner.unload_cascade(slot).await
            } else {
                inner.unload(&slot).await
            }
        })
        .await
    }

    /// Loads every registered plugin by the resolved plan: each starts as soon as
    /// its dependencies are Active, at most `max_parallel` initialize at once.
    /// A plugin that cannot start ends `Failed` with the reason (see
    /// [`PluginManager::load_plugin`]); one plugin's failure never stops
    /// unrelated plugins. Plugins registered while it runs are not part of it
    /// (load them with another call). Returns each planned plugin's outcome.
    pub async fn load_all_plugins(&self) -> BatchReport {
        let inner = Arc::clone(&self.inner);
        tasks::joined(tasks::spawn(
            async move { schedule::load_all(&inner).await },
        ))
        .await
    }

    /// Unloads every plugin, dependents before their dependencies, independent
    /// ones in parallel. Returns each plugin's outcome.
    pub async fn unload_all_plugins(&self) -> BatchReport {
        let inner = Arc::clone(&self.inner);
        // Counted before the task starts, so a reload asked for after this
        // call began is refused.
        inner.unloading_all.fetch_add(1, Ordering::AcqRel);
        tasks::joined(tasks::spawn(async move {
            let report = schedule::unload_all(&inner).await;
            inner.unloading_all.fetch_sub(1, Ordering::AcqRel);
            report
        }))
        .await
    }

    /// Resolves the registered plugins' dependencies into a start plan
    /// (topological waves, each plugin's resolved dependencies, and the plugins
    /// that cannot start with the reason). Two phases: a lock-free
    /// snapshot of the registry, then the resolver with no lock held.
    pub fn resolve_dependencies(&self) -> Plan {
        self.inner.plan()
    }

    /// The plugin with this id.
    ///
    /// Lock-free: the lookup takes no lock and writes no memory another thread
    /// writes. The returned `Arc` is a handle that forwards every method to the
    /// plugin and keeps it alive; handles are per thread, so two lookups of the
    /// same plugin on different threads may return different `Arc`s
    /// (`Arc::ptr_eq` is false) for the same plugin.
    pub fn get_plugin_by_id(&self, id: Uuid) -> Option<Arc<dyn Plugin>> {
        self.inner.registry.plugin(id)
    }

    /// The plugin with this name, as [`PluginManager::get_plugin_by_id`] returns it.
    pub fn get_plugin_by_name(&self, name: &str) -> Option<Arc<dyn Plugin>> {
        self.inner.registry.plugin_by_name(name)
    }

    /// The id of the plugin with this name.
    pub fn id_of(&self, name: &str) -> Option<Uuid> {
        self.inner.registry.get_by_name(name).map(|s| s.id)
    }

    /// Runs `f` with the plugin with this id (a handle, as
    /// [`PluginManager::get_plugin_by_id`] returns it). The lookup is lock-free
    /// and nothing of the registry is held while `f` runs: `f` may await, call
    /// the manager, take as long as it likes.
    pub async fn with_plugin<R, F, Fut>(&self, id: Uuid, f: F) -> Result<R>
    where
        F: FnOnce(Arc<dyn Plugin>) -> Fut,
        Fut: Future<Output = R>,
    {
        let plugin = self.get_plugin_by_id(id).ok_or(Error::NotFound(id))?;
        Ok(f(plugin).await)
    }

    /// The plugin's current state.
    pub fn status(&self, id: Uuid) -> Result<PluginState> {
        Ok(self.inner.slot(id)?.state())
    }

    /// The state of the plugin with this name.
    pub fn status_by_name(&self, name: &str) -> Result<PluginState> {
        Ok(self.inner.slot_of(&Target::from(name))?.state())
    }

    /// Every registered plugin, in registration order.
    pub fn plugins(&self) -> Vec<PluginSummary> {
        self.inner
            .registry
            .snapshot()
            .into_iter()
            .map(|s| PluginSummary {
                id: s.id,
                info: s.plugin.info().clone(),
                state: s.state(),
                dependents: s.users(),
                retained_images: s.plugin.retained_images(),
            })
            .collect()
    }

    /// Calls `method` on an `Active` plugin with JSON `args`. Fails with
    /// [`Error::NotActive`] otherwise. A panic in the plugin is caught and returned
    /// as [`Error::PluginPanicked`]; its error as [`Error::PluginFailed`].
    pub async fn call(
        &self,
        target: impl Into<Target>,
        method: &str,
        args: Value,
    ) -> Result<Value> {
        let slot = self.inner.slot_of(&target.into())?;
        self.inner
            .call_slot(&slot, CallChain::default(), method, args)
            .await
    }

    /// The JSON configuration the plugin `name` sees (`Value::Null` when none).
    pub fn plugin_config(&self, name: &str) -> Value {
        self.inner.plugin_config(name)
    }

    /// Replaces the JSON configuration of plugin `name`; its next `initialize`
    /// (and every later `config()` read) sees it.
    pub fn set_plugin_config(&self, name: &str, config: Value) {
        self.inner
            .plugin_config
            .write()
            .insert(name.to_owned(), config);
    }
}

impl Inner {
    fn plugin_config(&self, name: &str) -> Value {
        self.plugin_config
            .read()
            .get(name)
            .cloned()
            .unwrap_or(Value::Null)
    }
}
