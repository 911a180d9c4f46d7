//! `plugin-host run`: load, initialize in dependency order, show status, shut down.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plugbay_host::{default_state_dir, ManagerConfig, PluginManager, PluginState};

use crate::safety_args::SafetyArgs;

/// Options of `run`.
pub struct RunArgs {
    pub dirs: Vec<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub once: bool,
    /// `--watch`: follow the plugin directories until stopped.
    pub watch: Option<crate::watch::WatchOptions>,
    pub safety: SafetyArgs,
}

/// Opens a manager over `dirs` with the host's name and version, the state
/// directory (default: [`default_state_dir`]) and the safety options; shared by
/// `run` and `call`. The error is a one-line message for stderr.
pub async fn open_manager(
    dirs: &[PathBuf],
    state_dir: &Path,
    safety: &SafetyArgs,
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
    let config = builder.build().map_err(|e| e.to_string())?;
    PluginManager::open(config).await.map_err(|e| e.to_string())
}

pub async fn run(args: RunArgs) -> ExitCode {
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    let manager = match open_manager(&args.dirs, &state_dir, &args.safety).await {
        Ok(m) => m,
        Err(e) => {
            eprintln!("plugin-host: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(state_dir = %state_dir.display(), "plugin state is kept here");
    let report = manager.load_plugin_dirs().await;
    for (path, err) in &report.failed {
        eprintln!("plugin-host: skipped {}: {err}", path.display());
    }
    let started = manager.load_all_plugins().await;
    print_status(&manager, "started");
    for failure in started.failures() {
        if let Err(e) = &failure.result {
            eprintln!("plugin-host: {} did not start: {e}", failure.name);
        }
    }
    if !args.once {
        eprintln!(
            "plugin-host: running; press Ctrl-C (or send SIGTERM; Ctrl-Break on Windows) to stop"
        );
        match &args.watch {
            Some(options) => {
                crate::watch::watch(&manager, &args.dirs, options, wait_for_stop()).await
            }
            None => wait_for_stop().await,
        }
    }
    stop_all(&manager).await;
    print_status(&manager, "stopped");
    ExitCode::SUCCESS
}

/// Stops every plugin (dependents first, saving state) and reports on stderr each
/// one that did not shut down cleanly.
pub async fn stop_all(manager: &PluginManager) {
    let stopped = manager.unload_all_plugins().await;
    for failure in stopped.failures() {
        if let Err(e) = &failure.result {
            eprintln!(
                "plugin-host: {} did not shut down cleanly: {e}",
                failure.name
            );
        }
    }
}

fn print_status(manager: &PluginManager, heading: &str) {
    let plan = manager.resolve_dependencies();
    println!("{heading}:");
    println!("  {:<20} {:<10} {:<14} DETAIL", "NAME", "VERSION", "STATE");
    for p in manager.plugins() {
        let detail = match &p.state {
            PluginState::Failed(e) => e.to_string(),
            _ => p.info.description.clone(),
        };
        let detail = match plan.explain(p.id) {
            Some(chain) if !p.state.is_active() => chain,
            _ => detail,
        };
        println!(
            "  {:<20} {:<10} {:<14} {detail}",
            p.info.name,
            p.info.version,
            p.state.name()
        );
    }
    let retained = manager.retained_images();
    if retained > 0 {
        println!("retained images: {retained} (library images kept mapped by reloads)");
    }
}

/// Waits for a stop request: Ctrl-C or SIGTERM on Unix; Ctrl-C or Ctrl-Break
/// on Windows. If a signal cannot be watched, the others still stop the host.
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(windows)]
    {
        match tokio::signal::windows::ctrl_break() {
            Ok(mut ctrl_break) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = ctrl_break.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
