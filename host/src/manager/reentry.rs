//! Refusing lifecycle requests that would wait on themselves, using the
//! lifecycle path: which plugins' lifecycle operations enclose the code
//! running on the current task.
//!
//! While a plugin's `initialize` or `shutdown` runs, its lifecycle lock is held.
//! If code running inside it (the plugin itself, or another plugin it calls on
//! the same task) asks for a lifecycle operation on that same plugin, waiting for
//! the lock would wait forever. The path lets the manager refuse that request at
//! once with [`crate::Error::InvalidTransition`] instead.
//!
//! The path is a tokio task-local, carried into the tasks the manager spawns for
//! its own lifecycle operations. It does not follow tasks that plugin code
//! spawns itself; such a request waits until the enclosing phase times out.

use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;

use super::registry::Slot;
use crate::error::{Error, Result};

tokio::task_local! {
    /// Ids of the plugins whose lifecycle phase encloses the current code, outermost first.
    static PATH: Arc<[Uuid]>;
}

/// The current path (empty outside any lifecycle phase).
pub(crate) fn current() -> Arc<[Uuid]> {
    PATH.try_with(Arc::clone).unwrap_or_else(|_| Arc::from([]))
}

/// Whether the lifecycle phase of `id` encloses the current code.
pub(crate) fn contains(id: Uuid) -> bool {
    PATH.try_with(|p| p.contains(&id)).unwrap_or(false)
}

/// Runs `fut` with `path` as the current path.
///
/// A plain function returning tokio's scope future, not an `async fn`: an
/// `async fn` would keep its argument `fut` beside the scope future holding it,
/// doubling the size of (and the bytes copied for) every lifecycle task.
pub(crate) fn within<F: Future>(path: Arc<[Uuid]>, fut: F) -> impl Future<Output = F::Output> {
    PATH.scope(path, fut)
}

/// Runs `fut` (a lifecycle phase of `id`) with `id` appended to the path
/// current where this is called (callers await it in the same task).
pub(crate) fn entering<F: Future>(id: Uuid, fut: F) -> impl Future<Output = F::Output> {
    let mut path = current().to_vec();
    path.push(id);
    within(path.into(), fut)
}

/// Refuses a lifecycle request on `slot` from code running inside its own
/// lifecycle phase (its lock is held further up: waiting would never end).
pub(crate) fn refuse(slot: &Slot, requested: &str) -> Result<()> {
    if contains(slot.id) {
        return Err(Error::InvalidTransition {
            plugin: slot.name.clone(),
            from: slot.state().name().to_owned(),
            to: requested.to_owned(),
        });
    }
    Ok(())
}
