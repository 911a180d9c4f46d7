//! The host's admission path as child phases: probe or scan cache, shadow copy,
//! open, ABI check, metadata (`plugbay_host::admit_dirs`).
//!
//! - `cold-load DIR WORK`: WORK must be empty (no scan cache, no shadow copies);
//!   the probe child checks every file.
//! - `warm-load DIR WORK`: WORK holds the cache and copies a cold run left.
//! - `probe-only DIR`: one probe child opening every file, nothing else: the
//!   probe's own cost per library.
//! - `tick-managed DIR`: `PluginManager::load_directory` while the 1 ms
//!   tickers run (see [`crate::tick`]);
//! - `tick-admission DIR WORK`: a cold admission (`admit_dirs_async`, on the
//!   pipeline's own admission and opener threads) while the tickers run.
//!
//! The probe binary is the `plugin-probe` cargo builds next to this bench.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use plugbay_host::internals::{ProbeOutcome, ProbeWorker};
use plugbay_host::{ManagerConfig, PluginManager, SafetyConfig};
use serde_json::{json, Value};

use crate::child;
use crate::fixtures::libraries_in;

/// What one cold or warm load child measured.
pub struct Round {
    /// Wall time of `load_directory`, seconds.
    pub wall_s: f64,
}

/// Runs the `phase` child (`cold-load` / `warm-load`) over `dir` with scan
/// cache and shadow copies in `work`, checking that all `n` libraries loaded.
pub fn load_round(phase: &str, dir: &Path, work: &Path, n: usize) -> Result<Round, String> {
    let r = child::run(phase, &[dir.into(), work.into()])?;
    let loaded = child::number(&r, "loaded")? as usize;
    if loaded != n {
        return Err(format!("{phase} loaded {loaded} of {n} libraries: {r}"));
    }
    Ok(Round {
        wall_s: child::number(&r, "wall_s")?,
    })
}

/// Runs the `probe-only` child over `dir`; probe wall time per library, ms.
pub fn probe_round(dir: &Path, n: usize) -> Result<f64, String> {
    let r = child::run("probe-only", &[dir.into()])?;
    let answers = child::number(&r, "answers")? as usize;
    if answers != n {
        return Err(format!(
            "the probe answered {answers} of {n} libraries: {r}"
        ));
    }
    Ok(child::number(&r, "wall_s")? * 1e3 / n as f64)
}

/// Child phases of the admission path.
pub fn phase(name: &str, args: &[OsString]) -> Result<Value, String> {
    let arg = |i: usize| {
        args.get(i)
            .map(PathBuf::from)
            .ok_or_else(|| format!("phase {name}: missing argument {}", i + 1))
    };
    match name {
        "cold-load" => admit_phase(&arg(0)?, &arg(1)?, true),
        "warm-load" => admit_phase(&arg(0)?, &arg(1)?, false),
        "probe-only" => probe_phase(&arg(0)?),
        "tick-managed" => {
            let manager = manager(&arg(1)?)?;
            let dir = arg(0)?;
            crate::tick::measure(async move { load_directory(&manager, &dir).await })
        }
        other => Err(format!("unknown phase `{other}`")),
    }
}

/// A manager with the benchmark's safety configuration.
fn manager(work: &Path) -> Result<PluginManager, String> {
    let config = ManagerConfig::builder()
        .safety(config(work)?)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(PluginManager::new(config))
}

/// `load_directory`, failing if any library was not registered; how many were.
async fn load_directory(manager: &PluginManager, dir: &Path) -> Result<usize, String> {
    let report = manager
        .load_directory(dir)
        .await
        .map_err(|e| e.to_string())?;
    if let Some((path, e)) = report.failed.first() {
        return Err(format!("load_directory: {}: {e}", path.display()));
    }
    Ok(report.registered.len())
}

/// The safety configuration of the benchmark: everything default (probe on,
/// strict permissions) except the work dir and the probe binary's location.
fn config(work: &Path) -> Result<SafetyConfig, String> {
    SafetyConfig::builder()
        .work_dir(work)
        .probe_program(env!("CARGO_BIN_EXE_plugin-probe"), Vec::new())
        .build()
        .map_err(|e| e.to_string())
}

fn admit_phase(dir: &Path, work: &Path, cold: bool) -> Result<Value, String> {
    let fresh = !work.exists()
        || std::fs::read_dir(work)
            .map_err(|e| format!("{}: {e}", work.display()))?
            .next()
            .is_none();
    if cold != fresh {
        return Err(format!(
            "{} run needs {} work dir, {} is {}",
            if cold { "a cold" } else { "a warm" },
            if cold { "an empty" } else { "a populated" },
            work.display(),
            if fresh { "empty" } else { "not empty" }
        ));
    }
    let manager = manager(work)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let start = Instant::now();
    let loaded = rt.block_on(load_directory(&manager, dir))?;
    let wall = start.elapsed().as_secs_f64();
    // Linux, with `shadow_in_memory`: the disk copies of the sealed memory
    // copies, which the next start maps, are written in the background after
    // admission; wait for them here (untimed, reported as `persist_s`) so the
    // warm run finds them. Nothing to wait for with the default disk copies.
    let start = Instant::now();
    #[cfg(target_os = "linux")]
    plugbay_host::internals::flush_shadow_copies();
    let persist = start.elapsed().as_secs_f64();
    Ok(json!({ "wall_s": wall, "loaded": loaded, "persist_s": persist }))
}

fn probe_phase(dir: &Path) -> Result<Value, String> {
    let files = libraries_in(dir)?;
    let config = config(&dir.join("unused-work"))?;
    let (program, args) = config.probe_command().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let worker =
        ProbeWorker::start(program, args, config.probe_timeout()).map_err(|e| e.to_string())?;
    for (i, f) in files.iter().enumerate() {
        worker.submit(i, f.clone());
    }
    let (outcomes, processes) = worker.finish();
    let wall = start.elapsed().as_secs_f64();
    if let Some((i, bad)) = outcomes
        .iter()
        .find(|(_, o)| !matches!(o, ProbeOutcome::Verdict(_)))
    {
        return Err(format!("probing {}: {bad:?}", files[*i].display()));
    }
    Ok(json!({ "wall_s": wall, "answers": outcomes.len(), "processes": processes }))
}
