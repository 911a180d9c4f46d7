//! `scale_per_plugin_10k_vs_1k`: the cost per plugin of register + resolve +
//! `load_all_plugins` at 10,000 in-process plugins vs at 1,000 (random DAG of
//! depth 8, `initialize` returning at once). 1.0 means perfectly linear.
//!
//! `scale_cpu_per_plugin_10k_vs_1k`: the same rounds, counting the CPU time
//! the process spent instead of wall time. On a machine busy with other work a
//! 10k round (tens of ms) is always preempted while many 1k rounds (under a
//! scheduler slice) are not, which inflates the wall-time ratio; CPU time is not
//! inflated that way. (It adds up both runtime workers during `load_all`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use plugbay_host::Plugin;
use plugbay_host::PluginManager;

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
    let rounds = if opts.quick { 1 } else { 5 };
    // A small round lasts ~1/10 of a large one, so a burst of load from another
    // process skews it far more: take several small rounds per large one (same
    // total time on each side), interleaved, and the median of each side.
    let small_per_large = if opts.quick { 1 } else { 5 };
    let small_dag = Dag::random(small, 8, 1);
    let large_dag = Dag::random(large, 8, 2);
    round(&small_dag, 11).await?; // warm-up
    round(&large_dag, 12).await?;
    let mut per_small: Vec<[f64; 3]> = Vec::new();
    let mut per_large: Vec<[f64; 3]> = Vec::new();
    let (mut cpu_small, mut cpu_large) = (Vec::new(), Vec::new());
    let per_plugin = |phases: [f64; 3], n: usize| phases.map(|t| t / n as f64);
    for r in 0..rounds as u64 {
        for k in 0..small_per_large as u64 {
            let (wall, cpu) = round(&small_dag, r * 100 + k).await?;
            per_small.push(per_plugin(wall, small));
            cpu_small.extend(cpu.map(|c| c / small as f64));
        }
        let (wall, cpu) = round(&large_dag, r).await?;
        per_large.push(per_plugin(wall, large));
        cpu_large.extend(cpu.map(|c| c / large as f64));
    }
    let total = |v: &[[f64; 3]]| median(&v.iter().map(|p| p.iter().sum()).collect::<Vec<_>>());
    let phase = |v: &[[f64; 3]], i: usize| median(&v.iter().map(|p| p[i]).collect::<Vec<_>>());
    let phases = |v: &[[f64; 3]]| {
        format!(
            "register {:.1} + resolve {:.1} + load_all {:.1}",
            phase(v, 0) * 1e6,
            phase(v, 1) * 1e6,
            phase(v, 2) * 1e6
        )
    };
    let (s, l) = (total(&per_small), total(&per_large));
    report.add(
        "scale_per_plugin_10k_vs_1k",
        l / s,
        Goal::AtMost(1.2),
        format!(
            "register+resolve+load_all per plugin, median of {} / {} rounds: {:.1} us at {large} ({}), {:.1} us at {small} ({})",
            per_large.len(),
            per_small.len(),
            l * 1e6,
            phases(&per_large),
            s * 1e6,
            phases(&per_small)
        ),
    );
    if let (false, false) = (cpu_small.is_empty(), cpu_large.is_empty()) {
        let (s, l) = (median(&cpu_small), median(&cpu_large));
        report.add(
            "scale_cpu_per_plugin_10k_vs_1k",
            l / s,
            Goal::AtMost(1.2),
            format!(
                "the same rounds in process CPU time per plugin: {:.1} us at {large}, {:.1} us at {small}",
                l * 1e6,
                s * 1e6
            ),
        );
    }
    Ok(())
}

/// The CPU time this process has used so far (user + system), where the
/// platform reports it.
#[cfg(unix)]
fn process_cpu() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `getrusage` fills the `rusage` it is given and touches nothing else;
    // it is read only if the call succeeded.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

#[cfg(not(unix))]
fn process_cpu() -> Option<Duration> {
    None
}

/// Register + resolve + load all of `dag` in a fresh manager; seconds spent
/// in each of the three phases, and the process CPU seconds of all three.
async fn round(dag: &Dag, seed: u64) -> Result<([f64; 3], Option<f64>), String> {
    let plugins: Vec<Arc<dyn Plugin>> = dag.plugins(Duration::ZERO, seed);
    let manager = PluginManager::default();
    let cpu_start = process_cpu();
    let start = Instant::now();
    for p in plugins {
        manager.register_plugin(p).map_err(|e| e.to_string())?;
    }
    let registered = Instant::now();
    let resolution = manager.resolve_dependencies();
    let resolved = Instant::now();
    if !resolution.blocked.is_empty() {
        return Err(format!("{} plugins blocked", resolution.blocked.len()));
    }
    let outcome = manager.load_all_plugins().await;
    let loaded = Instant::now();
    let cpu = cpu_start
        .zip(process_cpu())
        .map(|(from, to)| (to - from).as_secs_f64());
    if let Some(f) = outcome.failures().next() {
        return Err(format!(
            "load_all_plugins: {} failed: {:?}",
            f.name, f.result
        ));
    }
    // Dropping the manager and the plan is not timed.
    drop(manager);
    drop(resolution);
    Ok((
        [
            (registered - start).as_secs_f64(),
            (resolved - registered).as_secs_f64(),
            (loaded - resolved).as_secs_f64(),
        ],
        cpu,
    ))
}
