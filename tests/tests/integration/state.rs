//! PluginStateManager in one process: round trips, policies, corruption,
//! hostile names, concurrency.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;
use integration_tests::names_in;
use plugbay_api::{ErrorKind, PluginError};
use plugbay_host::{
    Error, LoadOutcome, Plugin, PluginContext, PluginInfo, PluginStateManager, SaveOutcome,
    StateEvent,
};
use semver::Version;
use serde_json::{json, Value};

type SaveFn = Box<dyn Fn() -> BoxFuture<'static, Result<Value, PluginError>> + Send + Sync>;

/// An in-process plugin whose `save_state` is a closure and whose `load_state`
/// records what it was handed (optionally waiting at a [`Gate`] first).
struct TestPlugin {
    info: PluginInfo,
    save: SaveFn,
    load_gate: Option<Arc<Gate>>,
    loaded: Mutex<Vec<(Value, String)>>,
}

impl TestPlugin {
    fn with_save(name: &str, version: &str, save: SaveFn) -> Self {
        Self {
            info: PluginInfo::in_process(name, version).unwrap(),
            save,
            load_gate: None,
            loaded: Mutex::new(Vec::new()),
        }
    }

    fn fixed(name: &str, version: &str, state: Value) -> Self {
        Self::with_save(
            name,
            version,
            Box::new(move || futures::future::ready(Ok(state.clone())).boxed()),
        )
    }

    fn loaded(&self) -> Vec<(Value, String)> {
        self.loaded.lock().unwrap().clone()
    }
}

#[async_trait]
impl Plugin for TestPlugin {
    fn info(&self) -> &PluginInfo {
        &self.info
    }
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
    async fn shutdown(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
    async fn save_state(&self) -> Result<Value, PluginError> {
        (self.save)().await
    }
    async fn load_state(&self, state: Value, saved_by_version: &str) -> Result<(), PluginError> {
        if let Some(gate) = &self.load_gate {
            gate.pass().await;
        }
        self.loaded
            .lock()
            .unwrap()
            .push((state, saved_by_version.to_owned()));
        Ok(())
    }
    async fn call(&self, _: PluginContext, method: &str, _: Value) -> Result<Value, PluginError> {
        Err(PluginError::unknown_method(method))
    }
}

/// A barrier that also counts how many tasks were inside at once: `n` plugins
/// passing it can only all get through if `n` of them run at the same time.
struct Gate {
    barrier: tokio::sync::Barrier,
    inside: AtomicUsize,
    most_inside: AtomicUsize,
}

impl Gate {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            barrier: tokio::sync::Barrier::new(n),
            inside: AtomicUsize::new(0),
            most_inside: AtomicUsize::new(0),
        })
    }

    async fn pass(&self) {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_inside.fetch_max(now, Ordering::SeqCst);
        self.barrier.wait().await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("state");
    (tmp, dir)
}

async fn open(dir: &Path) -> PluginStateManager {
    PluginStateManager::open_async(dir.to_path_buf())
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_restores_state_and_version() {
    let (_tmp, dir) = state_dir();
    let state = json!({"count": 3, "names": ["a", "b"], "nested": {"ok": true}});
    let saved = {
        let manager = open(&dir).await;
        let plugin = TestPlugin::fixed("counter", "1.4.0", state.clone());
        manager.save_state(&plugin).await.expect("save")
    };
    let path = dir.join("counter.json");
    assert!(
        matches!(&saved, SaveOutcome::Saved { path: p, bytes } if *p == path && *bytes > 0),
        "{saved:?}"
    );
    // The file is the documented envelope.
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk["format"], 1);
    assert_eq!(on_disk["plugin"], "counter");
    assert_eq!(on_disk["plugin_version"], "1.4.0");
    assert_eq!(on_disk["state"], state);
    assert!(on_disk["saved_at"].as_str().unwrap().ends_with('Z'));

    // A new manager (as after a restart) restores it into a fresh instance.
    let manager = open(&dir).await;
    let fresh = TestPlugin::fixed("counter", "1.4.0", Value::Null);
    let outcome = manager.load_state(&fresh).await.expect("load");
    match outcome {
        LoadOutcome::Restored {
            saved_by_version,
            saved_at,
        } => {
            assert_eq!(saved_by_version, v("1.4.0"));
            assert_eq!(saved_at, on_disk["saved_at"].as_str().unwrap());
        }
        other => panic!("expected Restored, got {other:?}"),
    }
    assert_eq!(fresh.loaded(), vec![(state.clone(), "1.4.0".to_owned())]);
    let raw = manager
        .read("counter")
        .await
        .unwrap()
        .expect("raw envelope");
    assert_eq!(raw.state, state);

    // No file: NoState, and the plugin is not called.
    let other = TestPlugin::fixed("other", "1.0.0", Value::Null);
    assert_eq!(
        manager.load_state(&other).await.unwrap(),
        LoadOutcome::NoState
    );
    assert!(other.loaded().is_empty());
    assert_eq!(manager.read("other").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_state_writes_nothing_and_keeps_the_previous_file() {
    let (_tmp, dir) = state_dir();
    let manager = open(&dir).await;
    let empty = TestPlugin::fixed("quiet", "1.0.0", Value::Null);
    assert_eq!(
        manager.save_state(&empty).await.unwrap(),
        SaveOutcome::NothingToSave
    );
    assert!(!dir.join("quiet.json").exists());

    manager
        .write("quiet", &v("1.0.0"), json!({"kept": 1}))
        .await
        .unwrap();
    let before = std::fs::read(dir.join("quiet.json")).unwrap();
    assert_eq!(
        manager.save_state(&empty).await.unwrap(),
        SaveOutcome::NothingToSave
    );
    assert_eq!(std::fs::read(dir.join("quiet.json")).unwrap(), before);

    // The raw API writes null like any other value.
    manager
        .write("quiet", &v("1.0.0"), Value::Null)
        .await
        .unwrap();
    assert_eq!(
        manager.read("quiet").await.unwrap().unwrap().state,
        Value::Null
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_from_another_version_is_handed_over_with_that_version() {
    let (_tmp, dir) = state_dir();
    let manager = open(&dir).await;
    manager
        .write("migrating", &v("0.9.1"), json!({"old_field": 7}))
        .await
        .unwrap();
    let plugin = TestPlugin::fixed("migrating", "2.0.0", Value::Null);
    let outcome = manager.load_state(&plugin).await.unwrap();
    assert!(
        matches!(&outcome, LoadOutcome::Restored { saved_by_version, .. } if *saved_by_version == v("0.9.1")),
        "{outcome:?}"
    );
    assert_eq!(
        plugin.loaded(),
        vec![(json!({"old_field": 7}), "0.9.1".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_file_is_quarantined_with_its_bytes_and_the_plugin_starts_empty() {
    let (_tmp, dir) = state_dir();
    let manager = open(&dir).await;
    let mut events = manager.subscribe();
    let path = dir.join("counter.json");
    let garbage: &[u8] =
        b"{\"format\": 1, \"plugin\": \"counter\", \"state\": {\"n\": 4\xff\x00 torn";
    std::fs::write(&path, garbage).unwrap();

    let plugin = TestPlugin::fixed("counter", "1.0.0", json!({"n": 5}));
    let outcome = manager.load_state(&plugin).await.expect("load");
    let LoadOutcome::Quarantined {
        path: was,
        moved_to,
        reason,
    } = outcome
    else {
        panic!("expected Quarantined, got {outcome:?}");
    };
    assert_eq!(was, path);
    assert!(!path.exists(), "{} must have been moved", path.display());
    let moved_name = moved_to.file_name().unwrap().to_str().unwrap();
    assert!(
        moved_name.starts_with("counter.json.corrupt-"),
        "{moved_name}"
    );
    assert_eq!(moved_to.parent(), Some(dir.as_path()));
    assert_eq!(
        std::fs::read(&moved_to).unwrap(),
        garbage,
        "bytes of {} changed",
        moved_to.display()
    );
    assert!(reason.contains("not a state envelope"), "{reason}");
    assert!(
        plugin.loaded().is_empty(),
        "the plugin must start without state"
    );

    let event = events.try_recv().expect("a Quarantined event");
    assert_eq!(
        event,
        StateEvent::Quarantined {
            plugin: "counter".to_owned(),
            path: path.clone(),
            moved_to: moved_to.clone(),
            reason: reason.clone(),
        }
    );

    // The plugin goes on: a new save works, the quarantined bytes stay.
    manager
        .save_state(&plugin)
        .await
        .expect("save after quarantine");
    assert_eq!(
        manager.read("counter").await.unwrap().unwrap().state,
        json!({"n": 5})
    );
    assert_eq!(std::fs::read(&moved_to).unwrap(), garbage);

    // Raw read of a corrupt file: quarantined too, reported as StateCorrupt.
    std::fs::write(&path, b"[1, 2").unwrap();
    match manager.read("counter").await {
        Err(Error::StateCorrupt {
            path: p, moved_to, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(std::fs::read(&moved_to).unwrap(), b"[1, 2");
        }
        other => panic!("expected StateCorrupt, got {other:?}"),
    }
    let corrupt_files = names_in(&dir)
        .into_iter()
        .filter(|n| n.starts_with("counter.json.corrupt-"))
        .count();
    assert_eq!(corrupt_files, 2, "{:?}", names_in(&dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_corrupt_file_is_moved_aside_intact() {
    let (tmp, dir) = state_dir();
    let manager = open(&dir).await;
    let envelope = |plugin: &str, format: u64, state: &str| {
        format!(
            r#"{{"format":{format},"plugin":"{plugin}","plugin_version":"1.0.0","saved_at":"x","state":{state}}}"#
        )
        .into_bytes()
    };
    let deep = format!("{}0{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "wrong-plugin",
            envelope("someone-else", 1, "1"),
            "belongs to",
        ),
        (
            "future-format",
            envelope("future-format", 2, "1"),
            "format 2",
        ),
        (
            "too-deep",
            envelope("too-deep", 1, &deep),
            "recursion limit",
        ),
        (
            "not-json",
            b"\x00\x01\x02 binary".to_vec(),
            "not a state envelope",
        ),
        ("empty", Vec::new(), "EOF"),
    ];
    for (name, bytes, why) in &cases {
        std::fs::write(dir.join(format!("{name}.json")), bytes).unwrap();
        let plugin = TestPlugin::fixed(name, "1.0.0", Value::Null);
        match manager.load_state(&plugin).await.unwrap() {
            LoadOutcome::Quarantined {
                moved_to, reason, ..
            } => {
                assert!(reason.contains(why), "{name}: {reason}");
                assert_eq!(&std::fs::read(&moved_to).unwrap(), bytes, "{name}");
            }
            other => panic!("{name}: expected Quarantined, got {other:?}"),
        }
        assert!(plugin.loaded().is_empty(), "{name}");
    }

    // Over the size limit: refused by size before any parsing (a sparse file).
    let big = dir.join("big.json");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(plugbay_host::MAX_STATE_FILE_BYTES + 1)
        .unwrap();
    drop(file);
    let plugin = TestPlugin::fixed("big", "1.0.0", Value::Null);
    match manager.load_state(&plugin).await.unwrap() {
        LoadOutcome::Quarantined {
            moved_to, reason, ..
        } => {
            assert!(reason.contains("limit"), "{reason}");
            assert_eq!(
                std::fs::metadata(&moved_to).unwrap().len(),
                plugbay_host::MAX_STATE_FILE_BYTES + 1
            );
        }
        other => panic!("expected Quarantined, got {other:?}"),
    }

    // A symlink is never followed; the link itself is moved, its target untouched.
    let outside = tmp.path().join("outside.txt");
    std::fs::write(&outside, b"not yours").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("linked.json")).unwrap();
    let plugin = TestPlugin::fixed("linked", "1.0.0", Value::Null);
    match manager.load_state(&plugin).await.unwrap() {
        LoadOutcome::Quarantined {
            moved_to, reason, ..
        } => {
            assert!(reason.contains("symbolic link"), "{reason}");
            assert_eq!(std::fs::read_link(&moved_to).unwrap(), outside);
        }
        other => panic!("expected Quarantined, got {other:?}"),
    }
    assert_eq!(std::fs::read(&outside).unwrap(), b"not yours");

    // A directory where the file should be.
    std::fs::create_dir(dir.join("dir.json")).unwrap();
    std::fs::write(dir.join("dir.json").join("inside"), b"kept").unwrap();
    let plugin = TestPlugin::fixed("dir", "1.0.0", Value::Null);
    match manager.load_state(&plugin).await.unwrap() {
        LoadOutcome::Quarantined { moved_to, .. } => {
            assert_eq!(std::fs::read(moved_to.join("inside")).unwrap(), b"kept");
        }
        other => panic!("expected Quarantined, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_and_nothing_is_written_anywhere() {
    let (tmp, dir) = state_dir();
    let manager = open(&dir).await;
    let too_long = "a".repeat(plugbay_host::MAX_STATE_NAME_LEN + 1);
    let hostile = [
        "../x",
        "/etc/x",
        "a\0b",
        "",
        "..",
        ".",
        ".hidden",
        "UPPER",
        "sub/dir",
        "a\\b",
        "space name",
        too_long.as_str(),
    ];
    for name in hostile {
        let is_refusal =
            |r: &Error| matches!(r, Error::InvalidStateName { name: n, .. } if n == name);
        let plugin = TestPlugin::fixed(name, "1.0.0", json!({"evil": true}));
        let err = manager.save_state(&plugin).await.unwrap_err();
        assert!(is_refusal(&err), "{name:?}: {err:?}");
        let err = manager.load_state(&plugin).await.unwrap_err();
        assert!(is_refusal(&err), "{name:?}: {err:?}");
        let err = manager.read(name).await.unwrap_err();
        assert!(is_refusal(&err), "{name:?}: {err:?}");
        let err = manager
            .write(name, &v("1.0.0"), json!(1))
            .await
            .unwrap_err();
        assert!(is_refusal(&err), "{name:?}: {err:?}");
        assert!(
            err.to_string().contains("cannot name a state file"),
            "{err}"
        );
    }
    let results = manager
        .save_all_states(&[
            Arc::new(TestPlugin::fixed("../y", "1.0.0", json!(1))) as Arc<dyn Plugin>
        ])
        .await;
    assert!(matches!(results[0].1, Err(Error::InvalidStateName { .. })));

    // Nothing but the lock in the state dir, nothing next to it, nothing in /etc.
    assert_eq!(names_in(&dir), [".lock"]);
    assert_eq!(names_in(tmp.path()), ["state"]);
    assert!(!Path::new("/etc/x.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_saves_from_32_tasks_interleaved_with_loads_never_tear() {
    const SAVES: u64 = 1000;
    const TASKS: u64 = 32;
    fn state_for(seq: u64) -> Value {
        // The pad's length and content depend on seq: a mix of two saves shows.
        let pad: String = format!("{seq:x}-").repeat(50 + (seq % 13) as usize);
        json!({"seq": seq, "pad": pad})
    }
    fn check(value: &Value, what: &str) -> u64 {
        let seq = value["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: no seq in {value}"));
        assert!(
            (1..=SAVES).contains(&seq),
            "{what}: seq {seq} was never saved"
        );
        assert_eq!(value, &state_for(seq), "{what}: torn state");
        seq
    }
    tokio::task_local! {
        /// The seq this task's last `save_state` call handed out.
        static LAST_SAVED: std::cell::Cell<u64>;
    }

    let (_tmp, dir) = state_dir();
    let manager = Arc::new(open(&dir).await);
    let counter = Arc::new(AtomicU64::new(0));
    let plugin = {
        let counter = Arc::clone(&counter);
        Arc::new(TestPlugin::with_save(
            "busy",
            "1.0.0",
            Box::new(move || {
                let seq = counter.fetch_add(1, Ordering::SeqCst) + 1;
                LAST_SAVED.with(|c| c.set(seq));
                futures::future::ready(Ok(state_for(seq))).boxed()
            }),
        ))
    };

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let manager = Arc::clone(&manager);
        let plugin = Arc::clone(&plugin);
        let saves = SAVES / TASKS + u64::from(t < SAVES % TASKS);
        tasks.push(tokio::spawn(LAST_SAVED.scope(
            std::cell::Cell::new(0),
            async move {
                let mut seen = 0;
                for i in 0..saves {
                    manager.save_state(plugin.as_ref()).await.expect("save");
                    let mine = LAST_SAVED.with(|c| c.get());
                    if i % 2 == 0 {
                        // Raw read: read-your-writes and never going back.
                        let saved = manager.read("busy").await.expect("read").expect("a file");
                        let seq = check(&saved.state, "read");
                        assert!(seq >= mine, "read {seq} after this task saved {mine}");
                        assert!(seq >= seen, "read {seq} after having seen {seen}");
                        seen = seq;
                    } else {
                        // Through the plugin: what it is handed is checked below.
                        let outcome = manager.load_state(plugin.as_ref()).await.expect("load");
                        assert!(
                            matches!(outcome, LoadOutcome::Restored { .. }),
                            "{outcome:?}"
                        );
                    }
                }
            },
        )));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(counter.load(Ordering::SeqCst), SAVES);
    let loaded = plugin.loaded();
    let loads: u64 = (0..TASKS)
        .map(|t| (SAVES / TASKS + u64::from(t < SAVES % TASKS)) / 2)
        .sum();
    assert_eq!(loaded.len() as u64, loads);
    for (state, version) in &loaded {
        check(state, "load_state");
        assert_eq!(version, "1.0.0");
    }
    // The save that collected its state last is the one on disk.
    let last = manager.read("busy").await.unwrap().unwrap();
    assert_eq!(check(&last.state, "final file"), SAVES);
    assert_eq!(
        names_in(&dir),
        [".lock", "busy.json"],
        "temp files left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_all_and_load_all_over_200_plugins_run_concurrently() {
    const N: usize = 200;
    let (_tmp, dir) = state_dir();
    let manager = open(&dir).await;
    let save_gate = Gate::new(N);
    let load_gate = Gate::new(N);
    let plugins: Vec<Arc<TestPlugin>> = (0..N)
        .map(|i| {
            let gate = Arc::clone(&save_gate);
            let mut plugin = TestPlugin::with_save(
                &format!("p{i:03}"),
                "1.0.0",
                Box::new(move || {
                    let gate = Arc::clone(&gate);
                    async move {
                        // Every save waits until all 200 are inside save_state.
                        gate.pass().await;
                        Ok(json!({"i": i}))
                    }
                    .boxed()
                }),
            );
            plugin.load_gate = Some(Arc::clone(&load_gate));
            Arc::new(plugin)
        })
        .collect();
    let dyn_plugins: Vec<Arc<dyn Plugin>> = plugins
        .iter()
        .map(|p| Arc::clone(p) as Arc<dyn Plugin>)
        .collect();

    // Were saves sequential, the first would wait at the gate forever.
    let saved = tokio::time::timeout(
        Duration::from_secs(120),
        manager.save_all_states(&dyn_plugins),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "save_all_states is not concurrent: at most {} of {N} saves were in flight",
            save_gate.most_inside.load(Ordering::SeqCst)
        )
    });
    assert_eq!(save_gate.most_inside.load(Ordering::SeqCst), N);
    assert_eq!(saved.len(), N);
    for (i, (name, result)) in saved.iter().enumerate() {
        assert_eq!(name, &format!("p{i:03}"), "results keep input order");
        assert!(
            matches!(result, Ok(SaveOutcome::Saved { .. })),
            "{name}: {result:?}"
        );
    }

    let loaded = tokio::time::timeout(
        Duration::from_secs(120),
        manager.load_all_states(&dyn_plugins),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "load_all_states is not concurrent: at most {} of {N} loads were in flight",
            load_gate.most_inside.load(Ordering::SeqCst)
        )
    });
    assert_eq!(load_gate.most_inside.load(Ordering::SeqCst), N);
    for (i, (name, result)) in loaded.iter().enumerate() {
        assert!(
            matches!(result, Ok(LoadOutcome::Restored { .. })),
            "{name}: {result:?}"
        );
        assert_eq!(
            plugins[i].loaded(),
            vec![(json!({"i": i}), "1.0.0".to_owned())]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_panicking_or_unstorable_saves_keep_the_previous_file() {
    let (_tmp, dir) = state_dir();
    let manager = open(&dir).await;
    manager
        .write("fragile", &v("1.0.0"), json!({"good": true}))
        .await
        .unwrap();
    let path = dir.join("fragile.json");
    let before = std::fs::read(&path).unwrap();

    let failing = TestPlugin::with_save(
        "fragile",
        "1.0.0",
        Box::new(|| {
            futures::future::ready(Err(PluginError::failed("disk of the mind is full"))).boxed()
        }),
    );
    match manager.save_state(&failing).await {
        Err(Error::PluginFailed {
            plugin,
            operation,
            kind,
            reason,
        }) => {
            assert_eq!(
                (plugin.as_str(), operation.as_str(), kind),
                ("fragile", "save_state", ErrorKind::Failed)
            );
            assert!(reason.contains("disk of the mind is full"), "{reason}");
        }
        other => panic!("expected PluginFailed, got {other:?}"),
    }

    let panicking = TestPlugin::with_save(
        "fragile",
        "1.0.0",
        Box::new(|| async { panic!("save exploded") }.boxed()),
    );
    match manager.save_state(&panicking).await {
        Err(Error::PluginPanicked { message, .. }) => {
            assert!(message.contains("save exploded"), "{message}")
        }
        other => panic!("expected PluginPanicked, got {other:?}"),
    }

    // Deeper than can be read back: refused before writing.
    let mut deep = json!(0);
    for _ in 0..=plugbay_host::MAX_STATE_DEPTH {
        deep = json!([deep]);
    }
    let too_deep = TestPlugin::fixed("fragile", "1.0.0", deep);
    match manager.save_state(&too_deep).await {
        Err(Error::PluginFailed { reason, .. }) => {
            assert!(
                reason.contains("nests") && reason.contains("previous state is kept"),
                "{reason}"
            )
        }
        other => panic!("expected PluginFailed, got {other:?}"),
    }

    // Larger than the file limit: refused before writing.
    let huge = "x".repeat(plugbay_host::MAX_STATE_FILE_BYTES as usize + 1);
    let too_big = TestPlugin::fixed("fragile", "1.0.0", json!({ "huge": huge }));
    match manager.save_state(&too_big).await {
        Err(Error::PluginFailed { reason, .. }) => assert!(reason.contains("limit"), "{reason}"),
        other => panic!("expected PluginFailed, got {other:?}"),
    }

    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "{} changed",
        path.display()
    );
    assert_eq!(names_in(&dir), [".lock", "fragile.json"]);
    // And the manager still works.
    let fine = TestPlugin::fixed("fragile", "1.0.1", json!({"good": "still"}));
    manager
        .save_state(&fine)
        .await
        .expect("save after failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_where_the_state_dir_should_be_names_path_and_operation() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("state");
    std::fs::write(&blocker, b"i am a file").unwrap();
    let err = PluginStateManager::open_async(blocker.clone())
        .await
        .expect_err("a file is not a state dir");
    match &err {
        Error::StateIo {
            path, operation, ..
        } => {
            assert_eq!(path, &blocker);
            assert_eq!(operation, "create directory");
        }
        other => panic!("expected StateIo, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&blocker.display().to_string()) && text.contains("create directory"),
        "{text}"
    );
    assert_eq!(std::fs::read(&blocker).unwrap(), b"i am a file");

    // A state dir below a file fails the same way, naming the path.
    let below = blocker.join("state");
    let err = PluginStateManager::open(below.clone()).expect_err("ENOTDIR");
    assert!(
        matches!(&err, Error::StateIo { path, .. } if *path == below),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_dir_vanishing_under_a_running_host_fails_saves_cleanly() {
    // Root ignores permission bits, so make the directory unusable instead: move
    // it away and put a file in its place. Saves must fail naming the path and
    // the operation; the old file (now under the moved dir) must be intact.
    let (tmp, dir) = state_dir();
    let manager = open(&dir).await;
    manager
        .write("survivor", &v("1.0.0"), json!({"v": 1}))
        .await
        .unwrap();
    let before = std::fs::read(dir.join("survivor.json")).unwrap();
    let moved = tmp.path().join("moved");
    std::fs::rename(&dir, &moved).unwrap();
    std::fs::write(&dir, b"not a dir").unwrap();

    let plugin = TestPlugin::fixed("survivor", "1.0.0", json!({"v": 2}));
    match manager.save_state(&plugin).await {
        Err(Error::StateIo {
            path,
            operation,
            reason,
        }) => {
            assert_eq!(path, dir);
            assert_eq!(operation, "create temp file");
            assert!(!reason.is_empty());
        }
        other => panic!("expected StateIo, got {other:?}"),
    }
    assert_eq!(std::fs::read(moved.join("survivor.json")).unwrap(), before);
    assert_eq!(names_in(&moved), [".lock", "survivor.json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_in_this_process_is_locked_out_until_the_first_is_dropped() {
    let (_tmp, dir) = state_dir();
    let first = open(&dir).await;
    // flock locks belong to the open file description, so a second open in the
    // same process is refused just like another process would be.
    match PluginStateManager::open_async(dir.clone()).await {
        Err(Error::StateDirLocked { path, holder }) => {
            assert_eq!(path, dir);
            assert_eq!(holder, std::process::id().to_string());
        }
        other => panic!("expected StateDirLocked, got {other:?}"),
    }
    drop(first);
    open(&dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_temp_files_are_removed_at_open_and_nothing_else() {
    let (_tmp, dir) = state_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        ".a.json.x1y2.tmp",
        ".b.json.zz.tmp",
        "a.json.corrupt-1",
        "notes.txt",
    ] {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    let manager = open(&dir).await;
    assert_eq!(manager.stale_temps_removed(), 2);
    assert_eq!(names_in(&dir), [".lock", "a.json.corrupt-1", "notes.txt"]);
}
