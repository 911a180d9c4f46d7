//! `tick_lateness_max_ms`, `tick_lateness_p99_ms`, `tick_lateness_max_ms_inline`:
//! how late a task ticking every 1 ms runs on the same multi-thread runtime
//! while at least 200 real plugin libraries are loaded.
//!
//! Each measurement is a fresh child process (nothing mapped yet):
//! - `tick-managed DIR WORK`: `PluginManager::load_directory` (the admission
//!   pipeline: cold scan cache, probe on);
//! - `tick-inline DIR`: the baseline, a task on the runtime that opens the
//!   libraries itself with the blocking `open_library`, on the async worker thread.
//!
//! Lateness of a tick = when the ticker task actually ran minus the instant the
//! tick was scheduled for (`Interval::tick` returns the scheduled instant;
//! `MissedTickBehavior::Delay` keeps a late tick from being followed by a burst).
//! Only ticks scheduled while the load runs count.

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;

use crate::child;
use crate::fixtures::{libraries_in, make_copies};
use crate::report::{Goal, Report};
use crate::stats::{max, median, percentile};
use crate::Options;

/// Measures and reports the metrics.
pub fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let n = if opts.quick { 20 } else { 200 };
    let rounds = if opts.quick { 1 } else { 3 };
    let root = tempfile::tempdir_in(&opts.work).map_err(|e| format!("temp dir: {e}"))?;
    let dir = root.path().join("plugins");
    make_copies(&opts.plugin, &dir, n)?;

    let (mut max_ms, mut p99_ms, mut inline_max_ms, mut inline_p99_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ticks, mut load_ms, mut inline_load_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut idle_max_ms, mut idle_p99_ms) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let work = root.path().join(format!("work{round}"));
        let m = child::run("tick-managed", &[dir.clone().into(), work.into()])?;
        expect_loaded(&m, n, "load_directory")?;
        max_ms.push(child::number(&m, "max_ms")?);
        p99_ms.push(child::number(&m, "p99_ms")?);
        ticks.push(child::number(&m, "ticks")?);
        load_ms.push(child::number(&m, "load_ms")?);
        let i = child::run("tick-inline", &[dir.clone().into()])?;
        expect_loaded(&i, n, "inline open")?;
        inline_max_ms.push(child::number(&i, "max_ms")?);
        inline_p99_ms.push(child::number(&i, "p99_ms")?);
        inline_load_ms.push(child::number(&i, "load_ms")?);
        let idle = child::run("tick-idle", &[])?;
        idle_max_ms.push(child::number(&idle, "max_ms")?);
        idle_p99_ms.push(child::number(&idle, "p99_ms")?);
    }
    report.add(
        "tick_lateness_max_ms",
        median(&max_ms),
        Goal::AtMost(5.0),
        format!(
            "1 ms ticker during load_directory of {n} libraries ({:.0} ms, {:.0} ticks), median of {rounds} runs of the per-run max",
            median(&load_ms),
            median(&ticks)
        ),
    );
    report.add(
        "tick_lateness_p99_ms",
        median(&p99_ms),
        Goal::AtMost(1.0),
        format!(
            "median of {rounds} runs of the per-run p99; idle runtime (no load): p99 {:.2} ms, max {:.2} ms",
            median(&idle_p99_ms),
            median(&idle_max_ms)
        ),
    );
    report.add(
        "tick_lateness_max_ms_inline",
        median(&inline_max_ms),
        Goal::None,
        format!(
            "baseline: libraries opened on the async worker ({:.0} ms), p99 {:.2} ms",
            median(&inline_load_ms),
            median(&inline_p99_ms)
        ),
    );
    Ok(())
}

fn expect_loaded(result: &Value, n: usize, what: &str) -> Result<(), String> {
    let loaded = child::number(result, "loaded")? as usize;
    if loaded == n {
        Ok(())
    } else {
        Err(format!("{what} loaded {loaded} of {n} libraries: {result}"))
    }
}

/// Child phase `tick-inline DIR`: the baseline loader opens every library on an
/// async worker thread, one after the other, as naive async code would.
pub fn inline_phase(args: &[OsString]) -> Result<Value, String> {
    let dir = dir_arg(args, "tick-inline")?;
    let files = libraries_in(&dir)?;
    measure(async move {
        // A task of its own, so it runs on a worker thread, not on block_on's.
        tokio::spawn(async move {
            let mut loaded = 0;
            for path in &files {
                host::open_library(path).map_err(|e| e.to_string())?;
                loaded += 1;
            }
            Ok(loaded)
        })
        .await
        .map_err(|e| format!("inline loader task: {e}"))?
    })
}

/// Child phase `tick-idle`: the ticker alone for 200 ms, the floor the timer
/// itself sets (its resolution is 1 ms).
pub fn idle_phase() -> Result<Value, String> {
    measure(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(0)
    })
}

/// Runs `load` on a fresh multi-thread runtime (one worker per core) next to a
/// 1 ms ticker and returns the lateness of the ticks scheduled while it ran.
/// `load` returns how many libraries it loaded.
pub fn measure<F>(load: F) -> Result<Value, String>
where
    F: Future<Output = Result<usize, String>> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let recording = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn(ticker(Arc::clone(&recording), Arc::clone(&stop)));
        // Let the ticker settle into its rhythm first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        recording.store(true, Ordering::SeqCst);
        let start = Instant::now();
        let loaded = load.await;
        let load_ms = start.elapsed().as_secs_f64() * 1e3;
        recording.store(false, Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        let late = ticker.await.map_err(|e| format!("ticker task: {e}"))?;
        let loaded = loaded?;
        Ok(json!({
            "loaded": loaded,
            "load_ms": load_ms,
            "ticks": late.len(),
            "max_ms": max(&late),
            "p99_ms": percentile(&late, 0.99),
        }))
    })
}

/// Ticks every millisecond until `stop`; returns the lateness (ms) of each tick
/// scheduled while `recording` was set.
async fn ticker(recording: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Vec<f64> {
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut late = Vec::with_capacity(4096);
    while !stop.load(Ordering::SeqCst) {
        let scheduled = interval.tick().await;
        if recording.load(Ordering::SeqCst) {
            late.push(scheduled.elapsed().as_secs_f64() * 1e3);
        }
    }
    late
}

/// The plugin directory argument shared by the tick phases.
pub fn dir_arg(args: &[OsString], phase: &str) -> Result<PathBuf, String> {
    args.first()
        .map(PathBuf::from)
        .ok_or_else(|| format!("{phase} needs DIR"))
}
