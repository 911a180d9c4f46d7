//! The compatibility matrix: plugins and hosts from different interface
//! releases together. 1.0.0 is the frozen release in `tests/frozen/`; 1.1 is
//! the current `plugin-api/`. Each test name states the outcome it proves.

use std::path::Path;
use std::process::Command;

use integration_tests::compat::{frozen_api_dir, frozen_files, run_host_1_0, v1_0, FROZEN_COMMIT};
use integration_tests::{abi_mismatch_library, run_plugin_host, workspace_root, PluginDir};
use plugbay_host::{Error, ManagerConfig, PluginManager, PluginState};
use serde_json::{json, Value};

/// A manager admitting `dir`, with state in `state` and data dirs under `data`.
async fn start(dir: &PluginDir, state: &Path, data: &Path) -> PluginManager {
    let config = ManagerConfig::builder()
        .safety(dir.safety())
        .state_dir(state)
        .data_root(data)
        .build()
        .expect("valid config");
    let manager = PluginManager::open(config).await.expect("manager opens");
    let report = manager.load_directory(dir.path()).await.expect("dir loads");
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(manager.load_all_plugins().await.is_ok());
    manager
}

#[test]
fn frozen_1_0_0_is_byte_identical_to_its_release_commit() {
    let listed = Command::new("git")
        .current_dir(workspace_root())
        .args(["ls-tree", "-r", FROZEN_COMMIT, "plugin-api/"])
        .output()
        .expect("run git ls-tree");
    assert!(
        listed.status.success(),
        "git cannot list {FROZEN_COMMIT} (a shallow clone? fetch the full history): {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    // `<mode> <type> <object>\t<path>`; symbolic links (mode 120000: the licence
    // files, which point into the repository root) are not part of the frozen copy.
    let mut released: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| !l.starts_with("120000 "))
        .filter_map(|l| l.split_once('\t'))
        .map(|(_, path)| path.trim_start_matches("plugin-api/").to_owned())
        .collect();
    released.sort();
    assert_eq!(
        frozen_files(),
        released,
        "tests/frozen/plugbay-api-1.0.0 must hold exactly the released files"
    );
    for rel in released {
        let shown = Command::new("git")
            .current_dir(workspace_root())
            .args(["show", &format!("{FROZEN_COMMIT}:plugin-api/{rel}")])
            .output()
            .expect("run git show");
        assert!(shown.status.success(), "git show {rel} failed");
        let frozen = std::fs::read(frozen_api_dir().join(&rel)).expect("read frozen file");
        assert!(
            frozen == shown.stdout,
            "tests/frozen/plugbay-api-1.0.0/{rel} differs from the 1.0.0 release \
             ({FROZEN_COMMIT}); a released interface never changes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_1_0_in_host_1_1_loads_initializes_is_called_and_restores_state() {
    let dir = PluginDir::with(&[]);
    std::fs::copy(v1_0().plugin, dir.path().join("libold_counter.so")).expect("copy plugin");
    let state = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();

    let first = start(&dir, state.path(), data.path()).await;
    let summary = first.plugins().into_iter().next().expect("one plugin");
    assert_eq!(summary.info.name, "old-counter");
    assert_eq!(summary.info.interface_version, "1.0.0");
    assert_eq!(summary.state, PluginState::Active);
    // A 1.0 plugin cannot subscribe, so it receives no events.
    assert_eq!(first.event_bus().subscription_count(), 0);
    first.publish("anything", Value::Null).unwrap();
    for expected in 1..=2 {
        let got = first.call("old-counter", "increment", Value::Null).await;
        assert_eq!(got.unwrap(), json!(expected));
    }
    assert_eq!(
        first
            .call("old-counter", "host", Value::Null)
            .await
            .unwrap(),
        json!("plugin-host")
    );
    assert!(first.unload_all_plugins().await.is_ok());
    drop(first);

    let second = start(&dir, state.path(), data.path()).await;
    let got = second.call("old-counter", "get", Value::Null).await;
    assert_eq!(
        got.unwrap(),
        json!(2),
        "state saved by the 1.0 plugin restored"
    );
    assert!(second.unload_all_plugins().await.is_ok());
    // It never asked for a data directory, so none was made.
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

#[test]
fn plugin_1_0_in_host_1_0_runs() {
    let built = v1_0();
    let (code, out, err) = run_host_1_0(&built.plugin, &[("increment", "null"), ("get", "null")]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["loaded old-counter built against 1.0.0", "ok 1", "ok 1"]
    );
}

#[test]
fn plugin_1_1_in_host_1_0_loads_runs_and_gets_an_error_naming_both_versions() {
    let dir = PluginDir::with(&["fixture-services"]);
    let (code, out, err) = run_host_1_0(
        &dir.library("fixture-services"),
        &[
            ("report", "null"),
            ("data_dir", "null"),
            ("write_note", "{\"text\":\"x\"}"),
            ("events", "null"),
            ("publish", "{\"name\":\"services.x\",\"payload\":1}"),
        ],
    );
    assert_eq!(code, Some(0), "the old host survives: {out}{err}");
    let needs = "err Host: this host provides plugin API 1.0.0; the `data-dir` service needs 1.1.0";
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            &format!(
                "loaded services built against {}",
                plugbay_api::INTERFACE_VERSION
            ),
            "ok {\"api\":\"1.0.0\",\"data_dir\":false}",
            needs,
            needs,
            "ok false",
            "err Host: this host provides plugin API 1.0.0; the `events` service needs 1.1.0",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_1_1_in_host_1_1_gets_an_owner_only_data_dir_kept_across_restarts() {
    let dir = PluginDir::with(&["fixture-services"]);
    let state = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let manager = start(&dir, state.path(), data.path()).await;
    let report = manager
        .call("services", "report", Value::Null)
        .await
        .unwrap();
    assert_eq!(
        report,
        json!({ "api": plugbay_api::INTERFACE_VERSION, "data_dir": true })
    );
    let path = manager
        .call("services", "data_dir", Value::Null)
        .await
        .unwrap();
    let expected = data.path().join("services");
    assert_eq!(path, json!(expected.to_string_lossy()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&expected).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
    manager
        .call("services", "write_note", json!({ "text": "kept" }))
        .await
        .unwrap();
    assert_eq!(std::fs::read(expected.join("note.txt")).unwrap(), b"kept");
    assert!(manager.unload_all_plugins().await.is_ok());
    drop(manager);

    let again = start(&dir, state.path(), data.path()).await;
    let note = again.call("services", "read_note", Value::Null).await;
    assert_eq!(note.unwrap(), json!("kept"));
    assert!(again.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_that_cannot_be_created_is_an_error_and_the_host_stays_up() {
    let dir = PluginDir::with(&["fixture-services"]);
    let state = tempfile::tempdir().unwrap();
    let blocker = state.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let manager = start(&dir, &state.path().join("state"), &blocker).await;
    let err = manager
        .call("services", "data_dir", Value::Null)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("data directory") && text.contains("not-a-dir"),
        "{text}"
    );
    let report = manager.call("services", "report", Value::Null).await;
    assert!(
        report.is_ok(),
        "the plugin and host keep working: {report:?}"
    );
    assert!(manager.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_built_against_a_breaking_change_is_refused_with_one_line() {
    let dir = PluginDir::with(&[]);
    std::fs::copy(
        abi_mismatch_library(),
        dir.path().join("libabi_mismatch.so"),
    )
    .unwrap();
    let manager = dir.manager();
    let report = manager.load_directory(dir.path()).await.expect("dir scans");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let (_, err) = &report.failed[0];
    assert!(matches!(err, Error::AbiMismatch { .. }), "{err:?}");
    let line = err.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.contains("optional"), "names the field: {line}");
    assert!(manager.plugins().is_empty());
}

#[test]
fn list_shows_the_interface_version_each_plugin_was_built_against() {
    let dir = PluginDir::with(&["fixture-services"]);
    std::fs::copy(v1_0().plugin, dir.path().join("libold_counter.so")).expect("copy plugin");
    let (code, stdout, stderr) = run_plugin_host(&["list".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(stdout.lines().next().unwrap().contains(" API "), "{stdout}");
    assert_eq!(row("old-counter")[3], "1.0.0", "{stdout}");
    assert_eq!(
        row("services")[3],
        plugbay_api::INTERFACE_VERSION,
        "{stdout}"
    );
    assert!(
        !stdout.contains("warning"),
        "nothing here needs a newer host: {stdout}"
    );
}
