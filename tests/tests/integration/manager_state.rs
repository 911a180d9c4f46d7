//! State persistence through the manager: restored before initialize, saved after
//! shutdown, corrupt files quarantined, one host per state dir.

use std::sync::atomic::Ordering::SeqCst;

use integration_tests::PluginDir;
use plugbay_api::PluginError;
use plugbay_host::{Error, ManagerConfig, PluginManager, PluginState};
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

/// A plugin whose `save_state` waits until released, and whose `shutdown`
/// records whether a save was running at that moment.
#[derive(Default)]
struct SlowSave {
    saving: std::sync::atomic::AtomicBool,
    save_started: tokio::sync::Notify,
    release: tokio::sync::Notify,
    shutdown_during_save: std::sync::atomic::AtomicBool,
}

struct SlowSavePlugin {
    info: plugbay_host::PluginInfo,
    probe: std::sync::Arc<SlowSave>,
}

#[async_trait::async_trait]
impl plugbay_host::Plugin for SlowSavePlugin {
    fn info(&self) -> &plugbay_host::PluginInfo {
        &self.info
    }

    async fn initialize(&self, _: plugbay_host::PluginContext) -> Result<(), PluginError> {
        Ok(())
    }

    async fn shutdown(&self, _: plugbay_host::PluginContext) -> Result<(), PluginError> {
        if self.probe.saving.load(SeqCst) {
            self.probe.shutdown_during_save.store(true, SeqCst);
        }
        Ok(())
    }

    async fn save_state(&self) -> Result<Value, PluginError> {
        self.probe.saving.store(true, SeqCst);
        self.probe.save_started.notify_one();
        self.probe.release.notified().await;
        self.probe.saving.store(false, SeqCst);
        Ok(json!({"saved": true}))
    }

    async fn load_state(&self, _: Value, _: &str) -> Result<(), PluginError> {
        Ok(())
    }

    async fn call(
        &self,
        _: plugbay_host::PluginContext,
        method: &str,
        _: Value,
    ) -> Result<Value, PluginError> {
        Err(PluginError::unknown_method(method))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_is_serialized_with_the_plugins_lifecycle() {
    let state = tempfile::tempdir().unwrap();
    let config = ManagerConfig::builder()
        .state_dir(state.path())
        .build()
        .expect("valid config");
    let manager = PluginManager::open(config).await.unwrap();
    let probe = std::sync::Arc::new(SlowSave::default());
    let plugin = SlowSavePlugin {
        info: plugbay_host::PluginInfo::in_process("slow", "1.0.0").unwrap(),
        probe: std::sync::Arc::clone(&probe),
    };
    let id = manager
        .register_plugin(std::sync::Arc::new(plugin))
        .unwrap();
    manager.load_plugin(id).await.unwrap();

    let checkpoint = tokio::spawn({
        let manager = manager.clone();
        async move { manager.save_all_states().await }
    });
    probe.save_started.notified().await;
    let unload = tokio::spawn({
        let manager = manager.clone();
        async move { manager.unload_plugin(id).await }
    });
    // Give the unload every chance to start the shutdown under the running save.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        manager.status(id).unwrap(),
        PluginState::Active,
        "the unload must wait for the checkpoint's save"
    );
    probe.release.notify_one();
    let saved = checkpoint.await.unwrap();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(saved[0].1.is_ok(), "{saved:?}");
    // The shutdown's own final save waits to be released too.
    probe.release.notify_one();
    unload.await.unwrap().unwrap();
    assert!(
        !probe.shutdown_during_save.load(SeqCst),
        "shutdown ran while a checkpoint was saving the state"
    );
    assert_eq!(manager.status(id).unwrap(), PluginState::Unloaded);
}
