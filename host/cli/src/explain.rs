//! `plugin-host explain NAME DIR...`: why a plugin would not start (or that it
//! would), as a tree down to the root causes. Opens no library in this process.
//!
//! Exit 0 when it would start, 1 when it is blocked (or no usable plugin has
//! that name), 2 on usage and setup errors.

use std::path::PathBuf;
use std::process::ExitCode;

use plugbay_host::{Cause, ClosestFile, Explanation, FileStatus};
use serde::Serialize;

use crate::safety_args::SafetyArgs;
use crate::scan_view::{file_name, scan, status_word, Scan};
use crate::style;

/// `explain --help`: its exit codes.
pub const EXIT_CODES: &str = "Exit status:
  0  the plugin would start
  1  it would not (blocked, or no usable plugin has that name)
  2  usage or setup error (bad options, unusable work dir or allowlist, probe missing)";

/// `explain --json`'s `data`.
#[derive(Serialize)]
pub struct ExplainData {
    /// The name asked about.
    pub plugin: String,
    /// Whether it would start.
    pub startable: bool,
    /// The tree, when a usable plugin has that name.
    pub explanation: Option<Explanation>,
    /// When no usable plugin has that name: the files that come closest (named
    /// like it, but quarantined, refused, ...).
    pub closest: Vec<ClosestFile>,
    /// The leaves of the tree, one line each: what to fix.
    pub root_causes: Vec<String>,
}

/// Runs `explain`.
pub fn explain(name: &str, dirs: &[PathBuf], json: bool, safety: &SafetyArgs) -> ExitCode {
    let scan = match safety.config().and_then(|config| scan(dirs, &config)) {
        Ok(scan) => scan,
        Err(e) => {
            eprintln!("plugin-host: {e}");
            return ExitCode::from(2);
        }
    };
    let data = explain_data(&scan, name);
    if json {
        if let Err(code) = crate::json::print("explain", &data) {
            return code;
        }
    } else {
        print_text(&scan, &data, dirs);
    }
    if data.startable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The explanation of `name` in `scan`: for the startable plugin of that name
/// if there is one, else for the one its dependents would get (highest version).
pub fn explain_data(scan: &Scan, name: &str) -> ExplainData {
    let closest = |dep: &str| scan.closest(dep);
    let candidates: Vec<_> = scan.nodes.iter().filter(|(_, n)| n.name == name).collect();
    let chosen = candidates
        .iter()
        .find(|(_, n)| scan.plan.is_startable(n.id))
        .map(|(_, n)| n)
        .or_else(|| scan.resolved(name).map(|(_, n)| n));
    let explanation = chosen.and_then(|n| scan.plan.explain_tree(n.id, &closest));
    let mut data = ExplainData {
        plugin: name.to_owned(),
        startable: explanation.as_ref().is_some_and(|e| e.startable),
        closest: if explanation.is_none() {
            scan.closest(name)
        } else {
            Vec::new()
        },
        explanation,
        root_causes: Vec::new(),
    };
    data.root_causes = match &data.explanation {
        Some(e) if e.startable => Vec::new(),
        Some(e) => e
            .root_causes()
            .into_iter()
            .map(|(plugin, cause)| match cause {
                Cause::MissingDependency { closest, .. } if !closest.is_empty() => {
                    let files: Vec<String> = closest.iter().map(closest_line).collect();
                    format!("{plugin}: {}: {}", cause_line(cause), files.join("; "))
                }
                _ => format!("{plugin}: {}", cause_line(cause)),
            })
            .collect(),
        None if data.closest.is_empty() => {
            vec![format!(
                "{name}: no plugin of that name, and no file named like it"
            )]
        }
        None => data
            .closest
            .iter()
            .map(|f| format!("{name}: {}", closest_line(f)))
            .collect(),
    };
    data
}

/// The requirement `plugin` (from `source`) declares on `dependency`.
fn requirement(scan: &Scan, source: &str, dependency: &str) -> Option<String> {
    scan.nodes
        .iter()
        .find(|(_, n)| n.source == source)
        .and_then(|(_, n)| n.dependencies.iter().find(|d| d.name == dependency))
        .map(|d| d.requirement.to_string())
}

/// One cause in words (without its subtree).
fn cause_line(cause: &Cause) -> String {
    match cause {
        Cause::Startable => "would start".to_owned(),
        Cause::MissingDependency {
            dependency,
            requirement,
            closest,
        } => {
            let note = if closest.is_empty() {
                " (no file in the directories is named like it)"
            } else {
                ""
            };
            format!("needs {dependency} {requirement}, which is not installed{note}")
        }
        Cause::VersionConflict {
            dependency,
            requirement,
            found,
            found_source,
        } => {
            let from = found_source
                .as_deref()
                .map(|s| format!(" ({})", file_name(std::path::Path::new(s))))
                .unwrap_or_default();
            format!(
                "needs {dependency} {requirement}, but the installed {dependency} is {found}{from}"
            )
        }
        Cause::Cycle { path } => format!(
            "dependency cycle {} (remove one of these dependencies)",
            path.join(" -> ")
        ),
        Cause::DuplicateName { first, second } => {
            format!("the name is claimed twice, by {first} and by {second}; remove one of them")
        }
        Cause::DependencyFailed { dependency, .. } => {
            format!("needs {dependency}, which cannot start")
        }
        Cause::Other { message } => message.clone(),
    }
}

/// Why an installed optional `dependency` was not wired, in words, if
/// `error` (one of the plan's skipped-optional reasons) is about it.
fn skipped_reason(error: &plugbay_host::Error, dependency: &str) -> Option<String> {
    use plugbay_host::Error;
    match error {
        Error::VersionConflict {
            dependency: d,
            found,
            ..
        } if d == dependency => Some(format!("the installed {d} is {found}")),
        Error::DependencyFailed { dependency: d, .. } if d == dependency => {
            Some(format!("{d} cannot start (plugin-host explain {d})"))
        }
        Error::DependencyCycle { cycle } if cycle.iter().any(|n| n == dependency) => {
            Some(format!("it would close the cycle {}", cycle.join(" -> ")))
        }
        _ => None,
    }
}

/// A closest file in words.
fn closest_line(f: &ClosestFile) -> String {
    let status = status_word(f.status, None);
    let reason = f.reason.as_deref().unwrap_or("");
    match f.status {
        FileStatus::Ok => format!("{} is a usable plugin, but {reason}", file_name(&f.path)),
        _ => format!("{} is {status}: {reason}", file_name(&f.path)),
    }
}

fn print_text(scan: &Scan, data: &ExplainData, dirs: &[PathBuf]) {
    match &data.explanation {
        Some(e) => {
            let mut lines = Vec::new();
            render(scan, e, "", &mut lines);
            for line in lines {
                anstream::println!("{line}");
            }
        }
        None => {
            let where_ = dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            anstream::println!(
                "{}: {} in {where_}",
                style::header(&data.plugin),
                style::status("no usable plugin of that name", false)
            );
            for f in &data.closest {
                anstream::println!("└─ {}", closest_line(f));
            }
        }
    }
    if !data.root_causes.is_empty() {
        anstream::println!();
        anstream::println!("{}", style::header("root cause(s):"));
        for cause in &data.root_causes {
            anstream::println!("  {cause}");
        }
    }
}

/// Renders one plugin and its cause: `name (file): verdict`, then the cause
/// and its subtree indented under `indent`.
fn render(scan: &Scan, e: &Explanation, indent: &str, out: &mut Vec<String>) {
    let file = file_name(std::path::Path::new(&e.source));
    let version = scan
        .nodes
        .iter()
        .find(|(_, n)| n.source == e.source)
        .map(|(_, n)| format!(" {}", n.version))
        .unwrap_or_default();
    let verdict = if e.startable {
        style::status("would start", true)
    } else {
        style::status("cannot start", false)
    };
    out.push(format!(
        "{}{version} ({file}): {verdict}",
        style::header(&e.plugin)
    ));
    let child = format!("{indent}└─ ");
    let deeper = format!("{indent}   ");
    match &e.cause {
        Cause::Startable => {
            if let Some((_, node)) = scan.nodes.iter().find(|(_, n)| n.source == e.source) {
                let wired = scan.plan.dependencies.get(&node.id);
                let skipped = scan.plan.skipped_optional.get(&node.id);
                for dep in &node.dependencies {
                    let to = match scan.resolved(&dep.name) {
                        Some((i, n)) if wired.is_some_and(|w| w.contains(&n.id)) => format!(
                            "{} {} ({})",
                            n.name,
                            n.version,
                            file_name(&scan.report.files[i].path)
                        ),
                        None => "not installed (optional: starts without it)".to_owned(),
                        Some(_) => {
                            let why = skipped
                                .and_then(|errors| {
                                    errors.iter().find_map(|e| skipped_reason(e, &dep.name))
                                })
                                .map(|why| format!(": {why}"))
                                .unwrap_or_default();
                            format!("not used (optional: starts without it){why}")
                        }
                    };
                    let verb = if dep.optional { "can use" } else { "needs" };
                    out.push(format!(
                        "{child}{verb} {} {}: {to}",
                        dep.name, dep.requirement
                    ));
                }
            }
        }
        Cause::MissingDependency { closest, .. } => {
            out.push(format!("{child}{}", cause_line(&e.cause)));
            for f in closest {
                out.push(format!("{deeper}└─ closest: {}", closest_line(f)));
            }
        }
        Cause::DependencyFailed {
            dependency,
            because,
        } => {
            let req = requirement(scan, &e.source, dependency)
                .map(|r| format!(" {r}"))
                .unwrap_or_default();
            match because {
                Some(sub) => {
                    let mut sub_lines = Vec::new();
                    render(scan, sub, &deeper, &mut sub_lines);
                    let mut sub_lines = sub_lines.into_iter();
                    if let Some(first) = sub_lines.next() {
                        out.push(format!("{child}needs {dependency}{req}: {first}"));
                    }
                    out.extend(sub_lines);
                }
                None => out.push(format!(
                    "{child}needs {dependency}{req}, which cannot start (explained above: a loop)"
                )),
            }
        }
        cause => out.push(format!("{child}{}", cause_line(cause))),
    }
}
