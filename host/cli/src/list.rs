//! `plugin-host list` and `plugin-host check`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::inspect::{inspect, print_table};
use crate::safety_args::SafetyArgs;

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
    let entries = match safety.config().and_then(|config| inspect(dirs, &config)) {
        Ok(entries) => entries,
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
