//! The resolver's output: start waves, resolved dependencies, blocked plugins and the
//! queries the manager needs (dependents, shutdown order, reason chains).

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::explain;
use crate::Error;

/// The outcome of [`resolve`](super::resolve): what can start, in which order, and why the
/// rest cannot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Startable plugins in topological waves: every dependency of a plugin in wave k is in
    /// a wave < k. Plugins of one wave are independent of each other; each wave is sorted
    /// by name.
    pub waves: Vec<Vec<Uuid>>,
    /// Resolved dependencies of each startable plugin (an entry for every startable plugin,
    /// possibly empty), in declaration order: required ones plus optional ones that are
    /// present and startable (absent optional dependencies are skipped; present ones are
    /// ordered first).
    pub dependencies: HashMap<Uuid, Vec<Uuid>>,
    /// Plugins that cannot start, with the reason: [`Error::MissingDependency`],
    /// [`Error::VersionConflict`], [`Error::DependencyCycle`] (every member of a cycle gets
    /// it), [`Error::DuplicateName`] (see the module docs for the policy) or
    /// [`Error::DependencyFailed`] for plugins blocked only because a required dependency
    /// is blocked. [`Plan::explain`] renders the whole chain.
    pub blocked: HashMap<Uuid, Error>,
    /// Optional dependencies that are installed but were not wired, per startable plugin,
    /// with the reason ([`Error::VersionConflict`], [`Error::DependencyFailed`] or
    /// [`Error::DependencyCycle`]). The plugin starts without them; worth a warning.
    pub skipped_optional: HashMap<Uuid, Vec<Error>>,
    /// Every plugin given to the resolver, sorted by name (then version, highest first),
    /// so the first entry of a name is the plugin that name resolved to.
    pub(super) entries: Vec<Entry>,
    /// Position of each plugin in `entries`.
    pub(super) index: HashMap<Uuid, usize>,
}

/// What the plan remembers about one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) id: Uuid,
    pub(super) name: String,
    pub(super) source: String,
    /// Its wave, if startable.
    pub(super) wave: Option<usize>,
    /// Startable plugins that directly depend on it, sorted by name.
    pub(super) dependents: Vec<Uuid>,
}

impl Plan {
    /// Ids of startable plugins that (directly) depend on `id`, sorted by name.
    pub fn dependents(&self, id: Uuid) -> Vec<Uuid> {
        self.entry(id)
            .map(|e| e.dependents.clone())
            .unwrap_or_default()
    }

    /// Waves for shutdown: dependents before their dependencies (the reverse of `waves`).
    pub fn shutdown_order(&self) -> Vec<Vec<Uuid>> {
        self.waves.iter().rev().cloned().collect()
    }

    /// The reason chain for a blocked plugin, human-readable, e.g.
    /// "greeter: requires hello ^2, found 1.0.0 (/plugins/libhello.so)" or
    /// "app: dependency `db` failed: db: requires ...". `None` if `id` is not blocked.
    pub fn explain(&self, id: Uuid) -> Option<String> {
        explain::explain(self, id)
    }

    /// Why `id` can or cannot start, as a tree down to the root causes; `closest`
    /// names, for each missing dependency, the files that come closest (the plan
    /// only knows usable plugins: pass `&|_| Vec::new()` if there are no files).
    /// `None` if the plan does not know `id`.
    pub fn explain_tree(
        &self,
        id: Uuid,
        closest: &dyn Fn(&str) -> Vec<explain::ClosestFile>,
    ) -> Option<explain::Explanation> {
        explain::explain_tree(self, id, closest)
    }

    /// All dependencies of `id`, direct and transitive, in a valid start order (by wave,
    /// then name). Empty if `id` is not startable or has none.
    pub fn transitive_dependencies(&self, id: Uuid) -> Vec<Uuid> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Uuid> = self.dependencies.get(&id).cloned().unwrap_or_default();
        let mut found = Vec::new();
        while let Some(dep) = stack.pop() {
            if seen.insert(dep) {
                found.push(dep);
                if let Some(next) = self.dependencies.get(&dep) {
                    stack.extend(next.iter().copied());
                }
            }
        }
        let key = |id: &Uuid| self.entry(*id).map(|e| (e.wave, e.name.as_str()));
        found.sort_by(|a, b| key(a).cmp(&key(b)));
        found
    }

    /// Whether `id` is in the plan's waves.
    pub fn is_startable(&self, id: Uuid) -> bool {
        self.wave_of(id).is_some()
    }

    /// The wave `id` starts in, if it is startable.
    pub fn wave_of(&self, id: Uuid) -> Option<usize> {
        self.entry(id).and_then(|e| e.wave)
    }

    /// The plugin `id`, if it was given to the resolver.
    pub(super) fn entry(&self, id: Uuid) -> Option<&Entry> {
        self.index.get(&id).map(|&i| &self.entries[i])
    }

    /// The plugin a dependency on `name` refers to (for a name claimed by several plugins
    /// with the same highest version: the first of them).
    pub(super) fn by_name(&self, name: &str) -> Option<&Entry> {
        let i = self.entries.partition_point(|e| e.name.as_str() < name);
        self.entries.get(i).filter(|e| e.name == name)
    }
}
