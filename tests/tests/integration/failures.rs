//! Failing plugins: an initialize that errors, panics or passes its deadline
//! ends Failed with the cause; the others carry on; a retry after the cause is
//! gone succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::PluginDir;
use plugbay_api::PluginError;
use plugbay_host::{Error, InProcessPlugin, PluginManager, PluginState};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{manager_with_timeouts, pinger};
use crate::watch::watchdog;

const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
enum Fault {
    Error,
    Panic,
    Hang,
}

/// A plugin whose initialize misbehaves (`fault`) while `armed` is set.
fn faulty(name: &str, fault: Fault, armed: Arc<AtomicBool>) -> Arc<InProcessPlugin> {
    InProcessPlugin::builder(name, "1.0.0")
        .on_initialize(move |_ctx| {
            let armed = armed.load(Ordering::SeqCst);
            async move {
                if !armed {
                    return Ok(());
                }
                match fault {
                    Fault::Error => Err(PluginError::failed("disk full")),
                    Fault::Panic => panic!("kaboom in initialize"),
                    Fault::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(())
                    }
                }
            }
        })
        .build()
        .unwrap()
}

/// Asserts that `other` plugins keep working next to the failed one.
async fn others_unaffected(manager: &PluginManager, bystander: Uuid) {
    assert_eq!(manager.status(bystander).unwrap(), PluginState::Active);
    assert_eq!(
        manager.call(bystander, "ping", Value::Null).await.unwrap(),
        json!("bystander: pong")
    );
    let late = manager.register_plugin(pinger("late")).unwrap();
    manager.load_plugin(late).await.unwrap();
    manager.unload_plugin(late).await.unwrap();
    manager.unregister_plugin(late).await.unwrap();
}

async fn fail_then_retry(fault: Fault, check: impl Fn(&Error)) {
    let manager = manager_with_timeouts(300, 300);
    let bystander = manager.register_plugin(pinger("bystander")).unwrap();
    manager.load_plugin(bystander).await.unwrap();
    let armed = Arc::new(AtomicBool::new(true));
    let plugin = faulty("faulty", fault, Arc::clone(&armed));
    let id = manager.register_plugin(plugin.clone()).unwrap();

    let err = watchdog("failing load", LIMIT, manager.load_plugin(id))
        .await
        .unwrap_err();
    check(&err);
    match manager.status(id).unwrap() {
        PluginState::Failed(cause) => assert_eq!(*cause, err, "{fault:?}"),
        other => panic!("{fault:?}: expected Failed, got {other}"),
    }
    let call = manager.call(id, "ping", Value::Null).await.unwrap_err();
    assert!(
        call.to_string().contains("is not active (it is failed ("),
        "{call}"
    );
    others_unaffected(&manager, bystander).await;

    // The cause is gone: a retry succeeds.
    armed.store(false, Ordering::SeqCst);
    manager.load_plugin(id).await.unwrap();
    assert_eq!(manager.status(id).unwrap(), PluginState::Active);
    assert_eq!(plugin.counters().initializations(), 2);
    assert_eq!(plugin.counters().violations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_error_fails_the_plugin_with_its_message() {
    fail_then_retry(Fault::Error, |err| {
        assert_eq!(
            err,
            &Error::InitFailed {
                plugin: "faulty".into(),
                reason: "disk full".into()
            }
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_panic_is_caught_with_its_message() {
    fail_then_retry(Fault::Panic, |err| {
        assert_eq!(
            err,
            &Error::PluginPanicked {
                plugin: "faulty".into(),
                operation: "initialize".into(),
                message: "kaboom in initialize".into()
            }
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_past_its_deadline_fails_and_the_manager_stays_usable() {
    fail_then_retry(Fault::Hang, |err| {
        assert_eq!(
            err,
            &Error::InitTimeout {
                plugin: "faulty".into(),
                after: Duration::from_millis(300)
            }
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_failures_end_failed_and_a_reload_works() {
    let manager = manager_with_timeouts(300, 300);
    let hang = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&hang);
    let stuck = InProcessPlugin::builder("stuck", "1.0.0")
        .on_shutdown(move |_| {
            let hang = flag.load(Ordering::SeqCst);
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
        .build()
        .unwrap();
    let grumpy = InProcessPlugin::builder("grumpy", "1.0.0")
        .on_shutdown(|_| async { Err(PluginError::failed("will not stop")) })
        .build()
        .unwrap();
    let stuck_id = manager.register_plugin(stuck.clone()).unwrap();
    let grumpy_id = manager.register_plugin(grumpy).unwrap();
    let bystander = manager.register_plugin(pinger("bystander")).unwrap();
    for id in [stuck_id, grumpy_id, bystander] {
        manager.load_plugin(id).await.unwrap();
    }

    let err = watchdog("stuck shutdown", LIMIT, manager.unload_plugin(stuck_id))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::ShutdownTimeout {
            plugin: "stuck".into(),
            after: Duration::from_millis(300)
        }
    );
    assert_eq!(
        manager.status(stuck_id).unwrap(),
        PluginState::Failed(Box::new(err))
    );
    let err = manager.unload_plugin(grumpy_id).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `grumpy`: shutdown failed: will not stop"
    );
    assert!(manager.status(grumpy_id).unwrap().failure().is_some());
    others_unaffected(&manager, bystander).await;

    // A failed plugin can be loaded again, and this time shut down cleanly.
    hang.store(false, Ordering::SeqCst);
    manager.load_plugin(stuck_id).await.unwrap();
    manager.unload_plugin(stuck_id).await.unwrap();
    assert_eq!(manager.status(stuck_id).unwrap(), PluginState::Unloaded);
    assert_eq!(stuck.counters().initializations(), 2);
    assert_eq!(stuck.counters().shutdowns(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_panic_fails_the_plugin_and_a_calm_retry_succeeds() {
    let dir = PluginDir::with(&["hello", "fixture-panicky"]);
    let manager = dir.manager();
    let report = manager.load_directory(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    let hello = manager.id_of("hello").unwrap();
    let panicky = manager.id_of("panicky").unwrap();
    manager.load_plugin(hello).await.unwrap();

    let err = manager.load_plugin(panicky).await.unwrap_err();
    match &err {
        Error::PluginPanicked {
            plugin,
            operation,
            message,
        } => {
            assert_eq!(
                (plugin.as_str(), operation.as_str()),
                ("panicky", "initialize")
            );
            assert!(message.contains("panicky refuses to start"), "{message}");
        }
        other => panic!("expected PluginPanicked, got {other:?}"),
    }
    assert!(manager.status(panicky).unwrap().failure().is_some());
    assert_eq!(
        manager
            .call("hello", "greet", json!({"name": "still here"}))
            .await
            .unwrap(),
        json!("Hello, still here!")
    );

    // The cause goes away (its config tells it to stay calm): the retry works.
    manager.set_plugin_config("panicky", json!({"calm": true}));
    manager.load_plugin(panicky).await.unwrap();
    let err = manager
        .call(panicky, "boom", Value::Null)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PluginPanicked { operation, message, .. }
            if operation == "call(boom)" && message.contains("boom was called")),
        "{err:?}"
    );
    let report = manager.unload_all_plugins().await;
    assert!(report.is_ok(), "{report:?}");
}
