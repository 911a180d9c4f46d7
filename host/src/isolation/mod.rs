//! Isolated plugins: a plugin library run in a child process of its own, behind
//! the same host-side [`crate::Plugin`] trait as an in-process one.
//!
//! In-process, a native plugin shares the host's fate: a segfault, an abort, a
//! stack overflow, `exit(0)` or an allocation without bound ends the host, and a
//! call that never returns holds a thread forever. An isolated plugin runs in a
//! *runner* child (the host's own binary in its runner mode, see
//! [`run_isolated_child`]), so its death ends only that child: the plugin's
//! [`crate::CrashSignal`] reports why ([`crate::CrashReason`] and the child's
//! last stderr lines), its in-flight calls fail with [`crate::Error::Crashed`],
//! and the host and the other plugins go on. Its next `initialize` starts a new
//! child.
//!
//! - [`IsolationConfig`] (in [`crate::ManagerConfig`]): which plugins run
//!   isolated (by name, all, or every library unless an allowlist is enforced),
//!   the runner program, the per-call deadline, the limits and the environment.
//! - `wire`: the messages, in the probe channel's frames (magic, version, length
//!   cap, per-session nonce); every payload is decoded by `wire::decode`.
//! - `proxy`: the host side ([`IsolatedPlugin`]): incarnations, requests and
//!   their deadlines; `connection`: one runner process per incarnation, a
//!   reader thread (replies, callbacks, death), a writer thread, a stderr
//!   thread keeping the last lines (`stderr`).
//! - `child`: the runner side: opens the library, runs requests one at a time
//!   on a worker thread, proxies the plugin's host callbacks back.
//! - `limits`: resource limits the runner sets on itself before opening the
//!   library, and how a death is read as going over one.
//!
//! Host callbacks (log, host name and version, config, status, calls to other
//! plugins, the `@host` services: events, data directory) are proxied: the
//! child sends the call chain the plugin code runs on, and the host admits the
//! call on that chain, so the re-entrancy rule holds across processes.
//!
//! Unix only for now: on other systems isolating a plugin fails with
//! [`crate::Error::Config`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

mod child;
mod connection;
mod limits;
mod proxy;
mod stderr;
pub(crate) mod wire;

pub use child::run_isolated_child;
pub use limits::Limits;
pub use proxy::IsolatedPlugin;

/// The argument under which a binary runs as an isolated plugin's runner, by
/// convention: its `main` dispatches it to [`run_isolated_child`] before
/// anything else (`plugin-host` and `plugin-probe` do).
pub const RUNNER_ARG: &str = "__isolate";

/// The default deadline of one request to an isolated plugin (a call, or a
/// lifecycle operation, whose deadline is also bounded by the manager's).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a plugin's code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationPolicy {
    /// In the host process (the default): fastest, shares the host's fate.
    InProcess,
    /// In a runner child process of its own: contained, ≈ a socket round trip
    /// per call.
    Isolated,
}

/// Which plugins run isolated and how (see the module docs). Part of
/// [`crate::ManagerConfig`]; set through [`crate::ManagerConfigBuilder`]'s
/// `isolate*` methods.
#[derive(Debug, Clone)]
pub struct IsolationConfig {
    pub(crate) runner: Option<(PathBuf, Vec<OsString>)>,
    pub(crate) names: Vec<String>,
    pub(crate) all: bool,
    pub(crate) unless_allowlisted: bool,
    pub(crate) call_timeout: Duration,
    pub(crate) limits: Limits,
    pub(crate) keep_env: Vec<String>,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        Self {
            runner: None,
            names: Vec::new(),
            all: false,
            unless_allowlisted: false,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            limits: Limits::default(),
            keep_env: Vec::new(),
        }
    }
}

impl IsolationConfig {
    /// Where the plugin called `name` runs. `allowlist_enforced`: whether the
    /// admission refuses libraries not on an allowlist (then every admitted
    /// library is on it).
    pub fn policy_for(&self, name: &str, allowlist_enforced: bool) -> IsolationPolicy {
        if self.all
            || self.names.iter().any(|n| n == name)
            || (self.unless_allowlisted && !allowlist_enforced)
        {
            IsolationPolicy::Isolated
        } else {
            IsolationPolicy::InProcess
        }
    }

    /// The runner program and its arguments, if configured.
    pub fn runner(&self) -> Option<(&PathBuf, &[OsString])> {
        self.runner.as_ref().map(|(p, a)| (p, a.as_slice()))
    }

    /// The deadline of one request to an isolated plugin.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The limits each runner sets on itself.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Environment variables passed on to runners (everything else is cleared).
    pub fn keep_env(&self) -> &[String] {
        &self.keep_env
    }

    /// Whether any plugin can be isolated under this configuration.
    pub fn any(&self) -> bool {
        self.all || self.unless_allowlisted || !self.names.is_empty()
    }
}

/// What one isolated plugin needs to start runner processes.
#[derive(Debug, Clone)]
pub(crate) struct RunnerSettings {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) limits: Limits,
    pub(crate) keep_env: Vec<String>,
    pub(crate) call_timeout: Duration,
    pub(crate) init_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
}
