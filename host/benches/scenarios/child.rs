//! Phases that must start from a fresh process (nothing mapped yet, no warm
//! allocator or loader state): the bench binary re-executes itself with
//! `--phase NAME` and reads one JSON result line from the child's stdout.

use std::ffi::OsString;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The argument that selects a child phase.
pub const PHASE_ARG: &str = "--phase";

/// Marks the child's result line on stdout.
const RESULT_PREFIX: &str = "bench-result: ";

/// Runs this binary as `--phase phase args...` and returns the JSON value the
/// child emitted with [`emit`]. The child's stderr goes to ours.
pub fn run(phase: &str, args: &[OsString]) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the bench binary: {e}"))?;
    let out = Command::new(&exe)
        .arg(PHASE_ARG)
        .arg(phase)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "phase `{phase}` failed ({}); stdout:\n{stdout}",
            out.status
        ));
    }
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .ok_or_else(|| format!("phase `{phase}` printed no result; stdout:\n{stdout}"))?;
    serde_json::from_str(line).map_err(|e| format!("phase `{phase}` result {line:?}: {e}"))
}

/// Prints the phase's result for [`run`] to read.
pub fn emit(result: &Value) {
    println!("{RESULT_PREFIX}{result}");
}

/// A number from a child's result.
pub fn number(result: &Value, key: &str) -> Result<f64, String> {
    result
        .get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("child result {result} has no number `{key}`"))
}
