//! `greeter`: depends on `hello` (semver `^1.0`) and calls it through the host,
//! both while initializing and from its own `greet` operation.

use plugbay_api::{export_plugin, HostContext, Plugin, PluginError, PluginMetadata};
use serde_json::{json, Value};

/// Builds greetings by asking the `hello` plugin, through the host.
#[derive(Default)]
pub struct Greeter {
    host: Option<HostContext>,
    /// What `hello` answered during `initialize`.
    first_greeting: String,
}

impl Plugin for Greeter {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("greeter", env!("CARGO_PKG_VERSION"))
            .description("greets through the hello plugin")
            .depends_on("hello", "^1.0")
    }

    fn initialize(&mut self, host: &HostContext) -> Result<(), PluginError> {
        let answer = host.call("hello", "greet", &json!({ "name": "greeter" }))?;
        self.first_greeting = answer.as_str().unwrap_or_default().to_owned();
        host.info(&format!("hello answered: {}", self.first_greeting));
        self.host = Some(host.clone());
        Ok(())
    }

    fn call(&mut self, method: &str, args: Value) -> Result<Value, PluginError> {
        match method {
            "first_greeting" => Ok(json!(self.first_greeting)),
            // Re-enters the host from inside a call: greeter.greet -> host -> hello.greet.
            "greet" => {
                let host = self
                    .host
                    .as_ref()
                    .ok_or_else(|| PluginError::failed("greeter is not initialized"))?;
                host.call("hello", "greet", &args)
            }
            _ => Err(PluginError::unknown_method(method)),
        }
    }
}

export_plugin!(Greeter);
