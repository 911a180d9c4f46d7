//! The root module every plugin library exports.

use abi_stable::{
    declare_root_module_statics, library::RootModule, package_version_strings,
    sabi_types::VersionStrings, std_types::RResult, StableAbi,
};

use crate::{PluginError, PluginInstanceBox, PluginMetadata};

/// The table of functions a plugin library exports.
///
/// This is a prefix type: later `plugbay-api` 1.x releases may append fields after
/// `new_instance`, and hosts built against them still load older plugins
/// (the appended fields read as absent).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's metadata. Runs no plugin initialization.
    pub metadata: extern "C" fn() -> RResult<PluginMetadata, PluginError>,

    /// Creates a new, not yet initialized, plugin instance.
    #[sabi(last_prefix_field)]
    pub new_instance: extern "C" fn() -> RResult<PluginInstanceBox, PluginError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "plugin";
    const NAME: &'static str = "plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
