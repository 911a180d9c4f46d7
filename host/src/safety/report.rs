//! What a scan found, per file: serializable for `plugin-host list --json`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Error;
use crate::info::PluginInfo;
use crate::loader::LoadedLibrary;

/// The outcome class of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Checked and compatible (and, through `admit`, loaded).
    Ok,
    /// Opening it killed, hung or confused the probe; never opened in the host.
    Quarantined,
    /// A library, but not a compatible plugin (no root module, ABI or version mismatch, bad metadata).
    Incompatible,
    /// The dynamic loader cannot open it (not a shared library, ...).
    Unopenable,
    /// Refused before reading it (not a regular file, empty, too large, symlink out of the dir).
    Refused,
    /// Writable by others or owned by another user.
    Insecure,
    /// Its hash does not match the allowlist.
    IntegrityMismatch,
    /// Something else went wrong (unreadable directory, host-side open failed).
    Error,
}

impl FileStatus {
    /// The status an error maps to.
    pub fn of(error: &Error) -> Self {
        match error {
            Error::Quarantined { .. } => Self::Quarantined,
            Error::NotAPlugin { .. }
            | Error::AbiMismatch { .. }
            | Error::InterfaceVersionMismatch { .. }
            | Error::InvalidMetadata { .. } => Self::Incompatible,
            Error::OpenFailed { .. } => Self::Unopenable,
            Error::Refused { .. } => Self::Refused,
            Error::InsecurePermissions { .. } => Self::Insecure,
            Error::IntegrityMismatch { .. } => Self::IntegrityMismatch,
            _ => Self::Error,
        }
    }
}

/// What happened to one file (or to a directory that could not be scanned).
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file as found in the plugin directory.
    pub path: PathBuf,
    /// Outcome class.
    pub status: FileStatus,
    /// The error's message when not ok.
    pub reason: Option<String>,
    /// The precise error when not ok.
    #[serde(skip)]
    pub error: Option<Error>,
    /// Metadata, when compatible.
    pub plugin: Option<PluginInfo>,
    /// BLAKE3 of its bytes (names its shadow copy), when known.
    pub content_id: Option<String>,
    /// SHA-256 of its bytes; computed only when an allowlist is configured.
    pub sha256: Option<String>,
    /// The private copy that is (or would be) mapped.
    pub shadow: Option<PathBuf>,
    /// Whether the verdict came from the scan cache (no probe).
    pub from_cache: bool,
    /// Non-fatal findings (e.g. allowlist mismatch when not enforcing).
    pub warnings: Vec<String>,
    /// When the verdict was made, in milliseconds since the Unix epoch: by this
    /// scan, or (for a verdict from the cache) when the cache entry was recorded
    /// or last confirmed. `None` when no verdict was reached (refused before the
    /// probe, probe unavailable).
    pub verdict_at_ms: Option<u64>,
    /// How long the probe child worked on this file, in microseconds: in this
    /// scan, or (from the cache) when the cached verdict was made. `None` when no
    /// probe ran for the verdict (probe off, refused first, or a cache entry
    /// older than this field).
    pub probe_us: Option<u64>,
    /// What the permission check saw, once the file passed it.
    pub permissions: Option<PermissionCheck>,
}

/// What the admission pipeline's file-level check (owner, mode, symlinks, type,
/// size) saw of a file that passed it; a file that fails it is reported
/// `insecure` or `refused` with the rule it broke in its reason instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionCheck {
    /// Whether owner and mode were checked (strict permissions asked for and
    /// enforced on this platform); `false` with `--allow-insecure-permissions`
    /// and on Windows.
    pub enforced: bool,
    /// The permission bits of the file (Unix, e.g. `0o644`); `None` elsewhere.
    pub mode: Option<u32>,
    /// The owner's user id (Unix); `None` elsewhere.
    pub owner_uid: Option<u32>,
    /// Whether the discovered path was a symlink (which then stays inside the
    /// plugin directory, or was allowed to leave it).
    pub symlink: bool,
    /// The file's size in bytes (within the configured limit).
    pub size: u64,
}

impl PermissionCheck {
    /// What the check saw of a file whose target has metadata `meta`; `symlink`:
    /// whether the discovered path was a symlink.
    pub(crate) fn of(meta: &std::fs::Metadata, enforced: bool, symlink: bool) -> Self {
        #[cfg(unix)]
        let (mode, owner_uid) = {
            use std::os::unix::fs::MetadataExt;
            (Some(meta.mode() & 0o7777), Some(meta.uid()))
        };
        #[cfg(not(unix))]
        let (mode, owner_uid) = (None, None);
        Self {
            enforced,
            mode,
            owner_uid,
            symlink,
            size: meta.len(),
        }
    }
}

/// How far a scan has got, for a progress display: handed to the observer of
/// [`crate::scan_dirs_with_progress`] each time a file gets its verdict and each
/// time a directory's files were discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Files that have their verdict.
    pub done: usize,
    /// Files discovered so far (grows as each directory is listed).
    pub total: usize,
}

impl FileReport {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            status: FileStatus::Error,
            reason: Some("not checked".into()),
            error: None,
            plugin: None,
            content_id: None,
            sha256: None,
            shadow: None,
            from_cache: false,
            warnings: Vec::new(),
            verdict_at_ms: None,
            probe_us: None,
            permissions: None,
        }
    }

    pub(crate) fn fail(&mut self, error: Error) {
        self.status = FileStatus::of(&error);
        self.reason = Some(error.to_string());
        self.error = Some(error);
        self.plugin = None;
    }

    pub(crate) fn succeed(&mut self, plugin: PluginInfo) {
        self.status = FileStatus::Ok;
        self.reason = None;
        self.error = None;
        self.plugin = Some(plugin);
    }

    /// Whether the file is fine.
    pub fn is_ok(&self) -> bool {
        self.status == FileStatus::Ok
    }
}

/// The result of scanning plugin directories.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    /// One entry per discovered file (and per unreadable directory), in order.
    pub files: Vec<FileReport>,
    /// Files whose verdict came from the cache.
    pub cache_hits: usize,
    /// Files sent to the probe.
    pub probed: usize,
    /// Probe processes started by this scan (0 on a fully warm scan).
    pub probe_processes_started: u64,
    /// Set when the scan cache could not be saved (the scan itself is valid).
    pub cache_error: Option<String>,
}

impl ScanReport {
    /// The report for `path`, if it was scanned.
    pub fn file(&self, path: &Path) -> Option<&FileReport> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Files that are not ok (what `plugin-host check` fails on).
    pub fn problems(&self) -> impl Iterator<Item = &FileReport> {
        self.files.iter().filter(|f| !f.is_ok())
    }

    /// Whether every file is ok.
    pub fn all_ok(&self) -> bool {
        self.problems().next().is_none()
    }

    /// Pretty JSON of the report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// The result of admitting plugin directories: the report and the loaded libraries.
#[derive(Debug, Default)]
pub struct Admission {
    /// What was found, per file.
    pub report: ScanReport,
    /// The compatible libraries, opened in this process from their shadow copies.
    pub libraries: Vec<LoadedLibrary>,
    /// The compatible libraries left unopened because they run in another
    /// process (the manager's isolation policy): never mapped in this one.
    pub(crate) kept_closed: Vec<ClosedLibrary>,
}

/// A compatible library admission did not open in this process: its metadata
/// (from the probe's verdict or the scan cache) and its verified copy.
#[derive(Debug)]
pub(crate) struct ClosedLibrary {
    /// The plugin's file as the user placed it.
    pub path: PathBuf,
    /// The verified private copy a runner process opens.
    pub shadow: PathBuf,
    /// Its metadata.
    pub info: PluginInfo,
}
