//! State persistence through the manager: restored before initialize, saved after
//! shutdown, corrupt files quarantined, one host per state dir.

use integration_tests::PluginDir;
use plugbay_host::{Error, ManagerConfig, PluginManager};
use serde_json::{json, Value};

fn config(dir: &PluginDir, state: &std::path::Path) -> ManagerConfig {
    ManagerConfig::builder()
        .safety(dir.safety())
        .state_dir(state)
        .build()
        .expect("valid config")
}

/// Opens a manager on `state`, loads `dir`, starts everything.
async fn start(dir: &PluginDir, state: &std::path::Path) -> PluginManager {
    let manager = PluginManager::open(config(dir, state))
        .await
        .unwrap_or_else(|e| panic!("open with state dir {}: {e}", state.display()));
    let report = manager.load_directory(dir.path()).await.expect("dir loads");
    assert!(report.failed.is_empty(), "{report:?}");
    let started = manager.load_all_plugins().await;
    assert!(started.is_ok(), "{started:?}");
    manager
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_saved_on_unload_and_restored_before_the_next_initialize() {
    let dir = PluginDir::with(&["counter"]);
    let state = tempfile::tempdir().unwrap();

    let first = start(&dir, state.path()).await;
    for _ in 0..3 {
        first
            .call("counter", "increment", Value::Null)
            .await
            .unwrap();
    }
    assert!(first.unload_all_plugins().await.is_ok());
    let saved: Value =
        serde_json::from_slice(&std::fs::read(state.path().join("counter.json")).unwrap()).unwrap();
    assert_eq!(saved["state"], json!({"initializations": 1, "value": 3}));
    drop(first);

    let second = start(&dir, state.path()).await;
    let got = second.call("counter", "get", Value::Null).await.unwrap();
    assert_eq!(got, json!({"initializations": 2, "value": 3}));
    assert!(second.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_moved_aside_and_the_plugin_starts_empty() {
    let dir = PluginDir::with(&["counter"]);
    let state = tempfile::tempdir().unwrap();
    let garbage = b"{\"format\": 1, \"plugin\": \"counter\", trunc";
    std::fs::write(state.path().join("counter.json"), garbage).unwrap();

    let manager = start(&dir, state.path()).await;
    let got = manager.call("counter", "get", Value::Null).await.unwrap();
    assert_eq!(got, json!({"initializations": 1, "value": 0}));
    let moved: Vec<_> = std::fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("counter.json.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "exactly one quarantined copy: {moved:?}");
    assert_eq!(
        std::fs::read(&moved[0]).unwrap(),
        garbage,
        "bytes kept intact"
    );
    assert!(manager.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_on_the_same_state_dir_is_refused_with_the_holders_pid() {
    let dir = PluginDir::with(&["counter"]);
    let state = tempfile::tempdir().unwrap();
    let first = PluginManager::open(config(&dir, state.path()))
        .await
        .unwrap();
    let err = PluginManager::open(config(&dir, state.path()))
        .await
        .err()
        .expect("second open must fail");
    match &err {
        Error::StateDirLocked { path, holder } => {
            assert_eq!(path, state.path());
            assert_eq!(holder, &std::process::id().to_string());
        }
        other => panic!("expected StateDirLocked, got {other:?}"),
    }
    // `new` cannot return the error, so every load fails with it instead of
    // running the plugin without its state.
    let blind = PluginManager::new(config(&dir, state.path()));
    blind.load_directory(dir.path()).await.unwrap();
    let report = blind.load_all_plugins().await;
    let outcome = report.outcome("counter").expect("counter attempted");
    assert!(
        matches!(outcome.result, Err(Error::StateDirLocked { .. })),
        "{outcome:?}"
    );
    drop(first);
}
