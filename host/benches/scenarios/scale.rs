//! `scale_per_plugin_10k_vs_1k`: the cost per plugin of register + resolve +
//! `load_all_plugins` at 10,000 in-process plugins vs at 1,000 (random DAG of
//! depth 8, `initialize` returning at once). 1.0 means perfectly linear.

use std::sync::Arc;
use std::time::{Duration, Instant};

use host::manager::PluginManager;
use host::Plugin;

use crate::fixtures::Dag;
use crate::report::{Goal, Report};
use crate::stats::median;
use crate::Options;

/// Measures and reports the metric.
pub async fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let (small, large) = if opts.quick {
        (100, 1_000)
    } else {
        (1_000, 10_000)
    };
    let rounds = if opts.quick { 1 } else { 3 };
    let small_dag = Dag::random(small, 8, 1);
    let large_dag = Dag::random(large, 8, 2);
    round(&small_dag, 11).await?; // warm-up
    let mut per_small = Vec::new();
    let mut per_large = Vec::new();
    for r in 0..rounds as u64 {
        per_small.push(round(&small_dag, r).await? / small as f64);
        per_large.push(round(&large_dag, r).await? / large as f64);
    }
    let (s, l) = (median(&per_small), median(&per_large));
    report.add(
        "scale_per_plugin_10k_vs_1k",
        l / s,
        Goal::AtMost(1.2),
        format!(
            "register+resolve+load_all per plugin, median of {rounds}: {:.1} us at {large}, {:.1} us at {small}",
            l * 1e6,
            s * 1e6
        ),
    );
    Ok(())
}

/// Register + resolve + load all of `dag` in a fresh manager; seconds.
async fn round(dag: &Dag, seed: u64) -> Result<f64, String> {
    let plugins: Vec<Arc<dyn Plugin>> = dag.plugins(Duration::ZERO, seed);
    let manager = PluginManager::default();
    let start = Instant::now();
    for p in plugins {
        manager.register_plugin(p).map_err(|e| e.to_string())?;
    }
    let resolution = manager.resolve_dependencies();
    if !resolution.blocked.is_empty() {
        return Err(format!("{} plugins blocked", resolution.blocked.len()));
    }
    let outcome = manager.load_all_plugins().await;
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(f) = outcome.failures().next() {
        return Err(format!(
            "load_all_plugins: {} failed: {:?}",
            f.name, f.result
        ));
    }
    // Dropping the manager is not timed.
    drop(manager);
    Ok(elapsed)
}
