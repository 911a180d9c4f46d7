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
}
