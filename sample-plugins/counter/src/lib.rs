//! `counter`: a plugin with persistent state. It counts how many times it has been
//! initialized, across host runs, and exposes `get` and `increment`.

use plugbay_api::{export_plugin, HostContext, Plugin, PluginError, PluginMetadata};
use serde_json::{json, Value};

/// Counts initializations (persisted) and explicit increments.
#[derive(Default)]
pub struct Counter {
    initializations: u64,
    value: u64,
}

impl Plugin for Counter {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("counter", env!("CARGO_PKG_VERSION"))
            .description("counts its initializations across runs")
    }

    fn initialize(&mut self, host: &HostContext) -> Result<(), PluginError> {
        self.initializations += 1;
        host.info(&format!("initialized {} time(s)", self.initializations));
        Ok(())
    }

    fn save_state(&self) -> Result<Value, PluginError> {
        Ok(json!({ "initializations": self.initializations, "value": self.value }))
    }

    fn load_state(&mut self, state: Value, _saved_by_version: &str) -> Result<(), PluginError> {
        let field = |key: &str| -> Result<u64, PluginError> {
            state.get(key).map_or(Ok(0), |v| {
                v.as_u64().ok_or_else(|| {
                    PluginError::invalid_input(format!("`{key}` must be an unsigned integer"))
                })
            })
        };
        self.initializations = field("initializations")?;
        self.value = field("value")?;
        Ok(())
    }

    fn call(&mut self, method: &str, _args: Value) -> Result<Value, PluginError> {
        match method {
            "get" => Ok(json!({ "initializations": self.initializations, "value": self.value })),
            "increment" => {
                self.value += 1;
                Ok(json!(self.value))
            }
            _ => Err(PluginError::unknown_method(method)),
        }
    }
}

export_plugin!(Counter);
