//! Hot reload's rollback: each step of the swap failing in turn, the old
//! version serving afterwards with the state it saved; a failed rollback; a
//! reload during `unload_all_plugins`; a call that waited too long.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::watch::watchdog;
use plugbay_api::PluginError;
use plugbay_host::{
    Error, InProcessPlugin, ManagerConfig, Plugin, PluginManager, PluginState, ReloadEvent,
    ReloadOptions, ReloadStep,
};
use serde_json::{json, Value};

/// Where a test plugin misbehaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    SaveState,
    Shutdown,
    LoadState,
    Initialize,
    /// `initialize` never returns.
    HangInitialize,
    /// `initialize` fails from its second run on (a failed rollback).
    InitializeAgain,
    /// Requires a plugin that does not exist.
    MissingDependency,
}

/// A stateful in-process `svc` at `version`: `increment`, `get` (its value),
/// `version`, `block` (sleeps 1 s). Like a native instance, its shutdown
/// forgets the value and `load_state` brings it back; `fault` says where it fails.
fn svc(version: &str, fault: Fault) -> Arc<dyn Plugin> {
    let value = Arc::new(AtomicU64::new(0));
    let inits = Arc::new(AtomicUsize::new(0));
    let (v_call, v_save, v_stop, v_load) = (
        Arc::clone(&value),
        Arc::clone(&value),
        Arc::clone(&value),
        Arc::clone(&value),
    );
    let me = version.to_owned();
    let mut builder = InProcessPlugin::builder("svc", version);
    if fault == Fault::MissingDependency {
        builder = builder.depends_on("absent", "^1");
    }
    builder
        .on_call(move |_ctx, method, _args| {
            let (value, me) = (Arc::clone(&v_call), me.clone());
            async move {
                match method.as_str() {
                    "increment" => Ok(json!(value.fetch_add(1, SeqCst) + 1)),
                    "get" => Ok(json!(value.load(SeqCst))),
                    "version" => Ok(json!(me)),
                    "block" => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok(Value::Null)
                    }
                    other => Err(PluginError::unknown_method(other)),
                }
            }
        })
        .on_save_state(move || match fault {
            Fault::SaveState => Err(PluginError::failed("disk full")),
            _ => Ok(json!({ "value": v_save.load(SeqCst) })),
        })
        .on_shutdown(move |_| {
            v_stop.store(0, SeqCst);
            async move {
                match fault {
                    Fault::Shutdown => Err(PluginError::failed("stuck socket")),
                    _ => Ok(()),
                }
            }
        })
        .on_load_state(move |state, _saved_by| match fault {
            Fault::LoadState => Err(PluginError::invalid_input("unknown state format")),
            _ => {
                v_load.store(state["value"].as_u64().unwrap_or(0), SeqCst);
                Ok(())
            }
        })
        .on_initialize(move |_| {
            let run = inits.fetch_add(1, SeqCst) + 1;
            async move {
                match fault {
                    Fault::Initialize => Err(PluginError::failed("no config")),
                    Fault::InitializeAgain if run > 1 => Err(PluginError::failed("port taken")),
                    Fault::HangInitialize => std::future::pending().await,
                    _ => Ok(()),
                }
            }
        })
        .build()
        .expect("valid test plugin")
}

/// A manager with a 300 ms reload timeout and `old` Active with value 3.
async fn running(old: Arc<dyn Plugin>) -> PluginManager {
    let manager = PluginManager::new(
        ManagerConfig::builder()
            .reload_timeout(Duration::from_millis(300))
            .build()
            .expect("valid config"),
    );
    let id = manager.register_plugin(old).unwrap();
    manager.load_plugin(id).await.unwrap();
    for _ in 0..3 {
        manager.call("svc", "increment", Value::Null).await.unwrap();
    }
    manager
}

/// Each failing step rolls back: the error names the step, `svc` 1.0.0 is
/// Active again with its value, and a `RolledBack` event says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failing_step_rolls_back_to_the_old_version_with_its_state() {
    let cases = [
        (Fault::SaveState, Fault::None, ReloadStep::SaveState),
        (Fault::Shutdown, Fault::None, ReloadStep::Shutdown),
        (
            Fault::None,
            Fault::MissingDependency,
            ReloadStep::Dependencies,
        ),
        (Fault::None, Fault::LoadState, ReloadStep::LoadState),
        (Fault::None, Fault::Initialize, ReloadStep::Initialize),
        (Fault::None, Fault::HangInitialize, ReloadStep::Initialize),
    ];
    for (old_fault, new_fault, step) in cases {
        let manager = running(svc("1.0.0", old_fault)).await;
        let mut events = manager.subscribe();
        let err = manager
            .replace_plugin("svc", svc("2.0.0", new_fault), ReloadOptions::default())
            .await
            .expect_err("the reload fails");
        match &err {
            Error::ReloadFailed {
                step: failed,
                cause,
                running,
                ..
            } if *failed == step && running == "1.0.0" => {
                if new_fault == Fault::HangInitialize {
                    assert!(matches!(**cause, Error::ReloadTimeout { .. }), "{cause:?}");
                }
            }
            other => panic!("{step}: unexpected {other:?}"),
        }
        assert_eq!(
            manager.status_by_name("svc").unwrap(),
            PluginState::Active,
            "{step}"
        );
        assert_eq!(
            manager.call("svc", "version", Value::Null).await.unwrap(),
            json!("1.0.0"),
            "{step}"
        );
        assert_eq!(
            manager.call("svc", "get", Value::Null).await.unwrap(),
            json!(3),
            "{step}: the old version keeps (or got back) its state"
        );
        let reloads: Vec<ReloadEvent> = std::iter::from_fn(|| events.try_recv().ok())
            .filter_map(|e| e.reload)
            .collect();
        assert!(
            matches!(&reloads[..], [ReloadEvent::Started { .. }, ReloadEvent::RolledBack { version, .. }] if version == "1.0.0"),
            "{step}: {reloads:?}"
        );
        // (An old version whose shutdown fails fails its unload too.)
        let unloaded = manager.unload_all_plugins().await;
        assert!(
            unloaded.is_ok() || old_fault == Fault::Shutdown,
            "{unloaded:?}"
        );
    }
}

/// Calls still running when the deadline passes: the reload fails at step
/// `drain` without stopping the old version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_outlast_the_deadline_fail_the_drain_and_nothing_stops() {
    let manager = running(svc("1.0.0", Fault::None)).await;
    let blocker = {
        let manager = manager.clone();
        tokio::spawn(async move { manager.call("svc", "block", Value::Null).await })
    };
    // Let the blocking call enter the plugin.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = manager
        .replace_plugin("svc", svc("2.0.0", Fault::None), ReloadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ReloadFailed { step: ReloadStep::Drain, cause, .. }
            if matches!(**cause, Error::ReloadTimeout { .. })),
        "{err:?}"
    );
    assert_eq!(
        manager.call("svc", "version", Value::Null).await.unwrap(),
        json!("1.0.0")
    );
    assert!(
        blocker.await.unwrap().is_ok(),
        "the running call finished in the old version"
    );
    assert!(manager.unload_all_plugins().await.is_ok());
}

/// The new version fails and so does the old one's re-initialize: the plugin
/// ends Failed with both errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollback_leaves_the_plugin_failed_with_both_errors() {
    let manager = running(svc("1.0.0", Fault::InitializeAgain)).await;
    let mut events = manager.subscribe();
    let err = manager
        .replace_plugin(
            "svc",
            svc("2.0.0", Fault::Initialize),
            ReloadOptions::default(),
        )
        .await
        .unwrap_err();
    let Error::ReloadRollbackFailed {
        step,
        cause,
        rollback,
        ..
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(*step, ReloadStep::Initialize);
    assert!(cause.to_string().contains("no config"), "{cause}");
    assert!(rollback.to_string().contains("port taken"), "{rollback}");
    let state = manager.status_by_name("svc").unwrap();
    assert_eq!(state.failure(), Some(&err));
    assert!(matches!(
        manager.call("svc", "get", Value::Null).await,
        Err(Error::NotActive { .. })
    ));
    let kinds: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| match e.reload {
            Some(ReloadEvent::Started { .. }) => "reload started".to_owned(),
            Some(ReloadEvent::Failed { .. }) => "reload failed".to_owned(),
            Some(other) => format!("{other:?}"),
            None => format!("{} -> {}", e.from.name(), e.to.name()),
        })
        .collect();
    assert_eq!(
        kinds,
        ["reload started", "active -> failed", "reload failed"]
    );
}

/// A reload asked for while `unload_all_plugins` runs is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_unload_all_is_refused() {
    let manager = running(svc("1.0.0", Fault::None)).await;
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered = parking_lot::Mutex::new(Some(entered_tx));
    let release = Arc::new(tokio::sync::Notify::new());
    let release2 = Arc::clone(&release);
    let slow = InProcessPlugin::builder("slow", "1.0.0")
        .on_shutdown(move |_| {
            if let Some(tx) = entered.lock().take() {
                let _ = tx.send(());
            }
            let release = Arc::clone(&release2);
            async move {
                release.notified().await;
                Ok(())
            }
        })
        .build()
        .unwrap();
    let id = manager.register_plugin(slow).unwrap();
    manager.load_plugin(id).await.unwrap();
    let unloading = {
        let manager = manager.clone();
        tokio::spawn(async move { manager.unload_all_plugins().await })
    };
    entered_rx.await.unwrap();
    let err = manager
        .replace_plugin("svc", svc("2.0.0", Fault::None), ReloadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ReloadDuringShutdown { plugin } if plugin == "svc"),
        "{err:?}"
    );
    release.notify_one();
    assert!(unloading.await.unwrap().is_ok());
}

/// A call that arrives while the gate is held waits; if the reload outlasts
/// the reload timeout the call gives up with a named error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waits_for_the_reload_at_most_the_reload_timeout() {
    // The old version's re-initialize after the rollback takes 150 ms, so
    // the gate reopens well after a call that arrived at the swap gave up.
    let value = Arc::new(AtomicU64::new(0));
    let inits = Arc::new(AtomicUsize::new(0));
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered = parking_lot::Mutex::new(Some(entered_tx));
    let v = Arc::clone(&value);
    let old = InProcessPlugin::builder("svc", "1.0.0")
        .on_call(move |_, _, _| {
            let v = Arc::clone(&v);
            async move { Ok(json!(v.load(SeqCst))) }
        })
        .on_initialize(move |_| {
            let again = inits.fetch_add(1, SeqCst) > 0;
            async move {
                if again {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                Ok(())
            }
        })
        .on_shutdown(move |_| {
            if let Some(tx) = entered.lock().take() {
                let _ = tx.send(());
            }
            async { Ok(()) }
        })
        .build()
        .unwrap();
    let manager = running_plain(old).await;
    let reload = {
        let manager = manager.clone();
        tokio::spawn(async move {
            manager
                .replace_plugin(
                    "svc",
                    svc("2.0.0", Fault::HangInitialize),
                    ReloadOptions::default(),
                )
                .await
        })
    };
    // The old version is shutting down: the gate is held.
    entered_rx.await.unwrap();
    let call = manager.call("svc", "get", Value::Null).await;
    assert!(
        matches!(&call, Err(Error::ReloadWaitTimeout { plugin, .. }) if plugin == "svc"),
        "{call:?}"
    );
    let reloaded = reload.await.unwrap();
    assert!(
        matches!(
            &reloaded,
            Err(Error::ReloadFailed {
                step: ReloadStep::Initialize,
                ..
            })
        ),
        "{reloaded:?}"
    );
    assert!(manager.call("svc", "get", Value::Null).await.is_ok());
}

/// [`running`] without the increments.
async fn running_plain(old: Arc<dyn Plugin>) -> PluginManager {
    let manager = PluginManager::new(
        ManagerConfig::builder()
            .reload_timeout(Duration::from_millis(300))
            .build()
            .expect("valid config"),
    );
    let id = manager.register_plugin(old).unwrap();
    manager.load_plugin(id).await.unwrap();
    manager
}

/// A plugin that can die on its own: after a reload the supervisor watches
/// the new incarnation (its crash fails the plugin) and no longer the old one
/// (whose end is no crash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reload_the_supervisor_watches_the_new_incarnation_only() {
    use integration_tests::crashable::{segfault, CrashablePlugin};
    use plugbay_host::{CrashReason, CrashReport};
    let (old, old_handle) = CrashablePlugin::new("svc", &[]);
    let (new, new_handle) = CrashablePlugin::new("svc", &[]);
    let manager = running_plain(old).await;
    let watched = |handle: integration_tests::crashable::CrashHandle, n: usize| async move {
        while handle.watchers() != n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    watchdog(
        "the old incarnation watched",
        LIMIT,
        watched(old_handle.clone(), 1),
    )
    .await;
    manager
        .replace_plugin("svc", new, ReloadOptions::default())
        .await
        .unwrap();
    watchdog("the old watch ended", LIMIT, watched(old_handle.clone(), 0)).await;
    watchdog(
        "the new incarnation watched",
        LIMIT,
        watched(new_handle.clone(), 1),
    )
    .await;
    // The old incarnation's death is not the plugin's.
    old_handle.crash(CrashReport {
        reason: CrashReason::Exited { code: 1 },
        last_stderr: Vec::new(),
    });
    new_handle.crash(segfault());
    let failed = watchdog("the crash recorded", LIMIT, async {
        loop {
            if let Some(cause) = manager.status_by_name("svc").unwrap().failure().cloned() {
                return cause;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        matches!(&failed, Error::Crashed { report, .. } if *report == segfault()),
        "{failed:?}"
    );
}

/// Longer than anything here should take: past it a test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(60);
