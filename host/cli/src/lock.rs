//! `plugin-host lock`: write the integrity allowlist for the current files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plugbay_host::write_lockfile;
use serde::Serialize;

/// `lock --help`: its exit codes.
pub const EXIT_CODES: &str = "Exit status:
  0  the allowlist was written
  2  usage error, or a directory or file could not be read, or the list could not be written";

/// `lock --json`'s `data`.
#[derive(Serialize)]
struct LockData<'a> {
    /// The allowlist written.
    output: &'a Path,
    /// The library files it lists.
    files: &'a [PathBuf],
}

/// Writes `output` listing the SHA-256 of every library file in `dirs`.
pub fn lock(dirs: &[PathBuf], output: &Path, json: bool) -> ExitCode {
    match write_lockfile(output, dirs) {
        Ok(files) if json => match crate::json::print(
            "lock",
            &LockData {
                output,
                files: &files,
            },
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Ok(files) => {
            println!(
                "wrote {} entr{} to {}",
                files.len(),
                if files.len() == 1 { "y" } else { "ies" },
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plugin-host: {e}");
            ExitCode::from(2)
        }
    }
}
