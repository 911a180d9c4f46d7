//! `counter`: a plugin with persistent state. It counts how many times it has been
//! initialized, across host runs, and exposes `get`, `increment` and `version`
//! (the version of the code answering, which a reload changes). Each
//! increment publishes the event `counter.changed` (`{"value": N}`) when the host
//! offers events.

use plugbay_api::{export_plugin, services, HostContext, Plugin, PluginError, PluginMetadata};
use serde_json::{json, Value};

/// Counts initializations (persisted) and explicit increments.
#[derive(Default)]
pub struct Counter {
    initializations: u64,
    value: u64,
    /// Kept when the host offers events, to publish `counter.changed`.
    events: Option<HostContext>,
}

impl Plugin for Counter {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("counter", env!("CARGO_PKG_VERSION"))
            .description("counts its initializations across runs")
    }

    fn initialize(&mut self, host: &HostContext) -> Result<(), PluginError> {
        self.initializations += 1;
        host.info(&format!("initialized {} time(s)", self.initializations));
        self.events = host.has_service(services::EVENTS).then(|| host.clone());
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
                if let Some(host) = &self.events {
                    host.publish("counter.changed", &json!({ "value": self.value }))?;
                }
                Ok(json!(self.value))
            }
            "version" => Ok(json!(env!("CARGO_PKG_VERSION"))),
            _ => Err(PluginError::unknown_method(method)),
        }
    }
}

export_plugin!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use plugbay_api::testing::{TestHost, TestPlugin};
    use plugbay_api::ErrorKind;

    #[test]
    fn increments_and_reports() {
        let host = TestHost::new();
        let mut counter = TestPlugin::<Counter>::start(&host).unwrap();
        assert_eq!(counter.call("increment", json!({})).unwrap(), json!(1));
        assert_eq!(counter.call("increment", json!({})).unwrap(), json!(2));
        let changes: Vec<Value> = host.published().into_iter().map(|e| e.payload).collect();
        assert_eq!(changes, [json!({ "value": 1 }), json!({ "value": 2 })]);
        assert_eq!(
            counter.call("get", json!({})).unwrap(),
            json!({ "initializations": 1, "value": 2 })
        );
        assert_eq!(host.log_messages(), ["initialized 1 time(s)"]);
        assert_eq!(
            counter.call("version", json!({})).unwrap(),
            json!(env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn state_survives_a_restart() {
        let host = TestHost::new();
        let mut counter = TestPlugin::<Counter>::start(&host).unwrap();
        counter.call("increment", json!({})).unwrap();
        let mut counter = counter.restart().unwrap();
        assert_eq!(
            counter.call("get", json!({})).unwrap(),
            json!({ "initializations": 2, "value": 1 })
        );
        assert_eq!(
            host.log_messages(),
            ["initialized 1 time(s)", "initialized 2 time(s)"]
        );
    }

    #[test]
    fn reads_state_an_older_version_wrote_and_refuses_garbage() {
        let host = TestHost::new();
        // An older counter saved only the initializations.
        let counter = TestPlugin::<Counter>::start_with_state(
            &host,
            json!({ "initializations": 4 }),
            "0.9.0",
        )
        .unwrap();
        assert_eq!(counter.plugin().initializations, 5);
        assert_eq!(counter.plugin().value, 0);

        let err = TestPlugin::<Counter>::start_with_state(&host, json!({ "value": "x" }), "1.0.0")
            .err()
            .expect("a non-numeric value is refused");
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(err.message(), "`value` must be an unsigned integer");
    }
}
