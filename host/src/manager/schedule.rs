//! Starting a set of plugins by a resolved [`Plan`]: each plugin starts as soon
//! as its dependencies have finished starting, at most `max_parallel` initialize
//! at once, and a plugin whose required dependency failed ends
//! `Failed(DependencyFailed)` without its initialize running.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::path;
use super::registry::Slot;
use super::Inner;
use crate::error::{Error, Result};
use crate::resolve::{self, Plan};

/// One plugin's outcome in a batch, awaitable by every plugin that must wait for it.
pub(crate) type Outcome = Shared<BoxFuture<'static, Result<()>>>;

/// A spawned task's result as an [`Outcome`]; a task that ended abnormally (a
/// manager bug) becomes an error naming the plugin and the operation.
pub(crate) fn outcome(
    name: &str,
    operation: &str,
    task: tokio::task::JoinHandle<Result<()>>,
) -> Outcome {
    let (name, operation) = (name.to_owned(), operation.to_owned());
    task.map(move |joined| {
        joined.unwrap_or_else(|e| {
            Err(Error::PluginFailed {
                plugin: name,
                operation,
                reason: format!("the manager task running it ended abnormally: {e}"),
            })
        })
    })
    .boxed()
    .shared()
}

impl Inner {
    /// Resolves the registered plugins: a snapshot under the registry's short
    /// read lock, then the resolver with no lock held.
    pub(crate) fn plan(&self) -> Plan {
        let nodes: Vec<resolve::Node> = self
            .registry
            .snapshot()
            .iter()
            .map(|s| resolve::Node::from_info(s.id, s.plugin.info()))
            .collect();
        resolve::resolve(&nodes)
    }

    /// Starts `targets` (which must include the dependencies they need) by
    /// `plan` and returns each target's outcome. Blocked targets are marked
    /// Failed with the plan's reason, without running their code.
    pub(crate) async fn start(
        self: &Arc<Self>,
        plan: &Plan,
        targets: &[Uuid],
    ) -> HashMap<Uuid, Result<()>> {
        let wanted: HashSet<Uuid> = targets.iter().copied().collect();
        let permits = Arc::new(Semaphore::new(self.config.max_parallel()));
        let caller_path = path::current();
        let mut outcomes: HashMap<Uuid, Outcome> = HashMap::new();
        let mut results: HashMap<Uuid, Result<()>> = HashMap::new();

        for &id in plan.waves.iter().flatten().filter(|id| wanted.contains(id)) {
            let Some(slot) = self.registry.get(id) else {
                // Unregistered since the snapshot.
                results.insert(id, Err(Error::NotFound(id)));
                continue;
            };
            // Dependencies are in earlier waves, so their outcomes exist already
            // (unless they were unregistered since the snapshot: then the hold
            // check in `load` reports them missing).
            let deps: Vec<(Uuid, Outcome)> = plan.dependencies[&id]
                .iter()
                .filter_map(|d| Some((*d, outcomes.get(d)?.clone())))
                .collect();
            let inner = Arc::clone(self);
            let permits = Arc::clone(&permits);
            let task = tokio::spawn(path::within(caller_path.clone(), async move {
                for (_, dep) in &deps {
                    let _ = dep.clone().await;
                }
                // The load's (large) future is allocated only now, so a task
                // still waiting for its dependencies stays small: with thousands
                // of plugins waiting, their tasks would otherwise outgrow the
                // CPU caches and make the per-plugin cost grow with the count.
                Box::pin(async move {
                    if let Some(failed) = inner.failed_required_dependency(&slot, &deps) {
                        let cause = Error::DependencyFailed {
                            plugin: slot.name.clone(),
                            dependency: failed,
                        };
                        return inner.block(&slot, cause).await;
                    }
                    let _permit = permits.acquire_owned().await;
                    inner.load(&slot).await
                })
                .await
            }));
            outcomes.insert(id, outcome(&self.name_of(id), "load", task));
        }
        for &id in targets {
            if let (Some(cause), Some(slot)) = (plan.blocked.get(&id), self.registry.get(id)) {
                let inner = Arc::clone(self);
                let cause = cause.clone();
                let task = tokio::spawn(path::within(caller_path.clone(), async move {
                    inner.block(&slot, cause).await
                }));
                outcomes.insert(id, outcome(&self.name_of(id), "load", task));
            }
        }
        for &id in targets {
            if let Some(o) = outcomes.remove(&id) {
                results.insert(id, o.await);
            }
        }
        results
    }

    /// The name of the first required dependency (among `deps`) that ended Failed.
    /// A dependency that is merely not Active (unloaded concurrently) is left to
    /// the hold check, which reports it without marking this plugin failed.
    fn failed_required_dependency(&self, slot: &Slot, deps: &[(Uuid, Outcome)]) -> Option<String> {
        deps.iter().find_map(|(id, _)| {
            let dep = self.registry.get(*id)?;
            let required = slot
                .plugin
                .info()
                .dependencies
                .iter()
                .any(|d| d.name == dep.name && !d.optional);
            (required && dep.state().failure().is_some()).then(|| dep.name.clone())
        })
    }

    /// Whether every dependency `slot` would wait for is already Active: each
    /// required one is registered, matches and is Active; each optional one is
    /// absent, mismatched, or Active. (Only a shortcut: `load` re-checks.)
    fn dependencies_ready(&self, slot: &Slot) -> bool {
        slot.plugin
            .info()
            .dependencies
            .iter()
            .all(|d| match self.registry.get_by_name(&d.name) {
                None => d.optional,
                Some(dep) if !d.requirement.matches(&dep.plugin.info().version) => d.optional,
                Some(dep) => dep.state().is_active(),
            })
    }

    fn name_of(&self, id: Uuid) -> String {
        self.registry
            .get(id)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// Brings `slot` to Active after its dependencies, transitively (see
    /// `PluginManager::load_plugin`).
    pub(crate) async fn load_with_dependencies(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<()> {
        if slot.state().is_active() {
            return Ok(());
        }
        if self.dependencies_ready(slot) {
            // Nothing to bring up first: skip resolving the whole registry.
            return self.load(slot).await;
        }
        let plan = self.plan();
        let mut targets = plan.transitive_dependencies(slot.id);
        targets.push(slot.id);
        self.start(&plan, &targets)
            .await
            .remove(&slot.id)
            .unwrap_or(Err(Error::NotFound(slot.id)))
    }
}
