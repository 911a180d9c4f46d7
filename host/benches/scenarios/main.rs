//! The design's claims as numbers: `cargo bench -p plugbay-host --bench scenarios`
//! (what `cargo xtask bench` runs) prints a table and writes
//! `target/bench/summary.json`, one flat numeric key per figure.
//!
//! Method: every figure is a ratio against a baseline measured in the same run
//! on the same machine (or an absolute latency), repeated with the median taken,
//! after a warm-up. Load-cost and tick phases run in fresh child processes (this
//! binary re-executed with `--phase NAME`), so no library is mapped already.
//!
//! Options (after `--`): `--quick` (small sizes, one round: CI's smoke run; goals
//! are shown but never asserted), `--only a,b` (scenario names), `--plugin PATH`
//! (the release sample library to copy; default `target/bench/sample/libhello.so`,
//! which `cargo xtask bench` builds, or `$BENCH_PLUGIN`), `--plugin-7mb PATH` (the
//! same sample with line tables, ≈ 7 MB; default `target/bench/sample-7mb/libhello.so`;
//! its load-cost rows are skipped when missing), `--out PATH` (default `target/bench/summary.json`).
//! Run without `--bench` (as `cargo test --all-targets` does) it does nothing.

mod admission;
mod baselines;
mod calls;
mod child;
mod concurrent_init;
mod dag;
mod events;
mod fixtures;
mod isolated;
mod load_cost;
mod lookup;
mod reload;
mod report;
mod save_all;
mod scale;
mod stats;
mod tick;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use report::Report;

/// What the scenarios share.
pub struct Options {
    /// Small sizes and one round.
    pub quick: bool,
    /// The release sample library copies are made of.
    pub plugin: PathBuf,
    /// The same sample unstripped (line tables, ≈ 7 MB), if present.
    pub plugin_7mb: Option<PathBuf>,
    /// Scratch space (plugin copies, state dirs, caches); temp dirs inside it.
    pub work: PathBuf,
}

/// One scenario: its name (for `--only`) and what it runs.
struct Scenario {
    name: &'static str,
    run: fn(&Options, &mut Report, &tokio::runtime::Runtime) -> Result<(), String>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "concurrent_init",
        run: |o, r, rt| rt.block_on(concurrent_init::run(o, r)),
    },
    Scenario {
        name: "dag",
        run: |o, r, rt| rt.block_on(dag::run(o, r)),
    },
    Scenario {
        name: "save_all",
        run: |o, r, rt| rt.block_on(save_all::run(o, r)),
    },
    Scenario {
        name: "tick",
        run: |o, r, _| tick::run(o, r),
    },
    Scenario {
        name: "lookup",
        run: |o, r, rt| rt.block_on(lookup::run(o, r)),
    },
    Scenario {
        name: "events",
        run: |o, r, rt| rt.block_on(events::run(o, r)),
    },
    Scenario {
        name: "scale",
        run: |o, r, rt| rt.block_on(scale::run(o, r)),
    },
    Scenario {
        name: "calls",
        run: |o, r, _| calls::run(o, r),
    },
    Scenario {
        name: "reload",
        run: |o, r, rt| rt.block_on(reload::run(o, r)),
    },
    Scenario {
        name: "isolated",
        run: |o, r, rt| rt.block_on(isolated::run(o, r)),
    },
    // Last: its copies are made before the first scenario runs (see
    // `load_cost::prepare_early`), so the scan cache's racy window has
    // passed by now instead of being slept through.
    Scenario {
        name: "load_cost",
        run: |o, r, _| load_cost::run(o, r),
    },
];

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == child::PHASE_ARG) {
        return run_phase(&args[1..]);
    }
    match parse(&args) {
        Ok(Some(cli)) => run_all(cli),
        Ok(None) => {
            eprintln!("scenarios: not run (no --bench); use `cargo xtask bench` or `cargo bench -p plugbay-host --bench scenarios`");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scenarios: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parsed command line of a measuring run.
struct Cli {
    options: Options,
    only: Option<Vec<String>>,
    out: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf()
}

/// `Ok(None)` when started without `--bench` (a test run).
fn parse(args: &[OsString]) -> Result<Option<Cli>, String> {
    let target = workspace_root().join("target");
    let default_plugin = target.join("bench").join("sample").join(format!(
        "{}hello{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let mut quick = false;
    let mut bench = false;
    let mut only = None;
    let mut plugin = std::env::var_os("BENCH_PLUGIN")
        .map(PathBuf::from)
        .unwrap_or(default_plugin);
    let mut plugin_7mb = target.join("bench").join("sample-7mb").join(format!(
        "{}hello{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let mut out = target.join("bench").join("summary.json");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{} needs a value", arg.to_string_lossy()))
        };
        match arg.to_str() {
            Some("--bench") => bench = true,
            Some("--quick") => quick = true,
            Some("--only") => {
                only = Some(
                    value()?
                        .to_string_lossy()
                        .split(',')
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                )
            }
            Some("--plugin") => plugin = PathBuf::from(value()?),
            Some("--plugin-7mb") => plugin_7mb = PathBuf::from(value()?),
            Some("--out") => out = PathBuf::from(value()?),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if !bench {
        return Ok(None);
    }
    if let Some(only) = &only {
        if let Some(bad) = only
            .iter()
            .find(|n| !SCENARIOS.iter().any(|s| s.name == *n))
        {
            let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            return Err(format!(
                "no scenario `{bad}`; there are {}",
                names.join(", ")
            ));
        }
    }
    let plugin = std::path::absolute(&plugin).map_err(|e| format!("{}: {e}", plugin.display()))?;
    if !plugin.is_file() {
        return Err(format!(
            "the sample plugin {} is missing; `cargo xtask bench` builds it \
             (release, debug info stripped), or pass --plugin PATH",
            plugin.display()
        ));
    }
    let work = target.join("bench").join("work");
    std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
    Ok(Some(Cli {
        options: Options {
            quick,
            plugin,
            plugin_7mb: std::path::absolute(&plugin_7mb)
                .ok()
                .filter(|p| p.is_file()),
            work,
        },
        only,
        out,
    }))
}

fn run_all(cli: Cli) -> ExitCode {
    let started = Instant::now();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scenarios: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report::default();
    let mut failed = Vec::new();
    let wants = |name: &str| {
        cli.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == name))
    };
    if wants("load_cost") {
        load_cost::prepare_early(&cli.options);
    }
    for s in SCENARIOS {
        if cli
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == s.name))
        {
            continue;
        }
        let t = Instant::now();
        eprintln!("scenarios: {} ...", s.name);
        if let Err(e) = (s.run)(&cli.options, &mut report, &rt) {
            eprintln!("scenarios: {} FAILED: {e}", s.name);
            failed.push(s.name);
        }
        eprintln!(
            "scenarios: {} took {:.1} s",
            s.name,
            t.elapsed().as_secs_f64()
        );
    }
    let mode = if cli.options.quick { "quick" } else { "full" };
    println!(
        "\n{} mode, {} cores, release build, {:.1} s\n\n{}",
        mode,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64(),
        report.table()
    );
    if let Err(e) = report.write_json(&cli.out) {
        eprintln!("scenarios: writing {}: {e}", cli.out.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", cli.out.display());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("scenarios: failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

/// Runs one child phase and prints its result line.
fn run_phase(args: &[OsString]) -> ExitCode {
    let Some(phase) = args.first().and_then(|p| p.to_str()) else {
        eprintln!("scenarios: --phase needs a name");
        return ExitCode::FAILURE;
    };
    let rest = &args[1..];
    let result = match phase {
        "raw-dlopen" => load_cost::raw_phase(rest),
        "tick-inline" => tick::inline_phase(rest),
        "tick-idle" => tick::idle_phase(),
        other => admission::phase(other, rest),
    };
    match result {
        Ok(value) => {
            child::emit(&value);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scenarios: phase {phase}: {e}");
            ExitCode::FAILURE
        }
    }
}
