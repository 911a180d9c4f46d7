//! What the scenarios load: in-process plugins with a configurable `initialize`,
//! random dependency DAGs of them, and distinct on-disk copies of a release sample
//! plugin library.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use plugbay_api::PluginError;
use plugbay_host::{DependencySpec, Plugin, PluginContext, PluginInfo};
use serde_json::Value;

/// An in-process plugin for the scenarios: `initialize` awaits `init_delay` (a
/// timer, not CPU), `save_state` returns a fixed value, everything else is a no-op.
/// Deliberately minimal so that both the manager and the baselines pay the same.
pub struct BenchPlugin {
    info: PluginInfo,
    init_delay: Duration,
    state: Value,
}

impl BenchPlugin {
    /// A plugin called `name` (version 1.0.0) depending on `deps` (`^1` each).
    pub fn new(name: &str, deps: &[String], init_delay: Duration) -> Self {
        let mut info = PluginInfo::in_process(name, "1.0.0").expect("a literal semver version");
        for d in deps {
            info = info
                .with_dependency(DependencySpec::required(d, "^1").expect("a literal requirement"));
        }
        Self {
            info,
            init_delay,
            state: Value::Null,
        }
    }

    /// A plugin whose `save_state` returns `state`.
    pub fn with_state(name: &str, state: Value) -> Self {
        Self {
            state,
            ..Self::new(name, &[], Duration::ZERO)
        }
    }
}

#[async_trait]
impl Plugin for BenchPlugin {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        if !self.init_delay.is_zero() {
            tokio::time::sleep(self.init_delay).await;
        }
        Ok(())
    }

    async fn shutdown(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }

    async fn save_state(&self) -> Result<Value, PluginError> {
        Ok(self.state.clone())
    }

    async fn load_state(&self, _state: Value, _saved_by: &str) -> Result<(), PluginError> {
        Ok(())
    }

    async fn call(
        &self,
        _ctx: PluginContext,
        _m: &str,
        _args: Value,
    ) -> Result<Value, PluginError> {
        Ok(Value::Null)
    }
}

/// The shape of a random DAG: for each plugin (by index) its name and the
/// indices of the plugins it requires.
pub struct Dag {
    /// Plugin names, `p00000`, `p00001`, ...
    pub names: Vec<String>,
    /// Required dependencies of each plugin, as indices into `names`.
    pub deps: Vec<Vec<usize>>,
    /// The number of plugins on the longest dependency chain.
    pub depth: usize,
}

impl Dag {
    /// `n` plugins in `depth` levels of (nearly) equal size. Every plugin above
    /// level 0 requires one random plugin of the level just below (so the longest
    /// chain is exactly `depth` long) and up to two random plugins of any lower
    /// level. Deterministic for a given `seed`.
    pub fn random(n: usize, depth: usize, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let level_start = |l: usize| l * n / depth;
        let mut deps = Vec::with_capacity(n);
        for i in 0..n {
            let level = (0..depth).rev().find(|&l| level_start(l) <= i).unwrap_or(0);
            let mut d = Vec::new();
            if level > 0 {
                d.push(rng.usize(level_start(level - 1)..level_start(level)));
                for _ in 0..rng.usize(0..=2) {
                    let extra = rng.usize(0..level_start(level));
                    if !d.contains(&extra) {
                        d.push(extra);
                    }
                }
            }
            deps.push(d);
        }
        Self {
            names: (0..n).map(|i| format!("p{i:05}")).collect(),
            deps,
            depth,
        }
    }

    /// One [`BenchPlugin`] per node, in a shuffled order (registration order must
    /// not help anyone).
    pub fn plugins(&self, init_delay: Duration, seed: u64) -> Vec<Arc<dyn Plugin>> {
        let mut out: Vec<Arc<dyn Plugin>> = self
            .names
            .iter()
            .zip(&self.deps)
            .map(|(name, deps)| {
                let deps: Vec<String> = deps.iter().map(|&d| self.names[d].clone()).collect();
                Arc::new(BenchPlugin::new(name, &deps, init_delay)) as Arc<dyn Plugin>
            })
            .collect();
        fastrand::Rng::with_seed(seed).shuffle(&mut out);
        out
    }
}

/// The name the sample library declares; [`make_copies`] replaces every
/// occurrence with a distinct name of the same length.
const SAMPLE_NAME: &[u8] = b"hello";

/// Writes `n` distinct copies of the library `src` into `dir` (`lib0000.so`, ...)
/// and returns their absolute paths.
///
/// Each copy is a different file at a different path (the dynamic loader hands
/// back the already-open handle for a path it has seen) and declares a distinct
/// plugin name (the manager refuses duplicate names): every occurrence of the
/// sample's 5-byte name is overwritten with `h0000`, `h0001`, ... in place, so no
/// offset in the ELF file moves. The name also appears in the description and in
/// debug-info paths, which is harmless.
pub fn make_copies(src: &Path, dir: &Path, n: usize) -> Result<Vec<PathBuf>, String> {
    let bytes = std::fs::read(src).map_err(|e| format!("read {}: {e}", src.display()))?;
    let hits: Vec<usize> = bytes
        .windows(SAMPLE_NAME.len())
        .enumerate()
        .filter(|(_, w)| *w == SAMPLE_NAME)
        .map(|(i, _)| i)
        .collect();
    if hits.is_empty() {
        return Err(format!(
            "{} does not contain the name {:?}; is it the `hello` sample?",
            src.display(),
            String::from_utf8_lossy(SAMPLE_NAME)
        ));
    }
    if n > 10_000 {
        return Err(format!("at most 10000 copies, asked for {n}"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::with_capacity(n);
    let mut copy = bytes;
    for i in 0..n {
        let name = format!("h{i:04}");
        for &at in &hits {
            copy[at..at + SAMPLE_NAME.len()].copy_from_slice(name.as_bytes());
        }
        let path = dir.join(format!(
            "{}lib{i:04}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        std::fs::write(&path, &copy).map_err(|e| format!("write {}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// The library files in `dir`, sorted.
pub fn libraries_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == std::env::consts::DLL_EXTENSION)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Registers `plugins` in a fresh manager (at most `max_parallel` initializations at
/// once) and times `load_all_plugins`; seconds. Fails naming the first plugin that
/// did not start.
pub async fn time_load_all(
    plugins: Vec<Arc<dyn Plugin>>,
    max_parallel: usize,
) -> Result<f64, String> {
    let config = plugbay_host::ManagerConfig::builder()
        .max_parallel(max_parallel)
        .build()
        .map_err(|e| e.to_string())?;
    let manager = plugbay_host::PluginManager::new(config);
    for p in plugins {
        manager.register_plugin(p).map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let outcome = manager.load_all_plugins().await;
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(f) = outcome.failures().next() {
        return Err(format!(
            "load_all_plugins: {} failed: {:?}",
            f.name, f.result
        ));
    }
    Ok(elapsed)
}
