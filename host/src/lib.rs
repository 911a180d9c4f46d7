//! # host: discovers, checks, loads and runs plugins built against `plugbay-api`
//!
//! The pieces, bottom up:
//! - [`discovery`] finds library files in plugin directories;
//! - [`loader`] opens one library (on the blocking pool), checks its ABI and reads
//!   its metadata ([`PluginInfo`]);
//! - [`FfiPlugin`] adapts a loaded library to the host-side [`Plugin`] trait, which
//!   in-process plugins implement directly;
//! - [`PluginContext`] is what plugin code uses to call back into the host;
//! - [`PluginManager`] registers plugins and drives their lifecycle;
//! - [`InProcessPlugin`] builds plugins from closures, for embedders and tests;
//! - [`PluginStateManager`] persists plugin state, durably and crash-safely.

#![warn(missing_docs)]

pub mod abi_summary;
pub mod context;
pub mod discovery;
pub mod error;
pub mod ffi;
pub mod in_process;
pub mod info;
pub mod loader;
pub mod manager;
pub(crate) mod platform;
pub mod plugin;
pub mod resolve;
pub mod safety;
pub mod state;

pub use context::{CallChain, HostServices, PluginContext};
pub use error::{Error, Result};
pub use ffi::FfiPlugin;
pub use in_process::{Counters, InProcessBuilder, InProcessPlugin};
pub use info::{DependencySpec, PluginInfo, PluginSource};
pub use loader::{load_library, open_library, LoadedLibrary};
pub use manager::{
    BatchReport, DirectoryReport, LifecycleEvent, ManagerConfig, PluginManager, PluginState,
    PluginSummary, Target, UnloadOptions,
};
pub use plugin::Plugin;
pub use safety::{SafetyConfig, ScanReport};
pub use state::{LoadOutcome, PluginStateManager, SaveOutcome, SavedState, StateEvent};
