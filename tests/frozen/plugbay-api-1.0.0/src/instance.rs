//! The plugin instance as an FFI-safe trait object.

// `#[sabi_trait]` expands to impl blocks inside a const item; the lint is about that
// generated code, not ours.
#![allow(non_local_definitions)]

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RStr, RString},
};

use crate::{HostContext, PluginError};

/// One live plugin instance, as the host sees it across the boundary.
///
/// Plugin authors do not implement this directly: they implement
/// [`crate::Plugin`] and export it with [`crate::export_plugin!`], which
/// implements this trait with panic catching around every method.
///
/// The host serializes calls into one instance, so methods take `&mut self`.
/// New methods are only ever appended after the current last one.
#[sabi_trait]
pub trait PluginInstance: Send + 'static {
    /// Starts the plugin. `host` stays valid for the plugin's whole life.
    fn initialize(&mut self, host: HostContext) -> RResult<(), PluginError>;

    /// Stops the plugin. The host keeps the instance afterwards, so it can still
    /// ask for the final state ([`PluginInstance::save_state`]); it is dropped
    /// when the plugin is loaded again (a fresh instance replaces it) or when the
    /// host lets go of the library.
    fn shutdown(&mut self) -> RResult<(), PluginError>;

    /// The plugin's state as JSON text, for the host to persist.
    fn save_state(&self) -> RResult<RString, PluginError>;

    /// Restores state saved earlier. `saved_by_version` is the plugin version that
    /// saved it, so a newer plugin can migrate an older format.
    fn load_state(
        &mut self,
        state: RStr<'_>,
        saved_by_version: RStr<'_>,
    ) -> RResult<(), PluginError>;

    /// Runs the operation `method` with JSON `args`; returns a JSON result.
    #[sabi(last_prefix_field)]
    fn call(&mut self, method: RStr<'_>, args: RStr<'_>) -> RResult<RString, PluginError>;
}

/// An owned, type-erased plugin instance.
pub type PluginInstanceBox = PluginInstance_TO<RBox<()>>;
