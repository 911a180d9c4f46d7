//! The host's `embed` example, run over the built sample plugins: it opens a
//! manager on a directory, starts everything, calls a plugin, checkpoints state
//! and shuts down, with the output and exit code it documents.

use std::path::Path;
use std::process::Command;

use integration_tests::{embed_example, PluginDir};

/// Runs the example; returns (exit code, stdout, stderr). Its scan cache and shadow
/// copies go under `work` (the default work dir follows `XDG_RUNTIME_DIR`).
fn embed(work: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let bin = embed_example();
    let out = Command::new(&bin)
        .args(args)
        .env("XDG_RUNTIME_DIR", work)
        .env_remove("PLUGIN_HOST_PROBE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_embed_example_runs_the_samples_and_keeps_their_state() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let plugins = dir.path().to_str().unwrap();
    let state_arg = state.to_str().unwrap();

    let (code, stdout, stderr) = embed(work.path(), &[plugins, state_arg, "counter", "increment"]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "registered: counter, greeter, hello", "{stdout}");
    assert_eq!(lines[1], "started: 3", "{stdout}");
    assert_eq!(lines[2], "counter.increment -> 1", "{stdout}");
    assert!(lines[3].starts_with("checkpoint counter: "), "{stdout}");
    assert!(lines[3].ends_with(" bytes"), "{stdout}");
    assert_eq!(
        &lines[4..],
        [
            "checkpoint greeter: nothing to save",
            "checkpoint hello: nothing to save",
            "stopped"
        ],
        "{stdout}"
    );
    assert!(
        state.join("counter.json").is_file(),
        "no state file in {}",
        state.display()
    );

    // A second run restores what the first one saved.
    let (code, stdout, stderr) = embed(work.path(), &[plugins, state_arg, "counter", "increment"]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("\ncounter.increment -> 2\n"), "{stdout}");

    // The default call, and a failing one: exit code 1, the plugin's error printed.
    let (code, stdout, _) = embed(work.path(), &[plugins, state_arg]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("\nhello.greet -> \"Hello, embedder!\"\n"),
        "{stdout}"
    );
    let (code, stdout, _) = embed(work.path(), &[plugins, state_arg, "hello", "nope"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "hello.nope failed: plugin `hello`: call(nope) failed: unknown method `nope`"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("stopped\n"),
        "it still shuts down: {stdout}"
    );

    // Bad usage: exit code 2 and nothing on stdout.
    let (code, stdout, stderr) = embed(work.path(), &[plugins]);
    assert_eq!(code, Some(2));
    assert_eq!(stdout, "");
    assert!(stderr.contains("usage: embed"), "{stderr}");
}
