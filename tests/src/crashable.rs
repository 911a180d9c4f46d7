//! [`CrashablePlugin`]: an in-process plugin that can "die on its own" the way
//! an out-of-process plugin does, through its [`CrashSignal`], so the manager's
//! supervision is tested without a child process. Its [`CrashHandle`] crashes
//! it and observes it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use async_trait::async_trait;
use plugbay_api::PluginError;
use plugbay_host::{
    CrashReason, CrashReport, CrashSignal, DependencySpec, Plugin, PluginContext, PluginInfo,
};
use serde_json::{json, Value};
use tokio::sync::watch;

/// A plugin with a counter (`increment`, `get`), persisted as `{"value": N}`,
/// whose death is reported on its crash signal. Each `initialize` starts a new
/// incarnation (the signal goes back to `None`); calls and `shutdown` of a dead
/// incarnation fail, as a dead process's would.
pub struct CrashablePlugin {
    info: PluginInfo,
    shared: Arc<Shared>,
}

struct Shared {
    signal: watch::Sender<Option<CrashReport>>,
    value: AtomicU64,
    initializations: AtomicU64,
    shutdowns: AtomicU64,
    /// `initialize` fails this many more times.
    failing_inits: AtomicU32,
}

/// Crashes a [`CrashablePlugin`] and reads its counters.
#[derive(Clone)]
pub struct CrashHandle {
    shared: Arc<Shared>,
}

impl CrashablePlugin {
    /// A plugin `name` 1.0.0 depending on `deps` (`(name, requirement)`, required),
    /// and the handle that crashes it.
    pub fn new(name: &str, deps: &[(&str, &str)]) -> (Arc<Self>, CrashHandle) {
        let mut info = PluginInfo::in_process(name, "1.0.0").expect("a valid version");
        for (dep, req) in deps {
            info = info.with_dependency(DependencySpec::required(dep, req).expect("valid req"));
        }
        let shared = Arc::new(Shared {
            signal: watch::channel(None).0,
            value: AtomicU64::new(0),
            initializations: AtomicU64::new(0),
            shutdowns: AtomicU64::new(0),
            failing_inits: AtomicU32::new(0),
        });
        let handle = CrashHandle {
            shared: Arc::clone(&shared),
        };
        (Arc::new(Self { info, shared }), handle)
    }
}

/// A report of a death by `SIGSEGV` with one stderr line.
pub fn segfault() -> CrashReport {
    CrashReport {
        reason: CrashReason::Signal {
            number: 11,
            name: "SIGSEGV".into(),
        },
        last_stderr: vec!["about to dereference null".into()],
    }
}

impl CrashHandle {
    /// Kills the current incarnation with `report`.
    pub fn crash(&self, report: CrashReport) {
        self.shared.signal.send_replace(Some(report));
    }

    /// Makes the next `n` initializations fail.
    pub fn fail_next_initializations(&self, n: u32) {
        self.shared.failing_inits.store(n, SeqCst);
    }

    /// Successful initializations so far.
    pub fn initializations(&self) -> u64 {
        self.shared.initializations.load(SeqCst)
    }

    /// Shutdowns so far.
    pub fn shutdowns(&self) -> u64 {
        self.shared.shutdowns.load(SeqCst)
    }

    /// How many crash-signal receivers exist (one while the manager watches it).
    pub fn watchers(&self) -> usize {
        self.shared.signal.receiver_count()
    }
}

impl Shared {
    fn dead(&self) -> Option<PluginError> {
        self.signal
            .borrow()
            .as_ref()
            .map(|r| PluginError::failed(format!("its process is gone: {r}")))
    }
}

#[async_trait]
impl Plugin for CrashablePlugin {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    async fn initialize(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        let s = &self.shared;
        let failing = s.failing_inits.load(SeqCst);
        if failing > 0 {
            s.failing_inits.store(failing - 1, SeqCst);
            return Err(PluginError::failed("initialize failed on purpose"));
        }
        // A new incarnation, alive.
        s.signal.send_replace(None);
        s.initializations.fetch_add(1, SeqCst);
        Ok(())
    }

    async fn shutdown(&self, _ctx: PluginContext) -> Result<(), PluginError> {
        self.shared.shutdowns.fetch_add(1, SeqCst);
        match self.shared.dead() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn save_state(&self) -> Result<Value, PluginError> {
        Ok(json!({ "value": self.shared.value.load(SeqCst) }))
    }

    async fn load_state(&self, state: Value, _saved_by_version: &str) -> Result<(), PluginError> {
        let value = state["value"]
            .as_u64()
            .ok_or_else(|| PluginError::invalid_input(format!("no value in {state}")))?;
        self.shared.value.store(value, SeqCst);
        Ok(())
    }

    async fn call(
        &self,
        _ctx: PluginContext,
        method: &str,
        _args: Value,
    ) -> Result<Value, PluginError> {
        if let Some(e) = self.shared.dead() {
            return Err(e);
        }
        let s = &self.shared;
        match method {
            "increment" => Ok(json!(s.value.fetch_add(1, SeqCst) + 1)),
            "get" => Ok(json!({
                "value": s.value.load(SeqCst),
                "initializations": s.initializations.load(SeqCst),
            })),
            _ => Err(PluginError::unknown_method(method)),
        }
    }

    fn crash_signal(&self) -> Option<CrashSignal> {
        Some(self.shared.signal.subscribe())
    }
}
