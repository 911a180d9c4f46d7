//! [`SafetyConfig`]: how carefully plugin files are admitted.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Default time one library may take to open in the probe before it is quarantined.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default size limit for a plugin file (256 MiB).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;
/// Environment variable naming the probe binary (overridden by
/// [`SafetyConfigBuilder::probe_program`]).
pub const PROBE_ENV: &str = "PLUGIN_HOST_PROBE";
/// File name of the dedicated probe binary looked for next to the current executable.
pub const PROBE_BINARY_NAME: &str = "plugin-probe";

/// How plugin files are admitted. Build one with [`SafetyConfig::builder`].
#[derive(Debug, Clone)]
pub struct SafetyConfig {
    pub(crate) probe: bool,
    pub(crate) probe_program: Option<PathBuf>,
    pub(crate) probe_args: Vec<OsString>,
    pub(crate) probe_timeout: Duration,
    pub(crate) cache_path: Option<PathBuf>,
    pub(crate) shadow_dir: PathBuf,
    pub(crate) allowlist: Option<PathBuf>,
    pub(crate) enforce_allowlist: bool,
    pub(crate) strict_permissions: bool,
    pub(crate) allow_symlinks_outside: bool,
    pub(crate) max_file_size: u64,
    pub(crate) shadow_in_memory: bool,
}

impl SafetyConfig {
    /// A builder with the defaults: probe on, 5 s probe timeout, strict
    /// permissions, no symlinks out of the plugin dir, 256 MiB size limit, no
    /// allowlist, and cache + shadow copies (on disk) under [`default_work_dir`].
    pub fn builder() -> SafetyConfigBuilder {
        SafetyConfigBuilder {
            config: SafetyConfig {
                probe: true,
                probe_program: None,
                probe_args: Vec::new(),
                probe_timeout: DEFAULT_PROBE_TIMEOUT,
                cache_path: Some(default_work_dir().join("scan-cache.json")),
                shadow_dir: default_work_dir().join("shadow"),
                allowlist: None,
                enforce_allowlist: false,
                strict_permissions: true,
                allow_symlinks_outside: false,
                max_file_size: DEFAULT_MAX_FILE_SIZE,
                shadow_in_memory: false,
            },
        }
    }

    /// Whether new libraries' shadow copies are sealed memory files (Linux; see
    /// [`SafetyConfigBuilder::shadow_in_memory`]).
    pub fn shadow_in_memory(&self) -> bool {
        self.shadow_in_memory
    }

    /// The defaults (see [`SafetyConfig::builder`]).
    pub fn defaults() -> Self {
        Self::builder().config
    }

    /// Whether new files are opened in a probe process first.
    pub fn probe_enabled(&self) -> bool {
        self.probe
    }

    /// The per-library probe timeout.
    pub fn probe_timeout(&self) -> Duration {
        self.probe_timeout
    }

    /// The scan cache file, if any.
    pub fn cache_path(&self) -> Option<&Path> {
        self.cache_path.as_deref()
    }

    /// The shadow-copy directory.
    pub fn shadow_dir(&self) -> &Path {
        &self.shadow_dir
    }

    /// The allowlist file, if any.
    pub fn allowlist(&self) -> Option<&Path> {
        self.allowlist.as_deref()
    }

    /// The probe command: program and arguments. The program is the configured
    /// one, else `$PLUGIN_HOST_PROBE`, else `plugin-probe` next to the current
    /// executable (or one directory up, where cargo puts binaries relative to
    /// test executables).
    pub fn probe_command(&self) -> Result<(PathBuf, Vec<OsString>)> {
        if let Some(program) = &self.probe_program {
            return Ok((program.clone(), self.probe_args.clone()));
        }
        if let Some(program) = std::env::var_os(PROBE_ENV).filter(|p| !p.is_empty()) {
            return Ok((PathBuf::from(program), self.probe_args.clone()));
        }
        let exe = std::env::current_exe().map_err(|e| {
            Error::Config(format!(
                "cannot locate the current executable to find the probe: {e}"
            ))
        })?;
        let name = format!("{PROBE_BINARY_NAME}{}", std::env::consts::EXE_SUFFIX);
        let candidates: Vec<PathBuf> = exe
            .ancestors()
            .skip(1)
            .take(2)
            .map(|dir| dir.join(&name))
            .collect();
        candidates
            .iter()
            .find(|p| p.is_file())
            .map(|p| (p.clone(), self.probe_args.clone()))
            .ok_or_else(|| {
                Error::Config(format!(
                    "the probe binary `{name}` was not found next to {}; install it there, \
                     set {PROBE_ENV}, or configure SafetyConfig::probe_program",
                    exe.display()
                ))
            })
    }
}

/// Where cache and shadow copies go by default: `$XDG_RUNTIME_DIR/plugin-host`
/// (a per-user tmpfs, emptied at boot, so a power loss never leaves a
/// half-written shadow behind), else `<temp dir>/plugin-host-<uid>` (Windows: `%TEMP%\\plugin-host`, the
/// temp dir being per user there).
pub fn default_work_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("plugin-host"),
        None => std::env::temp_dir().join(crate::platform::default_work_dir_name()),
    }
}

/// Builder for [`SafetyConfig`].
#[derive(Debug, Clone)]
pub struct SafetyConfigBuilder {
    config: SafetyConfig,
}

impl SafetyConfigBuilder {
    /// Turns the preflight probe on or off.
    ///
    /// **Risk when off:** every new library is opened directly in the host
    /// process, so a library whose constructor crashes, aborts or hangs takes
    /// the host down with it, and a truncated file kills it with SIGBUS. Only
    /// switch it off when every library is trusted (e.g. pinned by an enforced
    /// allowlist) and startup latency matters more than isolation. Shadow copies,
    /// permission, size, symlink and integrity checks still apply.
    pub fn probe(mut self, on: bool) -> Self {
        self.config.probe = on;
        self
    }

    /// The probe program (e.g. `plugin-host` itself) and its arguments (e.g. a
    /// hidden subcommand). It must call
    /// [`crate::safety::probe_child::run_probe_child`].
    pub fn probe_program(mut self, program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        self.config.probe_program = Some(program.into());
        self.config.probe_args = args;
        self
    }

    /// How long one library may take to open in the probe (default 5 s).
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.config.probe_timeout = timeout;
        self
    }

    /// Puts the cache file (`scan-cache.json`) and the shadow dir (`shadow/`) under `dir`.
    pub fn work_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.config.cache_path = Some(dir.as_ref().join("scan-cache.json"));
        self.config.shadow_dir = dir.as_ref().join("shadow");
        self
    }

    /// The scan cache file; `None` keeps no cache (every scan probes again).
    pub fn cache_path(mut self, path: Option<PathBuf>) -> Self {
        self.config.cache_path = path;
        self
    }

    /// The directory of shadow copies (created with mode 0700).
    pub fn shadow_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.shadow_dir = dir.into();
        self
    }

    /// An allowlist file (as [`crate::write_lockfile`] writes it); with `enforce`, a file
    /// not listed with its exact SHA-256 is refused, otherwise only reported.
    pub fn allowlist(mut self, path: impl Into<PathBuf>, enforce: bool) -> Self {
        self.config.allowlist = Some(path.into());
        self.config.enforce_allowlist = enforce;
        self
    }

    /// Like sshd's StrictModes (default on): refuse plugin files and directories
    /// writable by group/others or owned by another non-root user.
    pub fn strict_permissions(mut self, on: bool) -> Self {
        self.config.strict_permissions = on;
        self
    }

    /// Accept symlinks that resolve outside their plugin directory (default off).
    pub fn allow_symlinks_outside(mut self, on: bool) -> Self {
        self.config.allow_symlinks_outside = on;
        self
    }

    /// Files larger than this are refused (default 256 MiB).
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.config.max_file_size = bytes;
        self
    }

    /// Linux: hold a new library's shadow copy in a sealed memory file (default
    /// off) instead of writing it to the shadow directory first. The probe and
    /// the host open that file, whose bytes nobody — not even this user — can
    /// change any more (a disk copy is read-only, but its owner could `chmod`
    /// it), and nothing is written to disk before the checks; the disk copy that
    /// later starts map is written in the background. Off by default because it
    /// costs more CPU: the bytes are copied twice (memory, then disk), which on
    /// a 2-core machine made cold admission 1.6–2.4× dearer than the one disk
    /// copy. Where the kernel refuses memory files (`vm.memfd_noexec = 2`, no
    /// `/proc`) the disk copy is used. Ignored on other systems.
    pub fn shadow_in_memory(mut self, on: bool) -> Self {
        self.config.shadow_in_memory = on;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<SafetyConfig> {
        let c = &self.config;
        if c.probe_timeout.is_zero() {
            return Err(Error::Config("the probe timeout must be above zero".into()));
        }
        if c.max_file_size == 0 {
            return Err(Error::Config(
                "the file size limit must be above zero".into(),
            ));
        }
        if !c.shadow_dir.is_absolute() {
            return Err(Error::Config(format!(
                "the shadow directory {} must be an absolute path",
                c.shadow_dir.display()
            )));
        }
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        assert!(SafetyConfig::builder()
            .probe_timeout(Duration::ZERO)
            .build()
            .is_err());
        assert!(SafetyConfig::builder().shadow_dir("rel").build().is_err());
        let c = SafetyConfig::builder()
            .work_dir("/w")
            .probe_program("/bin/p", vec!["probe".into()])
            .build()
            .unwrap();
        assert_eq!(c.cache_path(), Some(Path::new("/w/scan-cache.json")));
        assert_eq!(c.shadow_dir(), Path::new("/w/shadow"));
        assert_eq!(c.probe_command().unwrap().0, PathBuf::from("/bin/p"));
        assert_eq!(c.probe_timeout(), DEFAULT_PROBE_TIMEOUT);
    }
}
