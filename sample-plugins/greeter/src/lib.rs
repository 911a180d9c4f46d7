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

#[cfg(test)]
mod tests {
    use super::*;
    use plugbay_api::testing::{TestHost, TestPlugin};
    use plugbay_api::ErrorKind;

    #[test]
    fn asks_hello_while_starting_and_when_called() {
        let host = TestHost::new().stub_call_with("hello", "greet", |args| {
            Ok(json!(format!(
                "Hi, {}!",
                args["name"].as_str().unwrap_or("?")
            )))
        });
        let mut greeter = TestPlugin::<Greeter>::start(&host).unwrap();
        assert_eq!(
            greeter.call("first_greeting", json!({})).unwrap(),
            json!("Hi, greeter!")
        );
        assert_eq!(host.log_messages(), ["hello answered: Hi, greeter!"]);
        assert_eq!(
            greeter.call("greet", json!({ "name": "Ada" })).unwrap(),
            json!("Hi, Ada!")
        );
        let calls = host.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[1].plugin.as_str(), calls[1].method.as_str()),
            ("hello", "greet")
        );
        assert_eq!(calls[1].args, json!({ "name": "Ada" }));
    }

    #[test]
    fn fails_to_start_when_hello_fails() {
        let host = TestHost::new().stub_call(
            "hello",
            "greet",
            Err(PluginError::failed("hello is out of words")),
        );
        let err = TestPlugin::<Greeter>::start(&host)
            .err()
            .expect("greeter cannot start without a greeting");
        assert_eq!(err.kind, ErrorKind::Failed);
        assert_eq!(err.message(), "hello is out of words");
    }

    #[test]
    fn refuses_to_greet_before_initialize() {
        let host = TestHost::new();
        let mut greeter = TestPlugin::<Greeter>::new(&host);
        let err = greeter.call("greet", json!({})).unwrap_err();
        assert_eq!(err.message(), "greeter is not initialized");
        assert!(host.calls().is_empty());
    }
}
