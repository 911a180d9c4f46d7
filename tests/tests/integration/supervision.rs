//! Supervision of plugins that die on their own (in-process stand-ins with a
//! crash signal, `integration_tests::crashable`): a crash fails the plugin with
//! its reason and calls are refused with it; restarts restore the last saved
//! state, back off and stop at the limit; dependents are stopped while it is
//! down and started again after; an unload cancels a pending restart.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::crashable::{segfault, CrashHandle, CrashablePlugin};
use integration_tests::support::{pinger, recording, Log};
use integration_tests::watch::watchdog;
use plugbay_host::{
    CrashReason, CrashReport, Error, ManagerConfig, ManagerConfigBuilder, PluginManager,
    PluginState, RestartPolicy, SupervisorEvent,
};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// How long a step may take before the test fails as hung.
const LIMIT: Duration = Duration::from_secs(20);
const HOUR: Duration = Duration::from_secs(3600);

fn manager(config: ManagerConfigBuilder) -> PluginManager {
    PluginManager::new(config.build().expect("valid config"))
}

/// `OnFailure` with `limit` restarts per hour, the backoff starting at
/// `initial_ms` and doubling up to `max_ms`.
fn on_failure(limit: u32, initial_ms: u64, max_ms: u64) -> RestartPolicy {
    RestartPolicy::on_failure(limit, HOUR).with_backoff(
        Duration::from_millis(initial_ms),
        Duration::from_millis(max_ms),
    )
}

/// Registers and starts a crashable plugin `name` depending on `deps`.
async fn start_crashable(m: &PluginManager, name: &str, deps: &[(&str, &str)]) -> CrashHandle {
    let (plugin, handle) = CrashablePlugin::new(name, deps);
    let id = m.register_plugin(plugin).unwrap();
    m.load_plugin(id).await.unwrap();
    handle
}

/// Receives supervisor events until one satisfies `wanted`; returns all of
/// them (the last one is the wanted one).
async fn until(
    events: &mut broadcast::Receiver<SupervisorEvent>,
    what: &str,
    wanted: impl Fn(&SupervisorEvent) -> bool,
) -> Vec<SupervisorEvent> {
    watchdog(what, LIMIT, async {
        let mut seen = Vec::new();
        loop {
            let event = events.recv().await.expect("supervisor events");
            let done = wanted(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    })
    .await
}

fn crashed(plugin: &str, report: CrashReport) -> Error {
    Error::Crashed {
        plugin: plugin.to_owned(),
        report,
    }
}

fn is_restarted(e: &SupervisorEvent) -> bool {
    matches!(e, SupervisorEvent::Restarted { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_the_plugin_with_its_reason_and_calls_are_refused_with_it() {
    let m = manager(ManagerConfig::builder());
    let worker = start_crashable(&m, "worker", &[]).await;
    let bystander = m.register_plugin(pinger("bystander")).unwrap();
    m.load_plugin(bystander).await.unwrap();
    assert_eq!(worker.watchers(), 1, "watched while Active");
    let mut lifecycle = m.subscribe();
    let mut events = m.subscribe_supervisor();
    let mut bus = m.subscribe_events("plugbay.supervisor.*", 16).unwrap();

    worker.crash(segfault());
    let seen = until(&mut events, "the crash", |_| true).await;
    let expected = crashed("worker", segfault());
    assert_eq!(
        seen,
        [SupervisorEvent::Crashed {
            plugin: "worker".into(),
            report: segfault()
        }]
    );
    assert_eq!(
        m.status_by_name("worker").unwrap(),
        PluginState::Failed(Box::new(expected.clone()))
    );
    assert_eq!(
        expected.to_string(),
        "plugin `worker` crashed: killed by signal 11 (SIGSEGV); \
         last stderr line: about to dereference null"
    );
    let event = lifecycle.recv().await.unwrap();
    assert_eq!(
        (event.name.as_str(), event.from, event.to),
        (
            "worker",
            PluginState::Active,
            PluginState::Failed(Box::new(expected.clone()))
        )
    );
    let on_bus = bus.recv().await.unwrap();
    assert_eq!(on_bus.name, "plugbay.supervisor.crashed");
    assert_eq!(
        on_bus.payload,
        json!({"plugin": "worker", "message": expected.to_string()})
    );

    // New calls are refused by the gate with the crash itself.
    assert_eq!(m.call("worker", "get", Value::Null).await, Err(expected));
    // The host and the other plugins are unaffected.
    assert_eq!(
        m.call("bystander", "ping", Value::Null).await.unwrap(),
        json!("bystander: pong")
    );
    // The default policy is Never: it stays down, initialized once.
    assert_eq!(worker.initializations(), 1);
    assert!(m.status_by_name("worker").unwrap().crash().is_some());
    // Unloading it is a no-op; loading it again by hand starts a new incarnation.
    m.unload_plugin(m.id_of("worker").unwrap()).await.unwrap();
    m.load_plugin(m.id_of("worker").unwrap()).await.unwrap();
    assert_eq!(worker.initializations(), 2);
    assert_eq!(
        m.call("worker", "increment", Value::Null).await.unwrap(),
        json!(1)
    );
    assert!(m.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_unload_ends_the_watch_and_a_later_death_changes_nothing() {
    let m = manager(ManagerConfig::builder().default_restart_policy(on_failure(5, 1, 1)));
    let worker = start_crashable(&m, "worker", &[]).await;
    let id = m.id_of("worker").unwrap();
    assert_eq!(worker.watchers(), 1);
    m.unload_plugin(id).await.unwrap();
    watchdog("the watcher to end", LIMIT, async {
        while worker.watchers() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // The (unloaded) incarnation dies afterwards: nobody acts on it.
    let mut events = m.subscribe_supervisor();
    worker.crash(segfault());
    m.load_plugin(id).await.unwrap();
    assert_eq!(m.status(id).unwrap(), PluginState::Active);
    assert!(events.try_recv().is_err(), "no supervisor event");
    assert_eq!(worker.initializations(), 2);
    assert!(m.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_restores_the_last_saved_state() {
    let state = tempfile::tempdir().unwrap();
    let m = PluginManager::open(
        ManagerConfig::builder()
            .state_dir(state.path())
            .restart_policy("counter", on_failure(3, 1, 10))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let counter = start_crashable(&m, "counter", &[]).await;
    for _ in 0..2 {
        m.call("counter", "increment", Value::Null).await.unwrap();
    }
    let saved = m.save_all_states().await;
    assert!(saved.iter().all(|(_, r)| r.is_ok()), "{saved:?}");
    // Not saved: lost with the process.
    m.call("counter", "increment", Value::Null).await.unwrap();
    let mut lifecycle = m.subscribe();
    let mut events = m.subscribe_supervisor();

    counter.crash(segfault());
    let seen = until(&mut events, "the restart", is_restarted).await;
    assert_eq!(
        seen,
        [
            SupervisorEvent::Crashed {
                plugin: "counter".into(),
                report: segfault()
            },
            SupervisorEvent::Restarting {
                plugin: "counter".into(),
                attempt: 1,
                limit: 3,
                window: HOUR,
                delay: Duration::from_millis(1),
            },
            SupervisorEvent::Restarted {
                plugin: "counter".into(),
                attempt: 1
            },
        ]
    );
    assert_eq!(
        m.call("counter", "get", Value::Null).await.unwrap(),
        json!({"value": 2, "initializations": 2})
    );
    let states: Vec<&str> = std::iter::from_fn(|| lifecycle.try_recv().ok())
        .map(|e| e.to.name())
        .collect();
    assert_eq!(states, ["failed", "initializing", "active"]);
    assert_eq!(counter.watchers(), 1, "the new incarnation is watched");
    assert!(m.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_back_off_exponentially_and_stop_at_the_limit() {
    let m = manager(ManagerConfig::builder().restart_policy("flaky", on_failure(3, 1, 3)));
    let flaky = start_crashable(&m, "flaky", &[]).await;
    let mut events = m.subscribe_supervisor();
    let mut delays = Vec::new();
    for _ in 0..3 {
        flaky.crash(segfault());
        let seen = until(&mut events, "a restart", is_restarted).await;
        delays.extend(seen.iter().filter_map(|e| match e {
            SupervisorEvent::Restarting { attempt, delay, .. } => {
                Some((*attempt, delay.as_millis()))
            }
            _ => None,
        }));
    }
    assert_eq!(delays, [(1, 1), (2, 2), (3, 3)], "doubling, capped at 3 ms");
    let last = CrashReport {
        reason: CrashReason::Exited { code: 0 },
        last_stderr: Vec::new(),
    };
    flaky.crash(last.clone());
    let seen = until(&mut events, "giving up", |e| {
        matches!(e, SupervisorEvent::GaveUp { .. })
    })
    .await;
    let gave_up = seen.last().unwrap();
    assert_eq!(
        gave_up.to_string(),
        "plugin `flaky` restart limit reached (3 restarts in 3600 s): it stays failed"
    );
    let limit = Error::RestartLimit {
        plugin: "flaky".into(),
        restarts: 3,
        window: HOUR,
        last: Box::new(crashed("flaky", last)),
    };
    assert_eq!(
        m.status_by_name("flaky").unwrap(),
        PluginState::Failed(Box::new(limit.clone()))
    );
    assert_eq!(
        limit.to_string(),
        "plugin `flaky` stays failed: restart limit reached (3 restarts within 3600s); \
         last failure: plugin `flaky` crashed: exited with code 0; load it again to retry"
    );
    assert_eq!(m.call("flaky", "get", Value::Null).await, Err(limit));
    assert_eq!(flaky.initializations(), 4, "the first start and 3 restarts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_restarts_count_toward_the_limit() {
    let m = manager(ManagerConfig::builder().restart_policy("broken", on_failure(2, 1, 1)));
    let broken = start_crashable(&m, "broken", &[]).await;
    let mut events = m.subscribe_supervisor();
    broken.fail_next_initializations(10);
    broken.crash(segfault());
    let seen = until(&mut events, "giving up", |e| {
        matches!(e, SupervisorEvent::GaveUp { .. })
    })
    .await;
    let kinds: Vec<&str> = seen.iter().map(SupervisorEvent::kind).collect();
    assert_eq!(
        kinds,
        [
            "crashed",
            "restarting",
            "restart_failed",
            "restarting",
            "restart_failed",
            "gave_up"
        ]
    );
    let state = m.status_by_name("broken").unwrap();
    let Some(Error::RestartLimit { restarts, last, .. }) = state.failure() else {
        panic!("not failed with the restart limit: {state}");
    };
    assert_eq!(*restarts, 2);
    assert!(
        last.to_string().contains("initialize failed on purpose"),
        "the last failure is the last restart's: {last}"
    );
    assert_eq!(broken.initializations(), 1);
}

/// `a` (crashable) ← `b` ← `c`, and an unrelated `d`; `b` saves state.
async fn chain(
    policy: RestartPolicy,
    state: &std::path::Path,
) -> (PluginManager, CrashHandle, Log) {
    let m = PluginManager::open(
        ManagerConfig::builder()
            .state_dir(state)
            .restart_policy("a", policy)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (a, handle) = CrashablePlugin::new("a", &[]);
    m.register_plugin(a).unwrap();
    let log: Log = Arc::default();
    let b = recording("b", "1.0.0", &[("a", "^1", false)], &log)
        .on_save_state(|| Ok(json!({"b": "saved"})))
        .build()
        .unwrap();
    m.register_plugin(b).unwrap();
    m.register_plugin(
        recording("c", "1.0.0", &[("b", "^1", false)], &log)
            .build()
            .unwrap(),
    )
    .unwrap();
    m.register_plugin(pinger("d")).unwrap();
    assert!(m.load_all_plugins().await.is_ok());
    log.lock().clear();
    (m, handle, log)
}

fn states(m: &PluginManager) -> Vec<(String, &'static str)> {
    m.plugins()
        .into_iter()
        .map(|p| (p.info.name, p.state.name()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_are_stopped_while_it_is_down_and_started_again_after() {
    let state = tempfile::tempdir().unwrap();
    let (m, a, log) = chain(on_failure(3, 1, 1), state.path()).await;
    let mut events = m.subscribe_supervisor();
    a.crash(segfault());
    let seen = until(&mut events, "the dependents to start again", |e| {
        matches!(e, SupervisorEvent::DependentsStarted { .. })
    })
    .await;
    let kinds: Vec<&str> = seen.iter().map(SupervisorEvent::kind).collect();
    assert_eq!(
        kinds,
        [
            "crashed",
            "dependents_stopped",
            "restarting",
            "restarted",
            "dependents_started"
        ]
    );
    assert_eq!(
        seen[1].to_string(),
        "plugin `a` is down: stopped its dependents b, c"
    );
    assert_eq!(
        seen[4],
        SupervisorEvent::DependentsStarted {
            plugin: "a".into(),
            started: vec!["b".into(), "c".into()],
            failed: vec![],
        }
    );
    // Stopped dependents first, started dependencies first.
    assert_eq!(*log.lock(), ["stop:c", "stop:b", "init:b", "init:c"]);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(state.path().join("b.json")).unwrap()).unwrap();
    assert_eq!(
        saved["state"],
        json!({"b": "saved"}),
        "stopped with state saved"
    );
    let all_active = ["a", "b", "c", "d"].map(|n| (n.to_owned(), "active"));
    assert_eq!(states(&m), all_active);
    assert!(m.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_restarts_the_dependents_stay_stopped_and_the_rest_runs_on() {
    let state = tempfile::tempdir().unwrap();
    let (m, a, log) = chain(RestartPolicy::Never, state.path()).await;
    let mut events = m.subscribe_supervisor();
    a.crash(segfault());
    let seen = until(&mut events, "the dependents to stop", |e| {
        matches!(e, SupervisorEvent::DependentsStopped { .. })
    })
    .await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(*log.lock(), ["stop:c", "stop:b"]);
    assert_eq!(
        states(&m),
        [
            ("a".to_owned(), "failed"),
            ("b".to_owned(), "unloaded"),
            ("c".to_owned(), "unloaded"),
            ("d".to_owned(), "active"),
        ]
    );
    assert_eq!(
        m.call("d", "ping", Value::Null).await.unwrap(),
        json!("d: pong")
    );
    assert!(m.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unloading_during_the_backoff_cancels_the_restart() {
    // An hour of backoff: only a cancellation ends the wait within the test.
    let hour_ms = 3_600_000;
    let m =
        manager(ManagerConfig::builder().default_restart_policy(on_failure(5, hour_ms, hour_ms)));
    let one = start_crashable(&m, "one", &[]).await;
    let two = start_crashable(&m, "two", &[]).await;
    let three = start_crashable(&m, "three", &[]).await;
    let mut events = m.subscribe_supervisor();
    let backing_off = |name: &'static str| move |e: &SupervisorEvent| matches!(e, SupervisorEvent::Restarting { plugin, .. } if plugin == name);
    let cancelled = |name: &'static str| move |e: &SupervisorEvent| matches!(e, SupervisorEvent::RestartCancelled { plugin } if plugin == name);

    // unload_plugin
    one.crash(segfault());
    until(&mut events, "one backing off", backing_off("one")).await;
    let one_id = m.id_of("one").unwrap();
    m.unload_plugin(one_id).await.unwrap();
    until(&mut events, "one's restart cancelled", cancelled("one")).await;
    assert!(m.status(one_id).unwrap().crash().is_some(), "still down");

    // unregister_plugin
    two.crash(segfault());
    until(&mut events, "two backing off", backing_off("two")).await;
    m.unregister_plugin(m.id_of("two").unwrap()).await.unwrap();
    until(&mut events, "two's restart cancelled", cancelled("two")).await;
    assert!(m.id_of("two").is_none());

    // unload_all_plugins
    three.crash(segfault());
    until(&mut events, "three backing off", backing_off("three")).await;
    assert!(m.unload_all_plugins().await.is_ok());
    until(&mut events, "three's restart cancelled", cancelled("three")).await;
    assert!(m.status_by_name("three").unwrap().crash().is_some());

    for (name, handle) in [("one", &one), ("two", &two), ("three", &three)] {
        assert_eq!(handle.initializations(), 1, "{name} never came back");
    }
    // A load by hand still works after a cancelled restart.
    m.load_plugin(one_id).await.unwrap();
    assert_eq!(one.initializations(), 2);
    assert!(m.unload_all_plugins().await.is_ok());
}
