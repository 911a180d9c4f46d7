//! The scan every look-up subcommand starts from (`list`, `check`, `inspect`,
//! `explain`): every library file's safety verdict and metadata, and the
//! dependency plan of the usable ones. Opens no library in this process (the
//! probe child does), and shows a progress line on a terminal meanwhile.

use std::path::{Path, PathBuf};

use plugbay_host::{
    resolve, ClosestFile, DependencySpec, Error, FileReport, FileStatus, Node, Plan, Result,
    SafetyConfig, ScanReport,
};
use serde::Serialize;
use uuid::Uuid;

use crate::style;

/// One library file, as `list` and `check` show it.
#[derive(Serialize)]
pub struct Entry {
    pub path: PathBuf,
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    pub interface_version: Option<String>,
    pub dependencies: Vec<DependencySpec>,
    /// The file's verdict: `ok`, `quarantined`, `incompatible`, `unopenable`,
    /// `refused`, `insecure`, `integrity_mismatch` or `error`.
    pub status: FileStatus,
    /// Why the file is not usable; null when it is.
    pub error: Option<String>,
    /// For a usable file: whether its dependencies let it start.
    pub startable: Option<bool>,
    /// For a usable file that cannot start: the reason chain.
    pub blocked: Option<String>,
    /// Non-fatal findings (e.g. an allowlist mismatch when not enforcing).
    pub warnings: Vec<String>,
    /// Whether the verdict came from the scan cache.
    pub from_cache: bool,
}

impl Entry {
    /// Whether anything about this file needs attention (what `check` fails on).
    pub fn is_problem(&self) -> bool {
        self.status != FileStatus::Ok || self.startable == Some(false)
    }
}

/// A scan of plugin directories and the dependency plan of its usable plugins.
pub struct Scan {
    /// What the scan found, per file.
    pub report: ScanReport,
    /// The resolver's view of each usable file, with the file's index in
    /// `report.files`.
    pub nodes: Vec<(usize, Node)>,
    /// The plan of those nodes.
    pub plan: Plan,
}

/// Scans `dirs` (a progress line on a terminal meanwhile) and resolves the
/// usable plugins' dependencies.
pub fn scan(dirs: &[PathBuf], config: &SafetyConfig) -> Result<Scan> {
    let report = crate::progress::scan(dirs, config)?;
    let nodes: Vec<(usize, Node)> = report
        .files
        .iter()
        .enumerate()
        .filter_map(|(index, file)| {
            let p = file.plugin.as_ref()?;
            Some((
                index,
                Node {
                    id: Uuid::new_v4(),
                    name: p.name.clone(),
                    version: p.version.clone(),
                    dependencies: p.dependencies.clone(),
                    source: file.path.display().to_string(),
                },
            ))
        })
        .collect();
    let plan = resolve(&nodes.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>());
    Ok(Scan {
        report,
        nodes,
        plan,
    })
}

impl Scan {
    /// The resolver's node for file `index`, if the file is usable.
    pub fn node_of(&self, index: usize) -> Option<&Node> {
        self.nodes.iter().find(|(i, _)| *i == index).map(|(_, n)| n)
    }

    /// The usable file that a dependency on `name` resolves to (the highest
    /// version of that name), with its index.
    pub fn resolved(&self, name: &str) -> Option<(usize, &Node)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.name == name)
            .max_by(|(_, a), (_, b)| a.version.cmp(&b.version))
            .map(|(i, n)| (*i, n))
    }

    /// The files that come closest to a missing dependency `name`: files named
    /// like it (`lib<name>.so`, `<name>.dll`, `-` and `_` alike) that are not
    /// usable plugins, and usable plugins whose declared name differs only in
    /// case or `-`/`_`.
    pub fn closest(&self, name: &str) -> Vec<ClosestFile> {
        let wanted = normalize(name);
        self.report
            .files
            .iter()
            .filter(|f| match &f.plugin {
                Some(p) => p.name != name && normalize(&p.name) == wanted,
                None => file_stem_name(&f.path).is_some_and(|stem| normalize(&stem) == wanted),
            })
            .map(|f| ClosestFile {
                path: f.path.clone(),
                plugin: f.plugin.as_ref().map(|p| p.name.clone()),
                version: f.plugin.as_ref().map(|p| p.version.to_string()),
                status: f.status,
                reason: match &f.plugin {
                    Some(p) => Some(format!("it declares the name `{}`, not `{name}`", p.name)),
                    None => file_problem(f),
                },
            })
            .collect()
    }

    /// Every file as `list` and `check` show it.
    pub fn entries(&self) -> Vec<Entry> {
        self.report
            .files
            .iter()
            .enumerate()
            .map(|(index, file)| self.entry(index, file))
            .collect()
    }

    fn entry(&self, index: usize, file: &FileReport) -> Entry {
        let mut entry = Entry {
            path: file.path.clone(),
            name: None,
            version: None,
            description: None,
            interface_version: None,
            dependencies: Vec::new(),
            status: file.status,
            error: file.reason.clone(),
            startable: None,
            blocked: None,
            warnings: file.warnings.clone(),
            from_cache: file.from_cache,
        };
        if entry.status == FileStatus::Quarantined {
            entry.warnings.push(ISOLATION_HINT.to_owned());
        }
        if let Some(p) = &file.plugin {
            // Typed metadata: parsed once, when the host received it.
            entry.name = Some(p.name.clone());
            entry.version = Some(p.version.to_string());
            entry.description = Some(p.description.clone());
            if let Some(warning) = newer_interface_warning(&p.interface_version) {
                entry.warnings.push(warning);
            }
            entry.interface_version = Some(p.interface_version.clone());
            entry.dependencies.clone_from(&p.dependencies);
        }
        if let Some(node) = self.node_of(index) {
            let startable = self.plan.is_startable(node.id);
            entry.startable = Some(startable);
            if !startable {
                entry.blocked = self.plan.explain(node.id);
            }
        }
        entry
    }
}

/// What `list` and `check` suggest for a library the probe quarantined: loaded
/// in-process, code that crashes takes the host down; isolated, only its runner.
pub const ISOLATION_HINT: &str = "the probe's process died or hung opening this library; \
     loaded in this process it would take the host down. If it crashes only at times \
     (or only in calls), run it isolated in a process of its own: \
     `plugin-host run --isolate NAME` (or `--isolate-all`)";

/// Why a file is not usable, without the path the error message starts with
/// (the caller names the file).
pub fn file_problem(f: &FileReport) -> Option<String> {
    match &f.error {
        Some(
            Error::Quarantined { reason, .. }
            | Error::Refused { reason, .. }
            | Error::OpenFailed { reason, .. }
            | Error::InvalidMetadata { reason, .. },
        ) => Some(reason.clone()),
        _ => {
            let path = f.path.display().to_string();
            f.reason
                .as_deref()
                .map(|r| r.strip_prefix(&path).map_or(r, str::trim_start).to_owned())
        }
    }
}

/// A name compared loosely: lower case, `-` as `_`.
fn normalize(name: &str) -> String {
    name.to_lowercase().replace('-', "_")
}

/// The plugin name a library file name suggests: `libhello.so` → `hello`,
/// `hello.dll` → `hello`.
pub fn file_stem_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.split('.').next().unwrap_or(name);
    let stem = stem
        .strip_prefix(std::env::consts::DLL_PREFIX)
        .filter(|s| !s.is_empty())
        .unwrap_or(stem);
    Some(stem.to_owned())
}

/// The status word of a file: its verdict, or `unresolvable` for a usable file
/// whose dependencies keep it from starting.
pub fn status_word(status: FileStatus, startable: Option<bool>) -> String {
    match (status, startable) {
        (FileStatus::Ok, Some(false)) => "unresolvable".to_owned(),
        (status, _) => serde_json::to_value(status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A warning when a plugin was built against a newer plugbay-api minor release
/// than this host provides: it loads (same major), but the services added since
/// answer it with an error naming both versions.
pub fn newer_interface_warning(plugin_interface: &str) -> Option<String> {
    let host = semver::Version::parse(plugbay_api::INTERFACE_VERSION).ok()?;
    let built = semver::Version::parse(plugin_interface).ok()?;
    (built.major == host.major && (built.minor, built.patch) > (host.minor, host.patch)).then(
        || {
            format!(
                "built against plugbay-api {built}, newer than this host's {host}: \
             services added after {host} answer it with an error; upgrade the host"
            )
        },
    )
}

/// Prints entries as a table.
pub fn print_table(entries: &[Entry]) {
    anstream::println!(
        "{}",
        style::header(&format!(
            "{:<28} {:<16} {:<10} {:<7} {:<18} DETAIL",
            "FILE", "NAME", "VERSION", "API", "STATUS"
        ))
    );
    for e in entries {
        let deps = e
            .dependencies
            .iter()
            .map(|d| {
                let opt = if d.optional { " (optional)" } else { "" };
                format!("{} {}{opt}", d.name, d.requirement)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let status = status_word(e.status, e.startable);
        let detail = if let Some(err) = &e.error {
            err.clone()
        } else if let Some(blocked) = &e.blocked {
            blocked.clone()
        } else if deps.is_empty() {
            e.description.clone().unwrap_or_default()
        } else {
            format!("needs {deps}")
        };
        anstream::println!(
            "{:<28} {:<16} {:<10} {:<7} {} {detail}",
            file_name(&e.path),
            e.name.as_deref().unwrap_or("-"),
            e.version.as_deref().unwrap_or("-"),
            e.interface_version.as_deref().unwrap_or("-"),
            style::status(&format!("{status:<18}"), !e.is_problem()),
        );
        for w in &e.warnings {
            anstream::println!("{:<28} {} {w}", "", style::warning("warning:"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::newer_interface_warning;

    #[test]
    fn warns_only_about_a_newer_minor_of_the_same_major() {
        let host = semver::Version::parse(plugbay_api::INTERFACE_VERSION).unwrap();
        let newer = format!("{}.{}.0", host.major, host.minor + 1);
        let warning = newer_interface_warning(&newer).expect("a newer minor warns");
        assert!(
            warning.contains(&newer) && warning.contains(&host.to_string()),
            "{warning}"
        );
        assert_eq!(newer_interface_warning("1.0.0"), None);
        assert_eq!(
            newer_interface_warning(plugbay_api::INTERFACE_VERSION),
            None
        );
        // Another major is refused at load time with its own error, not warned about.
        assert_eq!(
            newer_interface_warning(&format!("{}.0.0", host.major + 1)),
            None
        );
    }
}
