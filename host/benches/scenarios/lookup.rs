//! `lookup_speedup_vs_tokio_rwlock`: throughput of `get_plugin_by_id` and
//! `with_plugin` (alternating) from two tasks while two other tasks churn plugin
//! lifecycles, vs the same workload on a `tokio::sync::RwLock<HashMap>` registry
//! ([`crate::baselines::TokioRwLockRegistry`]).
//!
//! Fairness: both sides churn at the same paced rate ([`CHURN_PER_TICK`] lifecycle
//! operations per 1 ms tick per churner; achieved rates are reported). On the
//! manager a churn operation is `unload_plugin` / `load_plugin`; on the baseline
//! it is the plugin's `shutdown` / `initialize` plus one write of the registry
//! (the state change), its only write path. Lookup loops on both sides yield to
//! the scheduler every [`BATCH`] operations. The no-churn throughput of both is
//! reported alongside.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugbay_host::PluginManager;
use plugbay_host::{Plugin, PluginContext};
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use crate::baselines::TokioRwLockRegistry;
use crate::fixtures::BenchPlugin;
use crate::report::{Goal, Report};
use crate::stats::median;
use crate::Options;

/// Registered plugins looked up round-robin.
const PLUGINS: usize = 64;
/// Tasks doing lookups.
const LOOKERS: usize = 2;
/// Tasks churning lifecycles (each on its own plugin).
const CHURNERS: usize = 2;
/// Lifecycle operations per churner per 1 ms tick.
pub const CHURN_PER_TICK: usize = 4;
/// Lookups between two yields.
pub const BATCH: usize = 256;

/// Throughputs of one round.
#[derive(Clone, Copy)]
struct Rates {
    lookups_per_s: f64,
    churn_per_s: f64,
}

/// Measures and reports the metric.
pub async fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let window = Duration::from_millis(if opts.quick { 50 } else { 1_000 });
    let rounds = if opts.quick { 1 } else { 3 };
    // Warm-up.
    manager_round(window / 4, true).await?;
    baseline_round(window / 4, true).await?;
    let (mut new, mut old, mut new_quiet, mut old_quiet) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        new.push(manager_round(window, true).await?);
        old.push(baseline_round(window, true).await?);
        new_quiet.push(manager_round(window, false).await?);
        old_quiet.push(baseline_round(window, false).await?);
    }
    let lookups = |v: &[Rates]| median(&v.iter().map(|r| r.lookups_per_s).collect::<Vec<_>>());
    let churn = |v: &[Rates]| median(&v.iter().map(|r| r.churn_per_s).collect::<Vec<_>>());
    report.add(
        "lookup_speedup_vs_tokio_rwlock",
        lookups(&new) / lookups(&old),
        Goal::AtLeast(5.0),
        format!(
            "{LOOKERS} lookup tasks, {CHURNERS} churners, median of {rounds} x {} ms: manager {:.2} M/s (churn {:.0}/s), tokio RwLock {:.2} M/s (churn {:.0}/s); without churn {:.2} vs {:.2} M/s",
            window.as_millis(),
            lookups(&new) / 1e6,
            churn(&new),
            lookups(&old) / 1e6,
            churn(&old),
            lookups(&new_quiet) / 1e6,
            lookups(&old_quiet) / 1e6
        ),
    );
    Ok(())
}

fn plugins() -> Vec<Arc<dyn Plugin>> {
    (0..PLUGINS)
        .map(|i| {
            Arc::new(BenchPlugin::new(&format!("l{i:03}"), &[], Duration::ZERO)) as Arc<dyn Plugin>
        })
        .collect()
}

/// Runs `lookers` and `churners` (already spawned) for `window`, then stops them.
async fn collect(
    window: Duration,
    stop: Arc<AtomicBool>,
    lookers: Vec<tokio::task::JoinHandle<Result<u64, String>>>,
    churners: Vec<tokio::task::JoinHandle<Result<u64, String>>>,
) -> Result<Rates, String> {
    let start = Instant::now();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::SeqCst);
    let mut looked = 0;
    for l in lookers {
        looked += l.await.map_err(|e| e.to_string())??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut churned = 0;
    for c in churners {
        churned += c.await.map_err(|e| e.to_string())??;
    }
    Ok(Rates {
        lookups_per_s: looked as f64 / elapsed,
        churn_per_s: churned as f64 / elapsed,
    })
}

/// Paces `op` at [`CHURN_PER_TICK`] per 1 ms tick until `stop`; returns the count.
async fn churn<F, Fut>(stop: Arc<AtomicBool>, mut op: F) -> Result<u64, String>
where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut count = 0u64;
    let mut up = true;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        for _ in 0..CHURN_PER_TICK {
            up = !up;
            op(up).await?;
            count += 1;
        }
    }
    Ok(count)
}

async fn manager_round(window: Duration, churning: bool) -> Result<Rates, String> {
    let manager = PluginManager::default();
    let mut ids = Vec::new();
    for p in plugins() {
        ids.push(manager.register_plugin(p).map_err(|e| e.to_string())?);
    }
    if let Some(f) = manager.load_all_plugins().await.failures().next() {
        return Err(format!(
            "load_all_plugins: {} failed: {:?}",
            f.name, f.result
        ));
    }
    let ids: Arc<[Uuid]> = ids.into();
    let stop = Arc::new(AtomicBool::new(false));
    let churners = if churning {
        (0..CHURNERS)
            .map(|c| {
                let (m, id, stop) = (manager.clone(), ids[c], Arc::clone(&stop));
                tokio::spawn(churn(stop, move |up| {
                    let m = m.clone();
                    async move {
                        let r = if up {
                            m.load_plugin(id).await
                        } else {
                            m.unload_plugin(id).await
                        };
                        r.map_err(|e| e.to_string())
                    }
                }))
            })
            .collect()
    } else {
        Vec::new()
    };
    let lookers = (0..LOOKERS)
        .map(|k| {
            let (m, ids, stop) = (manager.clone(), Arc::clone(&ids), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut ops = 0u64;
                let mut j = k;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..BATCH {
                        let id = ids[j % ids.len()];
                        j += 1;
                        let found = if j % 2 == 0 {
                            m.get_plugin_by_id(id).map(|p| p.info().version.major)
                        } else {
                            m.with_plugin(id, |p| async move { p.info().version.major })
                                .await
                                .ok()
                        };
                        if std::hint::black_box(found).is_none() {
                            return Err(format!("plugin {id} not found"));
                        }
                        ops += 1;
                    }
                    tokio::task::yield_now().await;
                }
                Ok(ops)
            })
        })
        .collect();
    collect(window, stop, lookers, churners).await
}

async fn baseline_round(window: Duration, churning: bool) -> Result<Rates, String> {
    let entries: Vec<(Uuid, Arc<dyn Plugin>)> =
        plugins().into_iter().map(|p| (Uuid::new_v4(), p)).collect();
    let ids: Arc<[Uuid]> = entries.iter().map(|(id, _)| *id).collect();
    let churned: Vec<(Uuid, Arc<dyn Plugin>)> = entries[..CHURNERS].to_vec();
    let registry = Arc::new(TokioRwLockRegistry::new(entries));
    let stop = Arc::new(AtomicBool::new(false));
    let churners = if churning {
        churned
            .into_iter()
            .map(|(id, plugin)| {
                let (reg, stop) = (Arc::clone(&registry), Arc::clone(&stop));
                tokio::spawn(churn(stop, move |up| {
                    let (reg, plugin) = (Arc::clone(&reg), Arc::clone(&plugin));
                    async move {
                        let ctx = PluginContext::detached(&plugin.info().name);
                        let r = if up {
                            plugin.initialize(ctx).await
                        } else {
                            plugin.shutdown(ctx).await
                        };
                        r.map_err(|e| e.to_string())?;
                        reg.replace(id, plugin).await;
                        Ok(())
                    }
                }))
            })
            .collect()
    } else {
        Vec::new()
    };
    let lookers = (0..LOOKERS)
        .map(|k| {
            let (reg, ids, stop) = (Arc::clone(&registry), Arc::clone(&ids), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut ops = 0u64;
                let mut j = k;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..BATCH {
                        let id = ids[j % ids.len()];
                        j += 1;
                        let found = if j % 2 == 0 {
                            reg.get(id).await.map(|p| p.info().version.major)
                        } else {
                            // `with_plugin` on the baseline: look up, then run the closure.
                            match reg.get(id).await {
                                Some(p) => Some(async move { p.info().version.major }.await),
                                None => None,
                            }
                        };
                        if std::hint::black_box(found).is_none() {
                            return Err(format!("plugin {id} not found"));
                        }
                        ops += 1;
                    }
                    tokio::task::yield_now().await;
                }
                Ok(ops)
            })
        })
        .collect();
    collect(window, stop, lookers, churners).await
}
