//! A plugin written against plugbay-api 1.0.0 and built against the frozen copy
//! of that release (`tests/frozen/plugbay-api-1.0.0`) by
//! `integration_tests::compat::v1_0`. The compatibility tests load it into the
//! current host: it must load, initialize, answer calls and keep its state.

use plugbay_api::{export_plugin, HostContext, Plugin, PluginError, PluginMetadata};
use serde_json::{json, Value};

/// Counts `increment` calls; the count survives restarts through saved state.
#[derive(Default)]
pub struct OldCounter {
    count: u64,
    host: Option<HostContext>,
}

impl Plugin for OldCounter {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("old-counter", "1.0.0").description("built against plugbay-api 1.0.0")
    }

    fn initialize(&mut self, host: &HostContext) -> Result<(), PluginError> {
        host.info("old-counter initialized");
        self.host = Some(host.clone());
        Ok(())
    }

    fn save_state(&self) -> Result<Value, PluginError> {
        Ok(json!({ "count": self.count }))
    }

    fn load_state(&mut self, state: Value, _saved_by: &str) -> Result<(), PluginError> {
        self.count = state["count"].as_u64().ok_or("saved state has no `count`")?;
        Ok(())
    }

    fn call(&mut self, method: &str, _args: Value) -> Result<Value, PluginError> {
        match method {
            "increment" => {
                self.count += 1;
                Ok(json!(self.count))
            }
            "get" => Ok(json!(self.count)),
            "host" => {
                let host = self.host.as_ref().ok_or("not initialized")?;
                Ok(json!(host.host_name()))
            }
            _ => Err(PluginError::unknown_method(method)),
        }
    }
}

export_plugin!(OldCounter);
