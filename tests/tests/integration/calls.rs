//! The call path into native plugins: calls move inline once they prove short and
//! back to the blocking pool when one overstays; a blocked plugin holds up no
//! other plugin; shutdown drains or refuses calls; the call chain still refuses
//! re-entry; panics come back as errors; plugin → host → plugin calls work from
//! inline code.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use integration_tests::PluginDir;
use plugbay_api::PluginError;
use plugbay_host::{
    load_library_unchecked, CallMode, CallPath, Error, FfiPlugin, InProcessPlugin, PluginManager,
    PluginState, PROMOTE_AFTER,
};
use serde_json::{json, Value};

use crate::watch::watchdog;

const LIMIT: Duration = Duration::from_secs(30);

/// A manager with the `calls` fixture and `hello` registered and Active.
async fn started(dir: &PluginDir) -> PluginManager {
    let manager = PluginManager::default();
    for lib in ["fixture-calls", "hello"] {
        let loaded = load_library_unchecked(dir.library(lib)).await.unwrap();
        manager
            .register_plugin(Arc::new(FfiPlugin::new(loaded)))
            .unwrap();
    }
    let report = manager.load_all_plugins().await;
    assert!(report.failures().next().is_none(), "{report:?}");
    manager
}

fn dir() -> PluginDir {
    PluginDir::with(&["fixture-calls", "hello"])
}

fn mode(manager: &PluginManager, name: &str) -> CallMode {
    path(manager, name).mode
}

fn path(manager: &PluginManager, name: &str) -> CallPath {
    let path = manager
        .call_path(name)
        .unwrap()
        .expect("a native plugin has a call path");
    // What an embedder holding a looked-up plugin sees is the same path.
    let via_lookup = manager
        .get_plugin_by_name(name)
        .expect("registered")
        .call_path()
        .map(|p| p.mode);
    assert_eq!(via_lookup, Some(path.mode), "{name}: call path via lookup");
    path
}

/// Calls `greet` on `name` until its calls run inline (each call must be short
/// for that; a few slow ones on a busy machine only delay it). Tests check the
/// mode only right after this returns: on a busy machine a later inline call may
/// be preempted long enough to count as overstaying.
async fn promote(manager: &PluginManager, name: &str) {
    for _ in 0..20_000 {
        if mode(manager, name) == CallMode::Inline {
            return;
        }
        let v = manager.call(name, "greet", json!({"name": "Ada"})).await;
        assert_eq!(v.unwrap(), json!("Hello, Ada!"));
    }
    panic!("{name} never moved inline: {:?}", path(manager, name));
}

/// `wait_file` arguments under `dir`, and the release file.
fn wait_args(dir: &Path, tag: &str) -> (Value, std::path::PathBuf, std::path::PathBuf) {
    let started = dir.join(format!("{tag}.started"));
    let release = dir.join(format!("{tag}.release"));
    let args = json!({
        "started": started.to_str().unwrap(),
        "release": release.to_str().unwrap(),
        "give_up_ms": 40_000,
    });
    (args, started, release)
}

async fn wait_for_file(path: &Path) {
    watchdog("the blocking call to start", LIMIT, async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

// One worker thread: if the blocked call sat on it, nothing else could run.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_blocked_call_holds_up_no_other_plugin() {
    let dir = dir();
    let manager = started(&dir).await;
    assert_eq!(mode(&manager, "calls"), CallMode::Blocking);
    let (args, started_file, release) = wait_args(dir.path(), "a");
    let m = manager.clone();
    let blocked = tokio::spawn(async move { m.call("calls", "wait_file", args).await });
    wait_for_file(&started_file).await;

    // While `calls` is blocked, `hello` is called (and moves inline) from a task
    // on the runtime's only worker.
    let m = manager.clone();
    let others = watchdog(
        "calls to hello",
        LIMIT,
        tokio::spawn(async move {
            promote(&m, "hello").await;
            m.call("hello", "greet", json!({"name": "Bo"})).await
        }),
    )
    .await
    .unwrap();
    assert_eq!(others.unwrap(), json!("Hello, Bo!"));
    assert!(!blocked.is_finished(), "the blocked call ended early");

    std::fs::write(&release, b"go").unwrap();
    let v = watchdog("the released call", LIMIT, blocked).await.unwrap();
    assert_eq!(v.unwrap(), json!("released"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_running_calls_and_refuses_new_ones() {
    let dir = dir();
    let manager = started(&dir).await;
    let id = manager.id_of("calls").unwrap();
    let (args, started_file, release) = wait_args(dir.path(), "s");
    let m = manager.clone();
    let running = tokio::spawn(async move { m.call("calls", "wait_file", args).await });
    wait_for_file(&started_file).await;

    let m = manager.clone();
    let unload = tokio::spawn(async move { m.unload_plugin(id).await });
    watchdog("shutdown to begin", LIMIT, async {
        while manager.status(id).unwrap() != PluginState::ShuttingDown {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    // The gate is closed: a new call is refused at once, on either path.
    let err = manager.call("calls", "greet", json!({})).await.unwrap_err();
    assert!(matches!(err, Error::NotActive { .. }), "{err:?}");
    let err = manager.call_json("calls", "greet", "{}").await.unwrap_err();
    assert!(matches!(err, Error::NotActive { .. }), "{err:?}");
    // The running call holds the shutdown up until it returns.
    assert!(!unload.is_finished(), "shutdown did not wait for the call");
    std::fs::write(&release, b"go").unwrap();
    let v = watchdog("the drained call", LIMIT, running).await.unwrap();
    assert_eq!(v.unwrap(), json!("released"));
    watchdog("the unload", LIMIT, unload)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manager.status(id).unwrap(), PluginState::Unloaded);

    // An inline plugin's calls are refused after its shutdown the same way.
    promote(&manager, "hello").await;
    manager
        .unload_plugin(manager.id_of("hello").unwrap())
        .await
        .unwrap();
    let err = manager.call("hello", "greet", json!({})).await.unwrap_err();
    assert!(matches!(err, Error::NotActive { .. }), "{err:?}");
}

/// `calls.relay` into `target.method`.
fn relay(target: &str, method: &str, args: Value) -> Value {
    json!({ "target": target, "method": method, "args": args })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reentry_is_refused_on_both_paths() {
    let dir = dir();
    let manager = started(&dir).await;
    for expected in [CallMode::Blocking, CallMode::Inline] {
        assert_eq!(mode(&manager, "calls"), expected);
        let err = watchdog(
            "a re-entrant call",
            LIMIT,
            manager.call("calls", "relay", relay("calls", "greet", json!({}))),
        )
        .await
        .unwrap_err();
        match &err {
            Error::PluginFailed { plugin, reason, .. } => {
                assert_eq!(plugin, "calls");
                assert!(
                    reason.contains(
                        "call into `calls` refused: it would re-enter a plugin already on the call chain (calls -> calls)"
                    ),
                    "{reason}"
                );
            }
            other => panic!("expected the plugin to fail with the refusal, got {other:?}"),
        }
        promote(&manager, "calls").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_call_comes_back_as_an_error_on_both_paths() {
    let dir = dir();
    let manager = started(&dir).await;
    for expected in [CallMode::Blocking, CallMode::Inline] {
        assert_eq!(mode(&manager, "calls"), expected);
        let err = manager.call("calls", "boom", json!({})).await.unwrap_err();
        match &err {
            Error::PluginPanicked {
                plugin,
                operation,
                message,
            } => {
                assert_eq!(plugin, "calls");
                assert_eq!(operation, "call(boom)");
                assert!(message.contains("boom was called"), "{message}");
            }
            other => panic!("expected PluginPanicked, got {other:?}"),
        }
        let err = manager
            .call_json("calls", "boom", "null")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PluginPanicked { .. }), "{err:?}");
        // The plugin keeps working.
        let v = manager.call("calls", "greet", json!({"name": "Cy"})).await;
        assert_eq!(v.unwrap(), json!("Hello, Cy!"));
        promote(&manager, "calls").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_call_that_overstays_sends_the_plugin_back_to_the_blocking_pool() {
    let dir = dir();
    let manager = started(&dir).await;
    assert_eq!(
        path(&manager, "calls"),
        CallPath {
            mode: CallMode::Blocking,
            demotions: 0,
            promote_after: PROMOTE_AFTER,
        }
    );
    promote(&manager, "calls").await;
    // 20 ms is far past the inline limit.
    let v = manager.call("calls", "sleep_ms", json!({"ms": 20})).await;
    assert_eq!(v.unwrap(), json!(20));
    assert_eq!(
        path(&manager, "calls"),
        CallPath {
            mode: CallMode::Blocking,
            demotions: 1,
            promote_after: 2 * PROMOTE_AFTER,
        }
    );
    // Short calls earn it the inline path again, after twice as many.
    promote(&manager, "calls").await;
    assert_eq!(path(&manager, "calls").demotions, 1);
    // An in-process plugin has no call path.
    let id = manager
        .register_plugin(crate::support::pinger("inproc"))
        .unwrap();
    manager.load_plugin(id).await.unwrap();
    assert_eq!(manager.call_path("inproc").unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_work_from_inline_code() {
    let dir = dir();
    let manager = started(&dir).await;
    // An in-process target that must wait (a timer), so the nested call cannot
    // complete in one poll and has to leave the worker.
    let slow = InProcessPlugin::builder("slow", "1.0.0")
        .on_call(|_ctx, method, args| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            match method.as_str() {
                "echo" => Ok(args),
                _ => Err(PluginError::unknown_method(&method)),
            }
        })
        .build()
        .unwrap();
    let slow = manager.register_plugin(slow).unwrap();
    manager.load_plugin(slow).await.unwrap();
    promote(&manager, "hello").await;

    // Each nested call is made right after `calls` moved inline, so the outer
    // call runs inline on a worker (it may then overstay and be demoted: the next
    // round promotes it again).
    let m = manager.clone();
    let answers = watchdog(
        "nested calls",
        LIMIT,
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..2 {
                // calls (inline) -> host -> slow (awaits a timer).
                promote(&m, "calls").await;
                answers.push(
                    m.call("calls", "relay", relay("slow", "echo", json!([1])))
                        .await,
                );
                // calls (inline) -> host -> hello (inline): done in one poll.
                promote(&m, "calls").await;
                answers.push(
                    m.call(
                        "calls",
                        "relay",
                        relay("hello", "greet", json!({"name": "Di"})),
                    )
                    .await,
                );
                // The same through call_json.
                promote(&m, "calls").await;
                answers.push(
                    m.call_json(
                        "calls",
                        "relay",
                        r#"{"target":"slow","method":"echo","args":2}"#,
                    )
                    .await
                    .map(|text| serde_json::from_str(&text).unwrap()),
                );
            }
            answers
        }),
    )
    .await
    .unwrap();
    let answers: Vec<Value> = answers.into_iter().map(Result::unwrap).collect();
    let round = [json!([1]), json!("Hello, Di!"), json!(2)];
    assert_eq!(answers, [round.clone(), round].concat());
}
