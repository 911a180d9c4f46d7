//! `hello`: the smallest useful plugin. No dependencies, no state; exposes `greet`.

use plugbay_api::{export_plugin, HostContext, Plugin, PluginError, PluginMetadata};
use serde_json::{json, Value};

/// Says hello to whoever asks.
#[derive(Default)]
pub struct Hello {
    host: Option<HostContext>,
}

impl Plugin for Hello {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("hello", env!("CARGO_PKG_VERSION")).description("says hello")
    }

    fn initialize(&mut self, host: &HostContext) -> Result<(), PluginError> {
        host.info(&format!(
            "hello from {} {}",
            host.host_name(),
            host.host_version()
        ));
        self.host = Some(host.clone());
        Ok(())
    }

    fn call(&mut self, method: &str, args: Value) -> Result<Value, PluginError> {
        match method {
            // `{"name": "Ada"}` -> "Hello, Ada!"
            "greet" => {
                let name = args.get("name").and_then(Value::as_str).unwrap_or("world");
                Ok(json!(format!("Hello, {name}!")))
            }
            _ => Err(PluginError::unknown_method(method)),
        }
    }
}

export_plugin!(Hello);
