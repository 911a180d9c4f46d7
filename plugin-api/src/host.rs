//! The host context: callbacks a plugin can make into the host.

// `#[sabi_trait]` expands to impl blocks inside a const item; the lint is about that
// generated code, not ours.
#![allow(non_local_definitions)]

use abi_stable::{
    sabi_trait,
    std_types::{RArc, ROption, RResult, RStr, RString},
    StableAbi,
};
use serde_json::{json, Value};

use crate::{services, PluginError};

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
/// This table never changes within 1.x: abi_stable refuses a library whose
/// prefix tables have *fewer* entries than the host expects, so a method
/// appended here would lock every older plugin out of newer hosts. Services
/// added after 1.0.0 travel through [`HostApi::call_plugin`] addressed to the
/// reserved name [`services::HOST`] instead (see [`crate::services`]).
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

    /// Asks the host itself (the reserved target [`services::HOST`]) for `method`.
    fn ask_host(&self, method: &str, args: &Value) -> Result<Value, PluginError> {
        let args = args.to_string();
        let out = self
            .api
            .call_plugin(services::HOST.into(), method.into(), args.as_str().into())
            .into_result()?;
        Ok(serde_json::from_str(out.as_str())?)
    }

    /// The `plugbay-api` version the host was built with, e.g. `"1.1.0"`. A host
    /// built against 1.0.x predates the question and is reported as `"1.0.0"`.
    pub fn host_api_version(&self) -> String {
        match self.ask_host(services::API_VERSION, &Value::Null) {
            Ok(Value::String(version)) => version,
            _ => services::FIRST_RELEASE.to_owned(),
        }
    }

    /// Whether the host offers `service` (a name from [`crate::services`]).
    /// `false` for every service on a host built against 1.0.x.
    pub fn has_service(&self, service: &str) -> bool {
        matches!(
            self.ask_host(services::HAS_SERVICE, &json!({ "service": service })),
            Ok(Value::Bool(true))
        )
    }

    /// `Ok(())` when the host offers `service`; otherwise the error
    /// [`PluginError::needs_newer_host`] naming the host's interface version and
    /// the one the service needs. Check once in `initialize` to fail early.
    pub fn require(&self, service: &str) -> Result<(), PluginError> {
        if self.has_service(service) {
            return Ok(());
        }
        Err(PluginError::needs_newer_host(
            service,
            &self.host_api_version(),
        ))
    }

    /// Publishes the event `name` with `payload` to every subscriber (plugins
    /// and the embedder). Returns once the event is queued; it never waits for
    /// subscribers. Names: 1 to 128 bytes, no whitespace or control characters;
    /// payloads: at most 64 KiB of JSON, 32 levels deep.
    ///
    /// Errors (kind [`crate::ErrorKind::Host`]): a bad name or payload, this
    /// plugin shutting down, or [`PluginError::needs_newer_host`] on a 1.0 host.
    pub fn publish(&self, name: &str, payload: &Value) -> Result<(), PluginError> {
        self.ask_service(
            services::EVENTS,
            services::PUBLISH,
            &json!({ "name": name, "payload": payload }),
        )
        .map(drop)
    }

    /// Subscribes this plugin to events named `pattern`, or starting with its
    /// prefix when it ends in `*` (`counter.*`; `*` alone: everything). Events
    /// arrive in [`crate::Plugin::on_event`], asynchronously, in each
    /// publisher's order. Subscribe in `initialize`: subscriptions end when the
    /// plugin stops. The host's own lifecycle events are named
    /// `plugbay.plugin.started|stopping|stopped|failed` with payload
    /// `{"plugin": NAME}`.
    pub fn subscribe(&self, pattern: &str) -> Result<(), PluginError> {
        self.ask_service(
            services::EVENTS,
            services::SUBSCRIBE,
            &json!({ "pattern": pattern }),
        )
        .map(drop)
    }

    /// [`HostContext::ask_host`] for a method of `service`: on failure, a host
    /// that lacks the service gets [`PluginError::needs_newer_host`].
    fn ask_service(&self, service: &str, method: &str, args: &Value) -> Result<Value, PluginError> {
        self.ask_host(method, args)
            .map_err(|e| match self.require(service) {
                Ok(()) => e,
                Err(missing) => missing,
            })
    }

    /// This plugin's private data directory: one per plugin name, created by the
    /// host on first use with owner-only permissions, kept across restarts.
    ///
    /// Errors: on a host built against 1.0.x, [`PluginError::needs_newer_host`]
    /// ("this host provides plugin API 1.0.0; the `data-dir` service needs
    /// 1.1.0"); when the host has no data root configured or cannot create the
    /// directory, an [`crate::ErrorKind::Host`] error naming the directory and
    /// the cause.
    pub fn data_dir(&self) -> Result<std::path::PathBuf, PluginError> {
        self.require(services::DATA_DIR)?;
        match self.ask_host(services::DATA_DIR, &Value::Null)? {
            Value::String(path) => Ok(std::path::PathBuf::from(path)),
            other => Err(PluginError::new(
                crate::ErrorKind::Host,
                format!("the host answered the data directory with {other}, not a path"),
            )),
        }
    }
}
