//! `reload_unavailable_p99_ms`, `reload_rss_growth_kb`: hot reload under load.
//!
//! The release `hello` sample runs in a manager (probe on, as in production)
//! while 8 tasks call its `greet` continuously. It is reloaded again and again,
//! each time from new bytes (the sample with a few bytes appended: another
//! content id, so another shadow copy and another mapped image, as a rebuilt
//! plugin would be). Unavailability: for each reload, the longest any call took
//! that finished while the reload ran (calls arriving during the swap wait for
//! it); the key is the p99 of those maxima over all reloads. Memory: resident
//! set size before the first and after the last reload (Linux: `/proc/self/status`),
//! divided by the number of reloads; every reload keeps the previous image
//! mapped (libraries are never unloaded) and the previous plugin object alive.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugbay_host::{ManagerConfig, PluginManager, ReloadOptions, SafetyConfig};
use serde_json::json;

use crate::report::{Goal, Report};
use crate::stats::{median, percentile};
use crate::Options;

const CALLERS: usize = 8;

/// Measures and reports the metrics.
pub async fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let reloads = if opts.quick { 3 } else { 60 };
    let work = tempfile::tempdir_in(&opts.work).map_err(|e| e.to_string())?;
    let dir = work.path().join("plugins");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let sample =
        std::fs::read(&opts.plugin).map_err(|e| format!("read {}: {e}", opts.plugin.display()))?;
    let library = dir.join(
        opts.plugin
            .file_name()
            .ok_or("the sample has no file name")?,
    );
    write_variant(&library, &sample, 0)?;
    let safety = SafetyConfig::builder()
        .work_dir(work.path().join("host-work"))
        .probe_program(env!("CARGO_BIN_EXE_plugin-probe"), Vec::new())
        .build()
        .map_err(|e| e.to_string())?;
    let manager = PluginManager::new(
        ManagerConfig::builder()
            .safety(safety)
            .build()
            .map_err(|e| e.to_string())?,
    );
    let loaded = manager
        .load_directory(&dir)
        .await
        .map_err(|e| e.to_string())?;
    if !loaded.failed.is_empty() || loaded.registered.len() != 1 {
        return Err(format!("the sample did not load: {:?}", loaded.failed));
    }
    let name = loaded.registered[0].name.clone();
    if !manager.load_all_plugins().await.is_ok() {
        return Err("the sample did not start".into());
    }

    let stop = Arc::new(AtomicBool::new(false));
    // The longest call (ns) that finished since the last reset.
    let longest = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (manager, stop, longest, failures, name) = (
                manager.clone(),
                Arc::clone(&stop),
                Arc::clone(&longest),
                Arc::clone(&failures),
                name.clone(),
            );
            tokio::spawn(async move {
                let args = json!({ "name": "bench" });
                while !stop.load(SeqCst) {
                    let started = Instant::now();
                    if manager
                        .call(name.as_str(), "greet", args.clone())
                        .await
                        .is_err()
                    {
                        failures.fetch_add(1, SeqCst);
                    }
                    longest.fetch_max(started.elapsed().as_nanos() as u64, SeqCst);
                }
            })
        })
        .collect();
    // Warm-up: the callers run, one reload maps the allocator's first arenas.
    tokio::time::sleep(Duration::from_millis(50)).await;
    reload(&manager, &name, &library, &sample, 1).await?;
    let rss_before = rss_kb();
    let (mut unavailable_ms, mut held_ms, mut took) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..reloads {
        longest.store(0, SeqCst);
        let started = Instant::now();
        let held = reload(&manager, &name, &library, &sample, i + 2).await?;
        took.push(started.elapsed());
        unavailable_ms.push(longest.load(SeqCst) as f64 / 1e6);
        held_ms.push(held.as_secs_f64() * 1e3);
        // Let the callers run between reloads, as a watched directory would.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rss_after = rss_kb();
    // Baseline: the longest call in windows as long as the reloads, without one.
    let mut baseline_ms = Vec::new();
    for window in &took {
        longest.store(0, SeqCst);
        tokio::time::sleep(*window).await;
        baseline_ms.push(longest.load(SeqCst) as f64 / 1e6);
    }
    let took_ms: Vec<f64> = took.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    stop.store(true, SeqCst);
    for caller in callers {
        caller.await.map_err(|e| e.to_string())?;
    }
    let failed = failures.load(SeqCst);
    let retained = manager.retained_images();
    let _ = manager.unload_all_plugins().await;
    if failed > 0 {
        return Err(format!("{failed} calls failed during the reloads"));
    }
    report.add(
        "reload_unavailable_p99_ms",
        percentile(&unavailable_ms, 0.99),
        Goal::None,
        format!(
            "{reloads} reloads of the release `hello` under {CALLERS} calling tasks, probe on; \
             per reload the longest call (median {:.2}); gate held p99 {:.2} ms (median {:.2}); \
             a reload takes {:.1} ms (median, admission included); baseline: longest call in \
             as long a window without a reload p99 {:.2} ms (median {:.2}); 0 failed calls",
            median(&unavailable_ms),
            percentile(&held_ms, 0.99),
            median(&held_ms),
            median(&took_ms),
            percentile(&baseline_ms, 0.99),
            median(&baseline_ms),
        ),
    );
    match (rss_before, rss_after) {
        (Some(before), Some(after)) => report.add(
            "reload_rss_growth_kb",
            (after as f64 - before as f64) / reloads as f64,
            Goal::None,
            format!(
                "RSS {before} -> {after} kB over {reloads} reloads, each mapping new code \
                 ({retained} images retained in total)"
            ),
        ),
        _ => eprintln!("reload: no /proc/self/status here; reload_rss_growth_kb skipped"),
    }
    Ok(())
}

/// Writes the sample with `variant` appended (new bytes, same plugin) over
/// `library` (a temporary file renamed into place, as a build would).
fn write_variant(library: &Path, sample: &[u8], variant: usize) -> Result<(), String> {
    let staged = library.with_extension("new");
    let mut bytes = sample.to_vec();
    bytes.extend_from_slice(format!("plugbay-bench-variant-{variant:08}").as_bytes());
    std::fs::write(&staged, &bytes).map_err(|e| format!("write {}: {e}", staged.display()))?;
    std::fs::rename(&staged, library).map_err(|e| format!("rename {}: {e}", staged.display()))
}

/// Replaces the file with variant `variant` and reloads; how long calls were held.
async fn reload(
    manager: &PluginManager,
    name: &str,
    library: &Path,
    sample: &[u8],
    variant: usize,
) -> Result<Duration, String> {
    write_variant(library, sample, variant)?;
    let outcome = manager
        .reload_plugin(name, ReloadOptions::default())
        .await
        .map_err(|e| format!("reload {variant}: {e}"))?;
    if outcome.no_op {
        return Err(format!("reload {variant} found identical bytes"));
    }
    Ok(outcome.calls_held)
}

/// The resident set size in kB (Linux: `VmRSS` of `/proc/self/status`), else `None`.
fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
