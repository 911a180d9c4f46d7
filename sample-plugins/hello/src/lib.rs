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

#[cfg(test)]
mod tests {
    use super::*;
    use plugbay_api::testing::{TestHost, TestPlugin};
    use plugbay_api::{ErrorKind, LogLevel};

    #[test]
    fn greets_by_name_or_the_world() {
        let host = TestHost::new();
        let mut hello = TestPlugin::<Hello>::start(&host).unwrap();
        assert_eq!(
            hello.call("greet", json!({ "name": "Ada" })).unwrap(),
            json!("Hello, Ada!")
        );
        assert_eq!(
            hello.call("greet", json!({})).unwrap(),
            json!("Hello, world!")
        );
    }

    #[test]
    fn logs_the_host_it_runs_in() {
        let host = TestHost::new().host_name("studio").host_version("2.1.0");
        TestPlugin::<Hello>::start(&host).unwrap();
        let logs = host.logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].level, LogLevel::Info);
        assert_eq!(logs[0].message, "hello from studio 2.1.0");
    }

    #[test]
    fn refuses_unknown_methods_and_saves_nothing() {
        let host = TestHost::new();
        let mut hello = TestPlugin::<Hello>::start(&host).unwrap();
        let err = hello.call("wave", json!({})).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnknownMethod);
        assert_eq!(err.message(), "unknown method `wave`");
        assert_eq!(hello.save_state().unwrap(), Value::Null);
    }
}
