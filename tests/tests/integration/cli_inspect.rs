//! `plugin-host inspect`: everything known about one file (good, quarantined,
//! refused), by path and by name, with the saved state; and its exit codes.

use std::ffi::OsStr;
use std::path::Path;

use integration_tests::safety_support::copy;
use integration_tests::{c_library, cli_json_data, run_plugin_host, PluginDir};
use serde_json::Value;

/// `plugin-host inspect --json` with `work` as work dir, then `rest`; the
/// exit code must be `code`.
fn inspect_json(work: &Path, rest: &[&OsStr], code: i32) -> Value {
    let mut args: Vec<&OsStr> = vec![
        "inspect".as_ref(),
        "--json".as_ref(),
        "--work-dir".as_ref(),
        work.as_os_str(),
    ];
    args.extend_from_slice(rest);
    let (got, stdout, stderr) = run_plugin_host(&args);
    assert_eq!(got, Some(code), "stderr:\n{stderr}\nstdout:\n{stdout}");
    cli_json_data(&stdout, "inspect")
}

#[test]
fn a_good_file_shows_metadata_resolution_cache_verdict_probe_time_and_permissions() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let work = tempfile::tempdir().unwrap();
    let greeter = dir.library("greeter");
    let first = inspect_json(work.path(), &[greeter.as_os_str()], 0);
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["name"], "greeter");
    assert_eq!(first["version"], "1.2.0");
    assert_eq!(first["interface_version"], plugbay_api::INTERFACE_VERSION);
    assert_eq!(
        first["host_interface_version"],
        plugbay_api::INTERFACE_VERSION
    );
    assert_eq!(first["startable"], true);
    let dep = &first["dependencies"][0];
    assert_eq!(
        (&dep["name"], &dep["requirement"], &dep["resolution"]),
        (&"hello".into(), &"^1.0".into(), &"ok".into()),
        "{first}"
    );
    assert_eq!(dep["file"], dir.library("hello").to_str().unwrap());
    assert_eq!(dep["version"], "1.0.0");
    let content_id = first["content_id"].as_str().unwrap();
    assert_eq!(content_id.len(), 64, "{first}");
    let shadow = first["shadow"].as_str().unwrap();
    assert!(
        shadow.contains(content_id) && Path::new(shadow).is_file(),
        "{first}"
    );
    let verdict = &first["verdict"];
    assert_eq!(verdict["from_cache"], false, "a fresh work dir: {first}");
    assert!(verdict["made_at_ms"].as_u64().unwrap() > 0, "{first}");
    assert!(
        verdict["made_at"].as_str().unwrap().ends_with('Z'),
        "{first}"
    );
    assert!(verdict["probe_us"].is_u64(), "the probe ran: {first}");
    let permissions = &first["permissions"];
    assert_eq!(permissions["enforced"], true, "{first}");
    assert_eq!(permissions["mode"].as_u64().unwrap() & 0o022, 0, "{first}");
    assert_eq!(permissions["symlink"], false);
    assert_eq!(
        permissions["size"].as_u64().unwrap(),
        std::fs::metadata(&greeter).unwrap().len()
    );

    // Again: the verdict now comes from the cache and keeps its time and probe time.
    let again = inspect_json(work.path(), &[greeter.as_os_str()], 0);
    assert_eq!(again["verdict"]["from_cache"], true, "{again}");
    assert_eq!(
        again["verdict"]["made_at_ms"], verdict["made_at_ms"],
        "{again}"
    );
    assert_eq!(again["verdict"]["probe_us"], verdict["probe_us"], "{again}");
    assert_eq!(again["content_id"], first["content_id"]);
}

#[test]
fn by_name_with_a_state_dir_it_shows_the_saved_state() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let work = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let envelope = r#"{"format":1,"plugin":"counter","plugin_version":"0.9.0","saved_at":"2026-01-02T03:04:05Z","state":{"count":7}}"#;
    std::fs::write(state.path().join("counter.json"), envelope).unwrap();
    let data = inspect_json(
        work.path(),
        &[
            "--state-dir".as_ref(),
            state.path().as_os_str(),
            "counter".as_ref(),
            dir.path().as_os_str(),
        ],
        0,
    );
    assert_eq!(data["name"], "counter", "{data}");
    let s = &data["state"];
    assert_eq!(s["exists"], true, "{data}");
    assert_eq!(s["size"], envelope.len(), "{data}");
    assert_eq!(s["saved_by_version"], "0.9.0");
    assert_eq!(s["saved_at"], "2026-01-02T03:04:05Z");
    assert_eq!(s["error"], Value::Null);

    // No state for hello: said so, not an error.
    let data = inspect_json(
        work.path(),
        &[
            "--state-dir".as_ref(),
            state.path().as_os_str(),
            "hello".as_ref(),
            dir.path().as_os_str(),
        ],
        0,
    );
    assert_eq!(data["state"]["exists"], false, "{data}");
}

#[test]
fn a_quarantined_file_shows_the_probes_reason_and_time() {
    let dir = PluginDir::with(&["hello"]);
    let work = tempfile::tempdir().unwrap();
    let bad = dir.path().join("libsegv.so");
    copy(&c_library("ctor_segv"), &bad);
    let data = inspect_json(work.path(), &[bad.as_os_str()], 0);
    assert_eq!(data["status"], "quarantined", "{data}");
    assert!(
        data["reason"].as_str().unwrap().contains("SIGSEGV"),
        "{data}"
    );
    assert_eq!(data["name"], Value::Null);
    assert!(data["verdict"]["probe_us"].is_u64(), "{data}");
    assert!(data["verdict"]["made_at_ms"].is_u64(), "{data}");
    assert!(data["content_id"].is_string(), "{data}");
    // By the name its file suggests, too.
    let data = inspect_json(work.path(), &["segv".as_ref(), dir.path().as_os_str()], 0);
    assert_eq!(data["status"], "quarantined", "{data}");
    assert_eq!(data["verdict"]["from_cache"], true, "{data}");
}

#[test]
fn a_refused_file_shows_the_rule_it_broke_and_no_verdict() {
    let dir = PluginDir::with(&["hello"]);
    let work = tempfile::tempdir().unwrap();
    let empty = dir.write("empty.so", b"");
    let data = inspect_json(work.path(), &[empty.as_os_str()], 0);
    assert_eq!(data["status"], "refused", "{data}");
    assert!(data["reason"].as_str().unwrap().contains("empty"), "{data}");
    assert_eq!(data["verdict"]["made_at_ms"], Value::Null, "{data}");
    assert_eq!(data["verdict"]["probe_us"], Value::Null, "{data}");
    assert_eq!(data["content_id"], Value::Null, "{data}");
}

#[test]
fn text_output_and_exit_codes() {
    let dir = PluginDir::with(&["hello", "greeter"]);
    let work = tempfile::tempdir().unwrap();
    let args = |rest: &[&OsStr]| {
        let mut args: Vec<&OsStr> = vec![
            "inspect".as_ref(),
            "--work-dir".as_ref(),
            work.path().as_os_str(),
        ];
        args.extend_from_slice(rest);
        run_plugin_host(&args)
    };
    let (code, text, stderr) = args(&["greeter".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    for needle in [
        "plugin         greeter 1.2.0",
        "hello ^1.0 -> hello 1.0.0",
        "content id",
        "shadow copy",
        "probe time",
        "permissions    checked (owner and mode)",
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
    let (code, _, stderr) = args(&["nothing".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no plugin or file named `nothing`"),
        "{stderr}"
    );
    let (code, _, stderr) = args(&["greeter".as_ref()]);
    assert_eq!(code, Some(2), "a name without directories: {stderr}");
}

#[test]
fn a_symlink_inside_the_directory_is_reported_as_one() {
    let dir = PluginDir::with(&["hello"]);
    let work = tempfile::tempdir().unwrap();
    let link = dir.path().join("libalias.so");
    std::os::unix::fs::symlink(dir.library("hello"), &link).unwrap();
    let data = inspect_json(work.path(), &[link.as_os_str()], 0);
    assert_eq!(data["status"], "ok", "{data}");
    assert_eq!(data["permissions"]["symlink"], true, "{data}");
    let data = inspect_json(work.path(), &[dir.library("hello").as_os_str()], 0);
    assert_eq!(data["permissions"]["symlink"], false, "{data}");
}
