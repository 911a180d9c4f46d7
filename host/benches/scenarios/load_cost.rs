//! `cold_load_vs_raw_dlopen`, `warm_load_vs_raw_dlopen`, `probe_ms_per_library`
//! (and `cold_load_vs_raw_dlopen_7mb`, `warm_load_vs_raw_dlopen_7mb` for the
//! unstripped sample): the per-library wall cost of the host's whole admission
//! path vs a raw `dlopen` plus one symbol lookup of the same files.
//!
//! Every phase runs in a fresh child process, so no library is mapped yet:
//! - `raw-dlopen DIR`: `libloading::Library::new` + the root-module symbol, per file;
//! - `cold-load DIR WORK`: `load_directory` with an empty scan cache, probe on;
//! - `warm-load DIR WORK`: the same again, the cache populated by the cold run.
//!
//! The files are distinct copies of the release sample (see
//! [`crate::fixtures::make_copies`]); their pages are in the page cache for all
//! phases alike (the parent just wrote them, and a warm-up raw run reads them).

use std::ffi::{c_void, OsString};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use crate::fixtures::{libraries_in, make_copies};
use crate::report::{Goal, Report};
use crate::stats::median;
use crate::Options;
use crate::{admission, child};

/// Measures and reports the metrics: for the stripped sample, then (when
/// present) for the unstripped 7 MB one (`_7mb` keys; fewer copies, to bound
/// the disk and memory the copies take).
pub fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let n = if opts.quick { 20 } else { 200 };
    let rounds = if opts.quick { 1 } else { 7 };
    let n_7mb = if opts.quick { 5 } else { 50 };
    let prepared = EARLY
        .lock()
        .map_err(|_| "the early copies' lock is poisoned".to_owned())?
        .take();
    let Prepared { small, big, made } = match prepared {
        Some(prepared) => prepared?,
        None => prepare_all(opts)?,
    };
    // A warm start is a host starting again over plugins installed earlier. The scan
    // cache distrusts a file whose ctime is within RACY_MARGIN of its check (git's
    // "racy" rule: a change in the same clock tick would be invisible) and re-hashes
    // it, so scanning copies written a second ago would measure that re-hash, not a
    // warm start. Let the window pass (for both sets of copies; they were usually
    // made before the other scenarios ran, so it has); raw dlopen sees the same files.
    let margin = plugbay_host::internals::RACY_MARGIN + std::time::Duration::from_millis(100);
    std::thread::sleep(margin.saturating_sub(made.elapsed()));
    let big = opts.plugin_7mb.as_ref().zip(big);
    let m = measure(&small, n, rounds)?;
    add_cold_warm(
        report,
        ["cold_load_vs_raw_dlopen", "warm_load_vs_raw_dlopen"],
        &m,
        n,
        format!("{n} libraries, median of {rounds} fresh processes"),
        String::new(),
    );
    report.add(
        "probe_ms_per_library",
        m.probe_ms,
        Goal::None,
        format!("one probe process opening all {n} copies, wall per library, median of {rounds}"),
    );
    let Some((big, copies)) = big else {
        eprintln!("scenarios: load_cost: no unstripped sample, no _7mb rows (see --plugin-7mb)");
        return Ok(());
    };
    let n = n_7mb;
    let m = measure(&copies, n, rounds)?;
    let mb = std::fs::metadata(big).map_or(0.0, |m| m.len() as f64 / 1e6);
    add_cold_warm(
        report,
        ["cold_load_vs_raw_dlopen_7mb", "warm_load_vs_raw_dlopen_7mb"],
        &m,
        n,
        format!("{n} copies of the unstripped sample ({mb:.1} MB), median of {rounds}"),
        format!("; probe {:.2} ms/lib", m.probe_ms),
    );
    Ok(())
}

/// The copies [`run`] measures, and when they were made.
struct Prepared {
    small: tempfile::TempDir,
    big: Option<tempfile::TempDir>,
    made: std::time::Instant,
}

/// Copies made by [`prepare_early`], waiting for [`run`].
static EARLY: std::sync::Mutex<Option<Result<Prepared, String>>> = std::sync::Mutex::new(None);

/// Makes [`run`]'s copies now, so the scan cache's racy window passes while
/// other scenarios run rather than in a sleep.
pub fn prepare_early(opts: &Options) {
    let prepared = prepare_all(opts);
    if let Ok(mut early) = EARLY.lock() {
        *early = Some(prepared);
    }
}

/// The stripped sample's copies and (when present) the unstripped one's.
fn prepare_all(opts: &Options) -> Result<Prepared, String> {
    let n = if opts.quick { 20 } else { 200 };
    let n_7mb = if opts.quick { 5 } else { 50 };
    let small = prepare(opts, &opts.plugin, n)?;
    let big = match &opts.plugin_7mb {
        Some(plugin) => Some(prepare(opts, plugin, n_7mb)?),
        None => None,
    };
    Ok(Prepared {
        small,
        big,
        made: std::time::Instant::now(),
    })
}

/// Reports the cold and warm ratios of one set of copies against raw dlopen:
/// `keys` are the cold and the warm key, `context` starts the cold row's text and
/// `warm_extra` ends the warm row's.
fn add_cold_warm(
    report: &mut Report,
    [cold_key, warm_key]: [&'static str; 2],
    m: &Measured,
    n: usize,
    context: String,
    warm_extra: String,
) {
    let per = |s: f64| s * 1e6 / n as f64;
    report.add(
        cold_key,
        m.cold / m.raw,
        Goal::AtMost(3.0),
        format!(
            "{context}: cold {:.0} us/lib, raw dlopen {:.0} us/lib",
            per(m.cold),
            per(m.raw)
        ),
    );
    report.add(
        warm_key,
        m.warm / m.raw,
        Goal::AtMost(1.2),
        format!(
            "warm {:.0} us/lib, raw dlopen {:.0} us/lib{warm_extra}",
            per(m.warm),
            per(m.raw)
        ),
    );
}

/// Medians over the rounds: wall seconds of each phase over all copies, and the
/// probe's milliseconds per library.
struct Measured {
    raw: f64,
    cold: f64,
    warm: f64,
    probe_ms: f64,
}

/// `n` copies of `plugin` in a fresh temp dir (`plugins/` inside it), read once
/// by an untimed raw-dlopen child that also proves they open.
fn prepare(opts: &Options, plugin: &Path, n: usize) -> Result<tempfile::TempDir, String> {
    let root = tempfile::tempdir_in(&opts.work).map_err(|e| format!("temp dir: {e}"))?;
    let dir = root.path().join("plugins");
    make_copies(plugin, &dir, n)?;
    raw_round(&dir, n)?;
    Ok(root)
}

/// Runs `rounds` rounds of raw / cold / warm / probe-only children over the
/// `n` copies [`prepare`] made in `root`.
fn measure(root: &tempfile::TempDir, n: usize, rounds: usize) -> Result<Measured, String> {
    let dir = root.path().join("plugins");
    let mut raw = Vec::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut probe = Vec::new();
    for round in 0..rounds {
        let work = root.path().join(format!("work{round}"));
        raw.push(raw_round(&dir, n)?);
        cold.push(admission::load_round("cold-load", &dir, &work, n)?.wall_s);
        warm.push(admission::load_round("warm-load", &dir, &work, n)?.wall_s);
        probe.push(admission::probe_round(&dir, n)?);
        // The shadow copies of this round are not needed any more.
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(Measured {
        raw: median(&raw),
        cold: median(&cold),
        warm: median(&warm),
        probe_ms: median(&probe),
    })
}

/// One raw-dlopen child over `dir`; its wall time in seconds.
fn raw_round(dir: &Path, n: usize) -> Result<f64, String> {
    let r = child::run("raw-dlopen", &[dir.into()])?;
    let opened = child::number(&r, "opened")? as usize;
    if opened != n {
        return Err(format!(
            "raw dlopen opened {opened} of {n} copies in {}",
            dir.display()
        ));
    }
    child::number(&r, "wall_s")
}

/// Child phase `raw-dlopen DIR`: opens every library in `DIR` with
/// `libloading` and looks up abi_stable's root-module loader symbol, nothing
/// more. Libraries are leaked, as the host leaks them.
pub fn raw_phase(args: &[OsString]) -> Result<Value, String> {
    let dir = PathBuf::from(args.first().ok_or("raw-dlopen needs DIR")?);
    let files = libraries_in(&dir)?;
    let symbol = abi_stable::library::ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes();
    let start = Instant::now();
    for path in &files {
        // SAFETY: the files are copies of the project's own release sample plugin,
        // whose constructors are known; opening it is what the host does too.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("dlopen {}: {e}", path.display()))?;
        // SAFETY: the symbol is only read as an address, never called or dereferenced.
        let sym = unsafe { lib.get::<*const c_void>(symbol) }
            .map_err(|e| format!("symbol in {}: {e}", path.display()))?;
        std::hint::black_box(*sym);
        std::mem::forget(lib);
    }
    let wall = start.elapsed().as_secs_f64();
    Ok(json!({ "wall_s": wall, "opened": files.len() }))
}
