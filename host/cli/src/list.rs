//! `plugin-host list` and `plugin-host check`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::safety_args::SafetyArgs;
use crate::scan_view::{print_table, scan};

/// `list --help`: its exit codes.
pub const LIST_EXIT_CODES: &str = "Exit status:
  0  the directories were scanned (whatever the files' verdicts)
  2  usage or setup error (bad options, unusable work dir or allowlist, probe missing)";

/// `check --help`: its exit codes.
pub const CHECK_EXIT_CODES: &str = "Exit status:
  0  every file is a usable plugin whose dependencies resolve
  1  some file is quarantined, incompatible, refused, insecure, unreadable or unresolvable
  2  usage or setup error (bad options, unusable work dir or allowlist, probe missing)";

/// `list`: every library file, its metadata and verdict. Exit 0 unless the scan
/// itself could not run.
pub fn list(dirs: &[PathBuf], json: bool, safety: &SafetyArgs) -> ExitCode {
    show(dirs, json, safety, false)
}

/// `check`: like `list`, but exits 1 when any file is quarantined, incompatible,
/// refused or unresolvable.
pub fn check(dirs: &[PathBuf], json: bool, safety: &SafetyArgs) -> ExitCode {
    show(dirs, json, safety, true)
}

fn show(dirs: &[PathBuf], json: bool, safety: &SafetyArgs, strict: bool) -> ExitCode {
    let entries = match safety.config().and_then(|config| scan(dirs, &config)) {
        Ok(scan) => scan.entries(),
        Err(e) => {
            eprintln!("plugin-host: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        let command = if strict { "check" } else { "list" };
        if let Err(code) = crate::json::print(command, &entries) {
            return code;
        }
    } else {
        print_table(&entries);
    }
    let problems = entries.iter().filter(|e| e.is_problem()).count();
    if strict && problems > 0 {
        eprintln!(
            "plugin-host: {problems} of {} file(s) need attention",
            entries.len()
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
