//! The registry: which plugins exist, and each plugin's slot (its gate and its
//! lifecycle lock).
//!
//! Every `parking_lot` lock here is taken only inside the small synchronous
//! methods of this file (the gate's own lock: `gate.rs`). None of them awaits, calls plugin code, does I/O or
//! takes a second lock while holding one, so they can neither deadlock with each
//! other nor stall the async runtime.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use uuid::Uuid;

use super::gate::Gate;
use super::lifecycle::PluginState;
use crate::error::{Error, Result};
use crate::plugin::Plugin;

/// One registered plugin and everything the manager tracks about it.
pub(crate) struct Slot {
    /// The plugin's id (fixed).
    pub(crate) id: Uuid,
    /// The plugin's name (fixed; copied from its info).
    pub(crate) name: String,
    /// The plugin itself.
    pub(crate) plugin: Arc<dyn Plugin>,
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
}

impl Slot {
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
    /// shutdown waiting until it is dropped.
    pub(crate) fn enter_call(self: &Arc<Self>) -> Result<CallGuard> {
        self.gate.enter_call(&self.name)?;
        Ok(CallGuard {
            slot: Arc::clone(self),
        })
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

/// A map keyed by plugin id, hashed with [`IdHasher`].
type IdMap<V> = HashMap<Uuid, V, BuildHasherDefault<IdHasher>>;

/// The maps from id and from name to slots.
#[derive(Default)]
struct Maps {
    by_id: IdMap<Arc<Slot>>,
    by_name: HashMap<String, Uuid>,
}

/// All registered plugins.
#[derive(Default)]
pub(crate) struct Registry {
    /// Guards: both lookup maps, so a name and its id are added and removed
    /// together. A `parking_lot` read-write lock because every access is a map
    /// lookup or insert: taken only in the synchronous methods below, never held
    /// across `.await`, and never while a slot's `cell` lock is held.
    maps: RwLock<Maps>,
    /// Hands out registration sequence numbers. Atomic, not a lock.
    next_seq: AtomicU64,
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
            plugin,
            source,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            gate: Gate::new(),
            lifecycle: tokio::sync::Mutex::new(()),
        });
        let mut maps = self.maps.write();
        if let Some(existing) = maps.by_name.get(&name).and_then(|id| maps.by_id.get(id)) {
            return Err(Error::DuplicateName {
                name,
                first: existing.source.clone(),
                second: slot.source.clone(),
            });
        }
        maps.by_name.insert(name, slot.id);
        maps.by_id.insert(slot.id, Arc::clone(&slot));
        Ok(slot)
    }

    /// The slot with this id.
    pub(crate) fn get(&self, id: Uuid) -> Option<Arc<Slot>> {
        self.maps.read().by_id.get(&id).cloned()
    }

    /// The plugin with this id: clones only the plugin's `Arc` under the read
    /// lock (the lookup fast path of `get_plugin_by_id` / `with_plugin`).
    pub(crate) fn plugin(&self, id: Uuid) -> Option<Arc<dyn Plugin>> {
        self.maps
            .read()
            .by_id
            .get(&id)
            .map(|slot| Arc::clone(&slot.plugin))
    }

    /// The slot with this name.
    pub(crate) fn get_by_name(&self, name: &str) -> Option<Arc<Slot>> {
        let maps = self.maps.read();
        maps.by_name
            .get(name)
            .and_then(|id| maps.by_id.get(id))
            .cloned()
    }

    /// Removes the slot with this id from both maps.
    pub(crate) fn remove(&self, id: Uuid) -> Option<Arc<Slot>> {
        let mut maps = self.maps.write();
        let slot = maps.by_id.remove(&id)?;
        if maps.by_name.get(&slot.name) == Some(&id) {
            maps.by_name.remove(&slot.name);
        }
        Some(slot)
    }

    /// All slots, in registration order.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Slot>> {
        let mut all: Vec<Arc<Slot>> = self.maps.read().by_id.values().cloned().collect();
        all.sort_by_key(|s| s.seq);
        all
    }
}
