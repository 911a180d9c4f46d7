//! Holding dependencies up: a plugin that starts records itself as a user of
//! each dependency, and a dependency with users cannot leave `Active`.
//!
//! The check ("is the dependency Active?") and the record ("I use it") happen
//! in one critical section of the dependency's slot, and the dependency's
//! shutdown checks for users in the same critical section that closes its call
//! gate. So a dependent can never become Active on top of a dependency that is
//! shutting down, without any task holding two locks.

use std::sync::Arc;

use super::registry::Slot;
use super::Inner;
use crate::error::{Error, Result};

impl Inner {
    /// Records `slot` as a user of each of its dependencies, which must be
    /// registered, match their requirement and be Active. Optional dependencies
    /// that are absent, mismatched or not Active are skipped. On error nothing
    /// stays held.
    pub(crate) fn hold_dependencies(&self, slot: &Slot) -> Result<Vec<Arc<Slot>>> {
        let mut held: Vec<Arc<Slot>> = Vec::new();
        for dep in &slot.plugin.info().dependencies {
            let outcome = match self.registry.get_by_name(&dep.name) {
                None => Err(Error::MissingDependency {
                    plugin: slot.name.clone(),
                    dependency: dep.name.clone(),
                    requirement: dep.requirement.to_string(),
                }),
                Some(target) => {
                    let found = &target.plugin.info().version;
                    if !dep.requirement.matches(found) {
                        Err(Error::VersionConflict {
                            plugin: slot.name.clone(),
                            dependency: dep.name.clone(),
                            requirement: dep.requirement.to_string(),
                            found: found.to_string(),
                        })
                    } else {
                        match target.gate.acquire_user(slot.id, &slot.name) {
                            Ok(()) => Ok(target),
                            Err(state) => Err(Error::DependencyNotActive {
                                plugin: slot.name.clone(),
                                dependency: dep.name.clone(),
                                state: state.name().to_owned(),
                            }),
                        }
                    }
                }
            };
            match outcome {
                Ok(target) => held.push(target),
                Err(_) if dep.optional => {}
                Err(e) => {
                    for d in &held {
                        d.gate.release_user(slot.id);
                    }
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    /// Lets go of the dependencies `slot` holds up.
    pub(crate) fn release_holds(&self, slot: &Slot) {
        for d in slot.gate.take_holds() {
            d.gate.release_user(slot.id);
        }
    }
}
