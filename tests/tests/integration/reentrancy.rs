//! Plugin code calling back into the host from initialize, shutdown and call:
//! it completes, and what would deadlock is refused at once instead.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::PluginDir;
use parking_lot::Mutex;
use plugbay_api::PluginError;
use plugbay_host::{InProcessPlugin, PluginManager, PluginState};
use serde_json::{json, Value};

use crate::support::pinger;
use crate::watch::{watchdog, DeadlockDetector};

const LIMIT: Duration = Duration::from_secs(60);

fn fail(e: impl std::fmt::Display) -> PluginError {
    PluginError::failed(e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_gets_calls_and_queries_other_plugins_through_the_host() {
    let detector = DeadlockDetector::start();
    let manager = PluginManager::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let base = manager.register_plugin(pinger("base")).unwrap();

    let m = manager.clone();
    let record = Arc::clone(&seen);
    let probe = InProcessPlugin::builder("probe", "1.0.0")
        .depends_on("base", "^1")
        .on_initialize(move |ctx| {
            let m = m.clone();
            let record = Arc::clone(&record);
            async move {
                let mut log = Vec::new();
                // Get another plugin through the manager.
                let other = m
                    .get_plugin_by_name("base")
                    .ok_or_else(|| fail("base not found"))?;
                log.push(format!("got {}", other.info().name));
                // Call it, through the host context.
                let answer = ctx.call("base", "ping", Value::Null).await.map_err(fail)?;
                log.push(format!("called: {answer}"));
                // Query statuses: the dependency and itself.
                log.push(format!("base is {:?}", ctx.status_of("base")));
                log.push(format!("probe is {:?}", ctx.status_of("probe")));
                // Lifecycle requests that would wait on its own lifecycle lock are refused.
                let me = m.id_of("probe").ok_or_else(|| fail("probe has no id"))?;
                log.push(format!(
                    "reload self: {}",
                    m.load_plugin(me).await.unwrap_err()
                ));
                // Its dependency is held up while it starts.
                let base = m.id_of("base").ok_or_else(|| fail("base has no id"))?;
                log.push(format!(
                    "unload base: {}",
                    m.unload_plugin(base).await.unwrap_err()
                ));
                record.lock().extend(log);
                Ok(())
            }
        })
        .build()
        .unwrap();
    let probe_id = manager.register_plugin(probe).unwrap();
    watchdog("loads", LIMIT, async {
        manager.load_plugin(base).await.unwrap();
        manager.load_plugin(probe_id).await.unwrap();
    })
    .await;
    assert_eq!(manager.status(probe_id).unwrap(), PluginState::Active);
    assert_eq!(
        *seen.lock(),
        [
            "got base",
            "called: \"base: pong\"",
            "base is Some(\"active\")",
            "probe is Some(\"initializing\")",
            "reload self: plugin `probe` cannot go from initializing to active",
            "unload base: plugin `base` is in use by probe; unload them first or unload with cascade",
        ]
    );
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_calls_can_call_their_dependencies() {
    let detector = DeadlockDetector::start();
    let manager = PluginManager::default();
    let answers: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = Arc::clone(&answers);
    let relay = InProcessPlugin::builder("relay", "1.0.0")
        .depends_on("base", "^1")
        .on_call(
            |ctx, method, args| async move { ctx.call("base", &method, args).await.map_err(fail) },
        )
        .on_shutdown(move |ctx| {
            let record = Arc::clone(&record);
            async move {
                let v = ctx.call("base", "ping", Value::Null).await.map_err(fail)?;
                record.lock().push(v);
                Ok(())
            }
        })
        .build()
        .unwrap();
    let base = manager.register_plugin(pinger("base")).unwrap();
    let relay_id = manager.register_plugin(relay).unwrap();
    watchdog("relay", LIMIT, async {
        manager.load_plugin(base).await.unwrap();
        manager.load_plugin(relay_id).await.unwrap();
        assert_eq!(
            manager.call("relay", "echo", json!([1, 2])).await.unwrap(),
            json!([1, 2])
        );
        manager.unload_plugin(relay_id).await.unwrap();
    })
    .await;
    assert_eq!(*answers.lock(), [json!("base: pong")]);
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_back_into_a_plugin_on_the_chain_is_refused_not_deadlocked() {
    let detector = DeadlockDetector::start();
    let manager = PluginManager::default();
    // a.call -> b.call -> a.call would re-enter a.
    let a = InProcessPlugin::builder("a", "1.0.0")
        .on_call(|ctx, method, _| async move {
            match method.as_str() {
                "start" => ctx.call("b", "bounce", Value::Null).await.map_err(fail),
                _ => Ok(json!("a answered")),
            }
        })
        .build()
        .unwrap();
    let b = InProcessPlugin::builder("b", "1.0.0")
        .on_call(|ctx, _, _| async move { ctx.call("a", "back", Value::Null).await.map_err(fail) })
        .build()
        .unwrap();
    let a_id = manager.register_plugin(a).unwrap();
    let b_id = manager.register_plugin(b).unwrap();
    manager.load_plugin(a_id).await.unwrap();
    manager.load_plugin(b_id).await.unwrap();
    let err = watchdog("bounce", LIMIT, manager.call("a", "start", Value::Null))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("call into `a` refused") && text.contains("a -> b -> a"),
        "{text}"
    );
    // A fresh chain into b is fine: it is only a problem when a is already on it.
    assert_eq!(
        manager.call("b", "x", Value::Null).await.unwrap(),
        json!("a answered")
    );
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_into_an_initializing_plugin_does_not_wait_for_its_lifecycle() {
    let detector = DeadlockDetector::start();
    let manager = PluginManager::default();
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::clone(&release);
    let slow = InProcessPlugin::builder("slow", "1.0.0")
        .on_initialize(move |_| {
            let gate = Arc::clone(&gate);
            async move {
                gate.notified().await;
                Ok(())
            }
        })
        .build()
        .unwrap();
    // `asker` calls `slow` from its own call, while `slow` is still initializing.
    let asker = InProcessPlugin::builder("asker", "1.0.0")
        .on_call(|ctx, _, _| async move {
            Ok(json!(ctx
                .call("slow", "x", Value::Null)
                .await
                .map_err(|e| e.to_string())
                .unwrap_err()))
        })
        .build()
        .unwrap();
    let slow_id = manager.register_plugin(slow).unwrap();
    let asker_id = manager.register_plugin(asker).unwrap();
    manager.load_plugin(asker_id).await.unwrap();
    let m = manager.clone();
    let loading = tokio::spawn(async move { m.load_plugin(slow_id).await });
    watchdog("initializing", LIMIT, async {
        while manager.status(slow_id).unwrap() != PluginState::Initializing {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let answer = watchdog("call during init", Duration::from_secs(10), async {
        manager.call("asker", "go", Value::Null).await.unwrap()
    })
    .await;
    assert_eq!(
        answer,
        json!("plugin `slow` is not active (it is initializing)")
    );
    release.notify_one();
    loading.await.unwrap().unwrap();
    assert_eq!(manager.status(slow_id).unwrap(), PluginState::Active);
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeter_calls_hello_through_the_host_with_real_libraries() {
    let detector = DeadlockDetector::start();
    let dir = PluginDir::with(&["hello", "greeter"]);
    let manager = dir.manager();
    let report = manager.load_directory(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    let hello = manager.id_of("hello").unwrap();
    let greeter = manager.id_of("greeter").unwrap();

    // Loading greeter starts hello first; greeter's initialize then calls
    // hello.greet through the host.
    watchdog("greeter", LIMIT, manager.load_plugin(greeter))
        .await
        .unwrap();
    assert_eq!(manager.status(hello).unwrap(), PluginState::Active);
    assert_eq!(
        manager
            .call("greeter", "first_greeting", Value::Null)
            .await
            .unwrap(),
        json!("Hello, greeter!")
    );
    // greeter.greet calls hello from inside a call.
    assert_eq!(
        manager
            .call("greeter", "greet", json!({"name": "Ada"}))
            .await
            .unwrap(),
        json!("Hello, Ada!")
    );
    let report = manager.unload_all_plugins().await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(manager.status(hello).unwrap(), PluginState::Unloaded);
    detector.finish();
}
