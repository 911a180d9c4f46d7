//! `tick_lateness_max_ms`, `tick_lateness_p99_ms`, `tick_lateness_max_ms_inline`:
//! how late a task ticking every 1 ms runs on the same multi-thread runtime
//! while at least 200 real plugin libraries are loaded.
//!
//! Each measurement is a fresh child process (nothing mapped yet):
//! - `tick-managed DIR WORK`: `PluginManager::load_directory`, cold (empty scan
//!   cache, probe on);
//! - `tick-inline DIR`: the baseline, a task on the runtime that opens the
//!   libraries itself with the blocking `open_library`, on the async worker thread.
//!
//! Lateness of a tick = when the ticking task actually ran minus the instant the
//! tick was scheduled for. Only ticks scheduled while the load runs count. Two
//! tickers run side by side:
//! - the reported one: a clock thread sleeps to absolute 1 ms deadlines
//!   (`std::thread::sleep`, ~0.05 ms precise) and hands each scheduled instant
//!   to a task on the runtime over a channel; the task records how late it got
//!   to run. This measures what the loader can spoil, how long a ready task
//!   waits for a worker thread, and not the timer's resolution;
//! - for context, a tokio `interval` of 1 ms (`MissedTickBehavior::Delay`,
//!   `tick()` returns the scheduled instant). tokio's timer wheel has 1 ms
//!   resolution and rounds deadlines up, so even an idle runtime shows up to
//!   ~2 ms of lateness there; the idle floor of both is reported.

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
    let rounds = if opts.quick { 1 } else { 5 };
    let root = tempfile::tempdir_in(&opts.work).map_err(|e| format!("temp dir: {e}"))?;
    let dir = root.path().join("plugins");
    make_copies(&opts.plugin, &dir, n)?;

    let (mut managed, mut inline, mut idle) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let work = root.path().join(format!("work{round}"));
        let m = child::run("tick-managed", &[dir.clone().into(), work.into()])?;
        expect_loaded(&m, n, "load_directory")?;
        managed.push(m);
        let i = child::run("tick-inline", &[dir.clone().into()])?;
        expect_loaded(&i, n, "inline open")?;
        inline.push(i);
        idle.push(child::run("tick-idle", &[])?);
    }
    // The median over rounds of one per-run figure.
    let med = |runs: &[Value], key: &str| -> Result<f64, String> {
        let v = runs
            .iter()
            .map(|r| child::number(r, key))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(median(&v))
    };
    report.add(
        "tick_lateness_max_ms",
        med(&managed, "max_ms")?,
        Goal::AtMost(2.0),
        format!(
            "1 ms ticks during a cold load_directory of {n} libraries ({:.0} ms, {:.0} ticks), median of {rounds} runs of the per-run max; tokio interval max {:.2} ms",
            med(&managed, "load_ms")?,
            med(&managed, "ticks")?,
            med(&managed, "interval_max_ms")?
        ),
    );
    report.add(
        "tick_lateness_p99_ms",
        med(&managed, "p99_ms")?,
        Goal::AtMost(0.5),
        format!(
            "p50 {:.3} ms; tokio interval p99 {:.2} ms; idle runtime: p99 {:.3} ms, max {:.3} ms (tokio interval p99 {:.2} ms)",
            med(&managed, "p50_ms")?,
            med(&managed, "interval_p99_ms")?,
            med(&idle, "p99_ms")?,
            med(&idle, "max_ms")?,
            med(&idle, "interval_p99_ms")?
        ),
    );
    report.add(
        "tick_lateness_max_ms_inline",
        med(&inline, "max_ms")?,
        Goal::None,
        format!(
            "baseline: open_library on an async worker, one after the other ({:.0} ms); p99 {:.3} ms; tokio interval max {:.2} ms",
            med(&inline, "load_ms")?,
            med(&inline, "p99_ms")?,
            med(&inline, "interval_max_ms")?
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
                plugbay_host::internals::open_library(path).map_err(|e| e.to_string())?;
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
    idle_for(Duration::from_millis(200))
}

/// The ticker alone for `window` (see [`idle_phase`]).
pub fn idle_for(window: Duration) -> Result<Value, String> {
    measure(async move {
        tokio::time::sleep(window).await;
        Ok(0)
    })
}

/// Runs `load` on a fresh multi-thread runtime (one worker per core) next to
/// the two 1 ms tickers and returns the lateness of the ticks scheduled while it
/// ran. `load` returns how many libraries it loaded.
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
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let clock = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || clock_thread(stop, tx))
        };
        let clocked = tokio::spawn(clocked_ticker(Arc::clone(&recording), rx));
        let interval = tokio::spawn(interval_ticker(Arc::clone(&recording), Arc::clone(&stop)));
        // Let the tickers settle into their rhythm first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        recording.store(true, Ordering::SeqCst);
        let start = Instant::now();
        let loaded = load.await;
        let load_ms = start.elapsed().as_secs_f64() * 1e3;
        recording.store(false, Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        let late = clocked.await.map_err(|e| format!("ticker task: {e}"))?;
        let interval_late = interval.await.map_err(|e| format!("ticker task: {e}"))?;
        clock
            .join()
            .map_err(|_| "the clock thread panicked".to_owned())?;
        let loaded = loaded?;
        Ok(json!({
            "loaded": loaded,
            "load_ms": load_ms,
            "ticks": late.len(),
            "max_ms": max(&late),
            "p99_ms": percentile(&late, 0.99),
            "p50_ms": percentile(&late, 0.5),
            "interval_max_ms": max(&interval_late),
            "interval_p99_ms": percentile(&interval_late, 0.99),
        }))
    })
}

/// Sends the scheduled instant of every 1 ms tick until `stop`; sleeps to
/// absolute deadlines, so its own lateness never accumulates.
fn clock_thread(stop: Arc<AtomicBool>, tx: tokio::sync::mpsc::UnboundedSender<Instant>) {
    let period = Duration::from_millis(1);
    let mut next = Instant::now() + period;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        if tx.send(next).is_err() {
            return;
        }
        next += period;
        // After a long stall, skip the missed ticks instead of bursting.
        let now = Instant::now();
        if next + period < now {
            next = now + period;
        }
    }
}

/// The runtime side of the clock: lateness (ms) of each tick scheduled while
/// `recording`, measured when this task got to run.
async fn clocked_ticker(
    recording: Arc<AtomicBool>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Instant>,
) -> Vec<f64> {
    let mut late = Vec::with_capacity(4096);
    while let Some(scheduled) = rx.recv().await {
        let ran = Instant::now();
        if recording.load(Ordering::SeqCst) {
            late.push(ran.saturating_duration_since(scheduled).as_secs_f64() * 1e3);
        }
    }
    late
}

/// A tokio interval of 1 ms until `stop`; lateness (ms) of each tick scheduled
/// while `recording`.
async fn interval_ticker(recording: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Vec<f64> {
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
