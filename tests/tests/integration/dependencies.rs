//! Dependency-aware lifecycle: start order, failure propagation, reverse
//! unload order, InUse and cascade, registration during load_all, parallel start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plugbay_api::PluginError;
use plugbay_host::{
    Error, InProcessPlugin, ManagerConfig, PluginManager, PluginState, UnloadOptions,
};
use uuid::Uuid;

use crate::support::{pinger, position, recording, Log};
use crate::watch::{watchdog, DeadlockDetector};

const LIMIT: Duration = Duration::from_secs(60);

fn manager(max_parallel: usize) -> PluginManager {
    PluginManager::new(
        ManagerConfig::builder()
            .max_parallel(max_parallel)
            .build()
            .unwrap(),
    )
}

fn no_early_starts(log: &Log) {
    let log = log.lock();
    assert!(
        log.iter().all(|e| !e.starts_with("early:")),
        "a plugin started before its dependencies: {log:?}"
    );
}

fn state(manager: &PluginManager, name: &str) -> PluginState {
    manager.status_by_name(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_starts_in_order_and_stops_in_reverse() {
    let m = manager(4);
    let log = Log::default();
    // Registered dependents-first, so registration order is not the start order.
    m.register_plugin(
        recording("c", "1.0.0", &[("b", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(
        recording("b", "1.0.0", &[("a", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(recording("a", "1.0.0", &[], &log).build().unwrap())
        .unwrap();
    let plan = m.resolve_dependencies();
    let names = |wave: &Vec<Uuid>| -> Vec<String> {
        wave.iter()
            .map(|id| m.get_plugin_by_id(*id).unwrap().info().name.clone())
            .collect()
    };
    assert_eq!(
        plan.waves.iter().map(names).collect::<Vec<_>>(),
        [["a"], ["b"], ["c"]]
    );

    let report = watchdog("load_all", LIMIT, m.load_all_plugins()).await;
    assert!(report.is_ok(), "{report:?}");
    let report = watchdog("unload_all", LIMIT, m.unload_all_plugins()).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        *log.lock(),
        ["init:a", "init:b", "init:c", "stop:c", "stop:b", "stop:a"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diamond_initializes_the_shared_dependency_exactly_once() {
    let detector = DeadlockDetector::start();
    let m = manager(8);
    let log = Log::default();
    let base = recording("base", "1.0.0", &[], &log).build().unwrap();
    m.register_plugin(base.clone()).unwrap();
    m.register_plugin(
        recording("left", "1.0.0", &[("base", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(
        recording("right", "1.0.0", &[("base", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    let top = m
        .register_plugin(
            recording(
                "top",
                "1.0.0",
                &[("left", "^1", false), ("right", "^1", false)],
                &log,
            )
            .build()
            .unwrap(),
        )
        .unwrap();
    // A batch and ten direct loads of the top race each other.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move { m.load_plugin(top).await }));
    }
    let report = watchdog("load_all", LIMIT, m.load_all_plugins()).await;
    for t in watchdog("loads", LIMIT, futures::future::join_all(tasks)).await {
        t.unwrap().unwrap();
    }
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(base.counters().initializations(), 1);
    no_early_starts(&log);

    assert!(m.unload_all_plugins().await.is_ok());
    let log = log.lock().clone();
    assert_eq!(
        log.iter().filter(|e| e.starts_with("init:")).count(),
        4,
        "{log:?}"
    );
    for side in ["left", "right"] {
        assert!(position(&log, "stop:top") < position(&log, &format!("stop:{side}")));
        assert!(position(&log, &format!("stop:{side}")) < position(&log, "stop:base"));
    }
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_names_every_member_and_starts_none_of_them() {
    let m = manager(4);
    let log = Log::default();
    for (name, dep) in [("a", "b"), ("b", "c"), ("c", "a"), ("behind", "a")] {
        m.register_plugin(
            recording(name, "1.0.0", &[(dep, "^1", false)], &log)
                .build()
                .unwrap(),
        )
        .unwrap();
    }
    m.register_plugin(recording("free", "1.0.0", &[], &log).build().unwrap())
        .unwrap();
    let report = m.load_all_plugins().await;
    for member in ["a", "b", "c"] {
        let err = report.outcome(member).unwrap().result.clone().unwrap_err();
        match &err {
            Error::DependencyCycle { cycle } => {
                assert_eq!(cycle.first(), cycle.last(), "{cycle:?}");
                for name in ["a", "b", "c"] {
                    assert!(cycle.iter().any(|c| c == name), "{cycle:?}");
                }
            }
            other => panic!("{member}: expected DependencyCycle, got {other:?}"),
        }
        assert_eq!(state(&m, member).failure(), Some(&err));
    }
    let text = state(&m, "a").to_string();
    assert!(text.contains("dependency cycle: "), "{text}");
    assert_eq!(
        report.outcome("behind").unwrap().result,
        Err(Error::DependencyFailed {
            plugin: "behind".into(),
            dependency: "a".into()
        })
    );
    assert_eq!(state(&m, "free"), PluginState::Active);
    assert_eq!(*log.lock(), ["init:free"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_conflicting_dependencies_block_only_their_dependents() {
    let m = manager(4);
    let log = Log::default();
    m.register_plugin(recording("base", "1.0.0", &[], &log).build().unwrap())
        .unwrap();
    m.register_plugin(
        recording("lonely", "1.0.0", &[("ghost", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(
        recording("picky", "1.0.0", &[("base", "^2", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(
        recording("fine", "1.0.0", &[("base", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    let report = m.load_all_plugins().await;
    assert_eq!(
        report.outcome("lonely").unwrap().result,
        Err(Error::MissingDependency {
            plugin: "lonely".into(),
            dependency: "ghost".into(),
            requirement: "^1".into()
        })
    );
    assert_eq!(
        report.outcome("picky").unwrap().result,
        Err(Error::VersionConflict {
            plugin: "picky".into(),
            dependency: "base".into(),
            requirement: "^2".into(),
            found: "1.0.0".into()
        })
    );
    let picky = m.id_of("picky").unwrap();
    let why = m.resolve_dependencies().explain(picky).unwrap();
    assert!(
        why.contains("picky: requires base ^2, found 1.0.0"),
        "{why}"
    );
    assert!(state(&m, "picky").failure().is_some());
    for ok in ["base", "fine"] {
        assert_eq!(state(&m, ok), PluginState::Active, "{ok}");
    }
    let log = log.lock();
    assert!(
        !log.iter().any(|e| e == "init:lonely" || e == "init:picky"),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_dependencies_are_started_first_when_present_and_skipped_when_absent() {
    let m = manager(4);
    let log = Log::default();
    m.register_plugin(
        recording("app", "1.0.0", &[("extra", "^1", true)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(recording("extra", "1.0.0", &[], &log).build().unwrap())
        .unwrap();
    m.register_plugin(
        recording("solo", "1.0.0", &[("absent", "^1", true)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    let report = m.load_all_plugins().await;
    assert!(report.is_ok(), "{report:?}");
    let entries = log.lock().clone();
    assert!(
        position(&entries, "init:extra") < position(&entries, "init:app"),
        "{entries:?}"
    );
    assert_eq!(state(&m, "solo"), PluginState::Active);
    // A present optional dependency is held like a required one.
    let err = m
        .unload_plugin(m.id_of("extra").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InUse { ref dependents, .. } if dependents == &["app"]),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dependency_skips_its_transitive_dependents_until_it_is_fixed() {
    let m = manager(4);
    let log = Log::default();
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = Arc::clone(&broken);
    let root = InProcessPlugin::builder("root", "1.0.0")
        .on_initialize(move |_| {
            let broken = flag.load(Ordering::SeqCst);
            async move {
                if broken {
                    Err(PluginError::failed("no database"))
                } else {
                    Ok(())
                }
            }
        })
        .build()
        .unwrap();
    m.register_plugin(root).unwrap();
    let mid = recording("mid", "1.0.0", &[("root", "^1", false)], &log)
        .build()
        .unwrap();
    let leaf = recording("leaf", "1.0.0", &[("mid", "^1", false)], &log)
        .build()
        .unwrap();
    m.register_plugin(mid.clone()).unwrap();
    m.register_plugin(leaf.clone()).unwrap();
    m.register_plugin(
        recording("opt", "1.0.0", &[("root", "^1", true)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(recording("other", "1.0.0", &[], &log).build().unwrap())
        .unwrap();

    let report = m.load_all_plugins().await;
    assert_eq!(
        report.outcome("root").unwrap().result,
        Err(Error::InitFailed {
            plugin: "root".into(),
            reason: "no database".into()
        })
    );
    assert_eq!(
        report.outcome("mid").unwrap().result,
        Err(Error::DependencyFailed {
            plugin: "mid".into(),
            dependency: "root".into()
        })
    );
    assert_eq!(
        report.outcome("leaf").unwrap().result,
        Err(Error::DependencyFailed {
            plugin: "leaf".into(),
            dependency: "mid".into()
        })
    );
    assert_eq!(
        state(&m, "leaf").to_string(),
        "failed (plugin `leaf` was not started because its dependency `mid` failed)"
    );
    assert_eq!(mid.counters().initializations(), 0);
    assert_eq!(leaf.counters().initializations(), 0);
    // An optional dependency's failure does not stop its dependent.
    assert_eq!(state(&m, "opt"), PluginState::Active);
    assert_eq!(state(&m, "other"), PluginState::Active);

    // The cause goes away: loading the leaf brings the whole chain up.
    broken.store(false, Ordering::SeqCst);
    m.load_plugin(m.id_of("leaf").unwrap()).await.unwrap();
    for name in ["root", "mid", "leaf"] {
        assert_eq!(state(&m, name), PluginState::Active, "{name}");
    }
    no_early_starts(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_use_refuses_and_cascade_unloads_dependents_first() {
    let detector = DeadlockDetector::start();
    let m = manager(4);
    let log = Log::default();
    m.register_plugin(recording("core", "1.0.0", &[], &log).build().unwrap())
        .unwrap();
    m.register_plugin(
        recording("svc", "1.0.0", &[("core", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(
        recording("ui", "1.0.0", &[("svc", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(
        recording("cli", "1.0.0", &[("core", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(recording("bystander", "1.0.0", &[], &log).build().unwrap())
        .unwrap();
    assert!(m.load_all_plugins().await.is_ok());
    let core = m.id_of("core").unwrap();

    let err = m.unload_plugin(core).await.unwrap_err();
    assert_eq!(
        err,
        Error::InUse {
            plugin: "core".into(),
            dependents: vec!["cli".into(), "svc".into()]
        }
    );
    assert_eq!(state(&m, "core"), PluginState::Active);

    log.lock().clear();
    watchdog(
        "cascade",
        LIMIT,
        m.unload_plugin_with(core, UnloadOptions::cascade()),
    )
    .await
    .unwrap();
    let entries = log.lock().clone();
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert!(position(&entries, "stop:ui") < position(&entries, "stop:svc"));
    assert!(position(&entries, "stop:svc") < position(&entries, "stop:core"));
    assert!(position(&entries, "stop:cli") < position(&entries, "stop:core"));
    for name in ["core", "svc", "ui", "cli"] {
        assert_eq!(state(&m, name), PluginState::Unloaded, "{name}");
    }
    assert_eq!(state(&m, "bystander"), PluginState::Active);
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registering_and_unregistering_during_load_all_stays_consistent() {
    let detector = DeadlockDetector::start();
    let m = manager(4);
    let slow = |name: &str, deps: &[&str]| {
        let mut b = InProcessPlugin::builder(name, "1.0.0").on_initialize(|_| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        });
        for d in deps {
            b = b.depends_on(d, "^1");
        }
        b.build().unwrap()
    };
    for i in 0..30 {
        let dep = (i > 0).then(|| format!("old{}", i / 2));
        let deps: Vec<&str> = dep.iter().map(String::as_str).collect();
        m.register_plugin(slow(&format!("old{i}"), &deps)).unwrap();
    }
    let victim = m.register_plugin(pinger("victim")).unwrap();

    let batch = {
        let m = m.clone();
        tokio::spawn(async move { m.load_all_plugins().await })
    };
    // Meanwhile: new plugins (some depending on old ones) and one unregistration.
    let mut new_ids = Vec::new();
    for i in 0..20 {
        let deps = [format!("old{}", i % 30)];
        let deps: Vec<&str> = if i % 2 == 0 {
            vec![deps[0].as_str()]
        } else {
            vec![]
        };
        new_ids.push(m.register_plugin(slow(&format!("new{i}"), &deps)).unwrap());
        if i == 10 {
            m.unregister_plugin(victim).await.unwrap();
        }
        tokio::task::yield_now().await;
    }
    let report = watchdog("load_all", LIMIT, batch).await.unwrap();

    assert!(m.get_plugin_by_id(victim).is_none());
    for outcome in &report.outcomes {
        if outcome.id == victim {
            // Loaded before it was unregistered, or found gone.
            assert!(
                matches!(outcome.result, Ok(()) | Err(Error::NotFound(_))),
                "{outcome:?}"
            );
            continue;
        }
        assert_eq!(outcome.result, Ok(()), "{outcome:?}");
        assert_eq!(
            m.status(outcome.id).unwrap(),
            PluginState::Active,
            "{outcome:?}"
        );
    }
    for i in 0..30 {
        assert!(
            report.outcome(&format!("old{i}")).is_some(),
            "old{i} not in the batch"
        );
    }
    for id in &new_ids {
        let state = m.status(*id).unwrap();
        let in_batch = report.outcomes.iter().any(|o| o.id == *id);
        // Registered before the snapshot: started by the batch; after: untouched.
        let expected = if in_batch {
            PluginState::Active
        } else {
            PluginState::Registered
        };
        assert_eq!(state, expected);
    }
    // A second batch starts what the first did not know about.
    let second = m.load_all_plugins().await;
    assert!(second.is_ok(), "{second:?}");
    assert!(m.plugins().iter().all(|p| p.state.is_active()));
    assert!(m.unload_all_plugins().await.is_ok());
    detector.finish();
}

/// Counts the plugins inside `initialize` at once, as the plugins see it.
#[derive(Default)]
struct Overlap {
    running: AtomicUsize,
    peak: AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Overlap {
    /// How many initializations overlapped at most.
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Registers `count` independent plugins whose `initialize` waits (a bounded
/// rendezvous) until `target` of them are inside at once, so the peak reaches
/// `target` whenever the manager runs that many in parallel, and stays lower
/// (after the bound) when it does not.
fn register_rendezvous(
    m: &PluginManager,
    prefix: &str,
    count: usize,
    target: usize,
) -> Arc<Overlap> {
    let overlap = Arc::new(Overlap::default());
    for i in 0..count {
        let overlap = Arc::clone(&overlap);
        let p = InProcessPlugin::builder(&format!("{prefix}{i}"), "1.0.0")
            .on_initialize(move |_| {
                let overlap = Arc::clone(&overlap);
                async move {
                    let now = overlap.running.fetch_add(1, Ordering::SeqCst) + 1;
                    overlap.peak.fetch_max(now, Ordering::SeqCst);
                    overlap.changed.notify_waiters();
                    let reached = async {
                        loop {
                            let notified = overlap.changed.notified();
                            tokio::pin!(notified);
                            notified.as_mut().enable();
                            if overlap.peak() >= target {
                                return;
                            }
                            notified.await;
                        }
                    };
                    // Bounded, so a serial manager fails the assertion instead of hanging.
                    let _ = tokio::time::timeout(Duration::from_secs(5), reached).await;
                    overlap.running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .build()
            .unwrap();
        m.register_plugin(p).unwrap();
    }
    overlap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_plugins_start_in_parallel_up_to_max_parallel() {
    // Fewer independent plugins than max_parallel: all of them at once.
    let m = manager(64);
    let overlap = register_rendezvous(&m, "p", 24, 24);
    let report = m.load_all_plugins().await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(overlap.peak(), 24, "peak parallel initializations");

    // More than max_parallel: exactly max_parallel at once, never more.
    let m = manager(3);
    let overlap = register_rendezvous(&m, "q", 12, 3);
    let report = m.load_all_plugins().await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(overlap.peak(), 3, "peak parallel initializations");
}
