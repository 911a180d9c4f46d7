//! What a settled file change does to the running host.
//!
//! A file is matched to a plugin by the plugin's source path (the path the user
//! placed the library at). A registered plugin's file that changed is reloaded;
//! one that vanished is stopped and unregistered. A file no plugin comes from is
//! admitted with its directory ([`PluginManager::load_directory`]: the libraries
//! already registered are refused there as duplicates and left alone) and what
//! got registered is started. Dependents that `--cascade` stopped with a removed
//! plugin are started again once the plan no longer blocks them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use plugbay_host::{
    Error, PluginManager, PluginSource, PluginSummary, ReloadOptions, UnloadOptions,
};

use super::settle::Change;
use super::status_problem;

/// Applies settled changes to one manager.
pub struct Applier<'a> {
    manager: &'a PluginManager,
    cascade: bool,
    /// Dependents stopped with a removed plugin (`--cascade`): started again
    /// once what they need is back.
    stopped: BTreeSet<String>,
}

impl<'a> Applier<'a> {
    /// Applies to `manager`; with `cascade`, removals stop the dependents too.
    pub fn new(manager: &'a PluginManager, cascade: bool) -> Self {
        Self {
            manager,
            cascade,
            stopped: BTreeSet::new(),
        }
    }

    /// Applies the settled `changes` of `dir`, in order; new files last, all
    /// admitted together.
    pub async fn apply(&mut self, dir: &Path, changes: Vec<Change>) {
        let mut admit = BTreeSet::new();
        let mut vanished = Vec::new();
        for change in changes {
            let registered = self.registered(change.path());
            match (change, registered) {
                (Change::Vanished(path), Some(plugin)) => vanished.push((path, plugin)),
                // A file that had been refused is gone: nothing runs from it.
                (Change::Vanished(_), None) => {}
                (Change::Appeared(path) | Change::Changed(path), Some(plugin)) => {
                    self.reload(&path, &plugin).await
                }
                (Change::Appeared(path) | Change::Changed(path), None) => {
                    admit.insert(path);
                }
            }
        }
        self.remove_all(vanished).await;
        if !admit.is_empty() {
            self.admit(dir, &admit).await;
        }
        self.restart_stopped().await;
    }

    /// Starts again the dependents `--cascade` stopped whose dependencies can
    /// all be satisfied now (still stopped, and nothing blocks them in the plan).
    async fn restart_stopped(&mut self) {
        if self.stopped.is_empty() {
            return;
        }
        let plan = self.manager.resolve_dependencies();
        for name in std::mem::take(&mut self.stopped) {
            let Some(plugin) = self
                .manager
                .plugins()
                .into_iter()
                .find(|p| p.info.name == name)
            else {
                // Its own file went away meanwhile.
                continue;
            };
            if plugin.state.is_active() {
                continue;
            }
            if plan.explain(plugin.id).is_some() {
                self.stopped.insert(name);
                continue;
            }
            let what = format!("restarted {name} {}", plugin.info.version);
            self.start(plugin.id, &what).await;
        }
    }

    /// Removes the plugins whose files vanished. A plugin held up by dependents
    /// is tried again after the others (its dependents' files may have vanished
    /// too), and refused only when no removal makes progress any more.
    async fn remove_all(&mut self, mut vanished: Vec<(PathBuf, PluginSummary)>) {
        loop {
            let mut refused = Vec::new();
            let before = vanished.len();
            for (path, plugin) in vanished {
                if let Err(dependents) = self.remove(&path, &plugin).await {
                    refused.push((path, plugin, dependents));
                }
            }
            if refused.len() == before {
                for (path, plugin, dependents) in refused {
                    status_problem(&format!(
                        "kept {} {} running: {} was deleted, but {} depend{} on it \
                         (run with --cascade to stop them with it)",
                        plugin.info.name,
                        plugin.info.version,
                        path.display(),
                        dependents.join(", "),
                        if dependents.len() == 1 { "s" } else { "" }
                    ));
                }
                return;
            }
            vanished = refused.into_iter().map(|(p, s, _)| (p, s)).collect();
        }
    }

    /// The plugin registered from the library at `path`, if any.
    fn registered(&self, path: &Path) -> Option<PluginSummary> {
        self.manager
            .plugins()
            .into_iter()
            .find(|p| matches!(&p.info.source, PluginSource::Library(source) if source == path))
    }

    /// The library of `plugin` at `path` changed: reload it from there (with
    /// `cascade`, dependents whose requirement the new version breaks are
    /// stopped and started again). A plugin that was not running is started on
    /// the new code.
    async fn reload(&mut self, path: &Path, plugin: &PluginSummary) {
        let (name, version) = (&plugin.info.name, &plugin.info.version);
        let options = ReloadOptions {
            cascade: self.cascade,
            path: Some(path.to_path_buf()),
        };
        let outcome = match self.manager.reload_plugin(plugin.id, options).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let now = match &e {
                    Error::ReloadRollbackFailed { .. } => "is Failed".to_owned(),
                    _ if plugin.state.is_active() => "keeps running".to_owned(),
                    _ => format!("stays {}", plugin.state.name()),
                };
                status_problem(&format!(
                    "{} changed; {name} {version} {now}: {e}",
                    path.display()
                ));
                return;
            }
        };
        if outcome.no_op {
            println!(
                "watch: unchanged {name} {version} ({}): same bytes as the running library",
                path.display()
            );
            return;
        }
        let images = retained(outcome.retained_images, outcome.retained_images_total);
        if outcome.was_active {
            println!(
                "watch: reloaded {name} {} -> {} ({}): calls held {} ms; {images}",
                outcome.old_version,
                outcome.new_version,
                path.display(),
                outcome.calls_held.as_millis()
            );
        } else {
            // It was not running (it failed, or was stopped with a dependency):
            // the new code gets its chance.
            let what = format!(
                "replaced {name} {} -> {} ({}; it was {}; {images})",
                outcome.old_version,
                outcome.new_version,
                path.display(),
                plugin.state.name()
            );
            self.start(plugin.id, &what).await;
        }
        for (dependent, result) in &outcome.restarted_dependents {
            match result {
                Ok(()) => println!(
                    "watch: restarted {dependent} on {name} {}",
                    outcome.new_version
                ),
                Err(e) => status_problem(&format!(
                    "{dependent} did not start again on {name} {}: {e}",
                    outcome.new_version
                )),
            }
        }
    }

    /// The library of `plugin` at `path` was deleted: stop it (and, with
    /// `cascade`, what depends on it) and forget it. Without `cascade`, refused
    /// while dependents hold it up: returns their names.
    async fn remove(&mut self, path: &Path, plugin: &PluginSummary) -> Result<(), Vec<String>> {
        let (name, version) = (&plugin.info.name, &plugin.info.version);
        let active_before = self.active_names();
        let options = UnloadOptions {
            cascade: self.cascade,
        };
        match self.manager.unload_plugin_with(plugin.id, options).await {
            Ok(()) => {}
            Err(Error::InUse { dependents, .. }) => return Err(dependents),
            Err(e) => status_problem(&format!(
                "{} was deleted; {name} {version} did not stop cleanly: {e}",
                path.display()
            )),
        }
        let active_after = self.active_names();
        for stopped in active_before.difference(&active_after) {
            if stopped != name {
                println!("watch: stopped {stopped} (it depends on {name})");
                self.stopped.insert(stopped.clone());
            }
        }
        match self.manager.unregister_plugin(plugin.id).await {
            Ok(()) => println!(
                "watch: removed {name} {version} ({} was deleted)",
                path.display()
            ),
            Err(e) => status_problem(&format!(
                "{} was deleted, but {name} {version} could not be removed: {e}",
                path.display()
            )),
        }
        Ok(())
    }

    /// Admits the new files `paths` of `dir` and starts what got registered.
    async fn admit(&mut self, dir: &Path, paths: &BTreeSet<PathBuf>) {
        let report = match self.manager.load_directory(dir).await {
            Ok(report) => report,
            Err(e) => {
                for path in paths {
                    status_problem(&format!("cannot admit {}: {e}", path.display()));
                }
                return;
            }
        };
        for (path, e) in &report.failed {
            // The directory's other libraries are refused as duplicates of
            // themselves, or were refused before and have not changed.
            if paths.contains(path) {
                status_problem(&format!("refused {}: {e}", path.display()));
            }
        }
        // Everything registered here is new: a file just written, or one refused
        // before that is admissible now (its duplicate went away).
        for library in report.registered {
            let version = self
                .manager
                .get_plugin_by_id(library.id)
                .map(|p| p.info().version.to_string())
                .unwrap_or_default();
            let what = format!(
                "added {} {version} ({})",
                library.name,
                library.path.display()
            );
            self.start(library.id, &what).await;
        }
    }

    /// Starts the plugin `id` (and what it depends on) after `what` happened to
    /// it; one line either way.
    async fn start(&mut self, id: uuid::Uuid, what: &str) {
        match self.manager.load_plugin(id).await {
            Ok(()) => println!("watch: {what}: active"),
            Err(e) => status_problem(&format!("{what}, but it did not start: {e}")),
        }
    }

    /// The names of the plugins that are Active now.
    fn active_names(&self) -> BTreeSet<String> {
        self.manager
            .plugins()
            .into_iter()
            .filter(|p| p.state.is_active())
            .map(|p| p.info.name)
            .collect()
    }
}

/// "N retained images (M in all)": library images reloads keep mapped, for this
/// plugin and over all plugins (each costs memory until the host exits).
fn retained(plugin: usize, total: usize) -> String {
    let plural = if plugin == 1 { "" } else { "s" };
    format!("{plugin} retained image{plural} ({total} in all)")
}
