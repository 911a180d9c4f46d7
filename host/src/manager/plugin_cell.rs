//! A slot's plugin object, swappable by a reload without a lock on the read path.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, OnceLock};

use super::append_only::{AppendOnly, Node};
use crate::info::PluginSource;
use crate::plugin::Plugin;

/// A slot's plugin object. A reload swaps it for another; every object the
/// slot ever had stays here (their libraries stay mapped anyway, see
/// ARCHITECTURE.md "Hot reload"), so a reader borrows the current one for as
/// long as it holds the slot, with no lock and no reference-count write.
pub(crate) struct PluginCell {
    /// Every plugin object of this slot, oldest first. Append-only and
    /// lock-free ([`AppendOnly`]): pushed to only under the slot's lifecycle lock.
    generations: AppendOnly<Generation>,
    /// The current object: always a node of `generations`. Atomic, not a lock:
    /// written (after the push) only under the slot's lifecycle lock while the
    /// call gate is held, so a call admitted afterwards sees the new value.
    current: AtomicPtr<Node<Generation>>,
    /// The content ids of the distinct library images mapped for this plugin
    /// (an unknown first image gets a placeholder). Append-only, lock-free;
    /// written only by registration and by the one reload in progress.
    images: AppendOnly<String>,
}

/// One plugin object of a slot.
struct Generation {
    plugin: Arc<dyn Plugin>,
    /// The content id of its library image, when known (set once).
    image: OnceLock<String>,
}

impl PluginCell {
    pub(crate) fn new(plugin: Arc<dyn Plugin>) -> Self {
        let generations = AppendOnly::new();
        let first = node_ptr(generations.push(Generation {
            plugin,
            image: OnceLock::new(),
        }));
        Self {
            generations,
            current: AtomicPtr::new(first),
            images: AppendOnly::new(),
        }
    }

    fn current_node(&self) -> &Node<Generation> {
        let node = self.current.load(Ordering::Acquire);
        // SAFETY: `current` only ever holds a node of `self.generations` (from
        // `push` or `get`), and a list's nodes live as long as the list, which
        // `&self` borrows; the acquire load pairs with the release store that
        // published it after the push.
        unsafe { &*node }
    }

    fn current_generation(&self) -> &Generation {
        self.current_node().value()
    }

    /// The current plugin object.
    pub(crate) fn current(&self) -> &Arc<dyn Plugin> {
        &self.current_generation().plugin
    }

    /// The index of the current object (to switch back to it).
    pub(crate) fn current_index(&self) -> usize {
        self.current_node().index()
    }

    /// The content id of the current object's library image, when known.
    pub(crate) fn current_image(&self) -> Option<&str> {
        self.current_generation().image.get().map(String::as_str)
    }

    /// Records the content id of the current object's library image (at
    /// registration, from its admission report).
    pub(crate) fn set_current_image(&self, content_id: &str) {
        if self
            .current_generation()
            .image
            .set(content_id.to_owned())
            .is_ok()
        {
            self.record_image(content_id);
        }
    }

    /// Gives a native current object whose image is unknown (opened without
    /// admission) a placeholder image, so it is counted once it is retained.
    pub(crate) fn record_current_image_if_unknown(&self) {
        let generation = self.current_generation();
        let native = matches!(generation.plugin.info().source, PluginSource::Library(_));
        if native && generation.image.get().is_none() {
            self.set_current_image(&format!("unknown image {}", self.current_index()));
        }
    }

    /// Makes `plugin` (its library image `image`, if native) the current
    /// object; returns its index. Only under the slot's lifecycle lock.
    pub(crate) fn install(&self, plugin: Arc<dyn Plugin>, image: Option<String>) -> usize {
        if let Some(id) = &image {
            self.record_image(id);
        }
        let node = self.generations.push(Generation {
            plugin,
            image: image.map(OnceLock::from).unwrap_or_default(),
        });
        self.current.store(node_ptr(node), Ordering::Release);
        node.index()
    }

    /// Makes the object at `index` (from [`PluginCell::current_index`]) current
    /// again. Only under the lifecycle lock.
    pub(crate) fn switch_to(&self, index: usize) {
        if let Some(node) = self.generations.get(index) {
            self.current.store(node_ptr(node), Ordering::Release);
        }
    }

    /// Records that the library image `content_id` was mapped for this plugin
    /// (once per distinct id).
    pub(crate) fn record_image(&self, content_id: &str) {
        if !self.images.iter().any(|id| id.value() == content_id) {
            self.images.push(content_id.to_owned());
        }
    }

    /// How many library images of this plugin stay mapped beside the one in use.
    pub(crate) fn retained_images(&self) -> usize {
        let in_use = self.current_image().is_some();
        self.images.len().saturating_sub(usize::from(in_use))
    }
}

/// The pointer `current` stores for `node` (never written through).
fn node_ptr(node: &Node<Generation>) -> *mut Node<Generation> {
    std::ptr::from_ref(node).cast_mut()
}

impl std::ops::Deref for PluginCell {
    type Target = dyn Plugin;

    fn deref(&self) -> &(dyn Plugin + 'static) {
        &**self.current()
    }
}
