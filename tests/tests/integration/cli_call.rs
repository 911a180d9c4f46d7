//! `plugin-host call`: one method of one plugin, its JSON result alone on stdout,
//! and a one-line error with the right exit code for each kind of bad input.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use integration_tests::{plugin_host_bin, run_plugin_host, PluginDir};
use serde_json::{json, Value};

/// The host's one error line: the only stderr line starting with `plugin-host:`,
/// and the last line (a plugin's own panic message may come before it).
pub fn error_line(stderr: &str) -> &str {
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("plugin-host:"))
        .collect();
    assert_eq!(ours.len(), 1, "expected one error line:\n{stderr}");
    assert_eq!(stderr.lines().last(), Some(ours[0]), "{stderr}");
    ours[0]
}

/// `plugin-host call` on `dir` with a private state and work dir, the plugin
/// configuration `config` if any, then the operands `rest`.
fn call_with(
    dir: &Path,
    state: &Path,
    config: Option<&str>,
    rest: &[&str],
) -> (Option<i32>, String, String) {
    let work = dir.join(".host-work");
    let mut args: Vec<&OsStr> = vec![
        "call".as_ref(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--work-dir".as_ref(),
        work.as_os_str(),
    ];
    if let Some(config) = config {
        args.extend(["--config".as_ref(), OsStr::new(config)]);
    }
    args.push(dir.as_os_str());
    args.extend(rest.iter().map(OsStr::new));
    run_plugin_host(&args)
}

fn call(dir: &Path, state: &Path, rest: &[&str]) -> (Option<i32>, String, String) {
    call_with(dir, state, None, rest)
}

#[test]
fn prints_the_result_alone_and_starts_only_the_plugin_and_its_dependencies() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = call(
        dir.path(),
        state.path(),
        &["greeter", "greet", r#"{"name": "Ada"}"#],
    );
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert_eq!(stdout, "\"Hello, Ada!\"\n");
    // greeter and hello ran (and shut down cleanly); counter never started, so it
    // saved no state.
    assert!(
        !stderr.lines().any(|l| l.starts_with("plugin-host:")),
        "{stderr}"
    );
    assert!(!state.path().join("counter.json").exists());

    // The default ARGS is `{}`; counter's state is saved after the call and
    // restored by the next one.
    for expected in [1, 2] {
        let (code, stdout, stderr) = call(dir.path(), state.path(), &["counter", "increment"]);
        assert_eq!(code, Some(0), "stderr:\n{stderr}");
        assert_eq!(stdout, format!("{expected}\n"));
        let saved: Value =
            serde_json::from_slice(&std::fs::read(state.path().join("counter.json")).unwrap())
                .unwrap();
        assert_eq!(saved["state"]["value"], json!(expected));
    }
}

#[test]
fn reads_args_from_stdin_with_a_dash() {
    let dir = PluginDir::with(&["hello"]);
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(plugin_host_bin())
        .arg("call")
        .arg("--state-dir")
        .arg(state.path())
        .arg("--work-dir")
        .arg(dir.path().join(".host-work"))
        .args([
            dir.path().as_os_str(),
            "hello".as_ref(),
            "greet".as_ref(),
            "-".as_ref(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"name": "stdin"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\"Hello, stdin!\"\n");
}

#[test]
fn an_unknown_plugin_is_a_plugin_error_naming_what_was_found() {
    let dir = PluginDir::with(&["hello"]);
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = call(dir.path(), state.path(), &["nobody", "greet"]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        error_line(&stderr),
        format!(
            "plugin-host: no plugin named `nobody` in {} (found: hello)",
            dir.path().display()
        )
    );
}

#[test]
fn an_unknown_method_is_a_plugin_error() {
    let dir = PluginDir::with(&["hello"]);
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = call(dir.path(), state.path(), &["hello", "wave"]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(stdout, "");
    let line = error_line(&stderr);
    assert!(
        line.contains("`hello`") && line.contains("unknown method `wave`"),
        "{line}"
    );
}

#[test]
fn malformed_json_args_are_a_usage_error_and_start_nothing() {
    let dir = PluginDir::with(&["counter"]);
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = call(
        dir.path(),
        state.path(),
        &["counter", "increment", r#"{"n":"#],
    );
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert_eq!(stdout, "");
    assert!(
        error_line(&stderr).starts_with("plugin-host: ARGS is not valid JSON: "),
        "{stderr}"
    );
    assert!(!state.path().join("counter.json").exists());
}

#[test]
fn an_unreadable_directory_is_a_usage_error() {
    let state = tempfile::tempdir().unwrap();
    let missing = state.path().join("no-such-dir");
    let work = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_plugin_host(&[
        "call".as_ref(),
        "--state-dir".as_ref(),
        state.path().as_os_str(),
        "--work-dir".as_ref(),
        work.path().as_os_str(),
        missing.as_os_str(),
        "hello".as_ref(),
        "greet".as_ref(),
    ]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert_eq!(stdout, "");
    let line = error_line(&stderr);
    assert!(
        line.contains("cannot read plugin directory") && line.contains("no-such-dir"),
        "{line}"
    );
}

#[test]
fn a_plugin_that_fails_to_start_is_a_plugin_error() {
    let dir = PluginDir::with(&["fixture-panicky"]);
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = call(dir.path(), state.path(), &["panicky", "boom"]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        error_line(&stderr),
        "plugin-host: `panicky` did not start: plugin `panicky` panicked in initialize: \
         panicky refuses to start"
    );
}

#[test]
fn a_panic_in_the_call_is_a_plugin_error_and_the_host_survives_it() {
    let dir = PluginDir::with(&["fixture-panicky"]);
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = call_with(
        dir.path(),
        state.path(),
        Some(r#"{"calm": true}"#),
        &["panicky", "boom"],
    );
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        error_line(&stderr),
        "plugin-host: plugin `panicky` panicked in call(boom): boom was called"
    );
}
