//! The host context: callbacks a plugin can make into the host.

// `#[sabi_trait]` expands to impl blocks inside a const item; the lint is about that
// generated code, not ours.
#![allow(non_local_definitions)]

use abi_stable::{
    sabi_trait,
    std_types::{RArc, ROption, RResult, RStr, RString},
    StableAbi,
};
use serde_json::Value;

use crate::PluginError;

/// Severity of a log line sent to the host.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something looks wrong but work goes on.
    Warn,
    /// Normal progress.
    Info,
    /// Detail for debugging.
    Debug,
    /// Very fine detail.
    Trace,
}

/// The FFI-safe callback table the host implements. Plugin authors use
/// [`HostContext`], which wraps it with convenient methods.
///
/// New methods are only ever appended after the current last one, so plugins
/// built against an older `plugbay-api` 1.x keep loading.
#[sabi_trait]
pub trait HostApi: Clone + Send + Sync + 'static {
    /// Writes a log line through the host's `tracing`, tagged with the plugin's name.
    fn log(&self, level: LogLevel, message: RStr<'_>);

    /// The host application's name.
    fn host_name(&self) -> RString;

    /// The host application's version.
    fn host_version(&self) -> RString;

    /// This plugin's configuration as JSON text (`null` when none is configured).
    fn config(&self) -> RString;

    /// The lifecycle state of another plugin (`"active"`, `"registered"`, ...),
    /// or none when no plugin has that name.
    fn plugin_status(&self, name: RStr<'_>) -> ROption<RString>;

    /// Calls `method` on another plugin with JSON `args`; returns its JSON result.
    #[sabi(last_prefix_field)]
    fn call_plugin(
        &self,
        name: RStr<'_>,
        method: RStr<'_>,
        args: RStr<'_>,
    ) -> RResult<RString, PluginError>;
}

/// The host context handed to a plugin's `initialize`. Cheap to clone; a plugin
/// may keep a clone and use it later (from `call`, or from its own threads).
#[repr(transparent)]
#[derive(StableAbi, Clone)]
pub struct HostContext {
    api: HostApi_TO<RArc<()>>,
}

impl HostContext {
    /// Wraps a host's implementation of [`HostApi`]. Used by hosts, not plugins.
    pub fn from_api<T: HostApi + 'static>(api: T) -> Self {
        Self {
            api: HostApi_TO::from_ptr(RArc::new(api), abi_stable::sabi_trait::TD_Opaque),
        }
    }

    /// Logs `message` at `level` through the host.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.api.log(level, message.into());
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    /// Logs at warn level.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    /// Logs at error level.
    pub fn error(&self, message: &str) {
        self.log(LogLevel::Error, message);
    }

    /// Logs at debug level.
    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, message);
    }

    /// The host application's name.
    pub fn host_name(&self) -> String {
        self.api.host_name().into_string()
    }

    /// The host application's version.
    pub fn host_version(&self) -> String {
        self.api.host_version().into_string()
    }

    /// This plugin's JSON configuration; `Value::Null` when none is set.
    pub fn config(&self) -> Value {
        serde_json::from_str(self.api.config().as_str()).unwrap_or(Value::Null)
    }

    /// The lifecycle state of the plugin called `name`, if the host knows it.
    pub fn plugin_status(&self, name: &str) -> Option<String> {
        self.api
            .plugin_status(name.into())
            .into_option()
            .map(RString::into_string)
    }

    /// Calls `method` on the plugin called `name` with `args`, through the host.
    ///
    /// When that plugin answers with an error, this returns it with the same
    /// [`ErrorKind`](crate::ErrorKind) (e.g. `UnknownMethod`, `InvalidInput`) and
    /// its message prefixed by who answered (`plugin `name`: call(method) failed:
    /// ...`), so `?` passes it on faithfully. Failures of the host itself (no such
    /// plugin, not active, a panic in the called plugin) are kind `Host`.
    ///
    /// The call fails (instead of deadlocking) when it would re-enter a plugin
    /// that is already running on this call chain.
    pub fn call(&self, name: &str, method: &str, args: &Value) -> Result<Value, PluginError> {
        let args = args.to_string();
        let out = self
            .api
            .call_plugin(name.into(), method.into(), args.as_str().into())
            .into_result()?;
        Ok(serde_json::from_str(out.as_str())?)
    }
}
