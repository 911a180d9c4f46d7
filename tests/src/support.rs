//! Small in-process plugins and helpers shared by the manager tests.

use std::sync::Arc;

use plugbay_api::PluginError;
use plugbay_host::{InProcessBuilder, InProcessPlugin};
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
    pinger_builder(name, "1.0.0").build().unwrap()
}

fn answer(me: &str, method: &str, args: Value) -> Result<Value, PluginError> {
    match method {
        "ping" => Ok(json!(format!("{me}: pong"))),
        "echo" => Ok(args),
        _ => Err(PluginError::unknown_method(method)),
    }
}

/// A multi-thread runtime test body: a fresh manager with short timeouts.
pub fn manager_with_timeouts(init_ms: u64, shutdown_ms: u64) -> plugbay_host::PluginManager {
    plugbay_host::PluginManager::new(
        plugbay_host::ManagerConfig::builder()
            .init_timeout(std::time::Duration::from_millis(init_ms))
            .shutdown_timeout(std::time::Duration::from_millis(shutdown_ms))
            .build()
            .expect("valid config"),
    )
}

/// A shared, ordered record of lifecycle steps (`"init:a"`, `"stop:a"`,
/// `"early:a needs b (registered)"`).
pub type Log = Arc<parking_lot::Mutex<Vec<String>>>;

/// A plugin that records its initialize and shutdown in `log`, and records an
/// `early:` entry if it is initialized while a required dependency is not Active.
/// `deps` are `(name, requirement, optional)`.
pub fn recording(
    name: &str,
    version: &str,
    deps: &[(&str, &str, bool)],
    log: &Log,
) -> InProcessBuilder {
    let mut b = pinger_builder(name, version);
    let mut required = Vec::new();
    for (dep, req, optional) in deps {
        b = if *optional {
            b.optionally_depends_on(dep, req)
        } else {
            required.push((*dep).to_owned());
            b.depends_on(dep, req)
        };
    }
    let (init_log, stop_log) = (Arc::clone(log), Arc::clone(log));
    let (me, me2) = (name.to_owned(), name.to_owned());
    b.on_initialize(move |ctx| {
        let mut entries = Vec::new();
        for d in &required {
            let state = ctx.status_of(d);
            if state.as_deref() != Some("active") {
                entries.push(format!("early:{me} needs {d} ({state:?})"));
            }
        }
        entries.push(format!("init:{me}"));
        init_log.lock().extend(entries);
        async { Ok(()) }
    })
    .on_shutdown(move |_| {
        stop_log.lock().push(format!("stop:{me2}"));
        async { Ok(()) }
    })
}

/// The position of `entry` in `log` (panics with the log if absent).
pub fn position(log: &[String], entry: &str) -> usize {
    log.iter()
        .position(|e| e == entry)
        .unwrap_or_else(|| panic!("{entry} not in {log:?}"))
}
