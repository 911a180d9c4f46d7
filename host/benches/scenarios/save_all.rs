//! `save_all_speedup_vs_serial`: `PluginStateManager::save_all_states` over many
//! plugins vs saving the same plugins one by one with `save_state`, with the real
//! state manager (atomic, fsynced writes) in a temporary directory.

use std::sync::Arc;
use std::time::Instant;

use plugbay_host::{Plugin, PluginStateManager, SaveOutcome};
use serde_json::json;

use crate::fixtures::BenchPlugin;
use crate::report::{Goal, Report};
use crate::stats::median;
use crate::Options;

/// Measures and reports the metric.
pub async fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let n = if opts.quick { 20 } else { 200 };
    let rounds = if opts.quick { 1 } else { 5 };
    let dir = tempfile::tempdir_in(&opts.work).map_err(|e| format!("temp dir: {e}"))?;
    let states = PluginStateManager::open_async(dir.path().join("state"))
        .await
        .map_err(|e| e.to_string())?;
    // About 1 KiB of JSON per plugin.
    let plugins: Vec<Arc<dyn Plugin>> = (0..n)
        .map(|i| {
            let state = json!({ "counter": i, "items": vec![format!("item-{i:04}"); 64] });
            Arc::new(BenchPlugin::with_state(&format!("s{i:04}"), state)) as Arc<dyn Plugin>
        })
        .collect();

    // Warm-up: the files exist afterwards, so every measured save replaces one.
    save_serial(&states, &plugins).await?;
    save_all(&states, &plugins).await?;

    let mut serial = Vec::new();
    let mut concurrent = Vec::new();
    for round in 0..rounds {
        // Alternate which goes first so neither always meets a busier disk.
        if round % 2 == 0 {
            serial.push(save_serial(&states, &plugins).await?);
            concurrent.push(save_all(&states, &plugins).await?);
        } else {
            concurrent.push(save_all(&states, &plugins).await?);
            serial.push(save_serial(&states, &plugins).await?);
        }
    }
    let (s, c) = (median(&serial), median(&concurrent));
    report.add(
        "save_all_speedup_vs_serial",
        s / c,
        Goal::Above(1.0),
        format!(
            "{n} plugins, median of {rounds}: one by one {:.1} ms, save_all_states {:.1} ms",
            s * 1e3,
            c * 1e3
        ),
    );
    Ok(())
}

/// Saves one plugin after the other; returns the wall time in seconds.
async fn save_serial(
    states: &PluginStateManager,
    plugins: &[Arc<dyn Plugin>],
) -> Result<f64, String> {
    let start = Instant::now();
    for p in plugins {
        check(states.save_state(p.as_ref()).await, &p.info().name)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Saves all plugins with `save_all_states`; returns the wall time in seconds.
async fn save_all(states: &PluginStateManager, plugins: &[Arc<dyn Plugin>]) -> Result<f64, String> {
    let start = Instant::now();
    let results = states.save_all_states(plugins).await;
    let elapsed = start.elapsed().as_secs_f64();
    for (name, r) in results {
        check(r, &name)?;
    }
    Ok(elapsed)
}

fn check(result: plugbay_host::Result<SaveOutcome>, name: &str) -> Result<(), String> {
    match result {
        Ok(SaveOutcome::Saved { .. }) => Ok(()),
        Ok(other) => Err(format!("saving {name}: expected a write, got {other:?}")),
        Err(e) => Err(format!("saving {name}: {e}")),
    }
}
