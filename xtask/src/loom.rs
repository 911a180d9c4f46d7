//! `cargo xtask loom`: the loom models of the call gate and the dependency hold
//! (`host/src/manager/gate.rs`) and of supervision's crash / restart / unload
//! protocol (`host/src/manager/supervise/book.rs`) and of the slot's append-only
//! list (`host/src/manager/append_only.rs`), each a module `loom_model`.
//!
//! Builds with `--cfg plugbay_loom` (a name of our own: `--cfg loom` would also
//! switch tokio and other dependencies to their loom builds) in its own target
//! dir, `target/loom`, so the normal build cache is never invalidated; with
//! optimizations, because loom explores thousands of interleavings.

use std::process::Command;

/// The `cargo test` invocation that runs the model.
pub fn command(cargo: Command, target_dir: &std::path::Path) -> Command {
    let mut cmd = cargo;
    cmd.env("RUSTFLAGS", "--cfg plugbay_loom")
        .env("CARGO_TARGET_DIR", target_dir)
        // Loom's preemption bound, as tokio's own CI uses it: every
        // interleaving with up to 3 preemptions (under a second here; the
        // unbounded search of the shutdown model runs for many minutes). Every
        // broken variant of the protocol tried so far fails within 2.
        .env("LOOM_MAX_PREEMPTIONS", "3")
        .args([
            "test",
            "--release",
            "-p",
            "plugbay-host",
            "--lib",
            "--",
            "loom_model",
        ]);
    cmd
}
