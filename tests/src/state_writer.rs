//! What the `state-writer` child process writes, shared with the tests that
//! check it: a known sequence of states, so a test can tell a state that some
//! save wrote from anything else.

use serde_json::{json, Value};

/// The plugin name the child writes state for.
pub const PLUGIN: &str = "crash-probe";

/// The plugin version the child writes state as.
pub const VERSION: &str = "1.2.3";

/// The `k`-th state of the sequence: `{"n": k, "pad": <deterministic text>}`.
/// The pad is tens of KiB (its length depends on `k`, so a torn or truncated
/// write cannot pass for another state) to make each write take a while.
pub fn expected_state(k: u64) -> Value {
    let unit = format!("{k:016x}|");
    let len = 32 * 1024 + (k % 7) as usize * 4096;
    let pad: String = unit.chars().cycle().take(len).collect();
    json!({ "n": k, "pad": pad })
}
