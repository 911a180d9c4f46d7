//! Operations over all plugins: resolving the start order, loading everything
//! (dependencies first, in parallel where independent) and unloading everything
//! (dependents first).

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::lifecycle::PluginState;
use super::path;
use super::registry::Slot;
use super::schedule::{outcome, Outcome};
use super::Inner;
use crate::error::{Error, Result};

/// The outcome of one plugin in a batch operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOutcome {
    /// The plugin's id.
    pub id: Uuid,
    /// The plugin's name.
    pub name: String,
    /// What happened to it.
    pub result: Result<()>,
}

/// What a batch operation did to each plugin, in registration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// One entry per plugin.
    pub outcomes: Vec<PluginOutcome>,
}

impl BatchReport {
    /// Whether every plugin succeeded.
    pub fn is_ok(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }

    /// The plugins that did not succeed.
    pub fn failures(&self) -> impl Iterator<Item = &PluginOutcome> {
        self.outcomes.iter().filter(|o| o.result.is_err())
    }

    /// The outcome of the plugin called `name`.
    pub fn outcome(&self, name: &str) -> Option<&PluginOutcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }
}

/// Loads every registered plugin by the resolved plan (see `Inner::start`).
pub(crate) async fn load_all(inner: &Arc<Inner>) -> BatchReport {
    let plan = inner.plan();
    let slots = inner.registry.snapshot();
    // Every plugin of the snapshot the plan knows about (registered since: not in it).
    let targets: Vec<Uuid> = slots
        .iter()
        .map(|s| s.id)
        .filter(|id| plan.is_startable(*id) || plan.blocked.contains_key(id))
        .collect();
    let mut results = inner.start(&plan, &targets).await;
    let mut report = BatchReport::default();
    for slot in slots {
        if let Some(result) = results.remove(&slot.id) {
            report.outcomes.push(PluginOutcome {
                id: slot.id,
                name: slot.name.clone(),
                result,
            });
        }
    }
    report
}

impl Inner {
    /// Marks an idle plugin Failed with `cause` without running its code, and
    /// returns the cause. An Active plugin is left alone (it already runs).
    pub(crate) async fn block(self: &Arc<Self>, slot: &Arc<Slot>, cause: Error) -> Result<()> {
        if path::contains(slot.id) {
            return Err(cause);
        }
        let _lifecycle = slot.lifecycle.lock().await;
        let state = slot.state();
        if state.is_active() {
            return Ok(());
        }
        if state.is_idle() && !slot.is_removed() {
            self.set_state(slot, PluginState::Failed(Box::new(cause.clone())))?;
        }
        Err(cause)
    }
}

/// Unloads every plugin: each as soon as every plugin holding it up is done,
/// independent ones in parallel. The order comes from who holds whom right now
/// (the exact reverse of the order the running plugins were started in).
pub(crate) async fn unload_all(inner: &Arc<Inner>) -> BatchReport {
    let slots = inner.registry.snapshot();
    let holders: HashMap<Uuid, Vec<Uuid>> = slots.iter().map(|s| (s.id, s.user_ids())).collect();
    let caller_path = path::current();
    let mut outcomes: HashMap<Uuid, Outcome> = HashMap::new();
    let mut pending: Vec<Arc<Slot>> = slots.clone();
    // Each plugin's task is created after its holders' tasks, so it can await them.
    while !pending.is_empty() {
        let (mut ready, mut rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|s| {
            holders[&s.id]
                .iter()
                .all(|u| outcomes.contains_key(u) || !holders.contains_key(u))
        });
        if ready.is_empty() {
            // Holding is acyclic (a plugin only holds plugins that were Active
            // before it started), so this never happens; never loop forever anyway.
            std::mem::swap(&mut ready, &mut rest);
        }
        for slot in ready {
            let waits: Vec<Outcome> = holders[&slot.id]
                .iter()
                .filter_map(|u| outcomes.get(u).cloned())
                .collect();
            let id = slot.id;
            let inner = Arc::clone(inner);
            let task_slot = Arc::clone(&slot);
            let task = tokio::spawn(path::within(caller_path.clone(), async move {
                for w in waits {
                    let _ = w.await;
                }
                inner.unload(&task_slot).await
            }));
            outcomes.insert(id, outcome(slot, "unload", task));
        }
        pending = rest;
    }
    let mut report = BatchReport::default();
    for slot in slots {
        if let Some(outcome) = outcomes.remove(&slot.id) {
            report.outcomes.push(PluginOutcome {
                id: slot.id,
                name: slot.name.clone(),
                result: outcome.await,
            });
        }
    }
    report
}
