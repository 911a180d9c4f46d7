//! Registering every plugin library found in a directory, admitted through
//! the safety pipeline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::PluginManager;
use crate::error::{Error, Result};
use crate::ffi::FfiPlugin;
use crate::isolation::{IsolatedPlugin, IsolationPolicy, RunnerSettings};
use crate::loader::LoadedLibrary;
use crate::manager::ManagerConfig;
use crate::plugin::Plugin;
use crate::safety::{
    admit_dirs_observed, Admission, ClosedLibrary, KeepClosed, Progress, ProgressObserver,
};

/// A library registered by [`PluginManager::load_directory`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredLibrary {
    /// The library file.
    pub path: PathBuf,
    /// The plugin's name.
    pub name: String,
    /// The id it was registered under.
    pub id: Uuid,
}

/// What [`PluginManager::load_directory`] did with each file.
#[derive(Debug, Clone, Default)]
pub struct DirectoryReport {
    /// Libraries opened and registered, in path order.
    pub registered: Vec<RegisteredLibrary>,
    /// Files (or directories) that failed, each with its own error.
    pub failed: Vec<(PathBuf, Error)>,
}

impl DirectoryReport {
    /// Appends another report.
    pub fn merge(&mut self, other: DirectoryReport) {
        self.registered.extend(other.registered);
        self.failed.extend(other.failed);
    }
}

impl PluginManager {
    /// Finds the plugin libraries in `dir`, admits each through the safety
    /// pipeline (checks, shadow copy, probe) and registers it. Admission runs
    /// off the async workers: files are checked, copied and probed on the
    /// pipeline's admission thread while its own opener thread opens the
    /// verified copies (never the blocking pool). A file
    /// that fails gets its own error in the report; the others are still
    /// registered. Fails as a whole only when the directory cannot be read.
    pub async fn load_directory(&self, dir: impl AsRef<Path>) -> Result<DirectoryReport> {
        self.load_directory_observed(dir.as_ref(), None).await.0
    }

    /// [`PluginManager::load_directory`] with an optional progress observer,
    /// which is handed back for the next directory.
    async fn load_directory_observed(
        &self,
        dir: &Path,
        progress: Option<ProgressObserver>,
    ) -> (Result<DirectoryReport>, Option<ProgressObserver>) {
        // Discovery, permission checks, the preflight probe (or its cache) and
        // shadow copies run on the pipeline's admission thread, the opening on
        // its opener thread: none on the async workers.
        let safety = self.config().safety().clone();
        let keep_closed = Some(self.keep_closed());
        let (admission, progress) =
            admit_dirs_observed(vec![dir.to_path_buf()], safety, progress, keep_closed).await;
        (admission.and_then(|a| self.register_admitted(a)), progress)
    }

    /// Registers the libraries `admission` admitted; its refusals become the
    /// report's failures.
    fn register_admitted(&self, admission: Admission) -> Result<DirectoryReport> {
        if let Some(e) = admission.report.files.iter().find_map(|f| match &f.error {
            Some(e @ Error::DirUnreadable { .. }) => Some(e.clone()),
            _ => None,
        }) {
            // The directory itself could not be read.
            return Err(e);
        }
        let mut report = DirectoryReport::default();
        for file in admission.report.problems() {
            let error = file.error.clone().unwrap_or_else(|| Error::Refused {
                path: file.path.clone(),
                reason: file.reason.clone().unwrap_or_else(|| "not admitted".into()),
            });
            tracing::warn!(path = %file.path.display(), error = %error, "plugin library not registered");
            report.failed.push((file.path.clone(), error));
        }
        // What a reload compares a new file with (identical bytes: a no-op).
        let content_ids: HashMap<PathBuf, String> = admission
            .report
            .files
            .iter()
            .filter_map(|f| Some((f.path.clone(), f.content_id.clone()?)))
            .collect();
        let opened = admission.libraries.into_iter().map(|library| {
            let (path, name) = (library.path.clone(), library.info.name.clone());
            (path, name, Ok(self.plugin_for(library)))
        });
        let closed = admission.kept_closed.into_iter().map(|library| {
            let (path, name) = (library.path.clone(), library.info.name.clone());
            (path, name, self.isolated_plugin_for(library))
        });
        for (path, name, plugin) in opened.chain(closed) {
            let span = tracing::debug_span!("register", plugin = %name);
            match plugin.and_then(|plugin| span.in_scope(|| self.register_plugin(plugin))) {
                Ok(id) => {
                    if let (Some(content_id), Ok(slot)) =
                        (content_ids.get(&path), self.inner.slot(id))
                    {
                        slot.plugin.set_current_image(content_id);
                    }
                    report.registered.push(RegisteredLibrary { path, name, id })
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "plugin library not registered");
                    report.failed.push((path, e));
                }
            }
        }
        report.registered.sort_by(|a, b| a.path.cmp(&b.path));
        report.failed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(report)
    }

    /// The host-side plugin for a library admission opened here: in-process
    /// ([`FfiPlugin`]) or, when the isolation policy says so (admission opens
    /// such a library here only when the probe is off), an [`IsolatedPlugin`]
    /// whose runner opens the same verified copy.
    pub(super) fn plugin_for(&self, library: LoadedLibrary) -> Arc<dyn Plugin> {
        match self.runner_settings(&library.info.name) {
            Some(settings) => {
                let file = library
                    .shadow
                    .clone()
                    .unwrap_or_else(|| library.path.clone());
                tracing::info!(plugin = %library.info.name, "runs isolated in a runner process");
                Arc::new(IsolatedPlugin::new(library.info, file, settings))
            }
            None => Arc::new(FfiPlugin::new(library)),
        }
    }

    /// The plugin for a library admission left unopened because it runs
    /// isolated: its runner is the only process that maps it.
    pub(super) fn isolated_plugin_for(&self, library: ClosedLibrary) -> Result<Arc<dyn Plugin>> {
        let settings = self.runner_settings(&library.info.name).ok_or_else(|| {
            Error::Config(format!(
                "plugin `{}` was admitted to run isolated but has no runner",
                library.info.name
            ))
        })?;
        tracing::info!(plugin = %library.info.name, "runs isolated in a runner process");
        Ok(Arc::new(IsolatedPlugin::new(
            library.info,
            library.shadow,
            settings,
        )))
    }

    /// How plugin `name` runs in a runner process, or `None` when it runs in
    /// this one (the isolation policy, and a runner being configured).
    fn runner_settings(&self, name: &str) -> Option<RunnerSettings> {
        let config = self.config();
        let isolation = config.isolation();
        let (program, args) = isolation.runner()?;
        match isolation.policy_for(name, allowlist_enforced(config)) {
            IsolationPolicy::Isolated => Some(RunnerSettings {
                program: program.clone(),
                args: args.to_vec(),
                limits: *isolation.limits(),
                keep_env: isolation.keep_env().to_vec(),
                call_timeout: isolation.call_timeout(),
                init_timeout: config.init_timeout(),
                shutdown_timeout: config.shutdown_timeout(),
            }),
            IsolationPolicy::InProcess => None,
        }
    }

    /// Which libraries admission leaves unopened here: those that will run
    /// isolated ([`PluginManager::runner_settings`] says so).
    pub(super) fn keep_closed(&self) -> KeepClosed {
        let config = self.config().clone();
        Box::new(move |name| {
            config.isolation().runner().is_some()
                && config
                    .isolation()
                    .policy_for(name, allowlist_enforced(&config))
                    == IsolationPolicy::Isolated
        })
    }

    /// [`PluginManager::load_directory`] for every configured plugin directory;
    /// an unreadable directory is an error entry in the report.
    pub async fn load_plugin_dirs(&self) -> DirectoryReport {
        self.load_plugin_dirs_observed(None).await
    }

    /// [`PluginManager::load_plugin_dirs`], calling `progress` on the admission
    /// thread as each directory is listed and each file gets its verdict, for a
    /// progress display. It counts one directory at a time: `done` of that
    /// directory's `total` files. Keep it quick: admission waits for it.
    pub async fn load_plugin_dirs_with_progress(
        &self,
        progress: impl FnMut(Progress) + Send + 'static,
    ) -> DirectoryReport {
        self.load_plugin_dirs_observed(Some(Box::new(progress)))
            .await
    }

    async fn load_plugin_dirs_observed(
        &self,
        mut progress: Option<ProgressObserver>,
    ) -> DirectoryReport {
        let mut report = DirectoryReport::default();
        for dir in self.config().plugin_dirs().to_vec() {
            let (result, observer) = self.load_directory_observed(&dir, progress).await;
            progress = observer;
            match result {
                Ok(r) => report.merge(r),
                Err(e) => report.failed.push((dir, e)),
            }
        }
        report
    }
}

/// Whether the configured allowlist is enforced (the isolation policy may
/// isolate what it does not list).
fn allowlist_enforced(config: &ManagerConfig) -> bool {
    config.safety().allowlist().is_some() && config.safety().enforce_allowlist
}
