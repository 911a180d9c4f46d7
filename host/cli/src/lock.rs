//! `plugin-host lock`: write the integrity allowlist for the current files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plugbay_host::write_lockfile;

/// Writes `output` listing the SHA-256 of every library file in `dirs`.
pub fn lock(dirs: &[PathBuf], output: &Path) -> ExitCode {
    match write_lockfile(output, dirs) {
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
