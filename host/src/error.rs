//! The host's error type: one enum, precise variants, lowercase messages that name
//! the plugin or file, the cause and, where known, the fix.

use std::path::PathBuf;
use std::time::Duration;

use plugbay_api::{ErrorKind, PluginError};
use uuid::Uuid;

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the host.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    // ----- discovery and loading -----
    /// A plugin directory could not be read.
    #[error("cannot read plugin directory {}: {reason}", path.display())]
    DirUnreadable {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },

    /// The dynamic loader could not open the file.
    #[error("cannot open plugin library {}: {reason}", path.display())]
    OpenFailed {
        /// The library file.
        path: PathBuf,
        /// The loader's reason (e.g. "invalid ELF header").
        reason: String,
    },

    /// The file is a shared library but does not export a plugbay-api root module.
    #[error(
        "{} is not a plugin: it does not export the plugbay-api root module \
         (a plugin calls `plugbay_api::export_plugin!(MyPlugin)`)",
        path.display()
    )]
    NotAPlugin {
        /// The library file.
        path: PathBuf,
    },

    /// The plugin's types do not match this host's interface layout.
    #[error(
        "{} has an incompatible plugbay-api layout: {summary}; \
         rebuild the plugin against plugbay-api {host_interface}",
        path.display()
    )]
    AbiMismatch {
        /// The library file.
        path: PathBuf,
        /// A few lines saying which type or field differs.
        summary: String,
        /// The plugbay-api version this host was built with.
        host_interface: String,
    },

    /// The plugin was built against a plugbay-api major version this host does not speak.
    #[error(
        "{} was built against plugbay-api {found}, but this host speaks plugbay-api {expected}; \
         rebuild the plugin against plugbay-api {expected}",
        path.display()
    )]
    InterfaceVersionMismatch {
        /// The library file.
        path: PathBuf,
        /// The host's plugbay-api version.
        expected: String,
        /// The plugin's plugbay-api version.
        found: String,
    },

    /// The plugin's metadata is unusable (bad semver, empty name, ...).
    #[error("{} has invalid metadata: {reason}", path.display())]
    InvalidMetadata {
        /// The library file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    // ----- running plugin code -----
    /// The plugin's `initialize` returned an error.
    #[error("plugin `{plugin}` failed to initialize: {reason}")]
    InitFailed {
        /// Plugin name.
        plugin: String,
        /// The plugin's error message.
        reason: String,
    },

    /// Plugin code panicked; the panic was caught.
    #[error("plugin `{plugin}` panicked in {operation}: {message}")]
    PluginPanicked {
        /// Plugin name.
        plugin: String,
        /// Which entry point (`initialize`, `call(greet)`, ...).
        operation: String,
        /// The panic message.
        message: String,
    },

    /// A plugin operation other than initialize returned an error.
    #[error("plugin `{plugin}`: {operation} failed: {reason}")]
    PluginFailed {
        /// Plugin name.
        plugin: String,
        /// Which entry point.
        operation: String,
        /// The kind of the plugin's error ([`ErrorKind::Host`] when the host, not
        /// the plugin, ended the operation, e.g. its task died). A plugin calling
        /// this one through the host receives this kind (see
        /// [`Error::into_plugin_error`]).
        kind: ErrorKind,
        /// The plugin's error message.
        reason: String,
    },

    /// `initialize` did not finish within its deadline.
    #[error(
        "plugin `{plugin}` did not finish initializing within {after:?}; it is marked failed \
         (raise the init timeout if it is just slow)"
    )]
    InitTimeout {
        /// Plugin name.
        plugin: String,
        /// The deadline that passed.
        after: Duration,
    },

    /// `shutdown` did not finish within its deadline.
    #[error("plugin `{plugin}` did not shut down within {after:?}; it is marked failed")]
    ShutdownTimeout {
        /// Plugin name.
        plugin: String,
        /// The deadline that passed.
        after: Duration,
    },

    // ----- registry and lifecycle -----
    /// No plugin with this id is registered.
    #[error("no plugin with id {0} is registered")]
    NotFound(Uuid),

    /// No plugin with this name is registered.
    #[error("no plugin named `{0}` is registered")]
    NotFoundByName(String),

    /// Two registrations claim the same plugin name.
    #[error(
        "plugin name `{name}` is claimed twice: by {first} and by {second}; remove one of them"
    )]
    DuplicateName {
        /// The contested name.
        name: String,
        /// Where the first registration came from.
        first: String,
        /// Where the second one came from.
        second: String,
    },

    /// The requested lifecycle transition is not allowed from the current state.
    #[error("plugin `{plugin}` cannot go from {from} to {to}")]
    InvalidTransition {
        /// Plugin name.
        plugin: String,
        /// Current state.
        from: String,
        /// Requested state.
        to: String,
    },

    /// A plugin is not active, so it cannot be called.
    #[error("plugin `{plugin}` is not active (it is {state})")]
    NotActive {
        /// Plugin name.
        plugin: String,
        /// Its current state.
        state: String,
    },

    /// A call would re-enter a plugin already running on this call chain.
    #[error("call into `{plugin}` refused: it would re-enter a plugin already on the call chain ({chain})")]
    ReentrantCall {
        /// The plugin that would be re-entered.
        plugin: String,
        /// The chain of plugins, outermost first.
        chain: String,
    },

    // ----- dependencies -----
    /// A required dependency is not registered.
    #[error("plugin `{plugin}` requires `{dependency}` {requirement}, which is not installed")]
    MissingDependency {
        /// The dependent plugin.
        plugin: String,
        /// The missing dependency.
        dependency: String,
        /// The semver requirement.
        requirement: String,
    },

    /// A dependency is installed with a version that does not satisfy the requirement.
    #[error("plugin `{plugin}` requires `{dependency}` {requirement}, found {found}")]
    VersionConflict {
        /// The dependent plugin.
        plugin: String,
        /// The dependency.
        dependency: String,
        /// The semver requirement.
        requirement: String,
        /// The installed version.
        found: String,
    },

    /// Plugins depend on each other in a cycle.
    #[error("dependency cycle: {}", cycle.join(" -> "))]
    DependencyCycle {
        /// The plugins of the cycle, first repeated at the end (`[a, b, a]`).
        cycle: Vec<String>,
    },

    /// A dependency failed to start, so the dependent was not started.
    #[error("plugin `{plugin}` was not started because its dependency `{dependency}` failed")]
    DependencyFailed {
        /// The dependent plugin.
        plugin: String,
        /// The dependency that failed.
        dependency: String,
    },

    /// A required dependency is registered but not active.
    #[error(
        "plugin `{plugin}` cannot start: its dependency `{dependency}` is {state}, not active"
    )]
    DependencyNotActive {
        /// The dependent plugin.
        plugin: String,
        /// The dependency.
        dependency: String,
        /// The dependency's state.
        state: String,
    },

    /// Unloading a plugin that active plugins depend on.
    #[error(
        "plugin `{plugin}` is in use by {}; unload them first or unload with cascade",
        dependents.join(", ")
    )]
    InUse {
        /// The plugin to unload.
        plugin: String,
        /// Active plugins that depend on it.
        dependents: Vec<String>,
    },

    // ----- state persistence -----
    /// A plugin name cannot be turned into a safe state-file name.
    #[error("plugin name {name:?} cannot name a state file: {reason}")]
    InvalidStateName {
        /// The offending name.
        name: String,
        /// Why it is refused.
        reason: String,
    },

    /// Reading or writing a state file failed.
    #[error("state {operation} failed for {}: {reason}", path.display())]
    StateIo {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`write`, `fsync`, `rename`, ...).
        operation: String,
        /// The OS error.
        reason: String,
    },

    /// A state file was corrupt and was moved aside.
    #[error("state file {} is corrupt ({reason}); moved to {}", path.display(), moved_to.display())]
    StateCorrupt {
        /// The corrupt file's original path.
        path: PathBuf,
        /// Where its bytes are now.
        moved_to: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// Another host process holds the state directory.
    #[error("state directory {} is in use by another host (pid {holder}); stop it or use another --state-dir", path.display())]
    StateDirLocked {
        /// The state directory.
        path: PathBuf,
        /// The pid recorded by the holder.
        holder: String,
    },

    /// An event, its payload or a subscription pattern was refused.
    #[error("event {name:?} refused: {reason}")]
    InvalidEvent {
        /// The event name or pattern (cut to the length limit).
        name: String,
        /// Why.
        reason: String,
    },

    /// A plugin that is not running (shutting down, stopped, failed) tried to
    /// publish or subscribe.
    #[error("plugin `{plugin}` may not use events now: it is {state}")]
    EventsRefused {
        /// The plugin.
        plugin: String,
        /// Its state.
        state: String,
    },

    /// A plugin's data directory could not be provided.
    #[error("data directory {} for plugin `{plugin}` is unavailable: {reason}", path.display())]
    DataDir {
        /// The plugin asking.
        plugin: String,
        /// The directory (empty when no data root is configured).
        path: PathBuf,
        /// Why: no data root configured, the name is refused, or the OS error.
        reason: String,
    },

    // ----- safety checks -----
    /// The preflight probe found the library unsafe to open in the host.
    #[error("{} is quarantined: {reason}", path.display())]
    Quarantined {
        /// The library file.
        path: PathBuf,
        /// What the probe saw (signal, timeout, garbage, ...).
        reason: String,
    },

    /// The library's hash is not the one in the allowlist.
    #[error("{} does not match the allowlist: expected sha256 {expected}, found {found}", path.display())]
    IntegrityMismatch {
        /// The library file.
        path: PathBuf,
        /// The listed hash (or "not listed").
        expected: String,
        /// The file's hash.
        found: String,
    },

    /// A plugin file or directory is writable by others or owned by another user.
    #[error("{} has insecure permissions (mode {mode:o}, owner uid {owner}); make it writable only by its owner", path.display())]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner's uid.
        owner: u32,
    },

    /// The file cannot be a plugin (not a regular file, too large, symlink escaping the dir).
    #[error("{} is refused: {reason}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// Configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    // ----- hot reload -----
    /// A reload failed at `step`; the version that ran before it was kept (or
    /// restored, with the state it saved) and serves again.
    #[error(
        "reload of plugin `{plugin}` failed at step `{step}`: {cause}; \
         version {running} kept serving"
    )]
    ReloadFailed {
        /// The plugin.
        plugin: String,
        /// The step that failed.
        step: crate::manager::ReloadStep,
        /// Why it failed.
        cause: Box<Error>,
        /// The version serving afterwards (the one that ran before).
        running: String,
    },

    /// A reload failed and restoring the version that ran before failed too:
    /// the plugin is `Failed` (loading it again retries with the current file).
    #[error(
        "reload of plugin `{plugin}` failed at step `{step}`: {cause}; restoring version \
         {version} failed too: {rollback}; the plugin is failed, load it again"
    )]
    ReloadRollbackFailed {
        /// The plugin.
        plugin: String,
        /// The step that failed.
        step: crate::manager::ReloadStep,
        /// Why it failed.
        cause: Box<Error>,
        /// The version that could not be restored.
        version: String,
        /// Why restoring it failed.
        rollback: Box<Error>,
    },

    /// The new version does not satisfy what running dependents require.
    #[error(
        "reload of plugin `{plugin}` to version {version} refused: running dependents \
         require another version: {}; reload with cascade to restart them",
        dependents.join(", ")
    )]
    ReloadBreaksDependents {
        /// The plugin.
        plugin: String,
        /// The version the new file has.
        version: String,
        /// Each dependent with its requirement (`greeter (requires ^1.0)`), sorted.
        dependents: Vec<String>,
    },

    /// Another reload of the same plugin is under way.
    #[error("plugin `{plugin}` is already being reloaded; wait for that reload to finish")]
    ReloadInProgress {
        /// The plugin.
        plugin: String,
    },

    /// A reload was asked for while the manager unloads every plugin.
    #[error("cannot reload plugin `{plugin}`: the manager is unloading all plugins")]
    ReloadDuringShutdown {
        /// The plugin.
        plugin: String,
    },

    /// A reload cannot start: the plugin has no library file to reload from, or
    /// the replacement is not the same plugin.
    #[error("cannot reload plugin `{plugin}`: {reason}")]
    ReloadRefused {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },

    /// A reload's swap did not finish within the reload timeout.
    #[error(
        "reload of plugin `{plugin}` did not finish within {after:?} \
         (raise the reload timeout if the plugin is just slow)"
    )]
    ReloadTimeout {
        /// The plugin.
        plugin: String,
        /// The deadline that passed.
        after: Duration,
    },

    /// A call waited for a reload of its plugin longer than the reload timeout.
    #[error(
        "a call into plugin `{plugin}` waited {waited:?} for its reload to finish and gave up"
    )]
    ReloadWaitTimeout {
        /// The plugin.
        plugin: String,
        /// How long it waited.
        waited: Duration,
    },

    // ----- run time -----
    /// The plugin died on its own while running (its process crashed, exited,
    /// overstayed a deadline or went over a limit); see [`crate::CrashReport`].
    #[error("plugin `{plugin}` crashed: {report}")]
    Crashed {
        /// The plugin.
        plugin: String,
        /// Why, and its last stderr lines.
        report: crate::crash::CrashReport,
    },

    /// The plugin crashed again after its restart policy's limit of restarts
    /// within the window was used up; it stays failed until loaded by hand.
    #[error(
        "plugin `{plugin}` stays failed: restart limit reached ({restarts} restarts within {window:?}); last failure: {last}; load it again to retry"
    )]
    RestartLimit {
        /// The plugin.
        plugin: String,
        /// The restarts within the window.
        restarts: u32,
        /// The policy's window.
        window: Duration,
        /// The last crash, or the last failed restart.
        last: Box<Error>,
    },
}

impl Error {
    /// This error as plugin code receives it when its call to another plugin,
    /// through the host, failed with it: an error the called plugin returned keeps
    /// that plugin's [`ErrorKind`] (`UnknownMethod`, `InvalidInput`, `Failed`, ...),
    /// and its message names the plugin that answered (`plugin `b`: call(m) failed:
    /// ...`). Everything else, including a panic in the called plugin (which is not
    /// the caller's panic), is kind [`ErrorKind::Host`] with this error's text.
    ///
    /// Native plugins get this automatically from their host callback; in-process
    /// plugins calling through [`crate::PluginContext::call`] use it to pass an
    /// error on (`.map_err(Error::into_plugin_error)?`).
    pub fn into_plugin_error(self) -> PluginError {
        let kind = match &self {
            Error::PluginFailed { kind, .. } if *kind != ErrorKind::Panicked => *kind,
            _ => ErrorKind::Host,
        };
        PluginError::new(kind, self.to_string())
    }
}
