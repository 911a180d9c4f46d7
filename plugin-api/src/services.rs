//! Host services added after 1.0.0, and how they reach the host.
//!
//! The FFI tables ([`crate::HostApi`], [`crate::PluginInstance`],
//! [`crate::PluginMod`]) never change within 1.x: abi_stable refuses a library
//! whose tables have fewer entries than the host expects, so appending an entry
//! would lock every older plugin out of newer hosts. New services therefore
//! travel through the 1.0.0 method [`crate::HostApi::call_plugin`], addressed to
//! the reserved target [`HOST`] (hosts refuse plugin names starting with `@`). A host built against 1.0.x answers such a call
//! with an error, which [`crate::HostContext`] turns into "1.0.0", `false` or
//! [`crate::PluginError::needs_newer_host`]; it never crashes.
//!
//! A plugin asks [`crate::HostContext::has_service`] or
//! [`crate::HostContext::require`] before relying on a service.

/// The reserved call target that addresses the host itself.
pub const HOST: &str = "@host";

/// Method of [`HOST`]: the host's interface version as a JSON string. Since 1.1.0.
pub const API_VERSION: &str = "api_version";

/// Method of [`HOST`]: `{"service": NAME}` → `true`/`false`. Since 1.1.0.
pub const HAS_SERVICE: &str = "has_service";

/// The first released interface version; what a host that predates
/// [`crate::HostContext::host_api_version`] is reported as.
pub const FIRST_RELEASE: &str = "1.0.0";

/// Service (and method of [`HOST`]): the plugin's private data directory
/// ([`crate::HostContext::data_dir`]), as a JSON string. Since 1.1.0.
pub const DATA_DIR: &str = "data-dir";

/// Service: publishing and subscribing to events ([`crate::HostContext::publish`],
/// [`crate::HostContext::subscribe`], [`crate::Plugin::on_event`]). Since 1.1.0.
pub const EVENTS: &str = "events";

/// Method of [`HOST`]: `{"name": NAME, "payload": JSON}` publishes an event. Since 1.1.0.
pub const PUBLISH: &str = "publish";

/// Method of [`HOST`]: `{"pattern": NAME_OR_PREFIX*}` subscribes the caller. Since 1.1.0.
pub const SUBSCRIBE: &str = "subscribe";

/// The reserved method name under which the host delivers an event to a
/// plugin's `call` (`{"name", "payload", "source", "seq"}`); the code
/// [`crate::export_plugin!`] generates routes it to [`crate::Plugin::on_event`].
/// A 1.0 plugin never subscribes, so it never receives one.
pub const EVENT_METHOD: &str = "@event";

/// Every service this interface version defines, with the version that added it.
pub const ALL: &[(&str, &str)] = &[(DATA_DIR, "1.1.0"), (EVENTS, "1.1.0")];

/// The interface version that added `service`, or `None` for an unknown name.
pub fn since(service: &str) -> Option<&'static str> {
    ALL.iter()
        .find(|(name, _)| *name == service)
        .map(|(_, version)| *version)
}
