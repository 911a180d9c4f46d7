//! Operations over all plugins: resolving the start order, loading everything
//! (dependencies first, in parallel where independent) and unloading everything
//! (dependents first).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, Shared};
use uuid::Uuid;

use super::lifecycle::PluginState;
use super::path;
use super::registry::Slot;
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

/// One plugin's unload, awaitable by each of its dependencies.
type Outcome = Shared<BoxFuture<'static, Result<()>>>;

/// Unloads every plugin: each as soon as every plugin holding it up is done,
/// independent ones in parallel. The order comes from who holds whom right now
/// (the exact reverse of the order the running plugins were started in).
pub(crate) async fn unload_all(inner: &Arc<Inner>) -> BatchReport {
    let slots = inner.registry.snapshot();
    let holders: HashMap<Uuid, Vec<Uuid>> = slots.iter().map(|s| (s.id, s.user_ids())).collect();
    let caller_path = path::current();
    let mut outcomes: HashMap<Uuid, Outcome> = HashMap::new();
    let mut pending: Vec<Arc<Slot>> = slots.clone();
    // Create each task after its holders' tasks (holding is acyclic: a plugin
    // can only hold plugins that were Active before it started).
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for slot in pending {
            let users = &holders[&slot.id];
            let ready = users
                .iter()
                .all(|u| outcomes.contains_key(u) || !holders.contains_key(u));
            if !ready {
                rest.push(slot);
                continue;
            }
            let waits: Vec<Outcome> = users
                .iter()
                .filter_map(|u| outcomes.get(u).cloned())
                .collect();
            let inner = Arc::clone(inner);
            let id = slot.id;
            let name = slot.name.clone();
            let task = tokio::spawn(path::within(caller_path.clone(), async move {
                for w in waits {
                    let _ = w.await;
                }
                inner.unload(&slot).await
            }));
            let outcome = task
                .map(move |joined| {
                    joined.unwrap_or_else(|e| {
                        Err(Error::PluginFailed {
                            plugin: name,
                            operation: "unload".to_owned(),
                            reason: format!("the manager task running it ended abnormally: {e}"),
                        })
                    })
                })
                .boxed()
                .shared();
            outcomes.insert(id, outcome);
        }
        if rest.len() == before {
            // Unreachable while holding is acyclic; never loop forever regardless.
            for slot in &rest {
                let inner = Arc::clone(inner);
                let slot = Arc::clone(slot);
                let id = slot.id;
                let task = tokio::spawn(async move { inner.unload(&slot).await });
                outcomes.insert(
                    id,
                    task.map(|j| j.unwrap_or_else(|e| Err(Error::Config(e.to_string()))))
                        .boxed()
                        .shared(),
                );
            }
            rest.clear();
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
