//! What a batch operation (`load_all_plugins`, `unload_all_plugins`) did to
//! each plugin.

use uuid::Uuid;

use crate::error::Result;

/// The outcome of one plugin in a batch operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOutcome {
    /// The plugin's id.
    pub id: Uuid,
    /// The plugin's name.
    pub name: String,
    /// What happened to it.
    pub result: Result<()>,
}

/// What a batch operation did to each plugin, in registration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// One entry per plugin.
    pub outcomes: Vec<PluginOutcome>,
}

impl BatchReport {
    /// Whether every plugin succeeded.
    pub fn is_ok(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }

    /// The plugins that did not succeed.
    pub fn failures(&self) -> impl Iterator<Item = &PluginOutcome> {
        self.outcomes.iter().filter(|o| o.result.is_err())
    }

    /// The outcome of the plugin called `name`.
    pub fn outcome(&self, name: &str) -> Option<&PluginOutcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }
}
