//! Command-line options choosing which plugins run isolated, in a runner process
//! of their own (this very binary in its runner mode).

use std::ffi::OsString;

use clap::Args;
use plugbay_host::{Error, ManagerConfigBuilder, PluginManager, Result, RUNNER_ARG};

/// Which plugins run in a runner process instead of the host.
#[derive(Args, Debug, Clone, Default)]
pub struct IsolateArgs {
    /// Run the plugin NAME in a process of its own (repeatable): a crash, an
    /// exit or a hang ends only that process, reported as the plugin's failure.
    /// Costs a socket round trip per call.
    #[arg(long, value_name = "NAME")]
    pub isolate: Vec<String>,
    /// Run every plugin in a process of its own.
    #[arg(long)]
    pub isolate_all: bool,
}

impl IsolateArgs {
    /// `builder` with these choices; the runner is this executable.
    pub fn apply(&self, mut builder: ManagerConfigBuilder) -> Result<ManagerConfigBuilder> {
        if self.isolate.is_empty() && !self.isolate_all {
            return Ok(builder);
        }
        let exe = std::env::current_exe().map_err(|e| {
            Error::Config(format!(
                "cannot locate this executable to run isolated plugins: {e}"
            ))
        })?;
        builder = builder
            .isolation_runner(exe, vec![OsString::from(RUNNER_ARG)])
            .isolate_all(self.isolate_all)
            // Plugins logging through the host need no environment; a runner
            // that panics prints a backtrace when asked to.
            .isolation_keep_env("RUST_BACKTRACE");
        for name in &self.isolate {
            builder = builder.isolate(name.clone());
        }
        Ok(builder)
    }

    /// Warns on stderr about each `--isolate NAME` that names no registered
    /// plugin (a typo would otherwise leave that plugin in-process silently).
    pub fn warn_unknown(&self, manager: &PluginManager) {
        for name in &self.isolate {
            if manager.id_of(name).is_none() {
                eprintln!(
                    "plugin-host: --isolate {name}: no plugin named `{name}` was found in the directories"
                );
            }
        }
    }
}
