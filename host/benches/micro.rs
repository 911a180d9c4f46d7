//! Criterion micro-benchmarks: dependency resolution at 1k and 10k plugins,
//! registry lookup (`get_plugin_by_id` and `with_plugin` vs a tokio RwLock
//! registry, uncontended), one durable state save.
//!
//! `cargo bench -p plugbay-host --bench micro` (part of `cargo xtask bench`); under
//! `cargo test --all-targets` criterion runs each benchmark once as a smoke test.

#[path = "scenarios/baselines.rs"]
#[allow(dead_code)] // Only the lookup baseline is used here.
mod baselines;
#[path = "scenarios/fixtures.rs"]
#[allow(dead_code)] // The library-copy helpers are for the scenarios.
mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use plugbay_host::{resolve, Node};
use plugbay_host::{Plugin, PluginStateManager};
use uuid::Uuid;

use fixtures::{BenchPlugin, Dag};

fn nodes(n: usize) -> Vec<Node> {
    Dag::random(n, 8, 7)
        .plugins(Duration::ZERO, 7)
        .iter()
        .map(|p| Node::from_info(Uuid::new_v4(), p.info()))
        .collect()
}

fn bench_resolve(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    for n in [1_000, 10_000] {
        let input = nodes(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| resolve(input))
        });
    }
    group.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn bench_lookup(c: &mut Criterion) {
    let rt = runtime();
    let plugins: Vec<(Uuid, Arc<dyn Plugin>)> = Dag::random(1_000, 8, 3)
        .plugins(Duration::ZERO, 3)
        .into_iter()
        .map(|p| (Uuid::new_v4(), p))
        .collect();
    let ids: Vec<Uuid> = plugins.iter().map(|(id, _)| *id).collect();
    let manager = plugbay_host::PluginManager::default();
    let manager_ids: Vec<Uuid> = plugins
        .iter()
        .map(|(_, p)| {
            manager
                .register_plugin(Arc::clone(p))
                .expect("unique names")
        })
        .collect();
    let baseline = baselines::TokioRwLockRegistry::new(plugins);
    let mut group = c.benchmark_group("lookup");
    let mut i = 0;
    group.bench_function("manager_get_plugin_by_id", |b| {
        b.iter(|| {
            i = (i + 1) % manager_ids.len();
            manager.get_plugin_by_id(manager_ids[i])
        })
    });
    group.bench_function("manager_with_plugin", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % manager_ids.len();
            manager.with_plugin(manager_ids[i], |p| async move { p.info().version.major })
        })
    });
    group.bench_function("tokio_rwlock_baseline", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % ids.len();
            baseline.get(ids[i])
        })
    });
    group.finish();
}

fn bench_state_save(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let states = rt
        .block_on(PluginStateManager::open_async(dir.path().join("state")))
        .expect("state dir");
    let plugin = BenchPlugin::with_state(
        "micro",
        serde_json::json!({ "counter": 1, "items": vec!["item"; 64] }),
    );
    c.bench_function("state_save_1kib", |b| {
        b.to_async(&rt).iter(|| states.save_state(&plugin))
    });
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_resolve, bench_lookup, bench_state_save
}
criterion_main!(micro);
