//! The host's admission path (`PluginManager::load_directory`: probe or scan
//! cache, shadow copy, open, ABI check, metadata) as child phases.
//! Written against the manager and safety modules once they land.

use std::ffi::OsString;
use std::path::Path;

use serde_json::Value;

/// What one cold or warm load child measured.
pub struct Round {
    /// Wall time of `load_directory`, seconds.
    pub wall_s: f64,
    /// Probe process time per library, ms (0 when the cache answered).
    pub probe_ms_per_library: f64,
}

/// Runs the `phase` child (`cold-load` / `warm-load`) over `dir` with scan
/// cache and shadow copies in `work`.
pub fn load_round(phase: &str, dir: &Path, work: &Path, n: usize) -> Result<Round, String> {
    Err(format!(
        "{phase} over {n} libraries in {} (work {}): the admission pipeline has not landed yet",
        dir.display(),
        work.display()
    ))
}

/// Child phases of the admission path.
pub fn phase(name: &str, _args: &[OsString]) -> Result<Value, String> {
    Err(format!("unknown phase `{name}`"))
}
