//! The concurrency storm: 64 tasks issue 10,000 random operations (load, which
//! brings dependencies up; unload; cascading unload; get; with_plugin; status;
//! call) over 50 in-process plugins with dependencies; afterwards every lifecycle invariant
//! holds. A watchdog turns a deadlock into a failure, and parking_lot's deadlock
//! detector runs throughout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plugbay_api::PluginError;
use plugbay_host::{Counters, Error, InProcessPlugin, PluginManager, PluginState, UnloadOptions};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::watch::{watchdog, DeadlockDetector};

const PLUGINS: usize = 50;
const TASKS: usize = 64;
const OPERATIONS: usize = 10_000;

/// SplitMix64: a tiny seeded generator, so a failing storm can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed() -> u64 {
    std::env::var("STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2024)
}

fn name(i: usize) -> String {
    format!("p{i:02}")
}

/// Calls every required dependency; each must answer, because a starting,
/// active or stopping plugin holds its dependencies up.
async fn ping_all(ctx: &plugbay_host::PluginContext, deps: &[String]) -> Result<(), PluginError> {
    for d in deps {
        ctx.call(d, "ping", Value::Null)
            .await
            .map_err(|e| PluginError::failed(format!("dependency {d} did not answer: {e}")))?;
    }
    Ok(())
}

struct StormPlugin {
    required: Vec<String>,
    counters: Arc<Counters>,
}

/// 50 plugins; each of p05.. requires one or two lower-numbered plugins, and
/// every seventh optionally depends on another.
fn build_plugins(rng: &mut Rng) -> Vec<(Arc<InProcessPlugin>, StormPlugin)> {
    (0..PLUGINS)
        .map(|i| {
            let mut required: Vec<String> = Vec::new();
            if i >= 5 {
                for _ in 0..1 + rng.below(2) {
                    let d = name(rng.below(i));
                    if !required.contains(&d) {
                        required.push(d);
                    }
                }
            }
            let mut b = InProcessPlugin::builder(&name(i), "1.0.0");
            for d in &required {
                b = b.depends_on(d, "^1");
            }
            if i >= 5 && i % 7 == 0 {
                b = b.optionally_depends_on(&name(rng.below(i)), "^1");
            }
            let (init_deps, stop_deps, call_deps) =
                (required.clone(), required.clone(), required.clone());
            let me = name(i);
            let plugin = b
                .on_initialize(move |ctx| {
                    let deps = init_deps.clone();
                    async move {
                        tokio::task::yield_now().await;
                        ping_all(&ctx, &deps).await
                    }
                })
                .on_shutdown(move |ctx| {
                    let deps = stop_deps.clone();
                    async move {
                        tokio::task::yield_now().await;
                        ping_all(&ctx, &deps).await
                    }
                })
                .on_call(move |ctx, method, _| {
                    let deps = call_deps.clone();
                    let me = me.clone();
                    async move {
                        match method.as_str() {
                            "ping" => Ok(json!(me)),
                            "relay" => {
                                ping_all(&ctx, &deps[..deps.len().min(1)]).await?;
                                Ok(json!(me))
                            }
                            _ => Err(PluginError::unknown_method(&method)),
                        }
                    }
                })
                .build()
                .unwrap();
            let counters = plugin.counters();
            (plugin, StormPlugin { required, counters })
        })
        .collect()
}

/// Whether an error is a legitimate answer under the storm's random interleaving.
fn expected(op: &str, err: &Error) -> bool {
    matches!(
        (op, err),
        ("load", Error::DependencyNotActive { .. })
            | ("load", Error::DependencyFailed { .. })
            | ("unload", Error::InUse { .. })
            | ("cascade", Error::InUse { .. })
            | ("call", Error::NotActive { .. })
    )
}

#[derive(Default)]
struct Tally {
    ok: HashMap<&'static str, usize>,
    refused: HashMap<&'static str, usize>,
    unexpected: Vec<String>,
}

impl Tally {
    fn record(&mut self, op: &'static str, result: Result<(), Error>) {
        match result {
            Ok(()) => *self.ok.entry(op).or_default() += 1,
            Err(e) if expected(op, &e) => *self.refused.entry(op).or_default() += 1,
            Err(e) => self.unexpected.push(format!("{op}: {e}")),
        }
    }
}

async fn one_op(manager: &PluginManager, ids: &[Uuid], rng: &mut Rng, tally: &mut Tally) {
    let i = rng.below(ids.len());
    let id = ids[i];
    match rng.below(100) {
        0..=29 => tally.record("load", manager.load_plugin(id).await),
        30..=44 => tally.record("unload", manager.unload_plugin(id).await),
        45..=49 => tally.record(
            "cascade",
            manager
                .unload_plugin_with(id, UnloadOptions::cascade())
                .await,
        ),
        50..=59 => {
            let ok = manager.get_plugin_by_id(id).map(|p| p.info().name.clone()) == Some(name(i))
                && manager.get_plugin_by_name(&name(i)).is_some();
            tally.record("get", ok.then_some(()).ok_or(Error::NotFound(id)));
        }
        60..=69 => {
            let m = manager.clone();
            let r = manager
                .with_plugin(id, |p| async move {
                    tokio::task::yield_now().await;
                    let state = m.status_by_name(&p.info().name)?;
                    Ok::<_, Error>(state)
                })
                .await
                .and_then(|inner| inner.map(|_| ()));
            tally.record("with_plugin", r);
        }
        70..=79 => tally.record("status", manager.status(id).map(|_| ())),
        80..=91 => tally.record(
            "call",
            manager.call(id, "ping", Value::Null).await.and_then(|v| {
                if v == json!(name(i)) {
                    Ok(())
                } else {
                    Err(Error::Config(format!("ping of {} answered {v}", name(i))))
                }
            }),
        ),
        _ => tally.record(
            "call",
            manager
                .call(&*name(i), "relay", Value::Null)
                .await
                .map(|_| ()),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storm_of_random_operations_keeps_every_invariant() {
    let detector = DeadlockDetector::start();
    let seed = seed();
    let mut rng = Rng(seed);
    let manager = PluginManager::default();
    let plugins = build_plugins(&mut rng);
    let ids: Vec<Uuid> = plugins
        .iter()
        .map(|(p, _)| manager.register_plugin(p.clone()).unwrap())
        .collect();
    let ids = Arc::new(ids);
    let tally = Arc::new(Mutex::new(Tally::default()));

    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let manager = manager.clone();
            let ids = Arc::clone(&ids);
            let tally = Arc::clone(&tally);
            let mut rng = Rng(seed ^ (t as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
            let ops = OPERATIONS / TASKS + usize::from(t < OPERATIONS % TASKS);
            tokio::spawn(async move {
                let mut local = Tally::default();
                for _ in 0..ops {
                    one_op(&manager, &ids, &mut rng, &mut local).await;
                }
                let mut all = tally.lock();
                for (k, v) in local.ok {
                    *all.ok.entry(k).or_default() += v;
                }
                for (k, v) in local.refused {
                    *all.refused.entry(k).or_default() += v;
                }
                all.unexpected.extend(local.unexpected);
            })
        })
        .collect();
    for t in watchdog(
        "the storm",
        Duration::from_secs(120),
        futures::future::join_all(tasks),
    )
    .await
    {
        t.expect("storm task panicked");
    }
    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.lock());
    let total: usize = tally
        .ok
        .values()
        .chain(tally.refused.values())
        .sum::<usize>()
        + tally.unexpected.len();
    eprintln!(
        "storm (seed {seed}): {total} operations in {elapsed:?}; ok {:?}; refused {:?}",
        tally.ok, tally.refused
    );
    assert_eq!(total, OPERATIONS);
    assert!(
        tally.unexpected.is_empty(),
        "seed {seed}: unexpected errors ({}):\n{}",
        tally.unexpected.len(),
        tally.unexpected[..tally.unexpected.len().min(20)].join("\n")
    );
    assert!(
        tally.ok.get("load").copied().unwrap_or(0) > 100,
        "{:?}",
        tally.ok
    );

    check_invariants(&manager, &ids, &plugins, seed);

    let report = watchdog(
        "unload_all",
        Duration::from_secs(60),
        manager.unload_all_plugins(),
    )
    .await;
    assert!(report.is_ok(), "seed {seed}: {report:?}");
    for (i, (_, p)) in plugins.iter().enumerate() {
        let state = manager.status(ids[i]).unwrap();
        assert!(state.is_idle(), "seed {seed}: {} is {state}", name(i));
        assert_eq!(
            p.counters.initializations(),
            p.counters.shutdowns(),
            "seed {seed}: {}",
            name(i)
        );
    }
    detector.finish();
}

fn check_invariants(
    manager: &PluginManager,
    ids: &[Uuid],
    plugins: &[(Arc<InProcessPlugin>, StormPlugin)],
    seed: u64,
) {
    let states: HashMap<String, PluginState> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (name(i), manager.status(*id).unwrap()))
        .collect();
    for (i, (_, p)) in plugins.iter().enumerate() {
        let me = name(i);
        let state = &states[&me];
        let (inits, stops) = (p.counters.initializations(), p.counters.shutdowns());
        assert!(
            matches!(
                state,
                PluginState::Registered | PluginState::Active | PluginState::Unloaded
            ),
            "seed {seed}: {me} ended {state}"
        );
        assert_eq!(
            state.is_active(),
            inits == stops + 1,
            "seed {seed}: {me} is {state} after {inits} initializations and {stops} shutdowns"
        );
        if !state.is_active() {
            assert_eq!(inits, stops, "seed {seed}: {me}");
        }
        assert_eq!(p.counters.violations(), 0, "seed {seed}: {me}");
        if state.is_active() {
            for d in &p.required {
                assert!(
                    states[d].is_active(),
                    "seed {seed}: {me} is active but its dependency {d} is {}",
                    states[d]
                );
            }
        }
    }
}
