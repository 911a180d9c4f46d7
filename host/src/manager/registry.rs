//! The registry: which plugins exist, and each plugin's slot (its gate and its
//! lifecycle lock).
//!
//! Every `parking_lot` lock here is taken only inside the small synchronous
//! methods of this file (the gate's own lock: `gate.rs`). None of them awaits, calls plugin code, does I/O or
//! takes a second lock while holding one, so they can neither deadlock with each
//! other nor stall the async runtime.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use plugbay_api::PluginError;
use serde_json::Value;
use uuid::Uuid;

use super::gate::{Admission, Gate};
use super::lifecycle::PluginState;
use super::plugin_cell::PluginCell;
use crate::call_policy::CallPath;
use crate::context::{CallChain, PluginContext};
use crate::error::{Error, Result};
use crate::info::PluginInfo;
use crate::plugin::Plugin;

/// One registered plugin and everything the manager tracks about it.
pub(crate) struct Slot {
    /// The plugin's id (fixed).
    pub(crate) id: Uuid,
    /// The plugin's name (fixed; copied from its info).
    pub(crate) name: String,
    /// The plugin itself: the current object, swapped by a reload (derefs to
    /// it; see [`PluginCell`]).
    pub(crate) plugin: PluginCell,
    /// Where it came from, for error messages (`/path/libx.so (x 1.0.0)`).
    pub(crate) source: String,
    /// Registration order, for stable listings.
    pub(crate) seq: u64,
    /// Its state, call gate and dependency holds (the `Gate::cell` lock and
    /// the drain wake-up are documented in `gate.rs`).
    pub(crate) gate: Gate,
    /// Serializes this plugin's lifecycle operations (load, unload, unregister,
    /// block, state checkpoints): the holder is the only one allowed to change
    /// its state, and it holds the lock across the plugin's
    /// `initialize`/`shutdown` awaits — which is why it is a `tokio` mutex. One
    /// per plugin, never a global lock. Calls into the plugin never take it
    /// (they go through the call gate), so a callback into a plugin that is
    /// mid-transition cannot wait on it.
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
    /// Set while a reload of this plugin is under way (from its admission to
    /// its end), so a second one is refused instead of interleaving. Atomic,
    /// not a lock.
    pub(crate) reloading: AtomicBool,
    /// The call chain holding just this plugin, built on first use and then
    /// shared by every call from outside any plugin (see [`Slot::enter`]).
    /// Set once, never a lock.
    alone: OnceLock<CallChain>,
}

impl Slot {
    /// `chain` entered by this plugin, refusing re-entry ([`CallChain::enter`]).
    /// From outside any plugin (an empty chain) the plugin's own one-name chain
    /// is shared instead of allocated, so a call from the embedder copies no
    /// name. Every lifecycle operation and call enters its chain here.
    pub(crate) fn enter(&self, chain: &CallChain) -> Result<CallChain> {
        if chain.is_empty() {
            return Ok(self
                .alone
                .get_or_init(|| CallChain::alone(&self.name))
                .clone());
        }
        chain.enter(&self.name)
    }

    /// The current state.
    pub(crate) fn state(&self) -> PluginState {
        self.gate.state()
    }

    /// Whether the plugin has been unregistered.
    pub(crate) fn is_removed(&self) -> bool {
        self.gate.is_removed()
    }

    /// The names of the dependents currently holding this plugin up, sorted.
    pub(crate) fn users(&self) -> Vec<String> {
        self.gate.users()
    }

    /// The ids of the dependents currently holding this plugin up.
    pub(crate) fn user_ids(&self) -> Vec<Uuid> {
        self.gate.user_ids()
    }

    /// Admits one call if the plugin is Active; the returned guard keeps the
    /// shutdown (or a reload's drain) waiting until it is dropped. While a
    /// reload holds the gate the call waits for it to reopen, at most `wait`
    /// ([`Error::ReloadWaitTimeout`] after that).
    pub(crate) async fn enter_call(self: &Arc<Self>, wait: Duration) -> Result<CallGuard> {
        if self.gate.admit(&self.name)? == Admission::Held {
            self.wait_for_reopen(wait).await?;
        }
        Ok(CallGuard {
            slot: Arc::clone(self),
        })
    }

    /// The slow path of [`Slot::enter_call`]: the gate is held by a reload.
    async fn wait_for_reopen(&self, wait: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Listen before checking, so a reopening in between is not lost.
            let reopened = self.gate.listen_reopen();
            if self.gate.admit(&self.name)? == Admission::Admitted {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, reopened.wait())
                .await
                .is_err()
            {
                return Err(Error::ReloadWaitTimeout {
                    plugin: self.name.clone(),
                    waited: wait,
                });
            }
        }
    }
}

/// An admitted call; dropping it lets a waiting shutdown proceed.
pub(crate) struct CallGuard {
    slot: Arc<Slot>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.slot.gate.exit_call();
    }
}

/// Hashes plugin ids by folding their 128 bits into 64.
///
/// Ids are random v4 UUIDs the manager creates itself (never chosen by a
/// caller), so their bits are already uniformly distributed: folding them is a
/// good hash, and far cheaper than SipHash on the lookup path.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_ne_bytes(word);
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of the 16 id bytes carries no information.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// How many reference-count shards each plugin has (see [`Entry::handles`]).
/// Threads are spread over them in the order they first look a plugin up; more
/// threads than shards share shards, which is correct, only slower.
const SHARDS: usize = 8;

/// Hands each thread its shard index, round-robin. Atomic, not a lock.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard in [`Entry::handles`].
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// A registered plugin as the id map holds it (inline in the map's node, so a
/// lookup by id follows one pointer fewer).
struct Entry {
    slot: Arc<Slot>,
    /// Whether the plugin is registered: set once its id and name are in both
    /// maps, cleared before they leave either, so a reader sees its id and its
    /// name appear and disappear at the same instant. Written only by `insert`
    /// / `remove`.
    live: AtomicBool,
    /// Per-shard handles on the plugin, created on first use: what lookups hand
    /// out. Each has its own reference count on its own cache lines, so two
    /// threads looking the same plugin up never write the same line (cloning the
    /// plugin's own `Arc` from two cores makes its count bounce between them).
    handles: [OnceLock<Arc<Handle>>; SHARDS],
}

impl Entry {
    /// The slot, if the plugin is still registered.
    fn slot(&self) -> Option<&Arc<Slot>> {
        self.live.load(Ordering::Acquire).then_some(&self.slot)
    }

    /// A handle on the plugin from this thread's shard, if it is still registered.
    fn handle(&self) -> Option<Arc<dyn Plugin>> {
        let slot = self.slot()?;
        let shard = SHARD.with(|s| *s);
        let handle = self.handles[shard].get_or_init(|| {
            Arc::new(Handle {
                slot: Arc::clone(slot),
            })
        });
        Some(Arc::clone(handle) as Arc<dyn Plugin>)
    }
}

/// A plugin as lookups return it: forwards every method to the slot's current
/// plugin object, so a handle looked up before a reload reaches the new one
/// after it. Aligned to 128 bytes so its reference count (in front of it in the
/// `Arc`) shares a cache line (or an adjacent-line prefetch pair) with nothing else.
#[repr(align(128))]
struct Handle {
    slot: Arc<Slot>,
}

// Written out instead of `#[async_trait]` so each method hands back the
// plugin's own boxed future instead of boxing a second one around it.
impl Plugin for Handle {
    fn info(&self) -> &PluginInfo {
        self.slot.plugin.info()
    }

    fn initialize<'life0, 'async_trait>(
        &'life0 self,
        ctx: PluginContext,
    ) -> BoxFuture<'async_trait, std::result::Result<(), PluginError>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.slot.plugin.initialize(ctx)
    }

    fn shutdown<'life0, 'async_trait>(
        &'life0 self,
        ctx: PluginContext,
    ) -> BoxFuture<'async_trait, std::result::Result<(), PluginError>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.slot.plugin.shutdown(ctx)
    }

    fn save_state<'life0, 'async_trait>(
        &'life0 self,
    ) -> BoxFuture<'async_trait, std::result::Result<Value, PluginError>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.slot.plugin.save_state()
    }

    fn load_state<'life0, 'life1, 'async_trait>(
        &'life0 self,
        state: Value,
        saved_by_version: &'life1 str,
    ) -> BoxFuture<'async_trait, std::result::Result<(), PluginError>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.slot.plugin.load_state(state, saved_by_version)
    }

    fn call<'life0, 'life1, 'async_trait>(
        &'life0 self,
        ctx: PluginContext,
        method: &'life1 str,
        args: Value,
    ) -> BoxFuture<'async_trait, std::result::Result<Value, PluginError>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.slot.plugin.call(ctx, method, args)
    }

    fn call_json<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        ctx: PluginContext,
        method: &'life1 str,
        args: &'life2 str,
    ) -> BoxFuture<'async_trait, std::result::Result<String, PluginError>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.slot.plugin.call_json(ctx, method, args)
    }

    fn call_path(&self) -> Option<CallPath> {
        self.slot.plugin.call_path()
    }

    fn crash_signal(&self) -> Option<crate::crash::CrashSignal> {
        self.slot.plugin.crash_signal()
    }
}

/// All registered plugins.
///
/// Reads are lock-free: a lookup pins the maps' epoch (a thread-local write),
/// probes the table and checks [`Entry::live`], writing no shared memory; an
/// entry removed while a reader still holds a reference to it is freed only
/// once no reader that could have seen it is pinned. Writers (`insert`,
/// `remove`) are serialized by `writer`.
pub(crate) struct Registry {
    /// id → entry. A lock-free map (`papaya`), not a lock: readers never block
    /// and never write a shared cache line; writes happen under `writer`.
    by_id: papaya::HashMap<Uuid, Entry, BuildHasherDefault<IdHasher>>,
    /// name → id. Lock-free like `by_id`; a lookup by name goes on to `by_id`
    /// and its entry's `live` flag.
    by_name: papaya::HashMap<String, Uuid>,
    /// Guards: nothing but the right to change the two maps, so the
    /// duplicate-name check and both maps' updates (and [`Entry::live`]) happen
    /// as one step. A `parking_lot` mutex taken only inside `insert` / `remove`
    /// (map updates, no `.await`, no plugin code, no other lock); readers never
    /// take it.
    writer: Mutex<()>,
    /// Hands out registration sequence numbers. Atomic, not a lock.
    next_seq: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            // Blocking resizes: writers are serialized anyway, a one-shot copy
            // does less work than incremental ones (which make every insert
            // help copy and every lookup during a resize search two tables),
            // and readers are never blocked by either.
            by_id: papaya::HashMap::builder()
                .hasher(BuildHasherDefault::<IdHasher>::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            by_name: papaya::HashMap::builder()
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            writer: Mutex::new(()),
            next_seq: AtomicU64::new(0),
        }
    }
}

impl Registry {
    /// Adds `plugin` under a fresh id, or refuses with [`Error::DuplicateName`]
    /// naming both sources.
    pub(crate) fn insert(&self, plugin: Arc<dyn Plugin>) -> Result<Arc<Slot>> {
        let info = plugin.info();
        let name = info.name.clone();
        if name.trim().is_empty() {
            return Err(Error::Config(format!(
                "a plugin from {} has an empty name",
                info.source
            )));
        }
        let source = format!("{} ({} {})", info.source, info.name, info.version);
        let slot = Arc::new(Slot {
            id: Uuid::new_v4(),
            name: name.clone(),
            plugin: PluginCell::new(plugin),
            source,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            gate: Gate::new(),
            lifecycle: tokio::sync::Mutex::new(()),
            reloading: AtomicBool::new(false),
            alone: OnceLock::new(),
        });
        let entry = Entry {
            slot: Arc::clone(&slot),
            live: AtomicBool::new(false),
            handles: Default::default(),
        };
        let (by_id, by_name) = (self.by_id.pin(), self.by_name.pin());
        let _writer = self.writer.lock();
        if let Some(existing) = by_name.get(&name).and_then(|id| by_id.get(id)) {
            return Err(Error::DuplicateName {
                name,
                first: existing.slot.source.clone(),
                second: slot.source.clone(),
            });
        }
        let Ok(entry) = by_id.try_insert(slot.id, entry) else {
            return Err(Error::Config(format!(
                "plugin id {} generated twice (from {})",
                slot.id, slot.source
            )));
        };
        by_name.insert(name, slot.id);
        // The instant both keys appear.
        entry.live.store(true, Ordering::Release);
        Ok(slot)
    }

    /// The slot with this id.
    pub(crate) fn get(&self, id: Uuid) -> Option<Arc<Slot>> {
        self.by_id.pin().get(&id)?.slot().cloned()
    }

    /// The plugin with this id, as a handle from this thread's shard (the
    /// lookup fast path of `get_plugin_by_id` / `with_plugin`): no lock, and no
    /// write to memory another core is writing.
    pub(crate) fn plugin(&self, id: Uuid) -> Option<Arc<dyn Plugin>> {
        self.by_id.pin().get(&id)?.handle()
    }

    /// The plugin with this name, as [`Registry::plugin`] returns it.
    pub(crate) fn plugin_by_name(&self, name: &str) -> Option<Arc<dyn Plugin>> {
        let id = *self.by_name.pin().get(name)?;
        self.by_id.pin().get(&id)?.handle()
    }

    /// The slot with this name.
    pub(crate) fn get_by_name(&self, name: &str) -> Option<Arc<Slot>> {
        let id = *self.by_name.pin().get(name)?;
        self.by_id.pin().get(&id)?.slot().cloned()
    }

    /// Removes the slot with this id from both maps.
    pub(crate) fn remove(&self, id: Uuid) -> Option<Arc<Slot>> {
        let (by_id, by_name) = (self.by_id.pin(), self.by_name.pin());
        let _writer = self.writer.lock();
        let entry = by_id.get(&id)?;
        // The instant both keys disappear; the map removals below only tidy up.
        entry.live.store(false, Ordering::Release);
        let slot = Arc::clone(&entry.slot);
        by_name.remove(&slot.name);
        by_id.remove(&id);
        Some(slot)
    }

    /// All slots, in registration order.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Slot>> {
        // Sorted by a copy of the key: comparing through the `Arc`s would
        // chase a pointer per comparison, a cache miss each at 10k plugins.
        let mut all: Vec<(u64, Arc<Slot>)> = self
            .by_id
            .pin()
            .values()
            .filter_map(|entry| entry.slot().map(|s| (s.seq, Arc::clone(s))))
            .collect();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, slot)| slot).collect()
    }
}

#[cfg(test)]
mod tests;
