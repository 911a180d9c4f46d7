//! `plugin-host`: list, check and run native plugins.

mod list;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Discover, check and run native plugins built against plugin-api.
#[derive(Parser)]
#[command(name = "plugin-host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show metadata and load result for every library file, without initializing any plugin.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
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
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plugin-host: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::List { json, dirs } => {
            init_tracing("warn");
            runtime.block_on(list::run(&dirs, json))
        }
    }
}
