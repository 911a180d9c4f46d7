//! `plugin-host run`: load, initialize in dependency order, show status, run
//! (taking checkpoints of plugin state), shut down, and exit with a code that
//! says whether every plugin started and stopped cleanly.
//!
//! Exit codes (also in `run --help` and the README): [`EXIT_OK`],
//! [`EXIT_PLUGIN_FAILED`], [`EXIT_SETUP`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use plugbay_host::{default_state_dir, ManagerConfig, PluginManager, PluginState};
use serde::Serialize;

use crate::checkpoint::{Checkpoint, Checkpointer, Signals, Trigger};
use crate::isolate_args::IsolateArgs;
use crate::profile::{Profile, Recorder};
use crate::safety_args::SafetyArgs;

/// Every plugin started, ran and stopped (saving its state) cleanly.
pub const EXIT_OK: u8 = 0;
/// A plugin library was skipped, a plugin failed to start, or one failed to
/// stop or to save its state (at shutdown or in a checkpoint). `--allow-failures`
/// turns this into [`EXIT_OK`].
pub const EXIT_PLUGIN_FAILED: u8 = 1;
/// Usage or setup error: a bad option, an unusable state or work directory, a
/// missing probe, no async runtime. Never tolerated by `--allow-failures`.
pub const EXIT_SETUP: u8 = 2;

/// `run --help`'s exit code section.
pub const EXIT_CODES: &str = "\
Exit status:
  0  every plugin started, and stopped saving its state, cleanly
  1  a library was skipped (refused, quarantined, incompatible), a plugin failed
     to start, or one failed to stop or to save its state (also in a checkpoint);
     with --allow-failures such failures are reported but exit 0
  2  usage or setup error (bad option, unusable state or work directory, probe
     missing); --allow-failures does not change it

Signals: Ctrl-C or SIGTERM stops (Ctrl-C or Ctrl-Break on Windows); SIGHUP takes
a checkpoint of every active plugin's state (Unix only; on Windows use
--checkpoint-every).";

/// Options of `run`.
pub struct RunArgs {
    pub dirs: Vec<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub once: bool,
    pub safety: SafetyArgs,
    pub isolation: IsolateArgs,
    /// Print one JSON document (status tables, failures, checkpoints, profile)
    /// instead of tables.
    pub json: bool,
    /// The load profile's recorder, when `--profile` installed it.
    pub profile: Option<Recorder>,
    /// Exit 0 even when plugins failed (setup errors still exit 2).
    pub allow_failures: bool,
    /// Save every active plugin's state this often while running.
    pub checkpoint_every: Option<Duration>,
    /// `--watch`: follow the plugin directories until stopped.
    pub watch: Option<crate::watch::WatchOptions>,
}

/// Opens a manager over `dirs` with the host's name and version, the state
/// directory (default: [`default_state_dir`]), the safety options and which
/// plugins run isolated; shared by `run` and `call`. The error is a one-line
/// message for stderr.
pub async fn open_manager(
    dirs: &[PathBuf],
    state_dir: &Path,
    safety: &SafetyArgs,
    isolation: &IsolateArgs,
) -> Result<PluginManager, String> {
    let safety = safety.config().map_err(|e| e.to_string())?;
    let mut builder = ManagerConfig::builder()
        .host_name("plugin-host")
        .host_version(env!("CARGO_PKG_VERSION"))
        .state_dir(state_dir.to_path_buf())
        .safety(safety);
    for dir in dirs {
        builder = builder.plugin_dir(dir.clone());
    }
    builder = isolation.apply(builder).map_err(|e| e.to_string())?;
    let config = builder.build().map_err(|e| e.to_string())?;
    PluginManager::open(config).await.map_err(|e| e.to_string())
}

/// One plugin's line of a status table.
#[derive(Serialize)]
struct StatusRow {
    name: String,
    version: String,
    state: String,
    /// The description while it runs; why it is not active otherwise.
    detail: String,
    /// Library images of earlier versions that reloads keep mapped for it.
    retained_images: usize,
}

/// A library file that was not registered, and why.
#[derive(Serialize)]
struct Skipped {
    path: PathBuf,
    error: String,
}

/// A plugin that failed to start or to stop cleanly.
#[derive(Serialize)]
struct Failure {
    plugin: String,
    /// `start` or `stop` (stopping includes saving its state).
    stage: &'static str,
    error: String,
}

/// `run --json`'s `data`.
#[derive(Serialize)]
struct RunReport {
    started: Vec<StatusRow>,
    stopped: Vec<StatusRow>,
    skipped: Vec<Skipped>,
    failures: Vec<Failure>,
    checkpoints: Vec<Checkpoint>,
    profile: Option<Profile>,
    exit_code: u8,
}

pub async fn run(args: RunArgs) -> ExitCode {
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let manager = match open_manager(&args.dirs, &state_dir, &args.safety, &args.isolation).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("plugin-host: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    tracing::info!(state_dir = %state_dir.display(), "plugin state is kept here");
    let startup = Instant::now();
    let loaded = manager
        .load_plugin_dirs_with_progress(crate::progress::observer())
        .await;
    args.isolation.warn_unknown(&manager);
    let mut skipped = Vec::new();
    for (path, err) in &loaded.failed {
        eprintln!("plugin-host: skipped {}: {err}", path.display());
        skipped.push(Skipped {
            path: path.clone(),
            error: err.to_string(),
        });
    }
    let started = manager.load_all_plugins().await;
    let startup_wall = startup.elapsed();
    let mut failures = Vec::new();
    for failure in started.failures() {
        if let Err(e) = &failure.result {
            eprintln!("plugin-host: {} did not start: {e}", failure.name);
            failures.push(Failure {
                plugin: failure.name.clone(),
                stage: "start",
                error: e.to_string(),
            });
        }
    }
    // Before anything else resolves the plugins again (the status table does).
    let profile = args
        .profile
        .as_ref()
        .map(|recorder| recorder.profile(startup, startup_wall, &loaded, &manager.plugins()));
    let started_rows = status_rows(&manager);
    if !args.json {
        print_status("started", &started_rows);
        if let Some(profile) = &profile {
            profile.print();
        }
    }

    let mut checkpointer = Checkpointer::new(manager.clone());
    let watching = args
        .watch
        .clone()
        .map(|options| crate::watch::Watching::start(manager.clone(), args.dirs.clone(), options));
    if !args.once {
        let mut signals = Signals::new(args.checkpoint_every);
        eprintln!("{}", signals.running_message());
        loop {
            match signals.next().await {
                Trigger::Stop => break,
                Trigger::Checkpoint(reason) => checkpointer.checkpoint(reason).await,
            }
        }
    }
    if let Some(watching) = watching {
        watching.stop().await;
    }
    for (plugin, error) in stop_all(&manager).await {
        failures.push(Failure {
            plugin,
            stage: "stop",
            error,
        });
    }
    let stopped_rows = status_rows(&manager);
    let checkpoints = checkpointer.into_taken();
    let failed = !skipped.is_empty()
        || !failures.is_empty()
        || checkpoints.iter().any(|c| !c.failed.is_empty());
    let exit_code = if failed && !args.allow_failures {
        EXIT_PLUGIN_FAILED
    } else {
        EXIT_OK
    };
    if failed && args.allow_failures {
        eprintln!("plugin-host: some plugins failed; exiting 0 as --allow-failures asks");
    }
    if args.json {
        let report = RunReport {
            started: started_rows,
            stopped: stopped_rows,
            skipped,
            failures,
            checkpoints,
            profile,
            exit_code,
        };
        if let Err(code) = crate::json::print("run", &report) {
            return code;
        }
    } else {
        print_status("stopped", &stopped_rows);
        let retained = manager.retained_images();
        if retained > 0 {
            println!("retained images: {retained} (library images kept mapped by reloads)");
        }
    }
    ExitCode::from(exit_code)
}

/// Stops every plugin (dependents first, saving state), reports on stderr each
/// one that did not shut down cleanly, and returns those (name, error).
pub async fn stop_all(manager: &PluginManager) -> Vec<(String, String)> {
    let stopped = manager.unload_all_plugins().await;
    let mut failed = Vec::new();
    for failure in stopped.failures() {
        if let Err(e) = &failure.result {
            eprintln!(
                "plugin-host: {} did not shut down cleanly: {e}",
                failure.name
            );
            failed.push((failure.name.clone(), e.to_string()));
        }
    }
    failed
}

/// Every registered plugin's status, in registration order.
fn status_rows(manager: &PluginManager) -> Vec<StatusRow> {
    let plan = manager.resolve_dependencies();
    manager
        .plugins()
        .into_iter()
        .map(|p| {
            let detail = match &p.state {
                PluginState::Failed(e) => e.to_string(),
                _ => p.info.description.clone(),
            };
            let detail = match plan.explain(p.id) {
                Some(chain) if !p.state.is_active() => chain,
                _ => detail,
            };
            StatusRow {
                name: p.info.name.clone(),
                version: p.info.version.to_string(),
                state: p.state.name().to_owned(),
                detail,
                retained_images: p.retained_images,
            }
        })
        .collect()
}

fn print_status(heading: &str, rows: &[StatusRow]) {
    println!("{heading}:");
    println!("  {:<20} {:<10} {:<14} DETAIL", "NAME", "VERSION", "STATE");
    for row in rows {
        println!(
            "  {:<20} {:<10} {:<14} {}",
            row.name, row.version, row.state, row.detail
        );
    }
}
