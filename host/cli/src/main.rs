//! `plugin-host`: list, check, lock and run native plugins.

mod call;
mod checkpoint;
mod explain;
mod inspect;
mod isolate_args;
mod json;
mod list;
mod lock;
mod new;
mod profile;
mod progress;
mod run;
mod safety_args;
mod scan_view;
mod style;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use isolate_args::IsolateArgs;
use safety_args::{SafetyArgs, PROBE_SUBCOMMAND};

/// `plugin-host --help`: the exit status convention every subcommand follows.
const EXIT_STATUS: &str =
    "Exit status: 0 success; 1 the subcommand ran but found a problem (a file \
needing attention, a plugin that would not start or failed); 2 usage or setup error. Each \
subcommand's --help lists its own.";

/// Discover, check and run native plugins built against plugbay-api.
#[derive(Parser)]
#[command(name = "plugin-host", version, about, after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show every library file's metadata, dependencies and verdict, without
    /// initializing any plugin (and without opening any library in this process).
    #[command(after_help = list::LIST_EXIT_CODES)]
    List {
        /// Print the JSON document (see "JSON output" in the README) instead of a table.
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
    #[command(after_help = list::CHECK_EXIT_CODES)]
    Check {
        /// Print the JSON document instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        safety: SafetyArgs,
        /// Plugin directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Everything known about one library: metadata, interface version, how each
    /// dependency resolves, content id, scan-cache verdict and its time, shadow
    /// copy, permission check, probe time and (with --state-dir) its saved state.
    /// Opens no library in this process.
    #[command(after_help = inspect::EXIT_CODES)]
    Inspect {
        /// Print the JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// A state directory to read the plugin's saved state from (read only:
        /// a running host may hold it).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        safety: SafetyArgs,
        /// A library file, or the name of a plugin to look up in DIR...
        #[arg(value_name = "FILE|NAME")]
        target: String,
        /// Plugin directories (to look NAME up, and to resolve the dependencies).
        dirs: Vec<PathBuf>,
    },
    /// Why plugin NAME would not start (or that it would), as a tree down to the
    /// root causes: a missing dependency with the files that come closest, a
    /// version conflict, a cycle, a quarantined or refused file with its reason,
    /// a failed dependency with its own reason. Opens no library in this process.
    #[command(after_help = explain::EXIT_CODES)]
    Explain {
        /// Print the JSON document instead of the tree.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        safety: SafetyArgs,
        /// The plugin's name.
        name: String,
        /// Plugin directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Load and initialize the plugins in dependency order, show their status,
    /// then run until Ctrl-C / SIGTERM (or, with --once, stop at once) and shut
    /// everything down cleanly, saving each plugin's state.
    #[command(after_help = run::EXIT_CODES)]
    Run {
        /// Where plugin state is kept between runs (default: $XDG_STATE_HOME/plugin-host/state,
        /// else ~/.local/state/plugin-host/state).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Shut down right after initializing.
        #[arg(long, conflicts_with = "watch")]
        once: bool,
        /// Print one JSON document at exit (status tables, skipped files,
        /// failures, checkpoints, and the profile with --profile) instead of tables.
        #[arg(long)]
        json: bool,
        /// Measure startup: time per plugin and per phase (discover, permission
        /// check, copy, hash, probe, open, register, resolve, restore state,
        /// initialize) and the critical path, printed after the started table.
        #[arg(long)]
        profile: bool,
        /// Exit 0 even when plugins failed to start, stop or save (they are
        /// still reported); usage and setup errors still exit 2.
        #[arg(long)]
        allow_failures: bool,
        /// Save every active plugin's state this often while running, e.g. 30s,
        /// 5m, 1h 30m (SIGHUP saves at once too, on Unix).
        #[arg(long, value_name = "DURATION", value_parser = checkpoint::parse_interval, conflicts_with = "once")]
        checkpoint_every: Option<std::time::Duration>,
        /// Follow the plugin directories while running: a changed library is
        /// reloaded, a new one admitted and started, a deleted one stopped and
        /// removed. One status line per change (so not with --json, whose
        /// stdout is one document).
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        /// With --watch: stop the running dependents of a deleted library's
        /// plugin with it (instead of keeping it running), and restart those a
        /// reloaded version no longer satisfies (instead of refusing the reload).
        #[arg(long, requires = "watch")]
        cascade: bool,
        /// With --watch: how long (milliseconds) a library file must stay
        /// unchanged before it is loaded, reloaded or removed.
        #[arg(long, value_name = "MS", requires = "watch", default_value_t = watch::DEFAULT_SETTLE.as_millis() as u64)]
        settle_ms: u64,
        #[command(flatten)]
        safety: SafetyArgs,
        #[command(flatten)]
        isolation: IsolateArgs,
        /// Plugin directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Admit the directories, start PLUGIN (and what it depends on), call METHOD
    /// with ARGS, print the JSON result on stdout, shut down saving state.
    /// Exit 0 on success, 1 when the plugin fails, 2 on usage or setup errors.
    #[command(
        override_usage = "plugin-host call [OPTIONS] DIR... PLUGIN METHOD [ARGS]",
        after_help = call::EXIT_CODES
    )]
    Call {
        /// Print the JSON document (the result or the error, with timings)
        /// instead of the bare result.
        #[arg(long)]
        json: bool,
        /// Where plugin state is kept between runs (as for `run`).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// The configuration PLUGIN sees (JSON), e.g. '{"greeting": "Hi"}'.
        #[arg(long, value_name = "JSON")]
        config: Option<String>,
        #[command(flatten)]
        safety: SafetyArgs,
        #[command(flatten)]
        isolation: IsolateArgs,
        /// Plugin directories, then the plugin's name, the method, and optionally
        /// the arguments as JSON (default `{}`; `-` reads them from stdin).
        #[arg(
            required = true,
            num_args = 3..,
            value_name = "OPERANDS",
            allow_hyphen_values = true
        )]
        operands: Vec<std::ffi::OsString>,
    },
    /// Create a new plugin crate (its own workspace) that builds, unit-tests and
    /// loads with no edits.
    #[command(after_help = new::EXIT_CODES)]
    New {
        /// Print the JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// The plugin's name: lower-case letters, digits, `-` and `_`, starting
        /// with a letter (it names the crate, the library and the state file).
        name: String,
        /// The crate's directory (default: ./NAME). Must not exist, or be empty.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write an allowlist (SHA-256 of every library file) for `--allowlist`.
    #[command(after_help = lock::EXIT_CODES)]
    Lock {
        /// Print the JSON document instead of text.
        #[arg(long)]
        json: bool,
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
        .with_writer(crate::style::log_writer)
        .init();
}

/// Runs `command` on a multi-threaded tokio runtime (exit 2 if none can start).
fn block_on(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => {
            eprintln!("plugin-host: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    // The probe child mode is dispatched before anything else runs.
    if std::env::args_os().nth(1).as_deref() == Some(PROBE_SUBCOMMAND.as_ref()) {
        return plugbay_host::run_probe_child();
    }
    // So is the runner of isolated plugins.
    if std::env::args_os().nth(1).as_deref() == Some(plugbay_host::RUNNER_ARG.as_ref()) {
        return plugbay_host::run_isolated_child();
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
        Command::Inspect {
            json,
            state_dir,
            safety,
            target,
            dirs,
        } => {
            init_tracing("warn");
            inspect::inspect(inspect::InspectArgs {
                target,
                dirs,
                state_dir,
                json,
                safety,
            })
        }
        Command::Explain {
            json,
            safety,
            name,
            dirs,
        } => {
            init_tracing("warn");
            explain::explain(&name, &dirs, json, &safety)
        }
        Command::Run {
            state_dir,
            once,
            json,
            profile,
            allow_failures,
            checkpoint_every,
            watch,
            cascade,
            settle_ms,
            safety,
            isolation,
            dirs,
        } => {
            // Admitting a new file under --watch admits its directory again:
            // the libraries already running are refused there as duplicates,
            // which is expected, not worth a warning.
            let filter = if watch {
                "info,plugbay_host::manager::directory=error"
            } else {
                "info"
            };
            let profile = profile.then(profile::Recorder::default);
            match &profile {
                Some(recorder) => profile::init_tracing(filter, recorder),
                None => init_tracing(filter),
            }
            block_on(run::run(run::RunArgs {
                dirs,
                state_dir,
                once,
                watch: watch.then(|| watch::WatchOptions {
                    cascade,
                    settle: std::time::Duration::from_millis(settle_ms),
                }),
                safety,
                isolation,
                json,
                profile,
                allow_failures,
                checkpoint_every,
            }))
        }
        Command::Call {
            json,
            state_dir,
            config,
            safety,
            isolation,
            operands,
        } => {
            // Host internals stay quiet (the one-line error says what failed);
            // the plugin's own log lines show. RUST_LOG overrides.
            init_tracing("off,plugin=info");
            block_on(call::call(call::CallArgs {
                operands,
                config,
                state_dir,
                safety,
                isolation,
                json,
            }))
        }
        Command::New { json, name, dir } => new::new(&name, dir, json),
        Command::Lock { json, output, dirs } => {
            init_tracing("warn");
            lock::lock(&dirs, &output, json)
        }
    }
}
