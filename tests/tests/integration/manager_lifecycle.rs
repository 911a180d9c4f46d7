//! The manager's lifecycle: states, events, no-op loads, duplicate names,
//! dependency checks, exactly-once initialize, consistency under concurrency.

use std::time::Duration;

use integration_tests::PluginDir;
use plugbay_host::{Error, InProcessPlugin, LifecycleEvent, PluginManager, PluginState};
use serde_json::json;

use crate::support::{pinger, pinger_builder};
use crate::watch::{watchdog, DeadlockDetector};

const LIMIT: Duration = Duration::from_secs(60);

fn transitions(events: &[LifecycleEvent]) -> Vec<(&'static str, &'static str)> {
    events
        .iter()
        .map(|e| (e.from.name(), e.to.name()))
        .collect()
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<LifecycleEvent>) -> Vec<LifecycleEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_goes_through_every_state_and_publishes_events() {
    let manager = PluginManager::default();
    let mut events = manager.subscribe();
    let p = pinger("alpha");
    let id = manager.register_plugin(p.clone()).unwrap();
    assert_eq!(manager.status(id).unwrap(), PluginState::Registered);

    manager.load_plugin(id).await.unwrap();
    assert_eq!(manager.status(id).unwrap(), PluginState::Active);
    assert_eq!(
        manager.call(id, "ping", json!(null)).await.unwrap(),
        json!("alpha: pong")
    );
    manager.unload_plugin(id).await.unwrap();
    assert_eq!(manager.status(id).unwrap(), PluginState::Unloaded);
    // Unloaded may be loaded again.
    manager.load_plugin(id).await.unwrap();
    assert_eq!(
        manager.status_by_name("alpha").unwrap(),
        PluginState::Active
    );

    let seen = drain(&mut events);
    assert!(
        seen.iter().all(|e| e.id == id && e.name == "alpha"),
        "{seen:?}"
    );
    assert_eq!(
        transitions(&seen),
        [
            ("registered", "initializing"),
            ("initializing", "active"),
            ("active", "shutting_down"),
            ("shutting_down", "unloaded"),
            ("unloaded", "initializing"),
            ("initializing", "active"),
        ]
    );
    let c = p.counters();
    assert_eq!((c.initializations(), c.shutdowns(), c.calls()), (2, 1, 1));
    assert_eq!(c.violations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_an_active_plugin_is_ok_and_does_nothing() {
    let manager = PluginManager::default();
    let p = pinger("alpha");
    let id = manager.register_plugin(p.clone()).unwrap();
    manager.load_plugin(id).await.unwrap();
    let mut events = manager.subscribe();
    manager.load_plugin(id).await.unwrap();
    manager.load_plugin(id).await.unwrap();
    assert_eq!(p.counters().initializations(), 1);
    assert!(drain(&mut events).is_empty());
    // Unloading an idle plugin is also a no-op.
    manager.unload_plugin(id).await.unwrap();
    manager.unload_plugin(id).await.unwrap();
    assert_eq!(p.counters().shutdowns(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_names_are_refused_naming_both_sources() {
    let a = PluginDir::with(&["hello"]);
    let b = PluginDir::with(&["hello"]);
    let manager = a.manager();
    manager
        .register_plugin(pinger_builder("dup", "1.0.0").build().unwrap())
        .unwrap();
    let err = manager
        .register_plugin(pinger_builder("dup", "2.0.0").build().unwrap())
        .unwrap_err();
    match &err {
        Error::DuplicateName {
            name,
            first,
            second,
        } => {
            assert_eq!(name, "dup");
            assert!(first.contains("dup 1.0.0"), "{first}");
            assert!(second.contains("dup 2.0.0"), "{second}");
        }
        other => panic!("expected DuplicateName, got {other:?}"),
    }

    // Two directories holding the same library: the second copy names both paths.
    let first = manager.load_directory(a.path()).await.unwrap();
    assert_eq!(first.registered.len(), 1, "{first:?}");
    let second = manager.load_directory(b.path()).await.unwrap();
    assert!(second.registered.is_empty(), "{second:?}");
    let (path, err) = &second.failed[0];
    assert_eq!(path, &b.library("hello"));
    let text = err.to_string();
    assert!(
        text.contains(&a.library("hello").display().to_string())
            && text.contains(&b.library("hello").display().to_string()),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_an_active_plugin() {
    let manager = PluginManager::default();
    let id = manager.register_plugin(pinger("alpha")).unwrap();
    let err = manager.call(id, "ping", json!(null)).await.unwrap_err();
    assert_eq!(
        err,
        Error::NotActive {
            plugin: "alpha".into(),
            state: "registered".into()
        }
    );
    let err = manager
        .call("nobody", "ping", json!(null))
        .await
        .unwrap_err();
    assert_eq!(err, Error::NotFoundByName("nobody".into()));
    manager.load_plugin(id).await.unwrap();
    let err = manager
        .call("alpha", "nope", json!(null))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PluginFailed { operation, reason, .. }
            if operation == "call(nope)" && reason.contains("unknown method")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_brings_dependencies_up_and_refuses_what_cannot_start() {
    let manager = PluginManager::default();
    let base = pinger_builder("base", "1.4.0").build().unwrap();
    let app = pinger_builder("app", "1.0.0")
        .depends_on("base", "^1.2")
        .build()
        .unwrap();
    let wants_missing = pinger_builder("lonely", "1.0.0")
        .depends_on("ghost", "^1")
        .build()
        .unwrap();
    let wants_new = pinger_builder("picky", "1.0.0")
        .depends_on("base", "^2")
        .build()
        .unwrap();
    let base_id = manager.register_plugin(base.clone()).unwrap();
    let app_id = manager.register_plugin(app.clone()).unwrap();
    let lonely = manager.register_plugin(wants_missing.clone()).unwrap();
    let picky = manager.register_plugin(wants_new.clone()).unwrap();

    // Loading app starts base first.
    manager.load_plugin(app_id).await.unwrap();
    assert_eq!(manager.status(base_id).unwrap(), PluginState::Active);
    assert_eq!(manager.status(app_id).unwrap(), PluginState::Active);

    // What cannot start ends Failed with the reason, and its code never runs.
    let err = manager.load_plugin(lonely).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `lonely` requires `ghost` ^1, which is not installed"
    );
    assert_eq!(
        manager.status(lonely).unwrap(),
        PluginState::Failed(Box::new(err))
    );
    let err = manager.load_plugin(picky).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `picky` requires `base` ^2, found 1.4.0"
    );
    assert_eq!(manager.status(picky).unwrap().failure(), Some(&err));
    assert_eq!(wants_missing.counters().initializations(), 0);
    assert_eq!(wants_new.counters().initializations(), 0);

    // base is held up by app: it cannot be unloaded under it.
    let err = manager.unload_plugin(base_id).await.unwrap_err();
    assert_eq!(
        err,
        Error::InUse {
            plugin: "base".into(),
            dependents: vec!["app".into()]
        }
    );
    let listed = manager.plugins();
    assert_eq!(listed[0].info.name, "base");
    assert_eq!(listed[0].dependents, ["app"]);
    manager.unload_plugin(app_id).await.unwrap();
    manager.unload_plugin(base_id).await.unwrap();
    assert_eq!(manager.status(base_id).unwrap(), PluginState::Unloaded);
    assert_eq!(base.counters().initializations(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_loads_initialize_exactly_once() {
    let detector = DeadlockDetector::start();
    let manager = PluginManager::default();
    let slow = InProcessPlugin::builder("slow", "1.0.0")
        .on_initialize(|_ctx| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        })
        .build()
        .unwrap();
    let id = manager.register_plugin(slow.clone()).unwrap();
    let mut events = manager.subscribe();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let m = manager.clone();
            tokio::spawn(async move { m.load_plugin(id).await })
        })
        .collect();
    let results = watchdog("100 loads", LIMIT, futures::future::join_all(tasks)).await;
    for r in results {
        r.expect("task").expect("load");
    }
    assert_eq!(slow.counters().initializations(), 1);
    assert_eq!(slow.counters().violations(), 0);
    assert_eq!(
        transitions(&drain(&mut events)),
        [("registered", "initializing"), ("initializing", "active")]
    );
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_loads_and_unloads_of_one_plugin_stay_consistent() {
    let detector = DeadlockDetector::start();
    let manager = PluginManager::default();
    let p = InProcessPlugin::builder("flip", "1.0.0")
        .on_initialize(|_ctx| async {
            tokio::task::yield_now().await;
            Ok(())
        })
        .on_shutdown(|_ctx| async {
            tokio::task::yield_now().await;
            Ok(())
        })
        .build()
        .unwrap();
    let id = manager.register_plugin(p.clone()).unwrap();
    for round in 0..10 {
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let m = manager.clone();
                tokio::spawn(async move {
                    if (i + round) % 2 == 0 {
                        m.load_plugin(id).await
                    } else {
                        m.unload_plugin(id).await
                    }
                })
            })
            .collect();
        for r in watchdog("load/unload round", LIMIT, futures::future::join_all(tasks)).await {
            r.expect("task")
                .expect("load and unload of a lone plugin succeed");
        }
        let c = p.counters();
        let state = manager.status(id).unwrap();
        assert!(
            matches!(state, PluginState::Active | PluginState::Unloaded),
            "round {round}: {state}"
        );
        assert_eq!(
            state.is_active(),
            c.initializations() == c.shutdowns() + 1,
            "round {round}: {state}, {} inits, {} shutdowns",
            c.initializations(),
            c.shutdowns()
        );
        assert_eq!(c.violations(), 0);
    }
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_plugin_holds_no_registry_lock_while_the_closure_runs() {
    let detector = DeadlockDetector::start();
    let manager = PluginManager::default();
    let id = manager.register_plugin(pinger("outer")).unwrap();
    let m = manager.clone();
    let inner_state = watchdog(
        "with_plugin",
        LIMIT,
        manager.with_plugin(id, |plugin| async move {
            assert_eq!(plugin.info().name, "outer");
            // Writes to the registry from inside the closure: with a guard held
            // across this await it would deadlock.
            let other = m.register_plugin(pinger("inner")).unwrap();
            m.load_plugin(other).await.unwrap();
            m.load_plugin(id).await.unwrap();
            m.status(other).unwrap()
        }),
    )
    .await
    .unwrap();
    assert_eq!(inner_state, PluginState::Active);
    assert!(manager.get_plugin_by_name("inner").is_some());
    let err = manager
        .with_plugin(uuid::Uuid::nil(), |_| async {})
        .await
        .unwrap_err();
    assert_eq!(err, Error::NotFound(uuid::Uuid::nil()));
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_shuts_down_and_frees_the_name() {
    let manager = PluginManager::default();
    let p = pinger("gone");
    let id = manager.register_plugin(p.clone()).unwrap();
    manager.load_plugin(id).await.unwrap();
    manager.unregister_plugin(id).await.unwrap();
    assert_eq!(p.counters().shutdowns(), 1);
    assert_eq!(manager.status(id).unwrap_err(), Error::NotFound(id));
    assert!(manager.get_plugin_by_id(id).is_none());
    assert_eq!(
        manager.load_plugin(id).await.unwrap_err(),
        Error::NotFound(id)
    );
    let again = manager.register_plugin(pinger("gone")).unwrap();
    assert_ne!(again, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_directory_registers_good_files_and_reports_bad_ones() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let bogus = dir.write("x.so", b"not a library\n");
    let manager = dir.manager();
    let report = manager.load_directory(dir.path()).await.unwrap();
    let mut names: Vec<_> = report.registered.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["counter", "hello"], "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, bogus);
    assert!(
        report.failed[0].1.to_string().contains("x.so"),
        "{}",
        report.failed[0].1
    );
    let hello = manager.id_of("hello").unwrap();
    assert_eq!(manager.status(hello).unwrap(), PluginState::Registered);
    manager.load_plugin(hello).await.unwrap();
    assert_eq!(
        manager
            .call("hello", "greet", json!({"name": "Ada"}))
            .await
            .unwrap(),
        json!("Hello, Ada!")
    );
    manager.unload_plugin(hello).await.unwrap();

    let err = manager
        .load_directory(dir.path().join("missing"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DirUnreadable { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_load_still_finishes_the_transition() {
    let manager = PluginManager::default();
    let p = InProcessPlugin::builder("slow", "1.0.0")
        .on_initialize(|_ctx| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        })
        .build()
        .unwrap();
    let id = manager.register_plugin(p.clone()).unwrap();
    let mut events = manager.subscribe();
    // The caller gives up after 10 ms; the load itself carries on.
    let gave_up = tokio::time::timeout(Duration::from_millis(10), manager.load_plugin(id)).await;
    assert!(gave_up.is_err());
    let event = watchdog("activation", LIMIT, async {
        loop {
            let e = events.recv().await.unwrap();
            if e.to.is_active() {
                return e;
            }
        }
    })
    .await;
    assert_eq!(event.id, id);
    assert_eq!(manager.status(id).unwrap(), PluginState::Active);
    assert_eq!(p.counters().initializations(), 1);
}
