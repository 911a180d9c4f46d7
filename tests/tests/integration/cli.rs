//! The `plugin-host` binary, run as a user would.

use integration_tests::{cli_json_data, run_plugin_host, PluginDir};
use serde_json::Value;

#[test]
fn list_json_reports_every_sample_and_the_bad_file() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let bogus = dir.write("x.so", b"not a library\n");
    let (code, stdout, stderr) =
        run_plugin_host(&["list".as_ref(), "--json".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, Some(0), "stderr:\n{stderr}\nstdout:\n{stdout}");
    let entries: Vec<Value> = serde_json::from_value(cli_json_data(&stdout, "list"))
        .unwrap_or_else(|e| panic!("list --json data is not an array ({e}):\n{stdout}"));
    assert_eq!(entries.len(), 4, "{stdout}");
    for entry in &entries {
        for key in ["path", "name", "version", "dependencies", "status", "error"] {
            assert!(entry.get(key).is_some(), "entry lacks `{key}`: {entry}");
        }
    }
    let mut names: Vec<&str> = entries
        .iter()
        .filter(|e| e["error"].is_null())
        .map(|e| e["name"].as_str().expect("good entries have a name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["counter", "greeter", "hello"], "{stdout}");
    let greeter = entries.iter().find(|e| e["name"] == "greeter").unwrap();
    assert_eq!(greeter["dependencies"][0]["name"], "hello");
    assert_eq!(greeter["dependencies"][0]["requirement"], "^1.0");
    let bad = entries
        .iter()
        .find(|e| e["path"] == bogus.to_str().unwrap())
        .unwrap_or_else(|| panic!("no entry for {}:\n{stdout}", bogus.display()));
    let error = bad["error"].as_str().expect("bad file has an error");
    assert!(
        error.contains("x.so") && error.contains("too short"),
        "{error}"
    );
}

/// The saved `counter` state in `state_dir`, parsed.
fn counter_state(state_dir: &std::path::Path) -> Value {
    let path = state_dir.join("counter.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

#[test]
fn run_once_twice_restores_and_increments_the_counter() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let args = [
        "run".as_ref(),
        "--once".as_ref(),
        "--state-dir".as_ref(),
        state.path().as_os_str(),
        "--work-dir".as_ref(),
        work.path().as_os_str(),
        dir.path().as_os_str(),
    ];
    for round in 1..=2u64 {
        let (code, stdout, stderr) = run_plugin_host(&args);
        assert_eq!(
            code,
            Some(0),
            "round {round}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        for name in ["hello", "counter", "greeter"] {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.contains(name) && l.contains("active")),
                "round {round}: {name} not active\n{stdout}"
            );
        }
        assert!(
            stderr.contains(&format!("initialized {round} time(s)")),
            "round {round}: counter did not report its restored count\n{stderr}"
        );
        let saved = counter_state(state.path());
        assert_eq!(saved["format"], 1, "{saved}");
        assert_eq!(saved["plugin"], "counter", "{saved}");
        assert_eq!(saved["state"]["initializations"], round, "{saved}");
    }
}

#[test]
fn hostile_dir_list_check_and_run_end_normally_and_name_every_bad_file() {
    let hostile = crate::safety_support::HostileDir::new();
    let dir = hostile.plugins.path().as_os_str();
    let work = hostile.work.path().as_os_str();
    let (code, stdout, stderr) = run_plugin_host(&[
        "list".as_ref(),
        "--json".as_ref(),
        "--work-dir".as_ref(),
        work,
        dir,
    ]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let entries: Vec<Value> =
        serde_json::from_value(cli_json_data(&stdout, "list")).expect("list --json is an array");
    let entry = |file: &str| {
        let path = hostile.file(file);
        entries
            .iter()
            .find(|e| e["path"] == path.to_str().unwrap())
            .unwrap_or_else(|| panic!("no entry for {file}:\n{stdout}"))
            .clone()
    };
    for good in crate::safety_support::GOOD {
        let e = entry(&integration_tests::library_file_name(good));
        assert_eq!(e["status"], "ok", "{e}");
        assert!(e["error"].is_null(), "{e}");
        assert_eq!(e["startable"], true, "{e}");
    }
    for (file, status, needle) in [
        ("x.so", "unopenable", "too short"),
        ("empty.so", "refused", "empty"),
        ("truncated.so", "quarantined", "SIGBUS"),
        ("segv.so", "quarantined", "SIGSEGV"),
        ("abort.so", "quarantined", "SIGABRT"),
        ("hang.so", "quarantined", "did not finish"),
        ("noroot.so", "incompatible", "not a plugin"),
        ("abi-mismatch.so", "incompatible", "optional"),
        ("world-writable.so", "insecure", "666"),
        ("outside.so", "refused", "outside"),
        ("dir.so", "refused", "directory"),
    ] {
        let e = entry(file);
        assert_eq!(e["status"], status, "{file}: {e}");
        let error = e["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{file}: `{needle}` not in {error}");
        assert!(
            error.contains(file),
            "{file}: the error must name the file: {error}"
        );
    }
    // `check` fails on the same directory; `run --once` starts the good plugins
    // and exits 1 for the skipped files.
    let (code, _, stderr) = run_plugin_host(&["check".as_ref(), "--work-dir".as_ref(), work, dir]);
    assert_eq!(code, Some(1), "check must fail on a hostile dir\n{stderr}");
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_plugin_host(&[
        "run".as_ref(),
        "--once".as_ref(),
        "--state-dir".as_ref(),
        state.path().as_os_str(),
        "--work-dir".as_ref(),
        work,
        dir,
    ]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for name in crate::safety_support::GOOD {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(name) && l.contains("active")),
            "{name} not active\n{stdout}"
        );
    }
    assert!(
        stderr.contains("segv.so"),
        "skipped files are reported\n{stderr}"
    );
}
