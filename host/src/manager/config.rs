//! [`ManagerConfig`] and its builder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::supervise::RestartPolicy;
use crate::error::{Error, Result};
use crate::isolation::{IsolationConfig, Limits};
use crate::safety::SafetyConfig;

/// The default deadline for one plugin's `initialize` and for its `shutdown`.
pub const DEFAULT_PHASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The default deadline for one reload's swap (drain, save, shutdown, restore,
/// initialize) and for a call waiting for it.
pub const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The default number of library images kept mapped by reloads, manager-wide,
/// past which each reload logs a warning.
pub const DEFAULT_RETAINED_IMAGES_WARNING: usize = 64;

/// The default number of plugins `load_all_plugins` initializes at once.
pub const DEFAULT_MAX_PARALLEL: usize = 16;

/// How the [`super::PluginManager`] behaves. Build one with [`ManagerConfig::builder`];
/// [`ManagerConfig::default`] is the builder's defaults.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    plugin_dirs: Vec<PathBuf>,
    state_dir: Option<PathBuf>,
    data_root: Option<PathBuf>,
    init_timeout: Duration,
    shutdown_timeout: Duration,
    max_parallel: usize,
    host_name: String,
    host_version: String,
    plugin_config: HashMap<String, Value>,
    event_capacity: usize,
    safety: SafetyConfig,
    reload_timeout: Duration,
    retained_images_warning: usize,
    isolation: IsolationConfig,
    restart: RestartPolicies,
}

/// The restart policy of each plugin: by name, else the default.
#[derive(Debug, Clone, Default)]
struct RestartPolicies {
    default: RestartPolicy,
    by_name: HashMap<String, RestartPolicy>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            plugin_dirs: Vec::new(),
            state_dir: None,
            data_root: None,
            init_timeout: DEFAULT_PHASE_TIMEOUT,
            shutdown_timeout: DEFAULT_PHASE_TIMEOUT,
            max_parallel: DEFAULT_MAX_PARALLEL,
            host_name: "plugin-host".to_owned(),
            host_version: env!("CARGO_PKG_VERSION").to_owned(),
            plugin_config: HashMap::new(),
            event_capacity: 1024,
            safety: SafetyConfig::defaults(),
            reload_timeout: DEFAULT_RELOAD_TIMEOUT,
            retained_images_warning: DEFAULT_RETAINED_IMAGES_WARNING,
            isolation: IsolationConfig::default(),
            restart: RestartPolicies::default(),
        }
    }
}

impl ManagerConfig {
    /// A builder starting from the defaults: no plugin dirs, no state dir, 30 s
    /// init and shutdown timeouts, 16 parallel initializations.
    pub fn builder() -> ManagerConfigBuilder {
        ManagerConfigBuilder {
            config: Self::default(),
        }
    }

    /// How library files are checked before they are opened in this process
    /// (default: [`SafetyConfig::defaults`], with the out-of-process probe on).
    pub fn safety(&self) -> &SafetyConfig {
        &self.safety
    }

    /// Which plugins run isolated in a runner process, and how (default: none).
    pub fn isolation(&self) -> &IsolationConfig {
        &self.isolation
    }

    /// Directories searched for plugin libraries, in order.
    pub fn plugin_dirs(&self) -> &[PathBuf] {
        &self.plugin_dirs
    }

    /// Where plugin state is persisted (`None`: state is not persisted).
    pub fn state_dir(&self) -> Option<&PathBuf> {
        self.state_dir.as_ref()
    }

    /// The directory under which each plugin gets its private data directory
    /// (`<root>/<plugin name>`, created on first use, owner-only). Set with
    /// [`ManagerConfigBuilder::data_root`]; by default it sits beside the state
    /// directory: state in `/var/lib/app/state` gives `/var/lib/app/state-data`.
    /// `None` when neither is configured: plugins then get an error naming the
    /// cause when they ask for their data directory.
    pub fn data_root(&self) -> Option<PathBuf> {
        if let Some(root) = &self.data_root {
            return Some(root.clone());
        }
        let state = self.state_dir.as_ref()?;
        let name = state.file_name()?.to_string_lossy();
        Some(state.with_file_name(format!("{name}-data")))
    }

    /// The deadline for one plugin's `initialize`.
    pub fn init_timeout(&self) -> Duration {
        self.init_timeout
    }

    /// The deadline for one plugin's `shutdown` (including waiting for its
    /// in-flight calls to finish).
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// How many plugins `load_all_plugins` initializes at the same time.
    pub fn max_parallel(&self) -> usize {
        self.max_parallel
    }

    /// The host application's name, as plugins see it.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// The host application's version, as plugins see it.
    pub fn host_version(&self) -> &str {
        &self.host_version
    }

    /// The JSON configuration given to each plugin, by plugin name.
    pub fn plugin_config(&self) -> &HashMap<String, Value> {
        &self.plugin_config
    }

    /// How many lifecycle events a slow subscriber may lag behind before it
    /// misses some (it then gets `RecvError::Lagged`).
    pub fn event_capacity(&self) -> usize {
        self.event_capacity
    }

    /// The deadline for one reload's swap (draining calls, saving the old
    /// version's state, its shutdown, restoring the state into the new version,
    /// its initialize), and the longest a call waits for a reload to finish.
    /// Past it the reload rolls back ([`crate::PluginManager::reload_plugin`]).
    pub fn reload_timeout(&self) -> Duration {
        self.reload_timeout
    }

    /// How many library images kept mapped by reloads (over all plugins) the
    /// manager accepts before each further reload logs a warning. Every reload
    /// that maps new code keeps the previous image mapped (libraries are never
    /// unloaded); see [`crate::PluginManager::retained_images`].
    pub fn retained_images_warning(&self) -> usize {
        self.retained_images_warning
    }

    /// What happens when the plugin `name` crashes while Active: its own
    /// policy, else the default one ([`RestartPolicy::Never`] unless set).
    pub fn restart_policy(&self, name: &str) -> &RestartPolicy {
        self.restart
            .by_name
            .get(name)
            .unwrap_or(&self.restart.default)
    }
}

/// Builds a [`ManagerConfig`]; [`ManagerConfigBuilder::build`] checks it.
#[derive(Debug, Clone)]
#[must_use]
pub struct ManagerConfigBuilder {
    config: ManagerConfig,
}

impl ManagerConfigBuilder {
    /// Adds a directory to search for plugin libraries.
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.plugin_dirs.push(dir.into());
        self
    }

    /// Sets the directory where plugin state is persisted.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.state_dir = Some(dir.into());
        self
    }

    /// Sets the directory holding the plugins' data directories (default: beside
    /// the state directory, see [`ManagerConfig::data_root`]).
    pub fn data_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_root = Some(dir.into());
        self
    }

    /// Sets the deadline for each plugin's `initialize`.
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.config.init_timeout = timeout;
        self
    }

    /// Sets the deadline for each plugin's `shutdown`.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Sets how many plugins `load_all_plugins` initializes at once.
    pub fn max_parallel(mut self, max: usize) -> Self {
        self.config.max_parallel = max;
        self
    }

    /// Sets the host name plugins see.
    pub fn host_name(mut self, name: impl Into<String>) -> Self {
        self.config.host_name = name.into();
        self
    }

    /// Sets the host version plugins see.
    pub fn host_version(mut self, version: impl Into<String>) -> Self {
        self.config.host_version = version.into();
        self
    }

    /// Sets the JSON configuration of the plugin called `plugin`.
    pub fn plugin_config(mut self, plugin: impl Into<String>, config: Value) -> Self {
        self.config.plugin_config.insert(plugin.into(), config);
        self
    }

    /// Sets how library files are checked before they are opened (preflight
    /// probe, scan cache, shadow copies, allowlist, permissions).
    pub fn safety(mut self, safety: SafetyConfig) -> Self {
        self.config.safety = safety;
        self
    }

    /// Sets how many lifecycle events a subscriber may lag behind.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.config.event_capacity = capacity;
        self
    }

    /// Sets the deadline of a reload's swap (and of calls waiting for it).
    pub fn reload_timeout(mut self, timeout: Duration) -> Self {
        self.config.reload_timeout = timeout;
        self
    }

    /// Sets how many retained library images (manager-wide) make reloads warn.
    pub fn retained_images_warning(mut self, images: usize) -> Self {
        self.config.retained_images_warning = images;
        self
    }

    /// Runs the plugin called `name` isolated, in a runner process of its own
    /// (repeatable). Needs [`ManagerConfigBuilder::isolation_runner`].
    pub fn isolate(mut self, name: impl Into<String>) -> Self {
        self.config.isolation.names.push(name.into());
        self
    }

    /// Runs every plugin library isolated.
    pub fn isolate_all(mut self, on: bool) -> Self {
        self.config.isolation.all = on;
        self
    }

    /// Runs every plugin library isolated unless the safety configuration
    /// enforces an allowlist (then every admitted library is on it and runs
    /// in-process).
    pub fn isolate_unless_allowlisted(mut self, on: bool) -> Self {
        self.config.isolation.unless_allowlisted = on;
        self
    }

    /// The runner program of isolated plugins and its arguments: a binary whose
    /// `main` dispatches these arguments to [`crate::run_isolated_child`]
    /// (`plugin-host` and `plugin-probe` do, with [`crate::RUNNER_ARG`]).
    pub fn isolation_runner(
        mut self,
        program: impl Into<PathBuf>,
        args: Vec<std::ffi::OsString>,
    ) -> Self {
        self.config.isolation.runner = Some((program.into(), args));
        self
    }

    /// The deadline of one request to an isolated plugin (default
    /// [`crate::DEFAULT_CALL_TIMEOUT`]); past it the runner is killed. Lifecycle
    /// operations get the shorter of this and the phase timeout.
    pub fn isolated_call_timeout(mut self, timeout: Duration) -> Self {
        self.config.isolation.call_timeout = timeout;
        self
    }

    /// Resource limits every runner sets on itself before opening its library.
    pub fn isolation_limits(mut self, limits: Limits) -> Self {
        self.config.isolation.limits = limits;
        self
    }

    /// An environment variable passed on to runners (repeatable); every other
    /// variable is cleared.
    pub fn isolation_keep_env(mut self, name: impl Into<String>) -> Self {
        self.config.isolation.keep_env.push(name.into());
        self
    }

    /// Sets what happens when the plugin called `plugin` crashes while Active.
    pub fn restart_policy(mut self, plugin: impl Into<String>, policy: RestartPolicy) -> Self {
        self.config.restart.by_name.insert(plugin.into(), policy);
        self
    }

    /// Sets what happens when a plugin without a policy of its own crashes
    /// while Active (default: [`RestartPolicy::Never`]).
    pub fn default_restart_policy(mut self, policy: RestartPolicy) -> Self {
        self.config.restart.default = policy;
        self
    }

    /// Checks the values and returns the configuration, or [`Error::Config`]
    /// naming the bad setting.
    pub fn build(self) -> Result<ManagerConfig> {
        let c = &self.config;
        if c.init_timeout.is_zero() {
            return Err(Error::Config(
                "the init timeout must be longer than zero".into(),
            ));
        }
        if c.shutdown_timeout.is_zero() {
            return Err(Error::Config(
                "the shutdown timeout must be longer than zero".into(),
            ));
        }
        if c.reload_timeout.is_zero() {
            return Err(Error::Config(
                "the reload timeout must be longer than zero".into(),
            ));
        }
        if c.max_parallel == 0 {
            return Err(Error::Config(
                "max parallel initializations must be at least 1".into(),
            ));
        }
        if c.event_capacity == 0 {
            return Err(Error::Config(
                "the event capacity must be at least 1".into(),
            ));
        }
        if c.isolation.any() && c.isolation.runner.is_none() {
            return Err(Error::Config(
                "isolated plugins need a runner program: set ManagerConfigBuilder::isolation_runner"
                    .into(),
            ));
        }
        if c.isolation.call_timeout.is_zero() {
            return Err(Error::Config(
                "the isolated call timeout must be longer than zero".into(),
            ));
        }
        let named = c.restart.by_name.iter().map(|(n, p)| (Some(n), p));
        for (plugin, policy) in std::iter::once((None, &c.restart.default)).chain(named) {
            if let RestartPolicy::OnFailure(settings) = policy {
                if let Some(problem) = settings.problem() {
                    let whose = plugin.map_or_else(
                        || "the default restart policy".to_owned(),
                        |n| format!("the restart policy of plugin `{n}`"),
                    );
                    return Err(Error::Config(format!("{whose}: {problem}")));
                }
            }
        }
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_everything() {
        let c = ManagerConfig::builder()
            .plugin_dir("/a")
            .plugin_dir("/b")
            .state_dir("/s")
            .init_timeout(Duration::from_millis(5))
            .shutdown_timeout(Duration::from_millis(6))
            .max_parallel(3)
            .host_name("app")
            .host_version("9.9.9")
            .plugin_config("hello", serde_json::json!({"x": 1}))
            .build()
            .unwrap();
        assert_eq!(c.plugin_dirs(), [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.state_dir(), Some(&PathBuf::from("/s")));
        assert_eq!(c.init_timeout(), Duration::from_millis(5));
        assert_eq!(c.shutdown_timeout(), Duration::from_millis(6));
        assert_eq!(c.max_parallel(), 3);
        assert_eq!((c.host_name(), c.host_version()), ("app", "9.9.9"));
        assert_eq!(c.plugin_config()["hello"]["x"], 1);
    }

    #[test]
    fn the_data_root_defaults_to_beside_the_state_dir() {
        let c = ManagerConfig::builder()
            .state_dir("/var/app/state")
            .build()
            .unwrap();
        assert_eq!(c.data_root(), Some(PathBuf::from("/var/app/state-data")));
        let c = ManagerConfig::builder()
            .state_dir("/var/app/state")
            .data_root("/srv/data")
            .build()
            .unwrap();
        assert_eq!(c.data_root(), Some(PathBuf::from("/srv/data")));
        assert_eq!(ManagerConfig::default().data_root(), None);
    }

    #[test]
    fn defaults_and_validation() {
        let c = ManagerConfig::default();
        assert_eq!(c.init_timeout(), DEFAULT_PHASE_TIMEOUT);
        assert_eq!(c.shutdown_timeout(), DEFAULT_PHASE_TIMEOUT);
        assert!(c.state_dir().is_none());
        let err = ManagerConfig::builder()
            .max_parallel(0)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("max parallel"), "{err}");
        let err = ManagerConfig::builder()
            .init_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("init timeout"), "{err}");
    }

    #[test]
    fn isolation_policy_by_name_all_or_allowlist() {
        use crate::isolation::IsolationPolicy::{InProcess, Isolated};
        let c = ManagerConfig::default();
        assert_eq!(c.isolation().policy_for("a", false), InProcess);
        let err = ManagerConfig::builder().isolate("a").build().unwrap_err();
        assert!(err.to_string().contains("isolation_runner"), "{err}");
        let runner = || ManagerConfig::builder().isolation_runner("/bin/runner", vec![]);
        let c = runner().isolate("a").build().unwrap();
        assert_eq!(c.isolation().policy_for("a", false), Isolated);
        assert_eq!(c.isolation().policy_for("b", false), InProcess);
        let c = runner().isolate_all(true).build().unwrap();
        assert_eq!(c.isolation().policy_for("b", true), Isolated);
        let c = runner().isolate_unless_allowlisted(true).build().unwrap();
        assert_eq!(c.isolation().policy_for("b", false), Isolated);
        assert_eq!(c.isolation().policy_for("b", true), InProcess);
    }

    #[test]
    fn restart_policies_are_per_plugin_and_checked() {
        let five = RestartPolicy::on_failure(5, Duration::from_secs(60));
        let c = ManagerConfig::builder()
            .restart_policy("db", five.clone())
            .build()
            .unwrap();
        assert_eq!(c.restart_policy("db"), &five);
        assert_eq!(c.restart_policy("other"), &RestartPolicy::Never);
        let c = ManagerConfig::builder()
            .default_restart_policy(five.clone())
            .restart_policy("fragile", RestartPolicy::Never)
            .build()
            .unwrap();
        assert_eq!(c.restart_policy("other"), &five);
        assert_eq!(c.restart_policy("fragile"), &RestartPolicy::Never);
        let err = ManagerConfig::builder()
            .restart_policy("db", RestartPolicy::on_failure(0, Duration::from_secs(1)))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: the restart policy of plugin `db`: the restart limit \
             must be at least 1 (use RestartPolicy::Never for no restarts)"
        );
    }
}
