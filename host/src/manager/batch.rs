//! Operations over all plugins: resolving the start order, loading everything
//! (dependencies first, in parallel where independent) and unloading everything
//! (dependents first).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;
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

/// The start order of the registered plugins.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Startable plugins in waves: each plugin's dependencies are in earlier waves.
    pub waves: Vec<Vec<Uuid>>,
    /// The resolved dependencies of each startable plugin (required ones and
    /// present optional ones).
    pub dependencies: HashMap<Uuid, Vec<Uuid>>,
    /// Plugins that cannot start, with the reason.
    pub blocked: HashMap<Uuid, Error>,
}

struct Node {
    id: Uuid,
    name: String,
    /// (dependency id if present and matching, name, requirement, optional, found version)
    deps: Vec<(
        Option<Uuid>,
        crate::info::DependencySpec,
        Option<semver::Version>,
    )>,
}

pub(crate) fn resolve(inner: &Inner) -> Resolution {
    let slots = inner.registry.snapshot();
    let by_name: HashMap<&str, &Arc<Slot>> = slots.iter().map(|s| (s.name.as_str(), s)).collect();
    let nodes: Vec<Node> = slots
        .iter()
        .map(|s| Node {
            id: s.id,
            name: s.name.clone(),
            deps: s
                .plugin
                .info()
                .dependencies
                .iter()
                .map(|d| {
                    let found = by_name.get(d.name.as_str());
                    let version = found.map(|f| f.plugin.info().version.clone());
                    let id = found
                        .filter(|f| d.requirement.matches(&f.plugin.info().version))
                        .map(|f| f.id);
                    (id, d.clone(), version)
                })
                .collect(),
        })
        .collect();
    let mut res = Resolution::default();
    for n in &nodes {
        for (id, spec, found) in &n.deps {
            if id.is_none() && !spec.optional {
                let e = match found {
                    None => Error::MissingDependency {
                        plugin: n.name.clone(),
                        dependency: spec.name.clone(),
                        requirement: spec.requirement.to_string(),
                    },
                    Some(v) => Error::VersionConflict {
                        plugin: n.name.clone(),
                        dependency: spec.name.clone(),
                        requirement: spec.requirement.to_string(),
                        found: v.to_string(),
                    },
                };
                res.blocked.entry(n.id).or_insert(e);
            }
        }
        res.dependencies
            .insert(n.id, n.deps.iter().filter_map(|d| d.0).collect());
    }
    // Kahn's algorithm in waves over the rest.
    let names: HashMap<Uuid, &str> = nodes.iter().map(|n| (n.id, n.name.as_str())).collect();
    let mut done: HashSet<Uuid> = HashSet::new();
    loop {
        let wave: Vec<Uuid> = nodes
            .iter()
            .filter(|n| !done.contains(&n.id) && !res.blocked.contains_key(&n.id))
            .filter(|n| res.dependencies[&n.id].iter().all(|d| done.contains(d)))
            .map(|n| n.id)
            .collect();
        // Dependents of blocked plugins are blocked too.
        let mut newly_blocked = Vec::new();
        for n in &nodes {
            if done.contains(&n.id) || res.blocked.contains_key(&n.id) {
                continue;
            }
            if let Some(dep) = res.dependencies[&n.id]
                .iter()
                .find(|d| res.blocked.contains_key(d))
            {
                newly_blocked.push((
                    n.id,
                    Error::DependencyFailed {
                        plugin: n.name.clone(),
                        dependency: names[dep].to_owned(),
                    },
                ));
            }
        }
        let progress = !wave.is_empty() || !newly_blocked.is_empty();
        res.blocked.extend(newly_blocked);
        if wave.is_empty() {
            if !progress {
                break;
            }
            continue;
        }
        done.extend(wave.iter().copied());
        res.waves.push(wave);
    }
    let stuck: Vec<&Node> = nodes
        .iter()
        .filter(|n| !done.contains(&n.id) && !res.blocked.contains_key(&n.id))
        .collect();
    let mut cycle: Vec<String> = stuck.iter().map(|n| n.name.clone()).collect();
    if let Some(first) = cycle.first().cloned() {
        cycle.push(first);
    }
    for n in stuck {
        res.blocked.insert(
            n.id,
            Error::DependencyCycle {
                cycle: cycle.clone(),
            },
        );
    }
    res.dependencies.retain(|id, _| done.contains(id));
    res
}

type Outcome = Shared<BoxFuture<'static, Result<()>>>;

/// Loads every plugin of the plan: each starts as soon as its dependencies are
/// Active, at most `max_parallel` initialize at once.
pub(crate) async fn load_all(inner: &Arc<Inner>) -> BatchReport {
    let plan = resolve(inner);
    let slots = inner.registry.snapshot();
    let by_id: HashMap<Uuid, Arc<Slot>> = slots.iter().map(|s| (s.id, Arc::clone(s))).collect();
    let permits = Arc::new(Semaphore::new(inner.config.max_parallel()));
    let caller_path = path::current();
    let mut outcomes: HashMap<Uuid, Outcome> = HashMap::new();
    for id in plan.waves.iter().flatten() {
        let Some(slot) = by_id.get(id).cloned() else {
            continue;
        };
        let deps: Vec<(Arc<Slot>, Outcome)> = plan.dependencies[id]
            .iter()
            .filter_map(|d| Some((by_id.get(d)?.clone(), outcomes.get(d)?.clone())))
            .collect();
        let inner = Arc::clone(inner);
        let permits = Arc::clone(&permits);
        let task = tokio::spawn(path::within(caller_path.clone(), async move {
            for (dep, outcome) in deps {
                if outcome.await.is_err() && is_required(&slot, &dep.name) {
                    return inner
                        .block(
                            &slot,
                            Error::DependencyFailed {
                                plugin: slot.name.clone(),
                                dependency: dep.name.clone(),
                            },
                        )
                        .await;
                }
            }
            let _permit = permits.acquire_owned().await;
            inner.load(&slot).await
        }));
        let outcome = task
            .map(|joined| {
                joined.unwrap_or_else(|e| {
                    Err(Error::Config(format!("a load task ended abnormally: {e}")))
                })
            })
            .boxed()
            .shared();
        outcomes.insert(*id, outcome);
    }
    for (id, cause) in &plan.blocked {
        if let Some(slot) = by_id.get(id).cloned() {
            let inner = Arc::clone(inner);
            let cause = cause.clone();
            let task = tokio::spawn(async move { inner.block(&slot, cause).await });
            let outcome = task
                .map(|joined| {
                    joined.unwrap_or_else(|e| {
                        Err(Error::Config(format!("a load task ended abnormally: {e}")))
                    })
                })
                .boxed()
                .shared();
            outcomes.insert(*id, outcome);
        }
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

fn is_required(slot: &Slot, dependency: &str) -> bool {
    slot.plugin
        .info()
        .dependencies
        .iter()
        .any(|d| d.name == dependency && !d.optional)
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

/// Unloads every plugin: each as soon as all plugins holding it up are done,
/// independent ones in parallel.
pub(crate) async fn unload_all(inner: &Arc<Inner>) -> BatchReport {
    let slots = inner.registry.snapshot();
    // Who holds whom up right now: the exact reverse dependency graph.
    let holders: HashMap<Uuid, Vec<Uuid>> = slots.iter().map(|s| (s.id, s.user_ids())).collect();
    let caller_path = path::current();
    let mut outcomes: HashMap<Uuid, Outcome> = HashMap::new();
    // Create tasks dependents-first: a slot's task needs its holders' outcomes.
    let mut pending: Vec<Arc<Slot>> = slots.clone();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for slot in pending {
            let users = &holders[&slot.id];
            if users
                .iter()
                .any(|u| holders.contains_key(u) && !outcomes.contains_key(u))
            {
                rest.push(slot);
                continue;
            }
            let waits: Vec<Outcome> = users
                .iter()
                .filter_map(|u| outcomes.get(u).cloned())
                .collect();
            let inner = Arc::clone(inner);
            let id = slot.id;
            let task = tokio::spawn(path::within(caller_path.clone(), async move {
                for w in waits {
                    let _ = w.await;
                }
                inner.unload(&slot).await
            }));
            outcomes.insert(
                id,
                task.map(|joined| {
                    joined.unwrap_or_else(|e| {
                        Err(Error::Config(format!(
                            "an unload task ended abnormally: {e}"
                        )))
                    })
                })
                .boxed()
                .shared(),
            );
        }
        pending = rest;
        if pending.len() == before {
            // Cannot happen (holding is acyclic); unload the rest without ordering.
            for slot in pending.drain(..) {
                let inner = Arc::clone(inner);
                let id = slot.id;
                let task = tokio::spawn(async move { inner.unload(&slot).await });
                outcomes.insert(
                    id,
                    task.map(|j| j.unwrap_or_else(|e| Err(Error::Config(e.to_string()))))
                        .boxed()
                        .shared(),
                );
            }
        }
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
