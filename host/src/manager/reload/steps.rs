//! A reload's steps before and around the swap: events, admitting the new
//! file, the no-op check, the name and dependents checks, the cascade.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use semver::Version;

use super::{ReloadEvent, ReloadOptions, ReloadOutcome, ReloadStep, Replacement};
use crate::error::{Error, Result};
use crate::ffi::FfiPlugin;
use crate::loader::LoadedLibrary;
use crate::manager::lifecycle::LifecycleEvent;
use crate::manager::registry::Slot;
use crate::manager::Inner;
use crate::plugin::Plugin;
use crate::safety::pipeline::admit_file_async;

impl Inner {
    pub(super) fn refuse_during_unload_all(&self, slot: &Slot) -> Result<()> {
        if self.unloading_all.load(Ordering::Acquire) > 0 {
            return Err(Error::ReloadDuringShutdown {
                plugin: slot.name.clone(),
            });
        }
        Ok(())
    }

    /// Library images kept mapped by reloads, over all plugins.
    pub(in crate::manager) fn retained_images_total(&self) -> usize {
        self.registry
            .snapshot()
            .iter()
            .map(|s| s.plugin.retained_images())
            .sum()
    }

    /// Publishes a reload event on both event paths.
    fn publish_reload(&self, slot: &Slot, event: ReloadEvent) {
        let (name, payload) = event.bus_form(&slot.name);
        self.bus.reload(name, payload);
        let state = slot.state();
        let _ = self.events.send(LifecycleEvent {
            id: slot.id,
            name: slot.name.clone(),
            from: state.clone(),
            to: state,
            reload: Some(event),
        });
    }

    /// A reload, with its events.
    pub(super) async fn reload(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        replacement: Replacement,
        options: ReloadOptions,
    ) -> Result<ReloadOutcome> {
        let old_version = slot.plugin.info().version.to_string();
        self.publish_reload(
            slot,
            ReloadEvent::Started {
                version: old_version.clone(),
            },
        );
        let result = self.reload_steps(slot, replacement, &options).await;
        let event = match &result {
            Ok(outcome) => ReloadEvent::Succeeded {
                old_version,
                new_version: outcome.new_version.to_string(),
                no_op: outcome.no_op,
            },
            Err(e @ Error::ReloadRollbackFailed { .. }) => ReloadEvent::Failed {
                error: Box::new(e.clone()),
            },
            Err(e) => ReloadEvent::RolledBack {
                version: slot.plugin.info().version.to_string(),
                error: Box::new(e.clone()),
            },
        };
        match &result {
            Ok(o) => tracing::info!(plugin = %slot.name, old = %o.old_version,
                new = %o.new_version, no_op = o.no_op, held = ?o.calls_held, "reloaded"),
            Err(e) => tracing::warn!(plugin = %slot.name, error = %e, "reload failed"),
        }
        self.publish_reload(slot, event);
        let total = self.retained_images_total();
        if total > self.config.retained_images_warning() {
            tracing::warn!(
                retained = total,
                threshold = self.config.retained_images_warning(),
                "reloads keep {total} library images mapped (libraries are never unloaded); \
                 restart the host to release them"
            );
        }
        result
    }

    async fn reload_steps(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        replacement: Replacement,
        options: &ReloadOptions,
    ) -> Result<ReloadOutcome> {
        let old = Arc::clone(slot.plugin.current());
        let old_version = old.info().version.clone();
        let running = old_version.to_string();
        let failed = |step, cause| Error::ReloadFailed {
            plugin: slot.name.clone(),
            step,
            cause: Box::new(cause),
            running: running.clone(),
        };
        let (new, image) = match replacement {
            Replacement::Object(plugin) => (plugin, None),
            Replacement::File(path) => {
                let (library, content_id) = self
                    .admit(&path)
                    .await
                    .map_err(|e| failed(ReloadStep::Admit, e))?;
                // The image is mapped now, whatever happens next.
                slot.plugin.record_current_image_if_unknown();
                slot.plugin.record_image(&content_id);
                if slot.plugin.current_image() == Some(content_id.as_str()) {
                    return Ok(self.outcome(slot, old_version.clone(), old_version, true));
                }
                let plugin: Arc<dyn Plugin> = Arc::new(FfiPlugin::new(library));
                (plugin, Some(content_id))
            }
        };
        let new_version = new.info().version.clone();
        if new.info().name != slot.name {
            return Err(failed(
                ReloadStep::Name,
                Error::ReloadRefused {
                    plugin: slot.name.clone(),
                    reason: format!(
                        "the new library ({}) is plugin `{}`, not `{}`",
                        new.info().source,
                        new.info().name,
                        slot.name
                    ),
                },
            ));
        }
        let mut stopped = Vec::new();
        let breaking = self.breaking_dependents(slot, &new_version);
        if !breaking.is_empty() {
            if !options.cascade {
                return Err(self.breaks(slot, &new_version, &breaking));
            }
            stopped = self.dependents_closure(&breaking);
            let stops = breaking
                .iter()
                .map(|(d, _)| Arc::clone(self).unload_cascade(Arc::clone(d)));
            for result in futures::future::join_all(stops).await {
                result.map_err(|e| failed(ReloadStep::Dependents, e))?;
            }
        }
        let swapped = self.swap(slot, old, new, image).await;
        let mut restarted = Vec::new();
        for dependent in stopped {
            let result = self.load_with_dependencies(&dependent).await;
            restarted.push((dependent.name.clone(), result));
        }
        let (was_active, held) = swapped?;
        let mut outcome = self.outcome(slot, old_version, new_version, false);
        outcome.was_active = was_active;
        outcome.calls_held = held;
        outcome.restarted_dependents = restarted;
        Ok(outcome)
    }

    fn outcome(
        &self,
        slot: &Slot,
        old_version: Version,
        new_version: Version,
        no_op: bool,
    ) -> ReloadOutcome {
        ReloadOutcome {
            id: slot.id,
            name: slot.name.clone(),
            old_version,
            new_version,
            no_op,
            was_active: slot.state().is_active(),
            calls_held: Duration::ZERO,
            retained_images: slot.plugin.retained_images(),
            retained_images_total: self.retained_images_total(),
            restarted_dependents: Vec::new(),
        }
    }

    /// Admits `path` through the safety pipeline; the opened library and the
    /// content id of its bytes.
    async fn admit(&self, path: &Path) -> Result<(LoadedLibrary, String)> {
        let path = std::path::absolute(path).map_err(|e| Error::Refused {
            path: path.to_path_buf(),
            reason: format!("cannot make the path absolute: {e}"),
        })?;
        let admission = admit_file_async(path.clone(), self.config.safety().clone()).await?;
        let file = admission.report.files.first();
        if let Some(problem) = file.filter(|f| !f.is_ok()) {
            return Err(problem.error.clone().unwrap_or_else(|| Error::Refused {
                path: path.clone(),
                reason: problem
                    .reason
                    .clone()
                    .unwrap_or_else(|| "not admitted".into()),
            }));
        }
        let content_id = file.and_then(|f| f.content_id.clone());
        match (admission.libraries.into_iter().next(), content_id) {
            (Some(library), Some(content_id)) => Ok((library, content_id)),
            _ => Err(Error::Refused {
                path,
                reason: "the safety pipeline admitted nothing from it".into(),
            }),
        }
    }

    /// The running dependents of `slot` whose requirement `version` does not
    /// match, each with a description (`greeter (requires ^1.0)`).
    pub(super) fn breaking_dependents(
        &self,
        slot: &Slot,
        version: &Version,
    ) -> Vec<(Arc<Slot>, String)> {
        slot.user_ids()
            .into_iter()
            .filter_map(|id| self.registry.get(id))
            .filter_map(|d| {
                let spec = d
                    .plugin
                    .info()
                    .dependencies
                    .iter()
                    .find(|spec| spec.name == slot.name)?
                    .clone();
                (!spec.requirement.matches(version)).then(|| {
                    (
                        Arc::clone(&d),
                        format!("{} (requires {})", d.name, spec.requirement),
                    )
                })
            })
            .collect()
    }

    pub(super) fn breaks(
        &self,
        slot: &Slot,
        version: &Version,
        breaking: &[(Arc<Slot>, String)],
    ) -> Error {
        let mut dependents: Vec<String> = breaking.iter().map(|(_, d)| d.clone()).collect();
        dependents.sort();
        Error::ReloadBreaksDependents {
            plugin: slot.name.clone(),
            version: version.to_string(),
            dependents,
        }
    }

    /// `roots` and every plugin holding one of them up, transitively, in
    /// breadth-first order (the order to start them again).
    fn dependents_closure(&self, roots: &[(Arc<Slot>, String)]) -> Vec<Arc<Slot>> {
        let mut seen = HashSet::new();
        let mut queue: VecDeque<Arc<Slot>> = roots.iter().map(|(d, _)| Arc::clone(d)).collect();
        let mut order = Vec::new();
        while let Some(slot) = queue.pop_front() {
            if !seen.insert(slot.id) {
                continue;
            }
            queue.extend(
                slot.user_ids()
                    .into_iter()
                    .filter_map(|id| self.registry.get(id)),
            );
            order.push(slot);
        }
        order
    }
}
