//! `concurrent_init_speedup_vs_global_lock`: plugins whose `initialize` awaits
//! 10 ms, loaded by `PluginManager::load_all_plugins` vs the naive "before"
//! manager that holds one global lock across every `initialize().await`
//! ([`crate::baselines::GlobalLockManager`]). `concurrent_init_vs_ideal`: the
//! same `load_all_plugins` against the ideal, one 10 ms initialize.
//! `concurrent_init_vs_bare_sleep`: the same against what one such initialize
//! takes on this runtime with no manager at all (a bare `tokio::time::sleep` of
//! 10 ms, measured in the same run): tokio's timer rounds every deadline up to
//! its next millisecond tick, so even a single plugin cannot reach 1.0 of the
//! ideal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plugbay_host::Plugin;

use crate::baselines::GlobalLockManager;
use crate::fixtures::{time_load_all, BenchPlugin};
use crate::report::{Goal, Report};
use crate::stats::median;
use crate::Options;

const INIT: Duration = Duration::from_millis(10);

/// Measures and reports the metric.
pub async fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let n = if opts.quick { 16 } else { 256 };
    let rounds = if opts.quick { 1 } else { 3 };
    // Warm-up of both paths (allocator, timer wheel, task pools).
    manager_round(8).await?;
    baseline_round(8).await?;
    let mut new = Vec::new();
    let mut old = Vec::new();
    for _ in 0..rounds {
        new.push(manager_round(n).await?);
        old.push(baseline_round(n).await?);
    }
    let bare = bare_sleep(if opts.quick { 3 } else { 9 }).await;
    let (new, old) = (median(&new), median(&old));
    report.add(
        "concurrent_init_speedup_vs_global_lock",
        old / new,
        Goal::AtLeast(100.0),
        format!(
            "{n} plugins x 10 ms initialize, median of {rounds}: load_all_plugins (max_parallel {n}) {:.1} ms, global lock {:.0} ms",
            new * 1e3,
            old * 1e3
        ),
    );
    report.add(
        "concurrent_init_vs_ideal",
        new / INIT.as_secs_f64(),
        Goal::AtMost(1.1),
        format!(
            "the same load_all_plugins of {n} independent plugins: {:.1} ms vs one 10 ms initialize",
            new * 1e3
        ),
    );
    report.add(
        "concurrent_init_vs_bare_sleep",
        new / bare,
        Goal::None,
        format!(
            "the same {:.1} ms vs a bare 10 ms tokio sleep on the same runtime, {:.2} ms (median); \
             the timer's floor for concurrent_init_vs_ideal is {:.2}",
            new * 1e3,
            bare * 1e3,
            bare / INIT.as_secs_f64()
        ),
    );
    Ok(())
}

/// What one 10 ms initialize costs with no manager: the median wall time of
/// `rounds` bare `tokio::time::sleep(INIT)` on this runtime; seconds.
async fn bare_sleep(rounds: usize) -> f64 {
    let mut walls = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        tokio::time::sleep(INIT).await;
        walls.push(start.elapsed().as_secs_f64());
    }
    median(&walls)
}

fn plugins(n: usize) -> Vec<Arc<dyn Plugin>> {
    (0..n)
        .map(|i| Arc::new(BenchPlugin::new(&format!("c{i:04}"), &[], INIT)) as Arc<dyn Plugin>)
        .collect()
}

/// One `load_all_plugins` over `n` fresh plugins; seconds.
async fn manager_round(n: usize) -> Result<f64, String> {
    time_load_all(plugins(n), n).await
}

/// The same with the global-lock baseline; seconds.
async fn baseline_round(n: usize) -> Result<f64, String> {
    let manager = GlobalLockManager::new();
    for p in plugins(n) {
        manager.register(p).await;
    }
    let start = Instant::now();
    manager.load_all_plugins().await?;
    Ok(start.elapsed().as_secs_f64())
}
