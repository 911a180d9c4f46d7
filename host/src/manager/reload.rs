//! Hot reload: replacing a plugin's code while it runs, keeping its id, its
//! state and its dependents.
//!
//! [`PluginManager::reload_plugin`] admits the new file through the same
//! safety pipeline as any library (checks, shadow copy named by content, probe,
//! layout), so new code is always mapped from a fresh path and the old image
//! stays mapped. Then, under the plugin's lifecycle lock ([`Inner::swap`]): the
//! call gate is *held* (new calls wait instead of failing), the admitted calls
//! drain, the old instance saves its state and shuts down, the new instance
//! loads that state (told the old version) and initializes, and the gate
//! reopens. Any failing step rolls back: the old instance gets its saved state
//! back, initializes and serves again; the error names the step. The protocol,
//! its costs and its limits are in ARCHITECTURE.md ("Hot reload").

mod steps;
mod swap;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use semver::Version;
use serde_json::Value;
use uuid::Uuid;

use super::registry::Slot;
use super::{reentry, tasks, PluginManager, Target};
use crate::error::{Error, Result};
use crate::info::PluginSource;
use crate::plugin::Plugin;

/// Options for [`PluginManager::reload_plugin`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadOptions {
    /// When running dependents require a version the new one does not match:
    /// stop them (and their dependents) before the swap and start them again
    /// after it, instead of refusing with [`Error::ReloadBreaksDependents`].
    /// With a state dir each keeps its state (saved by its unload, restored by
    /// its load). A dependent that cannot start on the new version ends
    /// `Failed`; [`ReloadOutcome::restarted_dependents`] says how each went.
    pub cascade: bool,
    /// The new library file. Default: the file the plugin was loaded from.
    pub path: Option<PathBuf>,
}

impl ReloadOptions {
    /// Options with `cascade` set.
    pub fn cascade() -> Self {
        Self {
            cascade: true,
            path: None,
        }
    }

    /// Options reloading from `path` instead of the plugin's own file.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self {
            cascade: false,
            path: Some(path.into()),
        }
    }
}

/// The steps of a reload, as named in its errors and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadStep {
    /// Admitting the new file: permissions, allowlist, shadow copy, probe, layout.
    Admit,
    /// Checking that the new library is the same plugin (same name).
    Name,
    /// Checking the new version against what running dependents require.
    Dependents,
    /// Waiting for the calls already running in the old version.
    Drain,
    /// The old version's `save_state`.
    SaveState,
    /// The old version's `shutdown`.
    Shutdown,
    /// Holding up the new version's dependencies (each must be Active and match).
    Dependencies,
    /// The new version's `load_state` with the old version's state.
    LoadState,
    /// The new version's `initialize`.
    Initialize,
}

impl ReloadStep {
    /// The step's name (`"load_state"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ReloadStep::Admit => "admit",
            ReloadStep::Name => "name",
            ReloadStep::Dependents => "dependents",
            ReloadStep::Drain => "drain",
            ReloadStep::SaveState => "save_state",
            ReloadStep::Shutdown => "shutdown",
            ReloadStep::Dependencies => "dependencies",
            ReloadStep::LoadState => "load_state",
            ReloadStep::Initialize => "initialize",
        }
    }
}

impl std::fmt::Display for ReloadStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The plugin's id (unchanged by the reload).
    pub id: Uuid,
    /// The plugin's name.
    pub name: String,
    /// The version before.
    pub old_version: Version,
    /// The version now serving.
    pub new_version: Version,
    /// The new file has the same bytes as the running library: nothing was
    /// swapped, no plugin code ran.
    pub no_op: bool,
    /// The plugin was Active, so its state was handed over and its calls held;
    /// otherwise only the code was replaced (its next load uses it).
    pub was_active: bool,
    /// How long new calls were held (gate held → reopened).
    pub calls_held: Duration,
    /// Library images of this plugin kept mapped beside the one in use.
    pub retained_images: usize,
    /// Library images kept mapped by reloads, over all plugins.
    pub retained_images_total: usize,
    /// With [`ReloadOptions::cascade`]: the dependents stopped for the swap and
    /// the outcome of starting each again, in the order they were started.
    pub restarted_dependents: Vec<(String, Result<()>)>,
}

/// A reload's progress, published like lifecycle events: on
/// [`PluginManager::subscribe`] as a [`crate::LifecycleEvent`] whose `reload` is set,
/// and on the event bus as `plugbay.plugin.reload_started`,
/// `plugbay.plugin.reloaded`, `plugbay.plugin.reload_rolled_back` and
/// `plugbay.plugin.reload_failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadEvent {
    /// A reload began (the new file is about to be admitted).
    Started {
        /// The version running.
        version: String,
    },
    /// The new version serves (or the file was identical: `no_op`).
    Succeeded {
        /// The version before.
        old_version: String,
        /// The version now.
        new_version: String,
        /// Identical bytes: nothing was swapped.
        no_op: bool,
    },
    /// The reload failed; the version that ran before serves (again).
    RolledBack {
        /// The version serving.
        version: String,
        /// Why (an [`Error::ReloadFailed`] names the step).
        error: Box<Error>,
    },
    /// The reload failed and so did restoring the old version: the plugin is Failed.
    Failed {
        /// Both errors ([`Error::ReloadRollbackFailed`]).
        error: Box<Error>,
    },
}

impl ReloadEvent {
    /// The event bus name and payload of this event for `plugin`.
    pub(crate) fn bus_form(&self, plugin: &str) -> (&'static str, Value) {
        use serde_json::json;
        match self {
            ReloadEvent::Started { version } => (
                "plugbay.plugin.reload_started",
                json!({ "plugin": plugin, "version": version }),
            ),
            ReloadEvent::Succeeded {
                old_version,
                new_version,
                no_op,
            } => (
                "plugbay.plugin.reloaded",
                json!({ "plugin": plugin, "old_version": old_version,
                        "new_version": new_version, "no_op": no_op }),
            ),
            ReloadEvent::RolledBack { version, error } => (
                "plugbay.plugin.reload_rolled_back",
                json!({ "plugin": plugin, "version": version, "error": error.to_string() }),
            ),
            ReloadEvent::Failed { error } => (
                "plugbay.plugin.reload_failed",
                json!({ "plugin": plugin, "error": error.to_string() }),
            ),
        }
    }
}

/// Where the new code comes from.
enum Replacement {
    /// A library file, admitted through the safety pipeline.
    File(PathBuf),
    /// A plugin object the embedder built (e.g. an in-process plugin).
    Object(Arc<dyn Plugin>),
}

/// Marks a slot as being reloaded; clears the mark when dropped.
struct ReloadMark(Arc<Slot>);

impl ReloadMark {
    fn take(slot: &Arc<Slot>) -> Result<Self> {
        slot.reloading
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| Error::ReloadInProgress {
                plugin: slot.name.clone(),
            })?;
        Ok(Self(Arc::clone(slot)))
    }
}

impl Drop for ReloadMark {
    fn drop(&mut self) {
        self.0.reloading.store(false, Ordering::Release);
    }
}

impl PluginManager {
    /// Replaces a plugin's code with a new build of it, while it runs, keeping
    /// its id, its state and (when the new version still satisfies them) its
    /// running dependents.
    ///
    /// The new file ([`ReloadOptions::path`], default the plugin's own file)
    /// goes through the safety pipeline like any library and is mapped from its
    /// own shadow copy. Then, under the plugin's lifecycle lock: new calls are
    /// held (they wait, at most [`crate::ManagerConfig::reload_timeout`]), the
    /// running calls drain, the old version saves its state and shuts down, the
    /// new one loads that state (`saved_by_version` = the old version) and
    /// initializes, and the held calls go to it. The swap has the reload
    /// timeout as its deadline. A plugin that is not Active just gets the new
    /// code (its next load uses it).
    ///
    /// Errors (the old version keeps serving in all but the last):
    /// [`Error::ReloadFailed`] naming the [`ReloadStep`] that failed (the old
    /// version was restored with its saved state if it had stopped);
    /// [`Error::ReloadBreaksDependents`] (without `cascade`);
    /// [`Error::ReloadInProgress`] (one reload of a plugin at a time);
    /// [`Error::ReloadDuringShutdown`] (while `unload_all_plugins` runs);
    /// [`Error::ReloadRefused`] (no file to reload from); and
    /// [`Error::ReloadRollbackFailed`]: the rollback failed too, the plugin is
    /// `Failed`. A file with the same bytes as the running library is a no-op
    /// ([`ReloadOutcome::no_op`]).
    pub async fn reload_plugin(
        &self,
        target: impl Into<Target>,
        options: ReloadOptions,
    ) -> Result<ReloadOutcome> {
        let slot = self.inner.slot_of(&target.into())?;
        let path = match (&options.path, &slot.plugin.info().source) {
            (Some(path), _) => path.clone(),
            (None, PluginSource::Library(path)) => path.clone(),
            (None, PluginSource::InProcess) => {
                return Err(Error::ReloadRefused {
                    plugin: slot.name.clone(),
                    reason: "it is compiled into the host and has no library file; \
                             pass a file in `ReloadOptions::path` or use `replace_plugin`"
                        .into(),
                })
            }
        };
        self.run_reload(slot, Replacement::File(path), options)
            .await
    }

    /// [`PluginManager::reload_plugin`] with a plugin object instead of a file
    /// (e.g. a new in-process implementation): the same swap, state handoff,
    /// rollback and events. `options.path` is not used. The object must have
    /// the plugin's name.
    pub async fn replace_plugin(
        &self,
        target: impl Into<Target>,
        plugin: Arc<dyn Plugin>,
        options: ReloadOptions,
    ) -> Result<ReloadOutcome> {
        let slot = self.inner.slot_of(&target.into())?;
        self.run_reload(slot, Replacement::Object(plugin), options)
            .await
    }

    /// Library images kept mapped by reloads, over all plugins (see
    /// [`crate::ManagerConfig::retained_images_warning`]).
    pub fn retained_images(&self) -> usize {
        self.inner.retained_images_total()
    }

    async fn run_reload(
        &self,
        slot: Arc<Slot>,
        replacement: Replacement,
        options: ReloadOptions,
    ) -> Result<ReloadOutcome> {
        // Taken before the first await: of two reloads started together, the
        // second is refused at once, never interleaved.
        let mark = ReloadMark::take(&slot)?;
        self.inner.refuse_during_unload_all(&slot)?;
        reentry::refuse(&slot, "reloaded")?;
        let inner = Arc::clone(&self.inner);
        let name = slot.name.clone();
        // On its own task: dropping the caller's future never leaves the gate held.
        tasks::spawn(async move {
            let _mark = mark;
            inner.reload(&slot, replacement, options).await
        })
        .await
        .unwrap_or_else(|join| Err(tasks::task_failed(&name, "reload", join)))
    }
}
