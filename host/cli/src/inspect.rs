//! `plugin-host inspect FILE|NAME [DIR...]`: everything known about one library,
//! in the way of `gst-inspect`: metadata, the interface it was built against,
//! how each dependency resolves, content id, scan-cache verdict and its time,
//! shadow copy, permission check, probe time, and (with `--state-dir`) the saved
//! state. Opens no library in this process (the same scan as `list`), and only
//! reads the state directory (a running host may hold it).
//!
//! Exit 0 when the file was found and inspected (whatever its verdict), 1 when
//! no file in the directories is that file or plugin, 2 on usage and setup errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use plugbay_host::{FileStatus, PermissionCheck};
use serde::Serialize;

use crate::safety_args::SafetyArgs;
use crate::scan_view::{file_stem_name, newer_interface_warning, scan, status_word, Scan};
use crate::style;

/// `inspect --help`: its exit codes.
pub const EXIT_CODES: &str = "Exit status:
  0  the file was found and inspected (whatever its verdict: see `status`)
  1  no file in the directories is that file or plugin
  2  usage or setup error (NAME without DIR, bad options, unusable work dir, probe missing)";

/// Options of `inspect`.
pub struct InspectArgs {
    /// A library file, or a plugin name to look up in `dirs`.
    pub target: String,
    /// Directories to scan (besides the file's own directory).
    pub dirs: Vec<PathBuf>,
    /// A state directory to read the plugin's saved state from.
    pub state_dir: Option<PathBuf>,
    pub json: bool,
    pub safety: SafetyArgs,
}

/// `inspect --json`'s `data`.
#[derive(Serialize)]
pub struct Inspection {
    /// The file as found in its plugin directory.
    pub path: PathBuf,
    /// Its verdict (`ok`, `quarantined`, `refused`, ... as in `list`).
    pub status: FileStatus,
    /// Why it is not usable; null when it is.
    pub reason: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    /// The plugbay-api version it was built against.
    pub interface_version: Option<String>,
    /// The plugbay-api version of this host.
    pub host_interface_version: &'static str,
    /// Each declared dependency and what it resolves to.
    pub dependencies: Vec<DependencyResolution>,
    /// For a usable file: whether its dependencies let it start.
    pub startable: Option<bool>,
    /// For a usable file that cannot start: the reason chain.
    pub blocked: Option<String>,
    /// BLAKE3 of its bytes (names its shadow copy).
    pub content_id: Option<String>,
    /// SHA-256 of its bytes (only computed with an allowlist).
    pub sha256: Option<String>,
    /// The private copy that would be mapped.
    pub shadow: Option<PathBuf>,
    /// Where the verdict came from and when it was made.
    pub verdict: VerdictOrigin,
    /// What the permission check saw (null when the file failed it or before).
    pub permissions: Option<PermissionCheck>,
    /// The saved state (only with `--state-dir`).
    pub state: Option<StateInfo>,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
}

/// One declared dependency and how it resolves.
#[derive(Serialize)]
pub struct DependencyResolution {
    pub name: String,
    pub requirement: String,
    pub optional: bool,
    /// `ok`, `missing`, `version_conflict` or `blocked` (the dependency
    /// itself cannot start).
    pub resolution: &'static str,
    /// The file the name resolves to (highest version of that name), if any.
    pub file: Option<PathBuf>,
    /// That file's version.
    pub version: Option<String>,
}

/// Where a verdict came from.
#[derive(Serialize)]
pub struct VerdictOrigin {
    /// Whether it came from the scan cache (no probe ran now).
    pub from_cache: bool,
    /// When it was made (ms since the Unix epoch); null when none was reached.
    pub made_at_ms: Option<u64>,
    /// The same as RFC 3339 (UTC).
    pub made_at: Option<String>,
    /// How long the probe child worked on the file (µs), when a probe made it.
    pub probe_us: Option<u64>,
}

/// A plugin's saved state in a state directory.
#[derive(Serialize)]
pub struct StateInfo {
    /// The state file.
    pub path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// The plugin version that saved it.
    pub saved_by_version: Option<String>,
    /// When it was saved (RFC 3339, from the file).
    pub saved_at: Option<String>,
    /// Why it could not be read, if it exists but could not.
    pub error: Option<String>,
}

/// A usage or setup failure (exit 2) or "not found" (exit 1), with its message.
struct Failure(u8, String);

/// Runs `inspect`.
pub fn inspect(args: InspectArgs) -> ExitCode {
    match inspect_inner(&args) {
        Ok(inspection) => {
            if args.json {
                if let Err(code) = crate::json::print("inspect", &inspection) {
                    return code;
                }
            } else {
                print_text(&inspection);
            }
            ExitCode::SUCCESS
        }
        Err(Failure(code, message)) => {
            eprintln!("plugin-host: {message}");
            ExitCode::from(code)
        }
    }
}

fn inspect_inner(args: &InspectArgs) -> Result<Inspection, Failure> {
    let target = Path::new(&args.target);
    let as_file = std::fs::symlink_metadata(target).is_ok_and(|m| !m.is_dir());
    let mut dirs = Vec::new();
    let wanted_file = if as_file {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        dirs.push(parent.clone());
        let canonical_parent = std::fs::canonicalize(&parent)
            .map_err(|e| Failure(2, format!("cannot resolve {}: {e}", parent.display())))?;
        Some(canonical_parent.join(target.file_name().unwrap_or_default()))
    } else {
        if args.dirs.is_empty() {
            return Err(Failure(
                2,
                format!(
                    "{} is not a file; to look a plugin up by name, give the directories \
                     to search: plugin-host inspect {} DIR...",
                    args.target, args.target
                ),
            ));
        }
        None
    };
    for dir in &args.dirs {
        let same = |d: &PathBuf| std::fs::canonicalize(d).ok() == std::fs::canonicalize(dir).ok();
        if !dirs.iter().any(same) {
            dirs.push(dir.clone());
        }
    }
    let config = args
        .safety
        .config()
        .map_err(|e| Failure(2, e.to_string()))?;
    let scan = scan(&dirs, &config).map_err(|e| Failure(2, e.to_string()))?;
    let index = match &wanted_file {
        Some(wanted) => scan.report.files.iter().position(|f| {
            f.path
                .parent()
                .and_then(|p| std::fs::canonicalize(p).ok())
                .map(|p| p.join(f.path.file_name().unwrap_or_default()))
                .as_ref()
                == Some(wanted)
        }),
        None => find_by_name(&scan, &args.target),
    };
    let Some(index) = index else {
        let what = if as_file {
            format!("{} is not a library file the scan considers", args.target)
        } else {
            format!("no plugin or file named `{}`", args.target)
        };
        return Err(Failure(1, format!("{what} in {}", display_dirs(&dirs))));
    };
    let mut inspection = inspection(&scan, index);
    if let (Some(state_dir), Some(name)) = (&args.state_dir, inspection.name.clone()) {
        inspection.state = Some(state_info(state_dir, &name).map_err(|e| Failure(2, e))?);
    }
    Ok(inspection)
}

/// The file for plugin `name`: the one its dependents would get (highest
/// version), else a file named like it that is not usable.
fn find_by_name(scan: &Scan, name: &str) -> Option<usize> {
    if let Some((index, _)) = scan.resolved(name) {
        return Some(index);
    }
    scan.report.files.iter().position(|f| {
        f.plugin.is_none() && file_stem_name(&f.path).is_some_and(|stem| stem == name)
    })
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        .to_string()
}

/// Everything the scan knows about file `index`.
fn inspection(scan: &Scan, index: usize) -> Inspection {
    let file = &scan.report.files[index];
    let plugin = file.plugin.as_ref();
    let mut warnings = file.warnings.clone();
    if let Some(w) = plugin.and_then(|p| newer_interface_warning(&p.interface_version)) {
        warnings.push(w);
    }
    let node = scan.node_of(index);
    let dependencies = plugin
        .map(|p| {
            p.dependencies
                .iter()
                .map(|dep| {
                    let resolved = scan.resolved(&dep.name);
                    let resolution = match resolved {
                        None => "missing",
                        Some((_, n)) if !dep.requirement.matches(&n.version) => "version_conflict",
                        Some((_, n)) if !scan.plan.is_startable(n.id) => "blocked",
                        Some(_) => "ok",
                    };
                    DependencyResolution {
                        name: dep.name.clone(),
                        requirement: dep.requirement.to_string(),
                        optional: dep.optional,
                        resolution,
                        file: resolved.map(|(i, _)| scan.report.files[i].path.clone()),
                        version: resolved.map(|(_, n)| n.version.to_string()),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let startable = node.map(|n| scan.plan.is_startable(n.id));
    Inspection {
        path: file.path.clone(),
        status: file.status,
        reason: file.reason.clone(),
        name: plugin.map(|p| p.name.clone()),
        version: plugin.map(|p| p.version.to_string()),
        description: plugin.map(|p| p.description.clone()),
        interface_version: plugin.map(|p| p.interface_version.clone()),
        host_interface_version: plugbay_api::INTERFACE_VERSION,
        dependencies,
        startable,
        blocked: node
            .filter(|n| !scan.plan.is_startable(n.id))
            .and_then(|n| scan.plan.explain(n.id)),
        content_id: file.content_id.clone(),
        sha256: file.sha256.clone(),
        shadow: file.shadow.clone(),
        verdict: VerdictOrigin {
            from_cache: file.from_cache,
            made_at_ms: file.verdict_at_ms,
            made_at: file.verdict_at_ms.map(rfc3339_ms),
            probe_us: file.probe_us,
        },
        permissions: file.permissions.clone(),
        state: None,
        warnings,
    }
}

/// Reads (never locks, never writes) `name`'s state file in `dir`.
fn state_info(dir: &Path, name: &str) -> Result<StateInfo, String> {
    let file = plugbay_host::state_file_name(name).map_err(|e| e.to_string())?;
    let path = dir.join(file);
    let mut info = StateInfo {
        path: path.clone(),
        exists: false,
        size: None,
        saved_by_version: None,
        saved_at: None,
        error: None,
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(info),
        Err(e) => {
            info.exists = path.exists();
            info.error = Some(format!("cannot read it: {e}"));
            return Ok(info);
        }
    };
    info.exists = true;
    info.size = Some(bytes.len() as u64);
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(envelope) => {
            let text = |key: &str| envelope[key].as_str().map(str::to_owned);
            info.saved_by_version = text("plugin_version");
            info.saved_at = text("saved_at");
            if info.saved_by_version.is_none() {
                info.error = Some("it is not a state file (no plugin_version)".to_owned());
            }
        }
        Err(e) => info.error = Some(format!("it is not valid JSON: {e}")),
    }
    Ok(info)
}

fn print_text(i: &Inspection) {
    let row = |label: &str, value: &str| {
        anstream::println!("{} {value}", style::label(&format!("{label:<14}")));
    };
    row("file", &i.path.display().to_string());
    let ok = i.status == FileStatus::Ok && i.startable != Some(false);
    let status = status_word(i.status, i.startable);
    match &i.reason {
        Some(reason) => row(
            "status",
            &format!("{}: {reason}", style::status(&status, ok)),
        ),
        None => row("status", &style::status(&status, ok)),
    }
    if let (Some(name), Some(version)) = (&i.name, &i.version) {
        row("plugin", &format!("{name} {version}"));
    }
    if let Some(d) = i.description.as_deref().filter(|d| !d.is_empty()) {
        row("description", d);
    }
    if let Some(v) = &i.interface_version {
        row(
            "interface",
            &format!(
                "built against plugbay-api {v} (this host: {})",
                i.host_interface_version
            ),
        );
    }
    if i.name.is_some() {
        if i.dependencies.is_empty() {
            row("dependencies", "none");
        }
        for (n, d) in i.dependencies.iter().enumerate() {
            let opt = if d.optional { " (optional)" } else { "" };
            let to = match (&d.file, &d.version) {
                (Some(f), Some(v)) => format!("{} {v} ({})", d.name, f.display()),
                _ => "nothing installed".to_owned(),
            };
            let line = format!(
                "{} {}{opt} -> {to}: {}",
                d.name,
                d.requirement,
                style::status(d.resolution, d.resolution == "ok")
            );
            row(if n == 0 { "dependencies" } else { "" }, &line);
        }
        match (&i.startable, &i.blocked) {
            (Some(false), Some(why)) => {
                row("startable", &style::status(&format!("no: {why}"), false))
            }
            (Some(true), _) => row("startable", &style::status("yes", true)),
            _ => {}
        }
    }
    row("content id", i.content_id.as_deref().unwrap_or("-"));
    row(
        "sha256",
        i.sha256
            .as_deref()
            .unwrap_or("- (computed only with --allowlist)"),
    );
    row(
        "shadow copy",
        &i.shadow
            .as_ref()
            .map_or("-".to_owned(), |p| p.display().to_string()),
    );
    let when = i.verdict.made_at.as_deref().unwrap_or("-");
    let origin = if i.verdict.from_cache {
        format!("from the scan cache (verdict made {when})")
    } else if i.verdict.made_at.is_some() {
        format!("made by this scan ({when})")
    } else {
        "none reached (the file was refused before the probe)".to_owned()
    };
    row("verdict", &origin);
    row(
        "probe time",
        &match i.verdict.probe_us {
            Some(us) => format!("{:.1} ms", us as f64 / 1000.0),
            None => "- (no probe ran for this verdict)".to_owned(),
        },
    );
    row(
        "permissions",
        &match &i.permissions {
            Some(p) => permissions_line(p),
            None => "- (not reached, or failed: see status)".to_owned(),
        },
    );
    if let Some(s) = &i.state {
        let line = match (s.exists, &s.error) {
            (false, _) => format!("{}: no saved state", s.path.display()),
            (true, Some(e)) => format!("{}: {e}", s.path.display()),
            (true, None) => format!(
                "{}: {} bytes, saved by version {} at {}",
                s.path.display(),
                s.size.unwrap_or(0),
                s.saved_by_version.as_deref().unwrap_or("?"),
                s.saved_at.as_deref().unwrap_or("?")
            ),
        };
        row("state", &line);
    }
    for w in &i.warnings {
        row("warning", &style::warning(w));
    }
}

fn permissions_line(p: &PermissionCheck) -> String {
    let mut parts = Vec::new();
    parts.push(if p.enforced {
        "checked (owner and mode)".to_owned()
    } else {
        "owner and mode not checked".to_owned()
    });
    if let Some(mode) = p.mode {
        parts.push(format!("mode {mode:04o}"));
    }
    if let Some(uid) = p.owner_uid {
        parts.push(format!("owner uid {uid}"));
    }
    parts.push(if p.symlink {
        "a symlink".to_owned()
    } else {
        "a regular file".to_owned()
    });
    parts.push(format!("{} bytes", p.size));
    parts.join(", ")
}
