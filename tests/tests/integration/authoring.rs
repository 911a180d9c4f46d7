//! An author's first steps, as a user runs them: `plugin-host new` outside the
//! workspace, the scaffold's own unit tests, a build, and `plugin-host call`.
//! Plus `new`'s refusals.

use std::path::Path;
use std::process::Command;

use integration_tests::{fixture_target_dir, library_file_name, run_plugin_host, workspace_root};
use serde_json::{json, Value};

use crate::cli_call::error_line;

/// Runs `cargo <args>` in `dir`, offline, building into the fixture target dir
/// (shared with the test libraries, so dependencies compile once).
fn cargo_in(dir: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(&cargo)
        .current_dir(dir)
        .args(args)
        .arg("--offline")
        .env("CARGO_TARGET_DIR", fixture_target_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        out.status.success(),
        "`cargo {}` in {} failed:\n{}\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_new_plugin_tests_builds_loads_and_answers_with_no_edits() {
    let outside = tempfile::tempdir().unwrap();
    assert!(!outside.path().starts_with(workspace_root()));
    let crate_dir = outside.path().join("fresh-plugin");
    let (code, stdout, stderr) = run_plugin_host(&[
        "new".as_ref(),
        "fresh-plugin".as_ref(),
        "--dir".as_ref(),
        crate_dir.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for file in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"] {
        assert!(crate_dir.join(file).is_file(), "{file} was not written");
    }
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("plugbay-api = \"1."), "{manifest}");
    assert!(manifest.contains("[patch.crates-io]"), "{manifest}");

    // Pin the workspace's dependency versions so `--offline` resolves.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .unwrap();
    // The scaffold's own unit tests, through plugbay_api::testing.
    cargo_in(&crate_dir, &["test", "--quiet"]);
    cargo_in(&crate_dir, &["build", "--quiet"]);

    let plugins = tempfile::tempdir().unwrap();
    let lib = library_file_name("fresh-plugin");
    std::fs::copy(
        fixture_target_dir().join("debug").join(&lib),
        plugins.path().join(&lib),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let work = plugins.path().join(".host-work");
    let call = |config: Option<&str>, args: &str| {
        let mut argv: Vec<&std::ffi::OsStr> = vec![
            "call".as_ref(),
            "--state-dir".as_ref(),
            state.path().as_os_str(),
            "--work-dir".as_ref(),
            work.as_os_str(),
        ];
        if let Some(config) = config {
            argv.extend([
                std::ffi::OsStr::new("--config"),
                std::ffi::OsStr::new(config),
            ]);
        }
        argv.extend([
            plugins.path().as_os_str(),
            "fresh-plugin".as_ref(),
            "greet".as_ref(),
            args.as_ref(),
        ]);
        run_plugin_host(&argv)
    };
    let (code, stdout, stderr) = call(None, r#"{"name": "Ada"}"#);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    let result: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"));
    assert_eq!(result, json!({ "greeting": "Hello, Ada!", "count": 1 }));
    // Its configuration reaches it, and its state survived the first run.
    let (code, stdout, stderr) = call(Some(r#"{"greeting": "Hi"}"#), "{}");
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result, json!({ "greeting": "Hi, world!", "count": 2 }));
}

/// `plugin-host new` with `args`; asserts exit 2, empty stdout, and returns the error line.
fn refused(args: &[&std::ffi::OsStr]) -> String {
    let mut argv = vec![std::ffi::OsStr::new("new")];
    argv.extend_from_slice(args);
    let (code, stdout, stderr) = run_plugin_host(&argv);
    assert_eq!(code, Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout, "");
    error_line(&stderr).to_owned()
}

#[test]
fn new_refuses_an_existing_non_empty_directory_and_leaves_it_alone() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("project");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("Cargo.toml"), "mine").unwrap();
    let line = refused(&["my-plugin".as_ref(), "--dir".as_ref(), dir.as_os_str()]);
    assert_eq!(
        line,
        format!(
            "plugin-host: cannot create plugin `my-plugin`: {} already exists and is not empty; \
             choose a new directory with --dir",
            dir.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("Cargo.toml")).unwrap(),
        "mine"
    );
    assert!(!dir.join("src").exists());
}

#[test]
fn new_refuses_names_the_host_or_cargo_would_refuse() {
    let parent = tempfile::tempdir().unwrap();
    for (name, why) in [
        ("MyPlugin", "cannot name a state file"),
        (".hidden", "cannot name a state file"),
        ("a/b", "cannot name a state file"),
        ("2fast", "must start with a letter"),
        ("my.plugin", "contains `.`"),
    ] {
        let dir = parent.path().join("p");
        let line = refused(&[name.as_ref(), "--dir".as_ref(), dir.as_os_str()]);
        assert!(
            line.starts_with(&format!("plugin-host: cannot create plugin `{name}`: "))
                && line.contains(why),
            "{name}: {line}"
        );
        assert!(!dir.exists(), "{name}: nothing may be created");
    }
}

#[test]
fn new_refuses_an_unwritable_directory() {
    let parent = tempfile::tempdir().unwrap();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let dir = if root {
        // Mode bits do not stop root; sysfs refuses new directories to everyone.
        Path::new("/sys/plugbay-new-test").to_path_buf()
    } else {
        use std::os::unix::fs::PermissionsExt;
        let locked = parent.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        locked.join("my-plugin")
    };
    let line = refused(&["my-plugin".as_ref(), "--dir".as_ref(), dir.as_os_str()]);
    assert!(
        line.starts_with(&format!(
            "plugin-host: cannot create plugin `my-plugin`: cannot create directory {}: ",
            dir.display()
        )),
        "{line}"
    );
    assert!(!dir.exists());
}
