//! `plugin-host`: list, check, lock and run native plugins.

mod inspect;
mod list;
mod lock;
mod run;
mod safety_args;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use safety_args::{SafetyArgs, PROBE_SUBCOMMAND};

/// Discover, check and run native plugins built against plugbay-api.
#[derive(Parser)]
#[command(name = "plugin-host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show every library file's metadata, dependencies and verdict, without
    /// initializing any plugin (and without opening any library in this process).
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        safety: SafetyArgs,
        /// Plugin directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Like `list`, but exit 1 when any file is quarantined, incompatible,
    /// refused or has unresolvable dependencies.
    Check {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        safety: SafetyArgs,
        /// Plugin directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Load and initialize the plugins in dependency order, show their status,
    /// then run until Ctrl-C / SIGTERM (or, with --once, stop at once) and shut
    /// everything down cleanly, saving each plugin's state.
    Run {
        /// Where plugin state is kept between runs (default: $XDG_STATE_HOME/plugin-host/state,
        /// else ~/.local/state/plugin-host/state).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Shut down right after initializing.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        safety: SafetyArgs,
        /// Plugin directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Write an allowlist (SHA-256 of every library file) for `--allowlist`.
    Lock {
        /// Where to write it.
        #[arg(long, short, default_value = "plugins.lock")]
        output: PathBuf,
        /// Plugin directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
}

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    // The probe child mode is dispatched before anything else runs.
    if std::env::args_os().nth(1).as_deref() == Some(PROBE_SUBCOMMAND.as_ref()) {
        return plugbay_host::run_probe_child();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::List { json, safety, dirs } => {
            init_tracing("warn");
            list::list(&dirs, json, &safety)
        }
        Command::Check { json, safety, dirs } => {
            init_tracing("warn");
            list::check(&dirs, json, &safety)
        }
        Command::Run {
            state_dir,
            once,
            safety,
            dirs,
        } => {
            init_tracing("info");
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("plugin-host: cannot start the async runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            runtime.block_on(run::run(run::RunArgs {
                dirs,
                state_dir,
                once,
                safety,
            }))
        }
        Command::Lock { output, dirs } => {
            init_tracing("warn");
            lock::lock(&dirs, &output)
        }
    }
}
