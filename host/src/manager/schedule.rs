//! The one place that orders starts and stops of several plugins.
//!
//! Starting by a resolved [`Plan`]: each plugin starts as soon as its
//! dependencies have finished starting, at most `max_parallel` initialize at
//! once, and a plugin whose required dependency failed ends
//! `Failed(DependencyFailed)` without its initialize running
//! ([`Inner::block`]). Stopping everything: each plugin as soon as every
//! plugin holding it up is done, independent ones in parallel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::batch_report::{BatchReport, PluginOutcome};
use super::lifecycle::PluginState;
use super::reentry;
use super::registry::Slot;
use super::tasks::{outcome, task_failed, Outcome};
use super::Inner;
use crate::error::{Error, Result};
use crate::resolve::{self, Plan};

/// One plugin of a [`Inner::start`] batch.
struct Job {
    slot: Arc<Slot>,
    /// Positions of the dependencies it waits for.
    deps: Vec<usize>,
    /// How many of them have not finished yet.
    waiting: usize,
    /// Positions of the plugins waiting for it.
    dependents: Vec<usize>,
    /// The plan's reason, for a blocked plugin (marked Failed, never started).
    blocked: Option<Error>,
}

impl Inner {
    /// Resolves the registered plugins: a lock-free snapshot of the registry,
    /// then the resolver with no lock held.
    pub(crate) fn plan(&self) -> Plan {
        // The load profile's `resolve` of the whole set (no `plugin` field).
        let _span = tracing::debug_span!("resolve").entered();
        let slots = self.registry.snapshot();
        // Views, not copies: the resolver reads each plugin's metadata where
        // it lives (and sorts the views by name itself).
        let nodes = slots
            .iter()
            .map(|s| resolve::NodeView::of_info(s.id, s.plugin.info()))
            .collect();
        resolve::resolve_views(nodes)
    }

    /// Starts `targets` (which must include the dependencies they need) by
    /// `plan` and returns each target's outcome. Blocked targets are marked
    /// Failed with the plan's reason, without running their code.
    ///
    /// A plugin's task is spawned only once all its dependencies have finished,
    /// and at most twice `max_parallel` tasks exist at a time (the semaphore still
    /// bounds initializations to `max_parallel`). So the memory in use stays the
    /// same whether 1,000 or 10,000 plugins start: spawning every task up front,
    /// each waiting on its dependencies' shared outcomes, made the working set
    /// outgrow the CPU caches and the per-plugin cost grow with the count.
    pub(crate) async fn start(
        self: &Arc<Self>,
        plan: &Plan,
        targets: &[Uuid],
    ) -> HashMap<Uuid, Result<()>> {
        let wanted: HashSet<Uuid> = targets.iter().copied().collect();
        let max_parallel = self.config.max_parallel();
        let permits = Arc::new(Semaphore::new(max_parallel));
        let caller_path = reentry::current();
        let mut results: HashMap<Uuid, Result<()>> = HashMap::with_capacity(targets.len());

        // Startable targets in wave order, then blocked ones; dependencies by position.
        let mut jobs: Vec<Job> = Vec::with_capacity(targets.len());
        let mut position: HashMap<Uuid, usize> = HashMap::with_capacity(targets.len());
        for &id in plan.waves.iter().flatten().filter(|id| wanted.contains(id)) {
            let Some(slot) = self.registry.get(id) else {
                // Unregistered since the snapshot; its dependents do not wait for it
                // (the hold check in `load` reports it missing).
                results.insert(id, Err(Error::NotFound(id)));
                continue;
            };
            // Dependencies are in earlier waves, so they have a position already.
            let deps: Vec<usize> = plan.dependencies[&id]
                .iter()
                .filter_map(|d| position.get(d).copied())
                .collect();
            let i = jobs.len();
            for &d in &deps {
                jobs[d].dependents.push(i);
            }
            position.insert(id, i);
            jobs.push(Job {
                slot,
                waiting: deps.len(),
                deps,
                dependents: Vec::new(),
                blocked: None,
            });
        }
        for &id in targets {
            if let (Some(cause), Some(slot)) = (plan.blocked.get(&id), self.registry.get(id)) {
                jobs.push(Job {
                    slot,
                    waiting: 0,
                    deps: Vec::new(),
                    dependents: Vec::new(),
                    blocked: Some(cause.clone()),
                });
            }
        }

        let mut ready: VecDeque<usize> =
            (0..jobs.len()).filter(|&i| jobs[i].waiting == 0).collect();
        let mut running = FuturesUnordered::new();
        let cap = max_parallel.max(1).saturating_mul(2);
        loop {
            while running.len() < cap {
                let Some(i) = ready.pop_front() else { break };
                let task = self.spawn_job(&mut jobs, i, &permits, &caller_path);
                running.push(async move { (i, task.await) });
            }
            let Some((i, joined)) = running.next().await else {
                break;
            };
            let job = &mut jobs[i];
            let result = joined.unwrap_or_else(|e| Err(task_failed(&job.slot.name, "load", e)));
            results.insert(job.slot.id, result);
            for d in std::mem::take(&mut job.dependents) {
                jobs[d].waiting -= 1;
                if jobs[d].waiting == 0 {
                    ready.push_back(d);
                }
            }
        }
        results
    }

    /// Spawns job `i` (whose dependencies have all finished).
    fn spawn_job(
        self: &Arc<Self>,
        jobs: &mut [Job],
        i: usize,
        permits: &Arc<Semaphore>,
        caller_path: &Arc<[Uuid]>,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let inner = Arc::clone(self);
        let slot = Arc::clone(&jobs[i].slot);
        if let Some(cause) = jobs[i].blocked.take() {
            return tokio::spawn(reentry::within(caller_path.clone(), async move {
                inner.block(&slot, cause).await
            }));
        }
        let deps: Vec<Arc<Slot>> = jobs[i]
            .deps
            .iter()
            .map(|&d| Arc::clone(&jobs[d].slot))
            .collect();
        let permits = Arc::clone(permits);
        tokio::spawn(reentry::within(caller_path.clone(), async move {
            if let Some(failed) = Self::failed_required_dependency(&slot, &deps) {
                let cause = Error::DependencyFailed {
                    plugin: slot.name.clone(),
                    dependency: failed,
                };
                return inner.block(&slot, cause).await;
            }
            let _permit = permits.acquire_owned().await;
            inner.load(&slot).await
        }))
    }

    /// The name of the first required dependency (among `deps`) that ended Failed.
    /// A dependency that is merely not Active (unloaded concurrently) is left to
    /// the hold check, which reports it without marking this plugin failed.
    /// An unregistered dependency is left to the hold check too. The (cheap)
    /// state is checked first: only a failed dependency costs a scan of the
    /// declared dependencies.
    fn failed_required_dependency(slot: &Slot, deps: &[Arc<Slot>]) -> Option<String> {
        deps.iter().find_map(|dep| {
            if dep.is_removed() || dep.state().failure().is_none() {
                return None;
            }
            let required = slot
                .plugin
                .info()
                .dependencies
                .iter()
                .any(|d| d.name == dep.name && !d.optional);
            required.then(|| dep.name.clone())
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
        if reentry::contains(slot.id) {
            return Err(cause);
        }
        let _lifecycle = slot.lifecycle.lock().await;
        let state = slot.state();
        if state.is_active() {
            return Ok(());
        }
        if state.is_idle() && !slot.is_removed() {
            self.transition(slot, PluginState::Failed(Box::new(cause.clone())))?;
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
    let caller_path = reentry::current();
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
            let task = tokio::spawn(reentry::within(caller_path.clone(), async move {
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
