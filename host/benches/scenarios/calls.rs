//! `call_p50_us`, `call_p99_us`, `call_vs_in_process`, `call_throughput_8x8_per_s`,
//! `tick_lateness_p99_ms_blocking_calls`: what a call into a native plugin
//! through `PluginManager::call` costs, and that plugin code still never stalls
//! the runtime.
//!
//! - Latency: one task on a worker of a multi-thread runtime calls the release
//!   `hello` sample's `greet` one call at a time, each timed; after a warm-up
//!   (during which the plugin's calls move inline). Baselines in the same run,
//!   interleaved in blocks so the machine's noise hits all alike: an in-process
//!   plugin doing the same work through the manager, an empty `spawn_blocking`
//!   round trip (what every call cost when calls always went to the blocking
//!   pool), and, as the alternatives weighed for the call path, an empty
//!   `block_in_place` and an empty hand-off to a dedicated thread that spins
//!   and then parks (answer through a oneshot).
//! - Throughput: 8 tasks, each calling its own copy of `hello` (8 plugins), for a
//!   fixed time; the same with 8 in-process plugins for context.
//! - Blocking plugin: 8 tasks keep calling the `calls` fixture's `sleep_ms` (50 ms
//!   each, a real native library) while a task ticking every 1 ms on the same
//!   runtime records its lateness (see `tick.rs` for the ticker).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use plugbay_api::PluginError;
use plugbay_host::{
    load_library_unchecked, FfiPlugin, Plugin, PluginContext, PluginInfo, PluginManager,
};
use serde_json::{json, Value};

use crate::child;
use crate::fixtures::make_copies;
use crate::report::{Goal, Report};
use crate::stats::percentile;
use crate::tick;
use crate::Options;

/// Copies of `hello` for the throughput run (one per calling task).
const PLUGINS: usize = 8;

/// Measures and reports the metrics.
pub fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let root = tempfile::tempdir_in(&opts.work).map_err(|e| format!("temp dir: {e}"))?;
    let copies = make_copies(&opts.plugin, &root.path().join("plugins"), PLUGINS)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let quick = opts.quick;
    let latency = rt.block_on(async move {
        tokio::spawn(latency(copies, quick))
            .await
            .map_err(|e| format!("latency task: {e}"))?
    })?;
    drop(rt);

    let native = &latency.native;
    let p50 = percentile(native, 0.5);
    let inproc = percentile(&latency.in_process, 0.5);
    report.add(
        "call_p50_us",
        p50,
        Goal::AtMost(1.0),
        format!(
            "PluginManager::call into hello's greet, one task, {} calls ({}); call_json p50 {:.2} us; baseline: empty spawn_blocking round trip p50 {:.2} us",
            native.len(),
            latency.mode,
            percentile(&latency.json, 0.5),
            percentile(&latency.spawn_blocking, 0.5),
        ),
    );
    report.add(
        "call_p99_us",
        percentile(native, 0.99),
        Goal::None,
        format!(
            "same calls; in-process p99 {:.2} us, spawn_blocking p99 {:.2} us",
            percentile(&latency.in_process, 0.99),
            percentile(&latency.spawn_blocking, 0.99),
        ),
    );
    report.add(
        "call_vs_in_process",
        p50 / inproc,
        Goal::AtMost(2.0),
        format!(
            "p50 {p50:.2} vs {inproc:.2} us: an in-process plugin doing the same work through the manager; options weighed: block_in_place p50 {:.2} us, spin-then-park thread hand-off p50 {:.2} us",
            percentile(&latency.block_in_place, 0.5),
            percentile(&latency.handoff, 0.5),
        ),
    );
    report.add(
        "call_throughput_8x8_per_s",
        latency.throughput,
        Goal::AtLeast(1e6),
        format!(
            "8 tasks x 8 native plugins for {:.0} ms; in-process: {:.2} M calls/s",
            latency.window.as_secs_f64() * 1e3,
            latency.throughput_in_process / 1e6
        ),
    );

    let blocking = blocking_calls(opts)?;
    // The idle runtime's lateness, for context (shorter in quick mode).
    let idle = tick::idle_for(Duration::from_millis(if opts.quick { 50 } else { 200 }))?;
    report.add(
        "tick_lateness_p99_ms_blocking_calls",
        child::number(&blocking, "p99_ms")?,
        Goal::AtMost(1.0),
        format!(
            "1 ms ticks while 8 tasks call a native plugin whose call blocks 50 ms ({:.0} calls in {:.0} ms); max {:.2} ms, p50 {:.3} ms; idle runtime in this run: p99 {:.3} ms, max {:.2} ms",
            child::number(&blocking, "loaded")?,
            child::number(&blocking, "load_ms")?,
            child::number(&blocking, "max_ms")?,
            child::number(&blocking, "p50_ms")?,
            child::number(&idle, "p99_ms")?,
            child::number(&idle, "max_ms")?,
        ),
    );
    Ok(())
}

/// What [`latency`] measured; latencies in microseconds.
struct Latency {
    native: Vec<f64>,
    json: Vec<f64>,
    in_process: Vec<f64>,
    spawn_blocking: Vec<f64>,
    block_in_place: Vec<f64>,
    handoff: Vec<f64>,
    /// The native plugin's call mode after the run.
    mode: String,
    throughput: f64,
    throughput_in_process: f64,
    window: Duration,
}

/// Registers and starts the native copies and as many in-process plugins.
async fn manager_with(copies: Vec<std::path::PathBuf>) -> Result<PluginManager, String> {
    let manager = PluginManager::default();
    for path in copies {
        let lib = load_library_unchecked(path)
            .await
            .map_err(|e| e.to_string())?;
        manager
            .register_plugin(Arc::new(FfiPlugin::new(lib)))
            .map_err(|e| e.to_string())?;
    }
    for i in 0..PLUGINS {
        manager
            .register_plugin(Arc::new(Greeter::new(&format!("inproc{i}"))))
            .map_err(|e| e.to_string())?;
    }
    let outcome = manager.load_all_plugins().await;
    if let Some(f) = outcome.failures().next() {
        return Err(format!("{} did not start: {:?}", f.name, f.result));
    }
    Ok(manager)
}

/// One task's latency samples, then the throughput runs.
async fn latency(copies: Vec<std::path::PathBuf>, quick: bool) -> Result<Latency, String> {
    let manager = manager_with(copies).await?;
    let args = json!({ "name": "Ada" });
    let (blocks, per_block) = if quick { (4, 250) } else { (40, 500) };
    let mut m = Latency {
        native: Vec::new(),
        json: Vec::new(),
        in_process: Vec::new(),
        spawn_blocking: Vec::new(),
        block_in_place: Vec::new(),
        handoff: Vec::new(),
        mode: String::new(),
        throughput: 0.0,
        throughput_in_process: 0.0,
        window: Duration::from_millis(if quick { 50 } else { 400 }),
    };
    let handoff = Handoff::start();
    // Warm-up: caches, allocator, and the plugin's move to the inline path.
    for _ in 0..200 {
        call(&manager, "h0000", &args).await?;
        call(&manager, "inproc0", &args).await?;
    }
    for _ in 0..blocks {
        for _ in 0..per_block {
            let t = Instant::now();
            call(&manager, "h0000", &args).await?;
            m.native.push(us(t));
        }
        for _ in 0..per_block {
            let t = Instant::now();
            manager
                .call_json("h0000", "greet", r#"{"name":"Ada"}"#)
                .await
                .map_err(|e| e.to_string())?;
            m.json.push(us(t));
        }
        for _ in 0..per_block {
            let t = Instant::now();
            call(&manager, "inproc0", &args).await?;
            m.in_process.push(us(t));
        }
        for _ in 0..per_block / 5 {
            let t = Instant::now();
            tokio::task::spawn_blocking(|| ())
                .await
                .map_err(|e| e.to_string())?;
            m.spawn_blocking.push(us(t));
            let t = Instant::now();
            tokio::task::block_in_place(|| ());
            m.block_in_place.push(us(t));
            let t = Instant::now();
            handoff.round_trip().await?;
            m.handoff.push(us(t));
        }
    }
    handoff.stop();
    m.mode = format!(
        "{:?}",
        manager
            .call_path("h0000")
            .map_err(|e| e.to_string())?
            .map(|p| p.mode)
    );
    m.throughput = throughput(&manager, "h", m.window).await?;
    m.throughput_in_process = throughput(&manager, "inproc", m.window).await?;
    Ok(m)
}

async fn call(manager: &PluginManager, name: &str, args: &Value) -> Result<Value, String> {
    manager
        .call(name, "greet", args.clone())
        .await
        .map_err(|e| e.to_string())
}

fn us(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e6
}

/// Calls per second of [`PLUGINS`] tasks, task `i` calling plugin `{prefix}{i}`
/// (`h0000`... or `inproc0`...) until `window` has passed.
async fn throughput(
    manager: &PluginManager,
    prefix: &str,
    window: Duration,
) -> Result<f64, String> {
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::new();
    for i in 0..PLUGINS {
        let manager = manager.clone();
        let name = if prefix == "h" {
            format!("h{i:04}")
        } else {
            format!("{prefix}{i}")
        };
        tasks.push(tokio::spawn(async move {
            let args = json!({ "name": "Ada" });
            let mut n = 0u64;
            while Instant::now() < deadline {
                for _ in 0..64 {
                    call(&manager, &name, &args).await?;
                }
                n += 64;
            }
            Ok::<u64, String>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// The ticker next to 8 tasks calling the 50 ms `sleep_ms` of the `calls`
/// fixture; `loaded` in the result is the number of calls made.
fn blocking_calls(opts: &Options) -> Result<Value, String> {
    let lib = opts.plugin.with_file_name(format!(
        "{}fixture_calls{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    if !lib.is_file() {
        return Err(format!(
            "the call fixture {} is missing; `cargo xtask bench` builds it",
            lib.display()
        ));
    }
    let window = Duration::from_millis(if opts.quick { 100 } else { 1500 });
    // Started before the ticker, so the window holds only the calls.
    let manager = start_fixture(&lib)?;
    tick::measure(async move {
        let deadline = Instant::now() + window;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let manager = manager.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    manager
                        .call("calls", "sleep_ms", json!({ "ms": 50 }))
                        .await
                        .map_err(|e| e.to_string())?;
                    n += 1;
                }
                Ok::<usize, String>(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.map_err(|e| e.to_string())??;
        }
        Ok(total)
    })
}

/// A manager with the `calls` fixture at `lib` registered and started, on a
/// throwaway runtime (the manager itself is not tied to a runtime).
fn start_fixture(lib: &Path) -> Result<PluginManager, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let lib = lib.to_path_buf();
    rt.block_on(async move {
        let manager = PluginManager::default();
        let loaded = load_library_unchecked(lib)
            .await
            .map_err(|e| e.to_string())?;
        let id = manager
            .register_plugin(Arc::new(FfiPlugin::new(loaded)))
            .map_err(|e| e.to_string())?;
        manager.load_plugin(id).await.map_err(|e| e.to_string())?;
        Ok(manager)
    })
}

/// The in-process baseline: `greet` as the `hello` sample does it, implemented
/// directly on [`Plugin`] (no builder closures), so it is the cheapest honest
/// in-process plugin.
struct Greeter {
    info: PluginInfo,
}

impl Greeter {
    fn new(name: &str) -> Self {
        Self {
            info: PluginInfo::in_process(name, "1.0.0").expect("a literal semver version"),
        }
    }
}

#[async_trait]
impl Plugin for Greeter {
    fn info(&self) -> &PluginInfo {
        &self.info
    }
    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
    async fn shutdown(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
    async fn save_state(&self) -> Result<Value, PluginError> {
        Ok(Value::Null)
    }
    async fn load_state(&self, _state: Value, _saved_by: &str) -> Result<(), PluginError> {
        Ok(())
    }
    async fn call(
        &self,
        _ctx: PluginContext,
        method: &str,
        args: Value,
    ) -> Result<Value, PluginError> {
        match method {
            "greet" => {
                let name = args.get("name").and_then(Value::as_str).unwrap_or("world");
                Ok(json!(format!("Hello, {name}!")))
            }
            _ => Err(PluginError::unknown_method(method)),
        }
    }
}

/// A dedicated thread that runs jobs handed to it: it spins on its queue for a
/// while before parking, so a hand-off right after the last one finds it awake.
/// The executor-thread option for the call path, measured with an empty job.
struct Handoff {
    queue: Arc<parking_lot::Mutex<Vec<tokio::sync::oneshot::Sender<()>>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::Thread,
}

/// How long the hand-off thread spins before it parks.
const SPIN: Duration = Duration::from_micros(50);

impl Handoff {
    fn start() -> Self {
        let queue: Arc<parking_lot::Mutex<Vec<tokio::sync::oneshot::Sender<()>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (Arc::clone(&queue), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            let mut idle_since = Instant::now();
            while !s.load(Ordering::Acquire) {
                let jobs = std::mem::take(&mut *q.lock());
                if jobs.is_empty() {
                    if idle_since.elapsed() > SPIN {
                        std::thread::park_timeout(Duration::from_millis(10));
                        idle_since = Instant::now();
                    } else {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                for reply in jobs {
                    let _ = reply.send(());
                }
                idle_since = Instant::now();
            }
        });
        Self {
            queue,
            stop,
            thread: handle.thread().clone(),
        }
    }

    async fn round_trip(&self) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue.lock().push(tx);
        self.thread.unpark();
        rx.await.map_err(|_| "hand-off thread gone".to_owned())
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}
