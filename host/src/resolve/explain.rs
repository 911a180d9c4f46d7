//! Human-readable reason chains for blocked plugins: one `name: reason` step per plugin,
//! following failed dependencies down to the root cause, e.g.
//! "app: dependency `db` failed: db: requires driver ^2, found 1.4.0 (/plugins/libdriver.so)".

use std::collections::HashSet;
use std::fmt::Write as _;

use uuid::Uuid;

use super::Plan;
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
