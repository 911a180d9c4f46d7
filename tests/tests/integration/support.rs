//! Small in-process plugins and helpers shared by the manager tests.

use std::sync::Arc;

use host::{InProcessBuilder, InProcessPlugin};
use plugin_api::PluginError;
use serde_json::{json, Value};

/// A builder whose `call("ping")` answers `"<name>: pong"` and whose `echo`
/// returns its arguments.
pub fn pinger_builder(name: &str, version: &str) -> InProcessBuilder {
    let me = name.to_owned();
    InProcessPlugin::builder(name, version).on_call(move |_ctx, method, args| {
        let me = me.clone();
        async move { answer(&me, &method, args) }
    })
}

/// [`pinger_builder`], built.
pub fn pinger(name: &str) -> Arc<InProcessPlugin> {
    pinger_builder(name, "1.0.0").build()
}

fn answer(me: &str, method: &str, args: Value) -> Result<Value, PluginError> {
    match method {
        "ping" => Ok(json!(format!("{me}: pong"))),
        "echo" => Ok(args),
        _ => Err(PluginError::unknown_method(method)),
    }
}

/// A multi-thread runtime test body: a fresh manager with short timeouts.
pub fn manager_with_timeouts(init_ms: u64, shutdown_ms: u64) -> host::PluginManager {
    host::PluginManager::new(
        host::ManagerConfig::builder()
            .init_timeout(std::time::Duration::from_millis(init_ms))
            .shutdown_timeout(std::time::Duration::from_millis(shutdown_ms))
            .build()
            .expect("valid config"),
    )
}
