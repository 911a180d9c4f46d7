//! # plugbay-host: discovers, checks, loads and runs plugins built against `plugbay-api`
//!
//! This crate is the host side of plugbay: an embedder creates a [`PluginManager`]
//! from a [`ManagerConfig`], points it at plugin directories, starts everything in
//! dependency order, calls plugins, checkpoints their state and shuts down. The
//! `plugin-host` command line (package `plugbay-cli`) is built on exactly this API.
//!
//! ```no_run
//! # async fn demo() -> plugbay_host::Result<()> {
//! use plugbay_host::{ManagerConfig, PluginManager};
//!
//! let config = ManagerConfig::builder()
//!     .plugin_dir("plugins")
//!     .state_dir("state")
//!     .build()?;
//! let manager = PluginManager::open(config).await?; // state store opened
//! manager.load_plugin_dirs().await; // admitted through the safety pipeline
//! let started = manager.load_all_plugins().await; // dependency order
//! assert!(started.is_ok(), "{:?}", started.failures().collect::<Vec<_>>());
//! let answer = manager.call("hello", "greet", serde_json::json!({})).await?;
//! println!("{answer}");
//! manager.save_all_states().await; // checkpoint
//! manager.unload_all_plugins().await; // reverse dependency order, state saved
//! # Ok(()) }
//! ```
//!
//! `host/examples/embed.rs` in the repository is the same program as a runnable
//! example.
//!
//! ## What is public
//!
//! Everything an embedder uses is re-exported here; the modules themselves are
//! private, so nothing internal (and nothing `unsafe`) is part of the API.
//!
//! - **Manager**: [`PluginManager`], configured by [`ManagerConfig`] /
//!   [`ManagerConfigBuilder`]. It registers plugins, admits plugin directories
//!   ([`DirectoryReport`], [`RegisteredLibrary`]), drives lifecycles concurrently
//!   ([`BatchReport`], [`PluginOutcome`], [`PluginState`], [`LifecycleEvent`]),
//!   routes calls ([`Target`]) and unloads ([`UnloadOptions`]); [`PluginSummary`]
//!   describes one registered plugin. Plugins that can die on their own
//!   ([`CrashSignal`], [`CrashReport`], [`CrashReason`]) are supervised: a
//!   crash ends them `Failed(`[`Error::Crashed`]`)` and a [`RestartPolicy`]
//!   ([`RestartOnFailure`]) restarts them; [`SupervisorEvent`]s report each step.
//! - **Plugins on the host side**: every plugin, native or in-process, is a
//!   [`Plugin`]; its code reaches the host through a [`PluginContext`] (with its
//!   [`CallChain`], served by [`HostServices`]). Plugins are described by
//!   [`PluginInfo`], [`DependencySpec`] and [`PluginSource`]. A native library
//!   becomes a [`Plugin`] through [`FfiPlugin`], whose calls run inline or on the
//!   blocking pool by a measured policy ([`CallPath`], [`CallMode`],
//!   [`INLINE_LIMIT`], [`DEMOTE_AT_ONCE`], [`STRIKE_WINDOW`], [`PROMOTE_AFTER`],
//!   [`MAX_PROMOTE_AFTER`]; see
//!   [`PluginManager::call_path`]); [`InProcessPlugin`] /
//!   [`InProcessBuilder`] build plugins from closures (with [`Counters`]), for
//!   embedders and tests.
//! - **Safety** (admission of library files): [`SafetyConfig`] /
//!   [`SafetyConfigBuilder`] configure it; [`scan_dirs`] reports without opening
//!   anything in this process ([`ScanReport`], [`FileReport`] with the file's
//!   [`PluginInfo`], [`FileStatus`]); [`admit_dirs`] /
//!   [`admit_dirs_async`] also open the compatible libraries ([`Admission`],
//!   [`LoadedLibrary`]); [`write_lockfile`] writes the integrity allowlist;
//!   [`default_work_dir`] is where the scan cache and shadow copies go. Each
//!   file is permission-checked, copied privately while hashed, checked against
//!   the allowlist and the scan cache, and opened first by a separate probe
//!   process, so a library that crashes while loading cannot take the host down.
//! - **The probe child**: [`run_probe_child`] is the whole program of a probe
//!   binary, for embedders that ship their own (`plugin-probe` in this package is
//!   one; `plugin-host` serves as its own probe through a hidden subcommand). Point
//!   [`SafetyConfigBuilder::probe_program`] at it.
//! - **Isolated plugins**: a plugin can run in a runner child process of its
//!   own instead of the host ([`IsolationPolicy`], configured by
//!   [`IsolationConfig`] through [`ManagerConfigBuilder::isolate`] and friends,
//!   with resource [`Limits`] and a per-call deadline, [`DEFAULT_CALL_TIMEOUT`]);
//!   it is an [`IsolatedPlugin`], so the manager drives it like any other, and
//!   its death is reported through its [`CrashSignal`] and [`Error::Crashed`].
//!   [`run_isolated_child`] is the runner's whole program, dispatched by the
//!   embedder's `main` under [`RUNNER_ARG`] (like [`run_probe_child`]).
//! - **Opting out of admission**: two clearly named, documented ways, both only
//!   for trusted files. [`SafetyConfigBuilder::probe`]`(false)` keeps every check
//!   but opens libraries in this process without the probe, and
//!   [`load_library_unchecked`] opens one file with no admission at all.
//! - **Dependency resolution**: [`resolve`] turns [`Node`]s into a [`Plan`] (start
//!   waves, blocked plugins and why: [`Plan::explain`]), the same one the manager
//!   uses ([`PluginManager::resolve_dependencies`]).
//! - **State**: [`PluginStateManager`] persists plugin state durably and
//!   crash-safely ([`SaveOutcome`], [`LoadOutcome`], [`StateEvent`],
//!   [`SavedState`]); its limits are [`MAX_STATE_FILE_BYTES`],
//!   [`MAX_STATE_DEPTH`] and [`MAX_STATE_NAME_LEN`]; [`default_state_dir`] is the
//!   per-user default. A plugin's name also names its state file, so
//!   [`validate_plugin_name`] is the naming rule, for tools that create plugins.
//! - **Events**: an [`EventBus`] per manager carries named JSON [`Event`]s from
//!   plugins, the embedder ([`PluginManager::publish`],
//!   [`PluginManager::subscribe_events`] → [`EventReceiver`]) and the lifecycle
//!   (source [`LIFECYCLE_SOURCE`]) to bounded per-subscriber queues; a full queue
//!   drops and counts ([`SubscriberStats`]), never blocks the publisher.
//! - **Errors**: one [`Error`] type (and [`Result`]) for everything above. Plugin
//!   code reports a [`PluginError`] with an [`ErrorKind`]; a plugin's returned error
//!   becomes [`Error::PluginFailed`] with that kind, and reaches a plugin that called
//!   it through the host with the same kind ([`Error::into_plugin_error`]).
//!
//! Deliberately unreachable, so that no safe-looking call can skip a check: the
//! proof token that lets the loader skip abi_stable's layout check, the raw
//! loader, and the probe's wire protocol.
//!
//! ```compile_fail
//! // Does not compile: the token (and its module) are crate-private.
//! let token = unsafe { plugbay_host::loader::LayoutVerified::assume() };
//! ```
//!
//! ```compile_fail
//! let _ = plugbay_host::loader::open_library(std::path::Path::new("lib.so"));
//! ```
//!
//! ```compile_fail
//! use plugbay_host::safety::protocol::read_frame;
//! ```
//!
//! The `bench-internals` feature additionally exposes a module `internals`, a few
//! internal pieces the repository's benchmarks measure directly. It is not part of
//! the stable API. Likewise the `fuzzing` feature exposes `fuzzing`, the fuzz
//! targets of the decoders that read outside bytes, for the cargo-fuzz crate.

#![warn(missing_docs)]

mod abi_summary;
mod call_policy;
mod context;
mod crash;
mod data_dir;
mod discovery;
mod error;
mod events;
mod ffi;
/// Fuzz targets for the decoders of outside bytes (probe channel, state files,
/// metadata). Enabled by the `fuzzing` feature, which only the cargo-fuzz
/// crate in `host/fuzz/` turns on; not part of the stable API.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod in_process;
mod info;
mod isolation;
mod loader;
mod manager;
mod platform;
mod plugin;
mod resolve;
mod safety;
mod state;

pub use call_policy::{
    CallMode, CallPath, DEMOTE_AT_ONCE, INLINE_LIMIT, MAX_PROMOTE_AFTER, PROMOTE_AFTER,
    STRIKE_WINDOW,
};
pub use context::{CallChain, HostServices, PluginContext};
pub use crash::{CrashReason, CrashReport, CrashSignal};
pub use error::{Error, Result};
pub use events::{
    Event, EventBus, EventReceiver, SubscriberStats, DEFAULT_SUBSCRIBER_CAPACITY, LIFECYCLE_SOURCE,
    MAX_EVENT_NAME_LEN, MAX_HANDLER_PANICS, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH,
};
pub use ffi::FfiPlugin;
pub use in_process::{Counters, InProcessBuilder, InProcessPlugin};
pub use info::{DependencySpec, PluginInfo, PluginSource};
pub use isolation::{
    run_isolated_child, IsolatedPlugin, IsolationConfig, IsolationPolicy, Limits,
    DEFAULT_CALL_TIMEOUT, RUNNER_ARG,
};
pub use loader::LoadedLibrary;
pub use manager::{
    BatchReport, DirectoryReport, LifecycleEvent, ManagerConfig, ManagerConfigBuilder,
    PluginManager, PluginOutcome, PluginState, PluginSummary, RegisteredLibrary, ReloadEvent,
    ReloadOptions, ReloadOutcome, ReloadStep, RestartOnFailure, RestartPolicy, SupervisorEvent,
    Target, UnloadOptions, DEFAULT_MAX_PARALLEL, DEFAULT_PHASE_TIMEOUT, DEFAULT_RELOAD_TIMEOUT,
    DEFAULT_RETAINED_IMAGES_WARNING,
};
/// The interface crate's types that appear in this API (the [`Plugin`] trait's
/// errors, [`PluginContext::log`]'s levels, [`Error::PluginFailed`]'s kind), so an
/// embedder needs no direct dependency on `plugbay-api` of a matching version.
pub use plugbay_api::{ErrorKind, LogLevel, PluginError};
pub use plugin::Plugin;
pub use resolve::{resolve, Cause, ClosestFile, Explanation, Node, Plan};
pub use safety::probe_child::run_probe_child;
pub use safety::{
    admit_dirs, admit_dirs_async, default_work_dir, scan_dirs, scan_dirs_with_progress,
    write_lockfile, Admission, FileReport, FileStatus, PermissionCheck, Progress, SafetyConfig,
    SafetyConfigBuilder, ScanReport,
};
pub use state::{
    default_state_dir, LoadOutcome, PluginStateManager, SaveOutcome, SavedState, StateEvent,
    MAX_STATE_DEPTH, MAX_STATE_FILE_BYTES, MAX_STATE_NAME_LEN,
};

/// Checks `name` against the rule every plugin name must follow, because it also
/// names the plugin's state file: 1 to [`MAX_STATE_NAME_LEN`] bytes of `a-z`,
/// `0-9`, `.`, `_`, `-`, not starting with `.`. Tools that create plugins (such as
/// `plugin-host new`) use it to refuse a name the host would refuse later.
/// Fails with [`Error::InvalidStateName`] saying why.
pub fn validate_plugin_name(name: &str) -> Result<()> {
    state::state_file_name(name).map(drop)
}

/// The file name under which a state directory keeps `name`'s state
/// (`<name>.json`, see [`PluginStateManager`]), for tools that read a state
/// directory without opening it (e.g. `plugin-host inspect --state-dir`, which
/// must not take a running host's lock). Fails like [`validate_plugin_name`].
pub fn state_file_name(name: &str) -> Result<String> {
    state::state_file_name(name)
}

/// Opens the library at `path` **without admission**: no permission check, no
/// private copy, no allowlist, no scan cache and no probe process. The dynamic
/// loader maps the file in this process and runs its constructors, so a broken or
/// hostile library can crash or hijack the host, and a file replaced while it is
/// mapped can crash it later. abi_stable's layout and version checks still run, so
/// an incompatible library is refused with [`Error::AbiMismatch`] /
/// [`Error::InvalidMetadata`] rather than misused.
///
/// Only for files the caller trusts completely (e.g. built moments ago in the same
/// build). Everything else goes through [`admit_dirs`] /
/// [`PluginManager::load_directory`]. Runs on the blocking pool.
pub async fn load_library_unchecked(path: std::path::PathBuf) -> Result<LoadedLibrary> {
    loader::load_library(path).await
}

/// Internal pieces the repository's benchmarks measure on their own: the probe
/// worker, the scan cache's racy window and file identity, shadow copying and
/// hashing, discovery, opening a library inline. Enabled by the `bench-internals`
/// feature, which only the scenario benchmarks, the `admission_cost` example and
/// `cargo xtask` turn on; not part of the stable API and may change in any release.
#[cfg(feature = "bench-internals")]
pub mod internals {
    pub use crate::discovery::discover;
    /// Decodes one isolated-plugin channel payload (the function every such
    /// payload goes through, both directions; for fuzzing).
    pub use crate::isolation::wire::{
        decode as decode_isolation_message, Msg as IsolationMessage,
        WireError as IsolationWireError,
    };
    pub use crate::loader::open_library;
    pub use crate::safety::cache::{FileIdentity, RACY_MARGIN};
    #[cfg(target_os = "linux")]
    pub use crate::safety::memfd::flush_shadow_copies;
    pub use crate::safety::probe::{ProbeOutcome, ProbeWorker};
    pub use crate::safety::shadow::{hash_file, sha256_file, ShadowDir};
}
