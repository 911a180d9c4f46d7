//! Human-readable reason chains for blocked plugins: one `name: reason` step per plugin,
//! following failed dependencies down to the root cause, e.g.
//! "app: dependency `db` failed: db: requires driver ^2, found 1.4.0 (/plugins/libdriver.so)";
//! and the same as a tree ([`Explanation`]) that tools render as text or JSON.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use uuid::Uuid;

use super::Plan;
use crate::safety::FileStatus;
use crate::Error;

/// The reason chain for `id`, or `None` if it is not blocked.
pub(super) fn explain(plan: &Plan, id: Uuid) -> Option<String> {
    let mut current = (id, plan.blocked.get(&id)?);
    let mut visited = HashSet::from([id]);
    let mut out = String::new();
    loop {
        let (at, reason) = current;
        let name = plan.entry(at).map_or("?", |e| e.name.as_str());
        let Error::DependencyFailed { dependency, .. } = reason else {
            out.push_str(&step(plan, name, reason));
            return Some(out);
        };
        let _ = write!(out, "{name}: dependency `{dependency}` failed");
        let next = plan
            .by_name(dependency)
            .and_then(|dep| Some((dep.id, plan.blocked.get(&dep.id)?)));
        match next {
            Some(next) if visited.insert(next.0) => {
                out.push_str(": ");
                current = next;
            }
            _ => return Some(out),
        }
    }
}

/// One root-cause step: `name: reason`.
fn step(plan: &Plan, name: &str, reason: &Error) -> String {
    match reason {
        Error::MissingDependency {
            dependency,
            requirement,
            ..
        } => format!("{name}: requires {dependency} {requirement}, which is not installed"),
        Error::VersionConflict {
            dependency,
            requirement,
            found,
            ..
        } => {
            let source = plan
                .by_name(dependency)
                .map(|dep| format!(" ({})", dep.source))
                .unwrap_or_default();
            format!("{name}: requires {dependency} {requirement}, found {found}{source}")
        }
        Error::DependencyCycle { cycle } => format!(
            "{name}: dependency cycle {} (remove one of these dependencies)",
            cycle.join(" -> ")
        ),
        Error::DuplicateName { first, second, .. } => {
            format!("{name}: name claimed twice, by {first} and by {second}; remove one of them")
        }
        other => format!("{name}: {other}"),
    }
}

/// Why a plugin can or cannot start, as a tree down to the root causes (what
/// `plugin-host explain` prints): this plugin, and the cause, whose
/// [`Cause::DependencyFailed`] holds the failed dependency's own explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The plugin's name.
    pub plugin: String,
    /// Where it comes from (library path or `"<in-process>"`).
    pub source: String,
    /// Whether it can start.
    pub startable: bool,
    /// Why not (or [`Cause::Startable`]).
    pub cause: Cause,
}

/// One reason in an [`Explanation`]. Serialized with a `kind` tag
/// (`startable`, `missing_dependency`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// Nothing blocks it.
    Startable,
    /// A required dependency is not among the usable plugins.
    MissingDependency {
        /// The dependency's name.
        dependency: String,
        /// The semver requirement.
        requirement: String,
        /// Files that come closest (named like the dependency but not usable,
        /// ...), as the caller's `closest` function found them.
        closest: Vec<ClosestFile>,
    },
    /// The dependency is installed in a version the requirement does not accept.
    VersionConflict {
        /// The dependency's name.
        dependency: String,
        /// What this plugin requires.
        requirement: String,
        /// The version installed.
        found: String,
        /// Where the installed one comes from.
        found_source: Option<String>,
    },
    /// It is part of a dependency cycle.
    Cycle {
        /// The cycle, first name repeated at the end (`[a, b, a]`).
        path: Vec<String>,
    },
    /// Another plugin claims the same name (see the resolver's duplicate policy).
    DuplicateName {
        /// One claimant's source.
        first: String,
        /// The other's.
        second: String,
    },
    /// A required dependency is installed but cannot start itself.
    DependencyFailed {
        /// The dependency's name.
        dependency: String,
        /// The dependency's own explanation; `None` if it was already explained
        /// higher up this tree (a loop).
        because: Option<Box<Explanation>>,
    },
    /// Any other reason, in words.
    Other {
        /// The reason.
        message: String,
    },
}

/// A file that could have been a missing dependency but is not a usable plugin of
/// that name: found by the caller, which knows the scanned files (the plan only
/// knows usable plugins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClosestFile {
    /// The file.
    pub path: PathBuf,
    /// The plugin name it declares, when it is a readable plugin.
    pub plugin: Option<String>,
    /// Its version, when known.
    pub version: Option<String>,
    /// Its verdict.
    pub status: FileStatus,
    /// Why it is not usable (the probe's reason, the rule it broke, ...), or
    /// why it does not match.
    pub reason: Option<String>,
}

impl Explanation {
    /// The root causes: the leaves of the tree (one `(plugin, cause)` per leaf).
    pub fn root_causes(&self) -> Vec<(&str, &Cause)> {
        let mut out = Vec::new();
        let mut at = self;
        loop {
            match &at.cause {
                Cause::DependencyFailed {
                    because: Some(next),
                    ..
                } => at = next,
                cause => {
                    out.push((at.plugin.as_str(), cause));
                    return out;
                }
            }
        }
    }
}

/// The explanation tree for `id`, or `None` if the plan does not know `id`.
/// `closest` is asked, for each missing dependency, which files come closest.
pub(super) fn explain_tree(
    plan: &Plan,
    id: Uuid,
    closest: &dyn Fn(&str) -> Vec<ClosestFile>,
) -> Option<Explanation> {
    let mut visited = HashSet::new();
    tree(plan, id, closest, &mut visited)
}

fn tree(
    plan: &Plan,
    id: Uuid,
    closest: &dyn Fn(&str) -> Vec<ClosestFile>,
    visited: &mut HashSet<Uuid>,
) -> Option<Explanation> {
    let entry = plan.entry(id)?;
    visited.insert(id);
    let cause = match plan.blocked.get(&id) {
        None => Cause::Startable,
        Some(reason) => match reason {
            Error::MissingDependency {
                dependency,
                requirement,
                ..
            } => Cause::MissingDependency {
                dependency: dependency.clone(),
                requirement: requirement.clone(),
                closest: closest(dependency),
            },
            Error::VersionConflict {
                dependency,
                requirement,
                found,
                ..
            } => Cause::VersionConflict {
                dependency: dependency.clone(),
                requirement: requirement.clone(),
                found: found.clone(),
                found_source: plan.by_name(dependency).map(|dep| dep.source.clone()),
            },
            Error::DependencyCycle { cycle } => Cause::Cycle {
                path: cycle.clone(),
            },
            Error::DuplicateName { first, second, .. } => Cause::DuplicateName {
                first: first.clone(),
                second: second.clone(),
            },
            Error::DependencyFailed { dependency, .. } => {
                let because = plan
                    .by_name(dependency)
                    .map(|dep| dep.id)
                    .filter(|dep| !visited.contains(dep))
                    .and_then(|dep| tree(plan, dep, closest, visited))
                    .map(Box::new);
                Cause::DependencyFailed {
                    dependency: dependency.clone(),
                    because,
                }
            }
            other => Cause::Other {
                message: other.to_string(),
            },
        },
    };
    Some(Explanation {
        plugin: entry.name.clone(),
        source: entry.source.clone(),
        startable: plan.is_startable(id),
        cause,
    })
}
