//! Command-line options shared by every subcommand that scans plugin directories.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;
use plugbay_host::{Error, Result, SafetyConfig};

/// The hidden subcommand under which this binary serves as its own probe child.
pub const PROBE_SUBCOMMAND: &str = "__probe";

/// How libraries are checked before the host opens them.
#[derive(Args, Debug, Clone)]
pub struct SafetyArgs {
    /// Open libraries in this process without the out-of-process preflight probe.
    /// Only for trusted plugin directories: a library that crashes while loading
    /// then takes the host down with it.
    #[arg(long)]
    pub no_probe: bool,
    /// Allowlist file (`sha256  path` lines, as written by `plugin-host lock`).
    #[arg(long, value_name = "FILE")]
    pub allowlist: Option<PathBuf>,
    /// Refuse libraries whose hash is not in the allowlist (default: warn only).
    #[arg(long, requires = "allowlist")]
    pub enforce_allowlist: bool,
    /// Accept plugin files and directories writable by group/others or owned by
    /// another user (like sshd's `StrictModes no`).
    #[arg(long)]
    pub allow_insecure_permissions: bool,
    /// Where the scan cache and shadow copies live (default: $XDG_RUNTIME_DIR/plugin-host).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

impl SafetyArgs {
    /// The safety configuration these options describe; the probe child is this
    /// very binary in its hidden probe mode.
    pub fn config(&self) -> Result<SafetyConfig> {
        let exe = std::env::current_exe().map_err(|e| {
            Error::Config(format!(
                "cannot locate this executable to run the probe: {e}"
            ))
        })?;
        let mut builder = SafetyConfig::builder()
            .probe(!self.no_probe)
            .probe_program(exe, vec![OsString::from(PROBE_SUBCOMMAND)])
            .strict_permissions(!self.allow_insecure_permissions);
        if let Some(dir) = &self.work_dir {
            builder = builder.work_dir(dir);
        }
        if let Some(list) = &self.allowlist {
            builder = builder.allowlist(list.clone(), self.enforce_allowlist);
        }
        builder.build()
    }
}
