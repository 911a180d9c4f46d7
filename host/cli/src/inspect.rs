//! What `list` and `check` show: every library file's safety verdict and metadata,
//! and whether its dependencies let it start. Opens no library in this process.

use std::path::PathBuf;

use plugbay_host::{resolve, scan_dirs, DependencySpec, FileStatus, Node, Result, SafetyConfig};
use serde::Serialize;
use uuid::Uuid;

/// One library file.
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

/// What `list` and `check` suggest for a library the probe quarantined: loaded
/// in-process, code that crashes takes the host down; isolated, only its runner.
pub const ISOLATION_HINT: &str = "the probe's process died or hung opening this library; \
     loaded in this process it would take the host down. If it crashes only at times \
     (or only in calls), run it isolated in a process of its own: \
     `plugin-host run --isolate NAME` (or `--isolate-all`)";

/// Scans `dirs` and resolves the usable plugins' dependencies.
pub fn inspect(dirs: &[PathBuf], config: &SafetyConfig) -> Result<Vec<Entry>> {
    let report = scan_dirs(dirs, config)?;
    let mut entries = Vec::with_capacity(report.files.len());
    let mut nodes = Vec::new();
    for file in report.files {
        let mut entry = Entry {
            path: file.path,
            name: None,
            version: None,
            description: None,
            interface_version: None,
            dependencies: Vec::new(),
            status: file.status,
            error: file.reason,
            startable: None,
            blocked: None,
            warnings: file.warnings,
            from_cache: file.from_cache,
        };
        if entry.status == FileStatus::Quarantined {
            entry.warnings.push(ISOLATION_HINT.to_owned());
        }
        if let Some(p) = file.plugin {
            // Typed metadata: parsed once, when the host received it.
            entry.name = Some(p.name.clone());
            entry.version = Some(p.version.to_string());
            entry.description = Some(p.description);
            if let Some(warning) = newer_interface_warning(&p.interface_version) {
                entry.warnings.push(warning);
            }
            entry.interface_version = Some(p.interface_version);
            entry.dependencies.clone_from(&p.dependencies);
            nodes.push((
                entries.len(),
                Node {
                    id: Uuid::new_v4(),
                    name: p.name,
                    version: p.version,
                    dependencies: p.dependencies,
                    source: entry.path.display().to_string(),
                },
            ));
        }
        entries.push(entry);
    }
    let plan = resolve(&nodes.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>());
    for (index, node) in &nodes {
        let entry = &mut entries[*index];
        let startable = plan.is_startable(node.id);
        entry.startable = Some(startable);
        if !startable {
            entry.blocked = plan.explain(node.id);
        }
    }
    Ok(entries)
}

fn file_name(path: &std::path::Path) -> String {
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
    println!(
        "{:<28} {:<16} {:<10} {:<7} {:<18} DETAIL",
        "FILE", "NAME", "VERSION", "API", "STATUS"
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
        let status = match (&e.status, e.startable) {
            (FileStatus::Ok, Some(false)) => "unresolvable".to_owned(),
            (status, _) => serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        };
        let detail = if let Some(err) = &e.error {
            err.clone()
        } else if let Some(blocked) = &e.blocked {
            blocked.clone()
        } else if deps.is_empty() {
            e.description.clone().unwrap_or_default()
        } else {
            format!("needs {deps}")
        };
        println!(
            "{:<28} {:<16} {:<10} {:<7} {:<18} {detail}",
            file_name(&e.path),
            e.name.as_deref().unwrap_or("-"),
            e.version.as_deref().unwrap_or("-"),
            e.interface_version.as_deref().unwrap_or("-"),
            status,
        );
        for w in &e.warnings {
            println!("{:<28} warning: {w}", "");
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
