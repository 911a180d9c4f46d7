//! The resolution itself: name claims, blocking, waves. See the module docs of
//! [`crate::resolve`] for the policies implemented here.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::graph::{self, CycleWalk, Graph, GraphBuilder};
use super::plan::{Entry, Plan};
use super::{ResolveNode, MAX_CYCLE_NAMES};
use crate::{DependencySpec, Error};

/// Who owns a name.
#[derive(Debug, Clone, Copy)]
enum Claim {
    /// This node (index) is the plugin of that name.
    Winner(usize),
    /// Several nodes claim the name with the same highest version; all are refused.
    Refused,
}

/// Working state of one resolution. Nodes are addressed by their index in `nodes`,
/// which is sorted by name (then version, highest first).
pub(super) struct Resolver<'a, N: ResolveNode> {
    nodes: Vec<&'a N>,
    /// Position of each node's id in `nodes`.
    index: HashMap<uuid::Uuid, usize>,
    /// What each declared dependency refers to (`None`: nobody has that name), flat:
    /// node `v`'s are `claims[claims_start[v]..claims_start[v + 1]]`, aligned with
    /// `nodes[v].dependencies`. Looked up once so later passes do no hashing.
    claims: Vec<Option<Claim>>,
    claims_start: Vec<usize>,
    blocked: Vec<Option<Error>>,
    skipped: Vec<Vec<Error>>,
}

impl<'a, N: ResolveNode> Resolver<'a, N> {
    pub(super) fn new(input: &'a [N]) -> Self {
        let mut sorted: Vec<&'a N> = input.iter().collect();
        sorted.sort_unstable_by(|a, b| {
            a.name()
                .cmp(b.name())
                .then_with(|| b.version().cmp(a.version()))
                .then_with(|| a.source().cmp(b.source()))
                .then_with(|| a.id().cmp(&b.id()))
        });
        let mut index = HashMap::with_capacity(sorted.len());
        let mut nodes = Vec::with_capacity(sorted.len());
        for node in sorted {
            if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(node.id()) {
                slot.insert(nodes.len());
                nodes.push(node);
            }
        }
        let n = nodes.len();
        let mut resolver = Self {
            nodes,
            index,
            claims: Vec::new(),
            claims_start: Vec::with_capacity(n + 1),
            blocked: vec![None; n],
            skipped: vec![Vec::new(); n],
        };
        let owners = resolver.claim_names();
        resolver.resolve_names(&owners);
        resolver
    }

    pub(super) fn run(mut self) -> Plan {
        let required = self.required_graph();
        self.block_unsatisfiable(&required);
        let startable: Vec<bool> = self.blocked.iter().map(Option::is_none).collect();
        let full = self.full_graph();
        let (full, waves) = self.plan_waves(full, &startable);
        self.into_plan(&full, waves, &startable)
    }

    /// Decides who owns each name (highest version wins, a tie refuses all).
    fn claim_names(&mut self) -> HashMap<&'a str, Claim> {
        let n = self.nodes.len();
        let mut owners = HashMap::with_capacity(n);
        let mut start = 0;
        while start < n {
            let name = self.nodes[start].name();
            let mut end = start + 1;
            while end < n && self.nodes[end].name() == name {
                end += 1;
            }
            let unique_top = end - start == 1
                || self.nodes[start]
                    .version()
                    .cmp_precedence(self.nodes[start + 1].version())
                    == Ordering::Greater;
            if unique_top {
                owners.insert(name, Claim::Winner(start));
                for loser in start + 1..end {
                    self.blocked[loser] = Some(self.duplicate(start, loser, true));
                }
            } else {
                owners.insert(name, Claim::Refused);
                for claimant in start..end {
                    let other = if claimant == start { start + 1 } else { start };
                    let (first, second) = (other.min(claimant), other.max(claimant));
                    self.blocked[claimant] = Some(self.duplicate(first, second, false));
                }
            }
            start = end;
        }
        owners
    }

    fn duplicate(&self, first: usize, second: usize, first_kept: bool) -> Error {
        let describe = |i: usize, verdict: &str| {
            let node = self.nodes[i];
            format!("{} (version {}{verdict})", node.source(), node.version())
        };
        let (kept, refused) = if first_kept {
            (", kept", ", refused")
        } else {
            ("", "")
        };
        Error::DuplicateName {
            name: self.nodes[first].name().to_owned(),
            first: describe(first, kept),
            second: describe(second, refused),
        }
    }

    fn resolve_names(&mut self, owners: &HashMap<&str, Claim>) {
        for node in &self.nodes {
            self.claims_start.push(self.claims.len());
            self.claims.extend(
                node.dependencies()
                    .iter()
                    .map(|dep| owners.get(dep.name.as_str()).copied()),
            );
        }
        self.claims_start.push(self.claims.len());
    }

    /// Node `v`'s declared dependencies with what each refers to.
    fn deps(&self, v: usize) -> impl Iterator<Item = (&'a DependencySpec, Option<Claim>)> + '_ {
        let claims = &self.claims[self.claims_start[v]..self.claims_start[v + 1]];
        self.nodes[v]
            .dependencies()
            .iter()
            .zip(claims.iter().copied())
    }

    /// Required edges between name owners, ignoring versions (a cycle is reported even if
    /// a version in it is also wrong). Blocked duplicates have no edges.
    fn required_graph(&self) -> Graph {
        let mut builder = GraphBuilder::new(self.nodes.len());
        for v in 0..self.nodes.len() {
            if self.blocked[v].is_none() {
                for (dep, claim) in self.deps(v) {
                    if let (false, Some(Claim::Winner(t))) = (dep.optional, claim) {
                        builder.add_edge(t, false);
                    }
                }
            }
            builder.finish_node();
        }
        builder.build()
    }

    /// The names along a cycle walk, abbreviated past [`MAX_CYCLE_NAMES`].
    fn cycle_names(&self, walk: CycleWalk) -> Vec<String> {
        let mut names: Vec<String> = walk
            .steps
            .iter()
            .map(|&v| self.nodes[v].name().to_owned())
            .collect();
        if walk.omitted > 0 {
            names.push(format!("(+{} more)", walk.omitted));
            names.push(self.nodes[walk.steps[0]].name().to_owned());
        }
        names
    }

    /// Blocks cycle members and plugins whose required dependencies are missing, of the
    /// wrong version or blocked. Components come dependencies first, so each plugin's
    /// dependencies are decided before it.
    fn block_unsatisfiable(&mut self, required: &Graph) {
        for component in graph::strongly_connected_components(required).iter() {
            if graph::is_cycle(required, component) {
                let walk = graph::cycle_walk(required, component, MAX_CYCLE_NAMES);
                let cycle = self.cycle_names(walk);
                for &v in component {
                    self.blocked[v] = Some(Error::DependencyCycle {
                        cycle: cycle.clone(),
                    });
                }
            } else {
                let v = component[0];
                if self.blocked[v].is_none() {
                    self.blocked[v] = self.check_required(v);
                }
            }
        }
    }

    /// The first problem with `v`'s required dependencies: its own (missing, conflict)
    /// before a failed dependency, each in declaration order.
    fn check_required(&self, v: usize) -> Option<Error> {
        let node = self.nodes[v];
        let required = || self.deps(v).filter(|(dep, _)| !dep.optional);
        for (dep, claim) in required() {
            match claim {
                None => {
                    return Some(Error::MissingDependency {
                        plugin: node.name().to_owned(),
                        dependency: dep.name.clone(),
                        requirement: dep.requirement.to_string(),
                    })
                }
                Some(Claim::Winner(t)) if !dep.requirement.matches(self.nodes[t].version()) => {
                    return Some(self.conflict(node, dep, t))
                }
                _ => {}
            }
        }
        required().find_map(|(dep, claim)| match claim {
            Some(Claim::Winner(t)) if self.blocked[t].is_none() => None,
            _ => Some(Error::DependencyFailed {
                plugin: node.name().to_owned(),
                dependency: dep.name.clone(),
            }),
        })
    }

    fn conflict(&self, node: &N, dep: &DependencySpec, found: usize) -> Error {
        Error::VersionConflict {
            plugin: node.name().to_owned(),
            dependency: dep.name.clone(),
            requirement: dep.requirement.to_string(),
            found: self.nodes[found].version().to_string(),
        }
    }

    /// Edges between startable plugins: every required dependency and every usable
    /// optional one (unusable ones are recorded in `skipped`).
    fn full_graph(&mut self) -> Graph {
        let mut builder = GraphBuilder::new(self.nodes.len());
        for v in 0..self.nodes.len() {
            if self.blocked[v].is_none() {
                let mut skipped = Vec::new();
                for (dep, claim) in self.deps(v) {
                    match self.usable(v, dep, claim) {
                        Ok(Some(t)) => builder.add_edge(t, dep.optional),
                        Ok(None) => {}
                        Err(reason) => skipped.push(reason),
                    }
                }
                self.skipped[v] = skipped;
            }
            builder.finish_node();
        }
        builder.build()
    }

    /// For a startable plugin `v`: the node a dependency resolves to, `None` for an absent
    /// optional one, or why a present optional one cannot be used.
    fn usable(
        &self,
        v: usize,
        dep: &DependencySpec,
        claim: Option<Claim>,
    ) -> Result<Option<usize>, Error> {
        let node = self.nodes[v];
        let failed = || Error::DependencyFailed {
            plugin: node.name().to_owned(),
            dependency: dep.name.clone(),
        };
        match claim {
            None => Ok(None),
            Some(Claim::Refused) => Err(failed()),
            Some(Claim::Winner(t)) => {
                if !dep.optional {
                    Ok(Some(t))
                } else if !dep.requirement.matches(self.nodes[t].version()) {
                    Err(self.conflict(node, dep, t))
                } else if t == v {
                    Err(Error::DependencyCycle {
                        cycle: vec![node.name().to_owned(), node.name().to_owned()],
                    })
                } else if self.blocked[t].is_some() {
                    Err(failed())
                } else {
                    Ok(Some(t))
                }
            }
        }
    }

    /// Waves over the startable plugins. Required links are acyclic by now; if optional
    /// links close a cycle, the optional links inside it are dropped (and recorded).
    fn plan_waves(&mut self, full: Graph, startable: &[bool]) -> (Graph, Vec<Vec<usize>>) {
        let count = startable.iter().filter(|&&s| s).count();
        let waves = graph::waves(&full, &full.reversed(), startable);
        if waves.iter().map(Vec::len).sum::<usize>() == count {
            return (full, waves);
        }
        let mut component_of = vec![usize::MAX; full.len()];
        for component in graph::strongly_connected_components(&full).iter() {
            if !graph::is_cycle(&full, component) {
                continue;
            }
            let walk = graph::cycle_walk(&full, component, MAX_CYCLE_NAMES);
            let cycle = self.cycle_names(walk);
            for &v in component {
                component_of[v] = component[0];
                for (t, optional) in full.edges(v) {
                    if optional && component.binary_search(&t).is_ok() {
                        self.skipped[v].push(Error::DependencyCycle {
                            cycle: cycle.clone(),
                        });
                    }
                }
            }
        }
        let full = full.without(|v, t, optional| {
            optional && component_of[v] != usize::MAX && component_of[v] == component_of[t]
        });
        let waves = graph::waves(&full, &full.reversed(), startable);
        debug_assert_eq!(waves.iter().map(Vec::len).sum::<usize>(), count);
        (full, waves)
    }

    fn into_plan(self, full: &Graph, waves: Vec<Vec<usize>>, startable: &[bool]) -> Plan {
        let n = self.nodes.len();
        let id = |v: usize| self.nodes[v].id();
        let dependents = full.reversed();
        let mut entries: Vec<Entry> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(v, node)| Entry {
                id: node.id(),
                name: node.name().to_owned(),
                source: node.source().to_owned(),
                wave: None,
                dependents: dependents.successors(v).iter().map(|&d| id(d)).collect(),
            })
            .collect();
        let mut plan_waves = Vec::with_capacity(waves.len());
        for (k, wave) in waves.iter().enumerate() {
            for &v in wave {
                entries[v].wave = Some(k);
            }
            plan_waves.push(wave.iter().map(|&v| id(v)).collect());
        }
        let mut dependencies = HashMap::with_capacity(n);
        for v in (0..n).filter(|&v| startable[v]) {
            let deps = full.successors(v).iter().map(|&t| id(t)).collect();
            dependencies.insert(id(v), deps);
        }
        let mut blocked = HashMap::new();
        let mut skipped_optional = HashMap::new();
        for (v, (reason, skipped)) in self.blocked.into_iter().zip(self.skipped).enumerate() {
            if let Some(reason) = reason {
                blocked.insert(self.nodes[v].id(), reason);
            }
            if !skipped.is_empty() {
                skipped_optional.insert(self.nodes[v].id(), skipped);
            }
        }
        Plan {
            waves: plan_waves,
            dependencies,
            blocked,
            skipped_optional,
            entries,
            index: self.index,
        }
    }
}
