//! The registry: which plugins exist, and each plugin's slot (its state, its
//! call gate and its lifecycle lock).
//!
//! Every `parking_lot` lock here is taken only inside the small synchronous
//! methods of this file. None of them awaits, calls plugin code, does I/O or
//! takes a second lock while holding one, so they can neither deadlock with each
//! other nor stall the async runtime.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use uuid::Uuid;

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
    /// Guards: the plugin's lifecycle state, its in-flight call count, the
    /// dependents holding it up, the dependencies it holds, and its removed flag.
    ///
    /// A `parking_lot` mutex because every access is a few field reads or writes:
    /// it is locked only inside the synchronous methods of `Slot`, never held
    /// across `.await`, and no other lock is taken while it is held.
    cell: Mutex<Cell>,
    /// Wakes an unload waiting for the in-flight calls to drain. Not a lock.
    drained: Notify,
    /// Serializes this plugin's lifecycle operations (load, unload, unregister):
    /// the holder is the only one allowed to change `cell.state`, and it holds
    /// the lock across the plugin's `initialize`/`shutdown` awaits — which is why
    /// it is a `tokio` mutex. One per plugin, never a global lock. Calls into the
    /// plugin never take it (they go through the call gate in `cell`), so a
    /// callback into a plugin that is mid-transition cannot wait on it.
    pub(crate) lifecycle: tokio::sync::Mutex<()>,
}

/// The mutable part of a [`Slot`], behind `Slot::cell`.
struct Cell {
    state: PluginState,
    /// Calls admitted by the gate and not yet finished.
    in_flight: usize,
    /// Dependents that hold this plugin up (they are initializing, active or
    /// shutting down); while any does, this plugin cannot leave `Active`.
    users: BTreeMap<Uuid, String>,
    /// The dependencies this plugin holds up while it is not idle.
    holds: Vec<Arc<Slot>>,
    /// Set once the plugin is unregistered; every later operation sees `NotFound`.
    removed: bool,
}

/// What [`Slot::begin_shutdown`] decided.
pub(crate) enum ShutdownStart {
    /// The plugin went from `Active` to `ShuttingDown`; run its shutdown.
    Started,
    /// Nothing to do: the plugin is idle.
    Idle,
}

impl Slot {
    /// The current state.
    pub(crate) fn state(&self) -> PluginState {
        self.cell.lock().state.clone()
    }

    /// Whether the plugin has been unregistered.
    pub(crate) fn is_removed(&self) -> bool {
        self.cell.lock().removed
    }

    /// Moves to `to` if the state machine allows it; returns the previous state,
    /// or [`Error::InvalidTransition`].
    pub(crate) fn transition(&self, to: PluginState) -> Result<PluginState> {
        let mut cell = self.cell.lock();
        if !cell.state.can_become(&to) {
            return Err(Error::InvalidTransition {
                plugin: self.name.clone(),
                from: cell.state.name().to_owned(),
                to: to.name().to_owned(),
            });
        }
        Ok(std::mem::replace(&mut cell.state, to))
    }

    /// In one critical section: refuses with [`Error::InUse`] while dependents
    /// hold the plugin up, otherwise moves `Active` to `ShuttingDown` (closing the
    /// call gate). Idle states are reported as they are.
    pub(crate) fn begin_shutdown(&self) -> Result<ShutdownStart> {
        let mut cell = self.cell.lock();
        match &cell.state {
            PluginState::Active if !cell.users.is_empty() => Err(Error::InUse {
                plugin: self.name.clone(),
                dependents: sorted_names(&cell.users),
            }),
            PluginState::Active => {
                cell.state = PluginState::ShuttingDown;
                Ok(ShutdownStart::Started)
            }
            idle if idle.is_idle() => Ok(ShutdownStart::Idle),
            other => Err(Error::InvalidTransition {
                plugin: self.name.clone(),
                from: other.name().to_owned(),
                to: PluginState::ShuttingDown.name().to_owned(),
            }),
        }
    }

    /// Records `dependent` as holding this plugin up, if this plugin is Active
    /// (and registered). Otherwise returns the state that prevents it.
    pub(crate) fn acquire_user(&self, dependent: Uuid, name: &str) -> Result<(), PluginState> {
        let mut cell = self.cell.lock();
        if cell.removed {
            return Err(PluginState::Unloaded);
        }
        if !cell.state.is_active() {
            return Err(cell.state.clone());
        }
        cell.users.insert(dependent, name.to_owned());
        Ok(())
    }

    /// Forgets `dependent` as a user.
    pub(crate) fn release_user(&self, dependent: Uuid) {
        self.cell.lock().users.remove(&dependent);
    }

    /// The names of the dependents currently holding this plugin up, sorted.
    pub(crate) fn users(&self) -> Vec<String> {
        sorted_names(&self.cell.lock().users)
    }

    /// The ids of the dependents currently holding this plugin up.
    pub(crate) fn user_ids(&self) -> Vec<Uuid> {
        self.cell.lock().users.keys().copied().collect()
    }

    /// Stores the dependencies this plugin now holds up.
    pub(crate) fn set_holds(&self, holds: Vec<Arc<Slot>>) {
        self.cell.lock().holds = holds;
    }

    /// Takes the dependencies this plugin holds up (to release them).
    pub(crate) fn take_holds(&self) -> Vec<Arc<Slot>> {
        std::mem::take(&mut self.cell.lock().holds)
    }

    /// Admits one call if the plugin is Active; the returned guard keeps the
    /// shutdown waiting until it is dropped.
    pub(crate) fn enter_call(self: &Arc<Self>) -> Result<CallGuard> {
        let mut cell = self.cell.lock();
        if cell.removed {
            return Err(Error::NotFoundByName(self.name.clone()));
        }
        if !cell.state.is_active() {
            return Err(Error::NotActive {
                plugin: self.name.clone(),
                state: cell.state.to_string(),
            });
        }
        cell.in_flight += 1;
        Ok(CallGuard {
            slot: Arc::clone(self),
        })
    }

    /// Waits until no admitted call is running. Call after the gate is closed
    /// (state `ShuttingDown`), or new calls may keep arriving.
    pub(crate) async fn drain_calls(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Register interest before checking, so a wake-up between the check
            // and the await is not lost.
            notified.as_mut().enable();
            if self.cell.lock().in_flight == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Marks the plugin removed if it is idle and nobody holds it up; otherwise
    /// returns the error that prevents it.
    pub(crate) fn mark_removed(&self) -> Result<()> {
        let mut cell = self.cell.lock();
        if !cell.users.is_empty() {
            return Err(Error::InUse {
                plugin: self.name.clone(),
                dependents: sorted_names(&cell.users),
            });
        }
        if !cell.state.is_idle() {
            return Err(Error::InvalidTransition {
                plugin: self.name.clone(),
                from: cell.state.name().to_owned(),
                to: "unregistered".to_owned(),
            });
        }
        cell.removed = true;
        Ok(())
    }
}

/// The names in a users map, sorted by name.
fn sorted_names(users: &BTreeMap<Uuid, String>) -> Vec<String> {
    let mut names: Vec<String> = users.values().cloned().collect();
    names.sort();
    names
}

/// An admitted call; dropping it lets a waiting shutdown proceed.
pub(crate) struct CallGuard {
    slot: Arc<Slot>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        // Only a closed gate can have a drain waiting: `drain_calls` runs after
        // `begin_shutdown`, which closes the gate under the same lock this
        // decrement takes, so a drop that still sees `Active` happened before the
        // drain's check and is counted by it. Skipping the wake-up otherwise keeps
        // `Notify`'s own lock off every call.
        let wake_drain = {
            let mut cell = self.slot.cell.lock();
            cell.in_flight -= 1;
            cell.in_flight == 0 && !cell.state.is_active()
        };
        if wake_drain {
            self.slot.drained.notify_waiters();
        }
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
            cell: Mutex::new(Cell {
                state: PluginState::Registered,
                in_flight: 0,
                users: BTreeMap::new(),
                holds: Vec::new(),
                removed: false,
            }),
            drained: Notify::new(),
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
