//! Property test over random dependency DAGs of up to 200 in-process plugins:
//! no plugin initializes before its required dependencies are Active, every
//! plugin that can start does, the others end Failed without running, and
//! unload order is the reverse of a valid topological order.

use std::collections::HashSet;
use std::sync::Arc;

use plugbay_api::PluginError;
use plugbay_host::{Error, InProcessPlugin, ManagerConfig, PluginManager, PluginState};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::support::{position, Log};

/// One plugin of a random DAG: dependencies on lower-numbered plugins
/// (`(target, optional)`), and whether its initialize fails.
#[derive(Debug, Clone)]
struct Spec {
    deps: Vec<(Index, bool)>,
    fails: bool,
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    let spec = (
        prop::collection::vec((any::<Index>(), prop::bool::weighted(0.2)), 0..4),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(deps, fails)| Spec { deps, fails });
    prop::collection::vec(spec, 1..=200)
}

fn name(i: usize) -> String {
    format!("n{i:03}")
}

/// `(target, optional)` edges of plugin `i`, deduplicated.
fn edges(specs: &[Spec], i: usize) -> Vec<(usize, bool)> {
    if i == 0 {
        return Vec::new();
    }
    let mut seen = HashSet::new();
    specs[i]
        .deps
        .iter()
        .map(|(t, optional)| (t.index(i), *optional))
        .filter(|(t, _)| seen.insert(*t))
        .collect()
}

fn build(specs: &[Spec], i: usize, log: &Log) -> Arc<InProcessPlugin> {
    let mut b = InProcessPlugin::builder(&name(i), "1.0.0");
    let mut required = Vec::new();
    for (t, optional) in edges(specs, i) {
        if optional {
            b = b.optionally_depends_on(&name(t), "^1");
        } else {
            b = b.depends_on(&name(t), "^1");
            required.push(name(t));
        }
    }
    let (init_log, stop_log) = (Arc::clone(log), Arc::clone(log));
    let me = name(i);
    let me2 = me.clone();
    let fails = specs[i].fails;
    b.on_initialize(move |ctx| {
        let mut entries = Vec::new();
        for d in &required {
            if ctx.status_of(d).as_deref() != Some("active") {
                entries.push(format!("early:{me} needs {d}"));
            }
        }
        entries.push(format!("init:{me}"));
        init_log.lock().extend(entries);
        async move {
            if fails {
                Err(PluginError::failed("configured to fail"))
            } else {
                Ok(())
            }
        }
    })
    .on_shutdown(move |_| {
        stop_log.lock().push(format!("stop:{me2}"));
        async { Ok(()) }
    })
    .build()
    .unwrap()
}

/// Which plugins can start: not failing themselves, and every required
/// dependency can start (plugins only depend on lower numbers, so one pass).
fn startable(specs: &[Spec]) -> Vec<bool> {
    let mut ok = vec![false; specs.len()];
    for i in 0..specs.len() {
        ok[i] = !specs[i].fails && deps_can_start(specs, &ok, i);
    }
    ok
}

/// Whether every required dependency of `i` can start.
fn deps_can_start(specs: &[Spec], can_start: &[bool], i: usize) -> bool {
    edges(specs, i)
        .iter()
        .all(|(t, optional)| *optional || can_start[*t])
}

fn check(specs: Vec<Spec>, max_parallel: usize) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let manager = PluginManager::new(
            ManagerConfig::builder()
                .max_parallel(max_parallel)
                .build()
                .expect("config"),
        );
        let log = Log::default();
        let plugins: Vec<_> = (0..specs.len()).map(|i| build(&specs, i, &log)).collect();
        // Registered in reverse, so registration order is never the start order.
        for p in plugins.iter().rev() {
            manager.register_plugin(p.clone()).expect("register");
        }
        manager.load_all_plugins().await;
        let can_start = startable(&specs);
        {
            let log = log.lock();
            let early: Vec<_> = log.iter().filter(|e| e.starts_with("early:")).collect();
            prop_assert!(early.is_empty(), "started too early: {:?}", early);
        }
        for (i, p) in plugins.iter().enumerate() {
            let state = manager.status_by_name(&name(i)).expect("registered");
            let inits = p.counters().initializations();
            if can_start[i] {
                let deps: Vec<String> = edges(&specs, i)
                    .iter()
                    .map(|(t, o)| {
                        let s = manager.status_by_name(&name(*t)).expect("registered");
                        format!("{}{}: {}", name(*t), if *o { " (optional)" } else { "" }, s)
                    })
                    .collect();
                prop_assert_eq!(
                    &state,
                    &PluginState::Active,
                    "{} should start; its dependencies: {:?}",
                    name(i),
                    deps
                );
            } else if deps_can_start(&specs, &can_start, i) {
                // Only its own initialize failed.
                prop_assert!(
                    matches!(state.failure(), Some(Error::InitFailed { .. })),
                    "{} is {}",
                    name(i),
                    state
                );
            } else {
                prop_assert!(
                    matches!(state.failure(), Some(Error::DependencyFailed { .. })),
                    "{} is {}",
                    name(i),
                    state
                );
                prop_assert_eq!(inits, 0, "{} ran although a dependency failed", name(i));
            }
        }
        let report = manager.unload_all_plugins().await;
        prop_assert!(
            report.is_ok(),
            "{:?}",
            report.failures().collect::<Vec<_>>()
        );
        let log = log.lock().clone();
        for i in (0..specs.len()).filter(|i| can_start[*i]) {
            let stop_i = position(&log, &format!("stop:{}", name(i)));
            for (t, optional) in edges(&specs, i) {
                if !optional || can_start[t] {
                    // A wired dependency stops after its dependent.
                    let stop_t = position(&log, &format!("stop:{}", name(t)));
                    prop_assert!(
                        stop_i < stop_t,
                        "{} stopped after its dependency {}",
                        name(i),
                        name(t)
                    );
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_dags_start_in_order_and_stop_in_reverse(specs in specs(), max_parallel in 1usize..16) {
        check(specs, max_parallel)?;
    }
}
