//! `isolated_call_p50_us`, `isolated_call_vs_in_process`, `isolated_start_ms`:
//! what running a plugin isolated (in a runner process of its own) costs.
//!
//! - Calls: one task on a worker of a multi-thread runtime calls the release
//!   `hello` sample's `greet` through `PluginManager::call`, once isolated and
//!   once in-process (the same library in two managers), interleaved in blocks
//!   so the machine's noise hits both alike, each call timed after a warm-up.
//!   An isolated call is two frames over a socketpair (request, reply) and two
//!   thread hand-offs on each side.
//! - Start: a fresh manager over an admitted directory (scan cache warm),
//!   timing `load_all_plugins` of the isolated `hello`: starting the runner
//!   (`plugin-probe` in its runner mode), its handshake, opening the library in
//!   it and `initialize`; the in-process start for context.

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use plugbay_host::{ManagerConfig, PluginManager, SafetyConfig, RUNNER_ARG};
use serde_json::json;

use crate::report::{Goal, Report};
use crate::stats::percentile;
use crate::Options;

/// Measures and reports the metrics.
pub async fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let root = tempfile::tempdir_in(&opts.work).map_err(|e| format!("temp dir: {e}"))?;
    let plugins = root.path().join("plugins");
    std::fs::create_dir_all(&plugins).map_err(|e| format!("{}: {e}", plugins.display()))?;
    let file = opts
        .plugin
        .file_name()
        .ok_or("the plugin path has no file name")?;
    std::fs::copy(&opts.plugin, plugins.join(file))
        .map_err(|e| format!("copy {}: {e}", opts.plugin.display()))?;
    let work = root.path().join("work");
    let (blocks, per_block, starts) = if opts.quick {
        (4, 50, 3)
    } else {
        (20, 500, 15)
    };

    let isolated = manager(&plugins, &work, true).await?;
    let in_process = manager(&plugins, &work, false).await?;
    for m in [&isolated, &in_process] {
        let started = m.load_all_plugins().await;
        if !started.is_ok() {
            return Err(format!("start failed: {started:?}"));
        }
    }
    let mut times = (Vec::new(), Vec::new());
    // Warm-up: the in-process plugin's calls move inline, both sides' caches fill.
    for _ in 0..per_block {
        call(&isolated).await?;
        call(&in_process).await?;
    }
    for _ in 0..blocks {
        for _ in 0..per_block {
            let t = Instant::now();
            call(&isolated).await?;
            times.0.push(t.elapsed().as_secs_f64() * 1e6);
        }
        for _ in 0..per_block {
            let t = Instant::now();
            call(&in_process).await?;
            times.1.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    isolated.unload_all_plugins().await;
    in_process.unload_all_plugins().await;
    let (iso, inproc) = (percentile(&times.0, 0.5), percentile(&times.1, 0.5));
    report.add(
        "isolated_call_p50_us",
        iso,
        Goal::None,
        format!(
            "PluginManager::call into an isolated hello's greet, one task, {} calls; p99 {:.1} us",
            times.0.len(),
            percentile(&times.0, 0.99)
        ),
    );
    report.add(
        "isolated_call_vs_in_process",
        iso / inproc,
        Goal::None,
        format!("isolated p50 / in-process native p50 ({inproc:.2} us), same library, interleaved blocks"),
    );

    let mut start = (Vec::new(), Vec::new());
    for _ in 0..starts {
        for (isolate, into) in [(true, &mut start.0), (false, &mut start.1)] {
            let m = manager(&plugins, &work, isolate).await?;
            let t = Instant::now();
            let started = m.load_all_plugins().await;
            into.push(t.elapsed().as_secs_f64() * 1e3);
            if !started.is_ok() {
                return Err(format!("start failed: {started:?}"));
            }
            m.unload_all_plugins().await;
        }
    }
    report.add(
        "isolated_start_ms",
        percentile(&start.0, 0.5),
        Goal::None,
        format!(
            "load_all_plugins of an isolated hello (runner start, handshake, open, initialize), median of {starts}; in-process {:.2} ms",
            percentile(&start.1, 0.5)
        ),
    );
    Ok(())
}

/// A manager over `plugins` (admitted and registered, not started), running
/// `hello` isolated or in-process.
async fn manager(plugins: &Path, work: &Path, isolate: bool) -> Result<PluginManager, String> {
    let probe = env!("CARGO_BIN_EXE_plugin-probe");
    let safety = SafetyConfig::builder()
        .work_dir(work)
        .probe_program(probe, Vec::new())
        .build()
        .map_err(|e| e.to_string())?;
    let mut builder = ManagerConfig::builder().safety(safety);
    if isolate {
        builder = builder
            .isolation_runner(probe, vec![OsString::from(RUNNER_ARG)])
            .isolate_all(true);
    }
    let manager = PluginManager::new(builder.build().map_err(|e| e.to_string())?);
    let report = manager
        .load_directory(plugins)
        .await
        .map_err(|e| e.to_string())?;
    if !report.failed.is_empty() || report.registered.len() != 1 {
        return Err(format!("admission: {:?}", report.failed));
    }
    Ok(manager)
}

async fn call(manager: &PluginManager) -> Result<(), String> {
    manager
        .call("hello", "greet", json!({"name": "bench"}))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
