//! Dependency resolution: from the plugins' declared dependencies to a start plan.
//!
//! [`resolve`] is pure (no locks, no I/O, no plugin code): the manager takes a lock-free
//! snapshot of its registry, resolves borrowed views of the plugins' metadata (the fields
//! of a [`Node`], read where they live rather than copied), and then starts the
//! [`Plan`]'s waves. It runs in O(V + E) plus sorting by name: Tarjan's strongly
//! connected components find cycles, Kahn's algorithm builds the waves.
//!
//! # Policies
//! - **Isolation.** A problem in one plugin blocks only that plugin and the plugins that
//!   require it (directly or transitively); everything else is planned.
//! - **Determinism.** Plugins are considered in name order; waves and dependents are sorted
//!   by name; the same input in any order gives the same plan.
//! - **Duplicate names: highest version wins.** When several plugins claim one name, the
//!   one with the highest version (semver precedence) is used and every other one is
//!   blocked with [`Error::DuplicateName`] naming both sources and versions. If the highest
//!   version is claimed more than once, nobody can be chosen: every claimant is blocked and
//!   plugins requiring that name get [`Error::DependencyFailed`].
//! - **Required dependencies** must be installed ([`Error::MissingDependency`]), match the
//!   semver requirement with the `semver` crate's pre-release rules
//!   ([`Error::VersionConflict`]), not form a cycle ([`Error::DependencyCycle`], given to
//!   every member; a self-dependency is the cycle `[a, a]`) and be startable themselves
//!   ([`Error::DependencyFailed`]). A cycle member reports the cycle even if it also has
//!   other problems, so that every member names the same cycle. Otherwise a plugin's own
//!   problems (missing, conflict) are reported before a failed dependency, each in
//!   declaration order.
//! - **Optional dependencies** never block. An absent one is skipped silently. A present,
//!   matching, startable one is wired: it is started first and listed in
//!   [`Plan::dependencies`]. A present one that cannot be used (version mismatch, blocked,
//!   itself, or part of a cycle closed only by optional links) is skipped; the dependent
//!   starts without it and the reason is kept in [`Plan::skipped_optional`].
//!
//! [`Error::DuplicateName`]: crate::Error::DuplicateName
//! [`Error::DependencyFailed`]: crate::Error::DependencyFailed
//! [`Error::MissingDependency`]: crate::Error::MissingDependency
//! [`Error::VersionConflict`]: crate::Error::VersionConflict
//! [`Error::DependencyCycle`]: crate::Error::DependencyCycle

mod explain;
mod graph;
mod plan;
#[cfg(test)]
mod proptests;
mod resolver;
#[cfg(test)]
mod tests;
mod view;

use semver::Version;
use uuid::Uuid;

use crate::{DependencySpec, PluginInfo};
pub use explain::{Cause, ClosestFile, Explanation};
pub use plan::Plan;
pub(crate) use view::NodeView;

/// Longest cycle listed name by name in [`crate::Error::DependencyCycle`]; longer ones
/// are abbreviated as `a -> b -> ... -> (+N more) -> a` so that every member can carry a
/// copy of the error without quadratic memory.
pub const MAX_CYCLE_NAMES: usize = 32;

/// One plugin as the resolver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The plugin's registry id.
    pub id: Uuid,
    /// Its unique name (what dependencies refer to).
    pub name: String,
    /// Its version.
    pub version: Version,
    /// What it declares to depend on.
    pub dependencies: Vec<DependencySpec>,
    /// Where it comes from: a library path or `"<in-process>"`, for error messages.
    pub source: String,
}

impl Node {
    /// The resolver's view of a registered plugin.
    pub fn from_info(id: Uuid, info: &PluginInfo) -> Self {
        Self {
            id,
            name: info.name.clone(),
            version: info.version.clone(),
            dependencies: info.dependencies.clone(),
            source: info.source.to_string(),
        }
    }
}

/// Resolves the dependencies of `nodes` into a start plan. Never fails as a whole: each
/// plugin is either in [`Plan::waves`] or in [`Plan::blocked`]. If two nodes share an id,
/// only the first by name is kept.
pub fn resolve(nodes: &[Node]) -> Plan {
    resolver::Resolver::new(nodes).run()
}

/// [`resolve`] over borrowed views: what the manager resolves its registry with,
/// reading each plugin's [`PluginInfo`] where it lives instead of copying its
/// name, dependencies and source into a [`Node`] first (several allocations
/// per plugin, twice per `load_all_plugins`).
pub(crate) fn resolve_views(nodes: Vec<NodeView<'_>>) -> Plan {
    resolver::Resolver::new(&nodes).run()
}

/// What the resolver reads of one plugin: a public [`Node`] or the manager's
/// borrowed [`NodeView`].
pub(crate) trait ResolveNode {
    /// The plugin's registry id.
    fn id(&self) -> Uuid;
    /// Its unique name.
    fn name(&self) -> &str;
    /// Its version.
    fn version(&self) -> &Version;
    /// What it declares to depend on.
    fn dependencies(&self) -> &[DependencySpec];
    /// Where it comes from, for ordering duplicates and for error messages.
    fn source(&self) -> &str;
}

impl ResolveNode for Node {
    fn id(&self) -> Uuid {
        self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> &Version {
        &self.version
    }
    fn dependencies(&self) -> &[DependencySpec] {
        &self.dependencies
    }
    fn source(&self) -> &str {
        &self.source
    }
}
