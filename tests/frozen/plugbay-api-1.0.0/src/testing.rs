//! Unit-testing plugins without a host: a fake host and a driver for one plugin.
//!
//! Enabled by the `testing` feature. Add it to the plugin's dev-dependencies so
//! it never reaches the built library:
//!
//! ```toml
//! [dev-dependencies]
//! plugbay-api = { version = "1", features = ["testing"] }
//! ```
//!
//! [`TestHost`] plays the host: it answers [`HostContext::config`],
//! [`HostContext::plugin_status`] and [`HostContext::call`] from what the test
//! set up, and records every log line and every call. [`TestPlugin`] drives one
//! [`Plugin`] through the same boundary adapter that [`export_plugin!`]
//! generates: arguments, results and state cross as JSON text, and a panic
//! comes back as an error of kind [`ErrorKind::Panicked`], exactly as a host
//! would see them. No library is built or loaded; it is a plain `cargo test`.
//!
//! ```
//! use plugbay_api::testing::{TestHost, TestPlugin};
//! use plugbay_api::{ErrorKind, HostContext, LogLevel, Plugin, PluginError, PluginMetadata};
//! use serde_json::{json, Value};
//!
//! /// Asks `hello` for a greeting and shouts it.
//! #[derive(Default)]
//! struct Shout {
//!     host: Option<HostContext>,
//! }
//!
//! impl Plugin for Shout {
//!     fn metadata() -> PluginMetadata {
//!         PluginMetadata::new("shout", "0.1.0").depends_on("hello", "^1")
//!     }
//!
//!     fn initialize(&mut self, host: &HostContext) -> Result<(), PluginError> {
//!         let volume = host.config()["volume"].as_u64().unwrap_or(1);
//!         host.info(&format!("volume {volume}"));
//!         self.host = Some(host.clone());
//!         Ok(())
//!     }
//!
//!     fn call(&mut self, method: &str, args: Value) -> Result<Value, PluginError> {
//!         let host = self.host.as_ref().ok_or_else(|| PluginError::failed("not initialized"))?;
//!         match method {
//!             "shout" => {
//!                 let greeting = host.call("hello", "greet", &args)?;
//!                 Ok(json!(greeting.as_str().unwrap_or_default().to_uppercase()))
//!             }
//!             _ => Err(PluginError::unknown_method(method)),
//!         }
//!     }
//! }
//!
//! let host = TestHost::new()
//!     .config(json!({ "volume": 11 }))
//!     .stub_call("hello", "greet", Ok(json!("Hello, Ada!")));
//! let mut shout = TestPlugin::<Shout>::start(&host)?;
//!
//! assert_eq!(shout.call("shout", json!({ "name": "Ada" }))?, json!("HELLO, ADA!"));
//! assert_eq!(host.logs()[0].level, LogLevel::Info);
//! assert_eq!(host.logs()[0].message, "volume 11");
//! assert_eq!(host.calls()[0].args, json!({ "name": "Ada" }));
//! assert_eq!(shout.call("whisper", json!({})).unwrap_err().kind, ErrorKind::UnknownMethod);
//! # Ok::<(), PluginError>(())
//! ```
//!
//! State survives a restart the way a host carries it (see [`TestPlugin::restart`]
//! and [`TestPlugin::start_with_state`] for migrating state an older version wrote).
//!
//! [`export_plugin!`]: crate::export_plugin

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use abi_stable::std_types::{ROption, RResult, RStr, RString};
use serde_json::Value;

use crate::export::Exported;
use crate::{ErrorKind, HostApi, HostContext, LogLevel, Plugin, PluginError, PluginInstance};

/// One line a plugin logged through its [`HostContext`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// Its text.
    pub message: String,
}

/// One call a plugin made to another plugin through [`HostContext::call`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// The plugin called.
    pub plugin: String,
    /// The method called.
    pub method: String,
    /// The arguments, as the host received them.
    pub args: Value,
}

/// The answer a stub gives to a call: computed from the call's arguments.
type Stub = Arc<dyn Fn(&Value) -> Result<Value, PluginError> + Send + Sync>;

/// Everything a [`TestHost`] knows and has seen.
struct HostData {
    host_name: String,
    host_version: String,
    config: Value,
    logs: Vec<LogLine>,
    calls: Vec<RecordedCall>,
    /// Keyed by (plugin, method).
    stubs: HashMap<(String, String), Stub>,
    statuses: HashMap<String, String>,
}

/// A fake host for unit tests: settable configuration, plugin statuses and
/// answers to calls to other plugins; records log lines and calls.
///
/// Clones share everything, so a test keeps one and hands `&host` to
/// [`TestPlugin`]. Builder methods (`config`, `stub_call`, ...) consume and
/// return the host; the `set_*` methods change a host already in use.
#[derive(Clone)]
pub struct TestHost {
    /// Guards: all of the fake host's data. Held only inside the tiny sync
    /// methods below, never while plugin or stub code runs.
    data: Arc<Mutex<HostData>>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.lock();
        f.debug_struct("TestHost")
            .field("host_name", &data.host_name)
            .field("config", &data.config)
            .field("logs", &data.logs)
            .field("calls", &data.calls)
            .finish_non_exhaustive()
    }
}

impl TestHost {
    /// A host named `test-host` (version of this crate), with `null` config, no
    /// other plugins and no log lines yet.
    pub fn new() -> Self {
        Self {
            data: Arc::new(Mutex::new(HostData {
                host_name: "test-host".to_owned(),
                host_version: crate::INTERFACE_VERSION.to_owned(),
                config: Value::Null,
                logs: Vec::new(),
                calls: Vec::new(),
                stubs: HashMap::new(),
                statuses: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HostData> {
        // A panicking test thread must not hide what the plugin logged.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets what [`HostContext::host_name`] answers.
    pub fn host_name(self, name: &str) -> Self {
        self.lock().host_name = name.to_owned();
        self
    }

    /// Sets what [`HostContext::host_version`] answers.
    pub fn host_version(self, version: &str) -> Self {
        self.lock().host_version = version.to_owned();
        self
    }

    /// Sets the plugin's configuration (what [`HostContext::config`] answers).
    pub fn config(self, config: Value) -> Self {
        self.set_config(config);
        self
    }

    /// Replaces the plugin's configuration on a host already in use.
    pub fn set_config(&self, config: Value) {
        self.lock().config = config;
    }

    /// Makes calls to `plugin`'s `method` answer `answer`, whatever the arguments.
    /// A stubbed plugin reports status `"active"` unless
    /// [`TestHost::plugin_status`] says otherwise.
    ///
    /// ```
    /// # use plugbay_api::{testing::TestHost, PluginError};
    /// # use serde_json::json;
    /// let host = TestHost::new()
    ///     .stub_call("hello", "greet", Ok(json!("Hello, world!")))
    ///     .stub_call("store", "get", Err(PluginError::failed("disk full")));
    /// let ctx = host.context();
    /// assert_eq!(ctx.call("hello", "greet", &json!({}))?, json!("Hello, world!"));
    /// assert_eq!(ctx.call("store", "get", &json!({})).unwrap_err().message(), "disk full");
    /// assert_eq!(ctx.plugin_status("hello").as_deref(), Some("active"));
    /// # Ok::<(), PluginError>(())
    /// ```
    pub fn stub_call(self, plugin: &str, method: &str, answer: Result<Value, PluginError>) -> Self {
        self.stub_call_with(plugin, method, move |_| answer.clone())
    }

    /// Makes calls to `plugin`'s `method` answer whatever `answer` computes from
    /// the arguments.
    ///
    /// ```
    /// # use plugbay_api::{testing::TestHost, PluginError};
    /// # use serde_json::json;
    /// let host = TestHost::new().stub_call_with("math", "double", |args| {
    ///     let n = args["n"].as_i64().ok_or_else(|| PluginError::failed("`n` must be an integer"))?;
    ///     Ok(json!(n * 2))
    /// });
    /// assert_eq!(host.context().call("math", "double", &json!({ "n": 21 }))?, json!(42));
    /// # Ok::<(), PluginError>(())
    /// ```
    pub fn stub_call_with<F>(self, plugin: &str, method: &str, answer: F) -> Self
    where
        F: Fn(&Value) -> Result<Value, PluginError> + Send + Sync + 'static,
    {
        self.set_stub(plugin, method, answer);
        self
    }

    /// [`TestHost::stub_call_with`] on a host already in use (replaces an earlier stub).
    pub fn set_stub<F>(&self, plugin: &str, method: &str, answer: F)
    where
        F: Fn(&Value) -> Result<Value, PluginError> + Send + Sync + 'static,
    {
        self.lock()
            .stubs
            .insert((plugin.to_owned(), method.to_owned()), Arc::new(answer));
    }

    /// Sets what [`HostContext::plugin_status`] answers for `plugin`
    /// (`"active"`, `"failed"`, `"registered"`, ...).
    pub fn plugin_status(self, plugin: &str, status: &str) -> Self {
        self.set_plugin_status(plugin, status);
        self
    }

    /// [`TestHost::plugin_status`] on a host already in use.
    pub fn set_plugin_status(&self, plugin: &str, status: &str) {
        self.lock()
            .statuses
            .insert(plugin.to_owned(), status.to_owned());
    }

    /// Every line logged so far, oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        self.lock().logs.clone()
    }

    /// The text of every line logged so far, oldest first.
    pub fn log_messages(&self) -> Vec<String> {
        self.lock().logs.iter().map(|l| l.message.clone()).collect()
    }

    /// Forgets the log lines and calls recorded so far.
    pub fn clear(&self) {
        let mut data = self.lock();
        data.logs.clear();
        data.calls.clear();
    }

    /// Every call to another plugin made so far (stubbed or not), oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock().calls.clone()
    }

    /// A [`HostContext`] backed by this host, as a plugin's `initialize` receives
    /// it: for testing helper functions that take one.
    pub fn context(&self) -> HostContext {
        HostContext::from_api(FakeApi { host: self.clone() })
    }

    fn stub(&self, plugin: &str, method: &str) -> Option<Stub> {
        self.lock()
            .stubs
            .get(&(plugin.to_owned(), method.to_owned()))
            .cloned()
    }
}

/// The [`HostApi`] a [`TestHost`] hands to plugins.
#[derive(Clone)]
struct FakeApi {
    host: TestHost,
}

impl HostApi for FakeApi {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.host.lock().logs.push(LogLine {
            level,
            message: message.as_str().to_owned(),
        });
    }

    fn host_name(&self) -> RString {
        self.host.lock().host_name.as_str().into()
    }

    fn host_version(&self) -> RString {
        self.host.lock().host_version.as_str().into()
    }

    fn config(&self) -> RString {
        self.host.lock().config.to_string().into()
    }

    fn plugin_status(&self, name: RStr<'_>) -> ROption<RString> {
        let data = self.host.lock();
        let name = name.as_str();
        let status = match data.statuses.get(name) {
            Some(status) => Some(status.clone()),
            None => data
                .stubs
                .keys()
                .any(|(plugin, _)| plugin == name)
                .then(|| "active".to_owned()),
        };
        status.map(RString::from).into()
    }

    fn call_plugin(
        &self,
        name: RStr<'_>,
        method: RStr<'_>,
        args: RStr<'_>,
    ) -> RResult<RString, PluginError> {
        let (plugin, method) = (name.as_str(), method.as_str());
        let args: Value = match serde_json::from_str(args.as_str()) {
            Ok(v) => v,
            Err(e) => {
                return RResult::RErr(PluginError::invalid_input(format!(
                    "invalid JSON args: {e}"
                )))
            }
        };
        self.host.lock().calls.push(RecordedCall {
            plugin: plugin.to_owned(),
            method: method.to_owned(),
            args: args.clone(),
        });
        // The stub runs with no lock held: it may use the host itself.
        let answer = match self.host.stub(plugin, method) {
            Some(stub) => stub(&args),
            None => Err(PluginError::new(
                ErrorKind::Host,
                format!(
                    "the test host has no answer for `{plugin}`.`{method}`; \
                     add one with TestHost::stub_call(\"{plugin}\", \"{method}\", ...)"
                ),
            )),
        };
        answer.map(|v| RString::from(v.to_string())).into()
    }
}

/// Drives one [`Plugin`] the way a host does, through the boundary adapter that
/// [`export_plugin!`](crate::export_plugin) generates: a panic in the plugin
/// comes back as an error of kind [`ErrorKind::Panicked`].
///
/// The lifecycle a host runs: a fresh instance, [`TestPlugin::load_state`] when
/// there is saved state, [`TestPlugin::initialize`], any number of
/// [`TestPlugin::call`]s, [`TestPlugin::shutdown`], then
/// [`TestPlugin::save_state`].
pub struct TestPlugin<P: Plugin> {
    instance: Exported<P>,
    host: TestHost,
}

impl<P: Plugin> TestPlugin<P> {
    /// A fresh `P::default()`, not initialized yet.
    pub fn new(host: &TestHost) -> Self {
        Self {
            instance: Exported(P::default()),
            host: host.clone(),
        }
    }

    /// A fresh instance, initialized.
    pub fn start(host: &TestHost) -> Result<Self, PluginError> {
        let mut plugin = Self::new(host);
        plugin.initialize()?;
        Ok(plugin)
    }

    /// A fresh instance handed `state` as saved by version `saved_by_version` of
    /// the plugin, then initialized: what a host does when it finds saved state.
    /// Use it to test migrating state an older version wrote.
    ///
    /// ```
    /// # use plugbay_api::testing::{TestHost, TestPlugin};
    /// # use plugbay_api::{Plugin, PluginError, PluginMetadata};
    /// # use serde_json::{json, Value};
    /// #[derive(Default)]
    /// struct Count(u64);
    ///
    /// impl Plugin for Count {
    ///     fn metadata() -> PluginMetadata {
    ///         PluginMetadata::new("count", "2.0.0")
    ///     }
    ///     fn save_state(&self) -> Result<Value, PluginError> {
    ///         Ok(json!({ "count": self.0 }))
    ///     }
    ///     fn load_state(&mut self, state: Value, saved_by: &str) -> Result<(), PluginError> {
    ///         // 1.x saved a bare number.
    ///         let count = if saved_by.starts_with("1.") { &state } else { &state["count"] };
    ///         self.0 = count.as_u64().ok_or_else(|| PluginError::failed("the saved count is not a number"))?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let host = TestHost::new();
    /// let count = TestPlugin::<Count>::start_with_state(&host, json!(7), "1.4.0")?;
    /// assert_eq!(count.plugin().0, 7);
    /// assert_eq!(count.save_state()?, json!({ "count": 7 }));
    /// # Ok::<(), PluginError>(())
    /// ```
    pub fn start_with_state(
        host: &TestHost,
        state: Value,
        saved_by_version: &str,
    ) -> Result<Self, PluginError> {
        let mut plugin = Self::new(host);
        plugin.load_state(state, saved_by_version)?;
        plugin.initialize()?;
        Ok(plugin)
    }

    /// Runs the plugin's `initialize` with a [`HostContext`] backed by the test host.
    pub fn initialize(&mut self) -> Result<(), PluginError> {
        let ctx = self.host.context();
        PluginInstance::initialize(&mut self.instance, ctx).into_result()
    }

    /// Calls `method` with `args`, as the host or another plugin would.
    pub fn call(&mut self, method: &str, args: Value) -> Result<Value, PluginError> {
        let args = args.to_string();
        let out = PluginInstance::call(&mut self.instance, method.into(), args.as_str().into())
            .into_result()?;
        parse("call", &out)
    }

    /// The state the plugin asks to persist (`Value::Null`: nothing to save).
    pub fn save_state(&self) -> Result<Value, PluginError> {
        let out = PluginInstance::save_state(&self.instance).into_result()?;
        parse("save_state", &out)
    }

    /// Hands the plugin `state` as saved by version `saved_by_version`.
    pub fn load_state(&mut self, state: Value, saved_by_version: &str) -> Result<(), PluginError> {
        let state = state.to_string();
        PluginInstance::load_state(
            &mut self.instance,
            state.as_str().into(),
            saved_by_version.into(),
        )
        .into_result()
    }

    /// Runs the plugin's `shutdown`.
    pub fn shutdown(&mut self) -> Result<(), PluginError> {
        PluginInstance::shutdown(&mut self.instance).into_result()
    }

    /// What a host does between two runs: `shutdown`, `save_state`, then a fresh
    /// instance that gets the saved state (unless it was `null`) as written by
    /// this plugin's own version, and `initialize`.
    ///
    /// ```
    /// # use plugbay_api::testing::{TestHost, TestPlugin};
    /// # use plugbay_api::{Plugin, PluginError, PluginMetadata};
    /// # use serde_json::{json, Value};
    /// #[derive(Default)]
    /// struct Count(u64);
    ///
    /// impl Plugin for Count {
    ///     fn metadata() -> PluginMetadata {
    ///         PluginMetadata::new("count", "1.0.0")
    ///     }
    ///     fn call(&mut self, _method: &str, _args: Value) -> Result<Value, PluginError> {
    ///         self.0 += 1;
    ///         Ok(json!(self.0))
    ///     }
    ///     fn save_state(&self) -> Result<Value, PluginError> {
    ///         Ok(json!(self.0))
    ///     }
    ///     fn load_state(&mut self, state: Value, _saved_by: &str) -> Result<(), PluginError> {
    ///         self.0 = state.as_u64().ok_or_else(|| PluginError::failed("the saved count is not a number"))?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let host = TestHost::new();
    /// let mut count = TestPlugin::<Count>::start(&host)?;
    /// count.call("bump", json!({}))?;
    /// let mut count = count.restart()?;
    /// assert_eq!(count.call("bump", json!({}))?, json!(2));
    /// # Ok::<(), PluginError>(())
    /// ```
    pub fn restart(mut self) -> Result<Self, PluginError> {
        self.shutdown()?;
        let state = self.save_state()?;
        let mut next = Self::new(&self.host);
        if !state.is_null() {
            let version = P::metadata().version;
            next.load_state(state, version.as_str())?;
        }
        next.initialize()?;
        Ok(next)
    }

    /// The plugin itself, to inspect its fields.
    pub fn plugin(&self) -> &P {
        &self.instance.0
    }

    /// The plugin itself, mutably.
    pub fn plugin_mut(&mut self) -> &mut P {
        &mut self.instance.0
    }

    /// The test host this plugin runs against.
    pub fn host(&self) -> &TestHost {
        &self.host
    }
}

/// Parses JSON text the adapter produced, as a host does.
fn parse(operation: &str, text: &RString) -> Result<Value, PluginError> {
    serde_json::from_str(text.as_str())
        .map_err(|e| PluginError::invalid_input(format!("{operation} returned invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Default)]
    struct Probe {
        host: Option<HostContext>,
    }

    impl Plugin for Probe {
        fn metadata() -> crate::PluginMetadata {
            crate::PluginMetadata::new("probe", "1.0.0")
        }

        fn initialize(&mut self, host: &HostContext) -> Result<(), PluginError> {
            host.warn(&format!("{} {}", host.host_name(), host.host_version()));
            self.host = Some(host.clone());
            Ok(())
        }

        fn call(&mut self, method: &str, args: Value) -> Result<Value, PluginError> {
            let host = self
                .host
                .as_ref()
                .ok_or_else(|| PluginError::failed("not initialized"))?;
            match method {
                "status" => Ok(json!(host.plugin_status(args.as_str().unwrap_or("")))),
                "ask" => host.call("other", "answer", &args),
                "panic" => panic!("asked to panic"),
                _ => Err(PluginError::unknown_method(method)),
            }
        }
    }

    #[test]
    fn logs_host_identity_statuses_and_unstubbed_calls() {
        let host = TestHost::new()
            .host_name("h")
            .host_version("9.9.9")
            .plugin_status("db", "failed");
        let mut p = TestPlugin::<Probe>::start(&host).unwrap();
        assert_eq!(
            host.logs(),
            [LogLine {
                level: LogLevel::Warn,
                message: "h 9.9.9".to_owned()
            }]
        );
        assert_eq!(p.call("status", json!("db")).unwrap(), json!("failed"));
        assert_eq!(p.call("status", json!("nobody")).unwrap(), Value::Null);
        let err = p.call("ask", json!({ "q": 1 })).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Host);
        assert!(err.message().contains("`other`.`answer`"), "{err}");
        assert_eq!(host.calls()[0].args, json!({ "q": 1 }));
        host.clear();
        assert!(host.logs().is_empty() && host.calls().is_empty());
    }

    #[test]
    fn stubs_answer_with_values_and_errors_and_can_be_replaced() {
        let host =
            TestHost::new().stub_call("other", "answer", Err(PluginError::invalid_input("no")));
        let mut p = TestPlugin::<Probe>::start(&host).unwrap();
        assert_eq!(
            p.call("ask", json!({})).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        host.set_stub("other", "answer", |args| Ok(json!([args, "ok"])));
        assert_eq!(p.call("ask", json!(1)).unwrap(), json!([1, "ok"]));
        assert_eq!(p.call("status", json!("other")).unwrap(), json!("active"));
    }

    #[test]
    fn a_panic_comes_back_as_a_panicked_error() {
        let host = TestHost::new();
        let mut p = TestPlugin::<Probe>::start(&host).unwrap();
        let err = p.call("panic", json!({})).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Panicked);
        assert_eq!(err.message(), "asked to panic");
    }
}
