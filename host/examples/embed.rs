//! Embedding the host: the whole life of an application that runs plugins.
//!
//! ```text
//! cargo build -p plugbay-host --bin plugin-probe --example embed
//! target/debug/examples/embed PLUGIN_DIR STATE_DIR [PLUGIN METHOD [JSON_ARGS]]
//! ```
//!
//! Opens a manager on `PLUGIN_DIR` (each library admitted through the safety
//! pipeline, probed by the `plugin-probe` binary next to this one) with plugin state
//! kept in `STATE_DIR`, starts every plugin in dependency order, calls `METHOD` of
//! `PLUGIN` (default: `hello` `greet` `{"name": "embedder"}`), checkpoints every
//! plugin's state, and shuts down (dependents first, state saved again).
//!
//! Prints one line per step on stdout. Exit code 0 when every step worked, 1 when a
//! plugin was refused, failed to start or failed the call, 2 on bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use plugbay_host::{ManagerConfig, PluginManager, SaveOutcome};
use serde_json::{json, Value};

const USAGE: &str = "usage: embed PLUGIN_DIR STATE_DIR [PLUGIN METHOD [JSON_ARGS]]";

/// What to call once everything runs.
struct Call {
    plugin: String,
    method: String,
    args: Value,
}

fn parse_args() -> Result<(PathBuf, PathBuf, Call), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (plugin_dir, state_dir) = match (args.first(), args.get(1)) {
        (Some(p), Some(s)) => (PathBuf::from(p), PathBuf::from(s)),
        _ => return Err(USAGE.to_owned()),
    };
    let call = match &args[2..] {
        [] => Call {
            plugin: "hello".to_owned(),
            method: "greet".to_owned(),
            args: json!({ "name": "embedder" }),
        },
        [plugin, method] => Call {
            plugin: plugin.clone(),
            method: method.clone(),
            args: json!({}),
        },
        [plugin, method, args] => Call {
            plugin: plugin.clone(),
            method: method.clone(),
            args: serde_json::from_str(args)
                .map_err(|e| format!("JSON_ARGS is not valid JSON: {e}"))?,
        },
        _ => return Err(USAGE.to_owned()),
    };
    Ok((plugin_dir, state_dir, call))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (plugin_dir, state_dir, call) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("embed: {e}");
            return ExitCode::from(2);
        }
    };
    match run(plugin_dir, state_dir, call).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("embed: {e}");
            ExitCode::from(2)
        }
    }
}

/// The embedding itself. `Ok(false)` when some plugin step failed.
async fn run(plugin_dir: PathBuf, state_dir: PathBuf, call: Call) -> plugbay_host::Result<bool> {
    let mut ok = true;

    // 1. Open: the configuration, then the manager with its state store.
    let config = ManagerConfig::builder()
        .host_name("embed-example")
        .host_version(env!("CARGO_PKG_VERSION"))
        .plugin_dir(plugin_dir)
        .state_dir(state_dir)
        .build()?;
    let manager = PluginManager::open(config).await?;

    // 2. Admit and register every library of the plugin directory.
    let found = manager.load_plugin_dirs().await;
    let mut names: Vec<&str> = found.registered.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    println!("registered: {}", names.join(", "));
    for (path, err) in &found.failed {
        ok = false;
        println!("refused {}: {err}", path.display());
    }

    // 3. Start everything, in dependency order.
    let started = manager.load_all_plugins().await;
    for failure in started.failures() {
        ok = false;
        if let Err(e) = &failure.result {
            println!("{} did not start: {e}", failure.name);
        }
    }
    println!(
        "started: {}",
        started.outcomes.iter().filter(|o| o.result.is_ok()).count()
    );

    // 4. Call a plugin.
    match manager
        .call(call.plugin.as_str(), &call.method, call.args)
        .await
    {
        Ok(answer) => println!("{}.{} -> {answer}", call.plugin, call.method),
        Err(e) => {
            ok = false;
            println!("{}.{} failed: {e}", call.plugin, call.method);
        }
    }

    // 5. Checkpoint every running plugin's state.
    let mut saved = manager.save_all_states().await;
    saved.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, outcome) in saved {
        match outcome {
            Ok(SaveOutcome::Saved { bytes, .. }) => println!("checkpoint {name}: {bytes} bytes"),
            Ok(SaveOutcome::NothingToSave) => println!("checkpoint {name}: nothing to save"),
            Err(e) => {
                ok = false;
                println!("checkpoint {name} failed: {e}");
            }
        }
    }

    // 6. Shut down, dependents first; each plugin's state is saved once more.
    let stopped = manager.unload_all_plugins().await;
    for failure in stopped.failures() {
        ok = false;
        if let Err(e) = &failure.result {
            println!("{} did not stop cleanly: {e}", failure.name);
        }
    }
    println!("stopped");
    Ok(ok)
}
