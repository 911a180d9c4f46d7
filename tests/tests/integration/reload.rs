//! Hot reload: swapping a running plugin's code for a new build, with its state,
//! its id and its callers kept; every failing step rolled back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use integration_tests::watch::watchdog;
use integration_tests::PluginDir;
use plugbay_host::{
    Error, InProcessPlugin, LifecycleEvent, ManagerConfig, PluginManager, PluginState, ReloadEvent,
    ReloadOptions, ReloadStep,
};
use serde_json::{json, Value};

/// Longer than anything here should take: past it a test fails instead of hanging.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The version `counter` says it is, asked through a call.
async fn counter_version(manager: &PluginManager) -> String {
    let answer = manager.call("counter", "version", Value::Null).await;
    match answer {
        Ok(Value::String(version)) => version,
        other => panic!("counter's version call answered {other:?}"),
    }
}

/// A manager over `dir` with `counter` loaded and Active.
async fn running_counter(dir: &PluginDir) -> PluginManager {
    let manager = PluginManager::new(
        ManagerConfig::builder()
            .safety(dir.safety())
            .build()
            .expect("valid config"),
    );
    let report = manager.load_directory(dir.path()).await.expect("dir loads");
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(manager.load_all_plugins().await.is_ok());
    manager
}

/// The next build of `counter` (1.1.0), alone in a directory of its own.
fn next_build() -> (PluginDir, std::path::PathBuf) {
    let dir = PluginDir::with(&["fixture-counter-next"]);
    let path = dir.library("fixture-counter-next");
    (dir, path)
}

fn version_of(manager: &PluginManager, name: &str) -> String {
    manager
        .plugins()
        .into_iter()
        .find(|p| p.info.name == name)
        .map(|p| p.info.version.to_string())
        .unwrap_or_else(|| panic!("{name} is registered"))
}

/// The reload events received so far, as (kind, old, new) strings.
fn reload_events(rx: &mut tokio::sync::broadcast::Receiver<LifecycleEvent>) -> Vec<String> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .filter_map(|e| e.reload)
        .map(|r| match r {
            ReloadEvent::Started { version } => format!("started {version}"),
            ReloadEvent::Succeeded {
                old_version,
                new_version,
                no_op,
            } => format!("succeeded {old_version} -> {new_version} no_op={no_op}"),
            ReloadEvent::RolledBack { version, .. } => format!("rolled back to {version}"),
            ReloadEvent::Failed { .. } => "failed".to_owned(),
        })
        .collect()
}

/// 8 tasks call `counter` continuously while it is reloaded from 1.0.0 to
/// 1.1.0: no call fails, the count carries over, the id stays, the new version
/// shows in the status and in the answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_swaps_counter_with_zero_failed_calls_and_keeps_its_count() {
    let dir = PluginDir::with(&["counter"]);
    let (_next_dir, next) = next_build();
    let manager = running_counter(&dir).await;
    let id = manager.id_of("counter").unwrap();
    let mut events = manager.subscribe();
    let mut bus = manager
        .subscribe_events("plugbay.plugin.reload*", 16)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (manager, stop, ok, failed) = (
                manager.clone(),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
            );
            tokio::spawn(async move {
                let mut errors = Vec::new();
                while !stop.load(SeqCst) {
                    match manager.call("counter", "increment", Value::Null).await {
                        Ok(_) => {
                            ok.fetch_add(1, SeqCst);
                        }
                        Err(e) => {
                            if errors.len() < 10 {
                                errors.push(e.to_string());
                            }
                            failed.fetch_add(1, SeqCst);
                            // A refused call returns at once: let the others run.
                            tokio::task::yield_now().await;
                        }
                    }
                }
                errors
            })
        })
        .collect();
    // Let the callers get going, then reload under them.
    let calls_reach = |n: u64| {
        let ok = Arc::clone(&ok);
        async move {
            while ok.load(SeqCst) < n {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    };
    watchdog("first calls", LIMIT, calls_reach(200)).await;
    let outcome = watchdog(
        "reload",
        LIMIT,
        manager.reload_plugin("counter", ReloadOptions::from_path(&next)),
    )
    .await
    .expect("reload succeeds");
    let after_reload = ok.load(SeqCst);
    watchdog(
        "calls after the reload",
        LIMIT,
        calls_reach(after_reload + 200),
    )
    .await;
    stop.store(true, SeqCst);
    let mut errors = Vec::new();
    for caller in callers {
        errors.extend(caller.await.unwrap());
    }
    assert_eq!(failed.load(SeqCst), 0, "failed calls: {errors:?}");
    assert_eq!(
        (
            outcome.old_version.to_string(),
            outcome.new_version.to_string()
        ),
        ("1.0.0".to_owned(), "1.1.0".to_owned())
    );
    assert!(outcome.was_active && !outcome.no_op, "{outcome:?}");
    assert_eq!(outcome.id, id, "the plugin keeps its id");
    assert_eq!(manager.id_of("counter"), Some(id));
    assert_eq!(manager.status(id).unwrap(), PluginState::Active);
    assert_eq!(version_of(&manager, "counter"), "1.1.0");
    assert_eq!(counter_version(&manager).await, "1.1.0");
    // Every increment, before and after the swap, counted once.
    let got = manager.call("counter", "get", Value::Null).await.unwrap();
    assert_eq!(got["value"], json!(ok.load(SeqCst)), "{got}");
    // The old image stays mapped: one retained image, shown per plugin and in total.
    assert_eq!(outcome.retained_images, 1);
    assert_eq!(manager.retained_images(), 1);
    let summary = manager.plugins().into_iter().find(|p| p.id == id).unwrap();
    assert_eq!(summary.retained_images, 1);
    assert_eq!(
        reload_events(&mut events),
        ["started 1.0.0", "succeeded 1.0.0 -> 1.1.0 no_op=false"]
    );
    let on_bus: Vec<(String, Value)> = std::iter::from_fn(|| bus.try_recv())
        .map(|e| (e.name, e.payload))
        .collect();
    assert_eq!(
        on_bus,
        [
            (
                "plugbay.plugin.reload_started".to_owned(),
                json!({"plugin": "counter", "version": "1.0.0"})
            ),
            (
                "plugbay.plugin.reloaded".to_owned(),
                json!({"plugin": "counter", "old_version": "1.0.0", "new_version": "1.1.0", "no_op": false})
            ),
        ]
    );
    assert!(manager.unload_all_plugins().await.is_ok());
}

/// A handle looked up before the reload calls the new version after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_looked_up_before_the_reload_reaches_the_new_version() {
    let dir = PluginDir::with(&["counter"]);
    let (_next_dir, next) = next_build();
    let manager = running_counter(&dir).await;
    let handle = manager.get_plugin_by_name("counter").unwrap();
    assert_eq!(handle.info().version.to_string(), "1.0.0");
    manager
        .reload_plugin("counter", ReloadOptions::from_path(&next))
        .await
        .unwrap();
    assert_eq!(handle.info().version.to_string(), "1.1.0");
    assert_eq!(counter_version(&manager).await, "1.1.0");
    assert!(manager.unload_all_plugins().await.is_ok());
}

/// Reloading from the plugin's own file after it was replaced on disk (the
/// default path), then again with the same bytes: the second is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_file_is_reloaded_and_identical_bytes_are_a_no_op() {
    let dir = PluginDir::with(&["counter"]);
    let (_next_dir, next) = next_build();
    let manager = running_counter(&dir).await;
    let mut events = manager.subscribe();
    manager
        .call("counter", "increment", Value::Null)
        .await
        .unwrap();
    // Same bytes as the running library: nothing to do.
    let same = manager
        .reload_plugin("counter", ReloadOptions::default())
        .await
        .unwrap();
    assert!(same.no_op, "{same:?}");
    assert_eq!(same.new_version.to_string(), "1.0.0");
    assert_eq!(same.retained_images, 0);
    // The author rebuilds: the new file replaces the old one (write + rename).
    let target = dir.library("counter");
    let staged = dir.path().join(".counter.new");
    std::fs::copy(&next, &staged).unwrap();
    std::fs::rename(&staged, &target).unwrap();
    let outcome = manager
        .reload_plugin("counter", ReloadOptions::default())
        .await
        .unwrap();
    assert!(!outcome.no_op);
    assert_eq!(outcome.new_version.to_string(), "1.1.0");
    let got = manager.call("counter", "get", Value::Null).await.unwrap();
    assert_eq!(got["value"], json!(1), "state handed over: {got}");
    assert_eq!(
        reload_events(&mut events),
        [
            "started 1.0.0",
            "succeeded 1.0.0 -> 1.0.0 no_op=true",
            "started 1.0.0",
            "succeeded 1.0.0 -> 1.1.0 no_op=false"
        ]
    );
    assert!(manager.unload_all_plugins().await.is_ok());
}

/// Says whether an error is the expected cause.
#[cfg(unix)]
type IsCause = fn(&Error) -> bool;

/// The new file fails admission (each bad input in turn): the reload fails at
/// step `admit` with the admission's own error, and 1.0.0 keeps serving with
/// its state.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_new_file_fails_at_admission_and_the_old_version_keeps_serving() {
    use std::os::unix::fs::PermissionsExt;
    let dir = PluginDir::with(&["counter"]);
    let manager = running_counter(&dir).await;
    manager
        .call("counter", "increment", Value::Null)
        .await
        .unwrap();
    let bad = tempfile::tempdir().unwrap();
    let bad_dir = bad.path();
    std::fs::set_permissions(bad_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let counter_bytes = std::fs::read(dir.library("counter")).unwrap();
    let text = bad_dir.join("text.so");
    std::fs::write(&text, "not a library\n").unwrap();
    let truncated = bad_dir.join("truncated.so");
    std::fs::write(&truncated, &counter_bytes[..4096]).unwrap();
    let writable = bad_dir.join("writable.so");
    std::fs::write(&writable, &counter_bytes).unwrap();
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
    let hostile = integration_tests::c_library("ctor_segv");
    let broken_interface = integration_tests::abi_mismatch_library();
    let cases: [(&str, &std::path::Path, IsCause); 5] = [
        ("text", &text, |e| matches!(e, Error::OpenFailed { .. })),
        ("truncated", &truncated, |e| {
            matches!(e, Error::OpenFailed { .. } | Error::Quarantined { .. })
        }),
        ("world-writable", &writable, |e| {
            matches!(e, Error::InsecurePermissions { .. })
        }),
        ("segfaulting constructor", &hostile, |e| {
            matches!(e, Error::Quarantined { .. })
        }),
        ("broken interface", &broken_interface, |e| {
            matches!(e, Error::AbiMismatch { .. })
        }),
    ];
    for (what, path, expected) in cases {
        let err = manager
            .reload_plugin("counter", ReloadOptions::from_path(path))
            .await
            .expect_err(what);
        match &err {
            Error::ReloadFailed {
                step: ReloadStep::Admit,
                cause,
                running,
                ..
            } if expected(cause) && running == "1.0.0" => {}
            other => panic!("{what}: unexpected {other:?}"),
        }
        assert_eq!(
            manager.status_by_name("counter").unwrap(),
            PluginState::Active
        );
        assert_eq!(
            manager.call("counter", "get", Value::Null).await.unwrap()["value"],
            json!(1),
            "{what}"
        );
        assert_eq!(version_of(&manager, "counter"), "1.0.0", "{what}");
    }
    assert_eq!(manager.retained_images(), 0, "nothing new was mapped");
    assert!(manager.unload_all_plugins().await.is_ok());
}

/// A library of another plugin is refused at step `name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_that_renames_the_plugin_is_refused_at_step_name() {
    let dir = PluginDir::with(&["counter"]);
    let other = PluginDir::with(&["hello"]);
    let manager = running_counter(&dir).await;
    let err = manager
        .reload_plugin("counter", ReloadOptions::from_path(other.library("hello")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ReloadFailed { step: ReloadStep::Name, cause, .. }
            if cause.to_string().contains("is plugin `hello`, not `counter`")),
        "{err:?}"
    );
    assert_eq!(counter_version(&manager).await, "1.0.0");
    assert!(manager.unload_all_plugins().await.is_ok());
}

/// Two reloads of one plugin started together: the second is refused while
/// the first runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_reload_of_the_same_plugin_is_refused_while_one_runs() {
    let dir = PluginDir::with(&["counter"]);
    let (_next_dir, next) = next_build();
    let manager = running_counter(&dir).await;
    let (first, second) = tokio::join!(
        manager.reload_plugin("counter", ReloadOptions::from_path(&next)),
        manager.reload_plugin("counter", ReloadOptions::from_path(&next)),
    );
    assert_eq!(first.unwrap().new_version.to_string(), "1.1.0");
    assert!(
        matches!(&second, Err(Error::ReloadInProgress { plugin }) if plugin == "counter"),
        "{second:?}"
    );
    assert!(manager.unload_all_plugins().await.is_ok());
}

/// An in-process dependent of `counter` requiring `^1.0`: a reload to 1.1.0
/// keeps it running (its calls reach 1.1.0); one to 2.0.0 is refused naming
/// it; with cascade it is stopped, `counter` becomes 2.0.0, and starting it
/// again fails on the version it requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_keep_running_when_satisfied_and_otherwise_block_or_cascade() {
    let dir = PluginDir::with(&["counter"]);
    let (_next_dir, next) = next_build();
    let major_dir = PluginDir::with(&["fixture-counter-major"]);
    let major = major_dir.library("fixture-counter-major");
    let manager = running_counter(&dir).await;
    let user = InProcessPlugin::builder("user", "1.0.0")
        .depends_on("counter", "^1.0")
        .on_call(|ctx, _method, _args| async move {
            ctx.call("counter", "version", Value::Null)
                .await
                .map_err(Error::into_plugin_error)
        })
        .build()
        .unwrap();
    let user_id = manager.register_plugin(user).unwrap();
    manager.load_plugin(user_id).await.unwrap();
    let mut events = manager.subscribe();

    manager
        .reload_plugin("counter", ReloadOptions::from_path(&next))
        .await
        .expect("1.1.0 satisfies ^1.0");
    assert_eq!(manager.status(user_id).unwrap(), PluginState::Active);
    assert_eq!(
        manager.call("user", "through", Value::Null).await.unwrap(),
        json!("1.1.0")
    );
    let user_changes = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| e.id == user_id)
        .count();
    assert_eq!(user_changes, 0, "the dependent never left Active");

    let err = manager
        .reload_plugin("counter", ReloadOptions::from_path(&major))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::ReloadBreaksDependents {
            plugin: "counter".into(),
            version: "2.0.0".into(),
            dependents: vec!["user (requires ^1.0)".into()],
        }
    );
    assert_eq!(version_of(&manager, "counter"), "1.1.0");
    assert_eq!(manager.status(user_id).unwrap(), PluginState::Active);

    let outcome = manager
        .reload_plugin(
            "counter",
            ReloadOptions {
                cascade: true,
                path: Some(major.clone()),
            },
        )
        .await
        .expect("cascade reloads");
    assert_eq!(outcome.new_version.to_string(), "2.0.0");
    let [(name, restarted)] = &outcome.restarted_dependents[..] else {
        panic!("{:?}", outcome.restarted_dependents);
    };
    assert_eq!(name, "user");
    assert!(
        matches!(restarted, Err(Error::VersionConflict { found, .. }) if found == "2.0.0"),
        "{restarted:?}"
    );
    assert!(manager.status(user_id).unwrap().failure().is_some());
    assert_eq!(counter_version(&manager).await, "2.0.0");
    assert!(manager.unload_all_plugins().await.is_ok());
}

/// A registered plugin that is not running just gets the new code: no plugin
/// code runs, and its next start is the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_is_not_running_gets_the_new_code_for_its_next_start() {
    let dir = PluginDir::with(&["counter"]);
    let (_next_dir, next) = next_build();
    let manager = PluginManager::new(
        ManagerConfig::builder()
            .safety(dir.safety())
            .build()
            .unwrap(),
    );
    manager.load_directory(dir.path()).await.unwrap();
    let outcome = manager
        .reload_plugin("counter", ReloadOptions::from_path(&next))
        .await
        .unwrap();
    assert!(!outcome.was_active, "{outcome:?}");
    assert_eq!(
        manager.status_by_name("counter").unwrap(),
        PluginState::Registered
    );
    assert_eq!(version_of(&manager, "counter"), "1.1.0");
    manager
        .load_plugin(manager.id_of("counter").unwrap())
        .await
        .unwrap();
    assert_eq!(counter_version(&manager).await, "1.1.0");
    assert!(manager.unload_all_plugins().await.is_ok());
}
