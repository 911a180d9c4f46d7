//! Native plugins behind the host-side [`Plugin`] trait.
//!
//! Every call into library code runs on tokio's blocking pool. Inside the
//! library the plugin may call back into the host ([`plugbay_api::HostApi`]);
//! those callbacks run synchronously on that same blocking thread and use
//! `Handle::block_on` to reach the async manager, which is allowed on blocking
//! threads (never on async workers: library code never runs there).

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use plugbay_api::{
    abi_stable::std_types::{ROption, RResult, RStr, RString},
    ErrorKind, HostApi, HostContext, LogLevel, PluginError, PluginInstanceBox,
};
use serde_json::Value;
use tokio::runtime::Handle;

use crate::context::{CallChain, PluginContext};
use crate::info::PluginInfo;
use crate::loader::LoadedLibrary;
use crate::plugin::Plugin;

/// How long a call waits for the instance lock before giving up. The lock is
/// only contended when plugin code is already running for this plugin (its
/// lifecycle serializes the rest), so a long wait means that code is stuck.
const INSTANCE_LOCK_WAIT: Duration = Duration::from_secs(30);

thread_local! {
    /// The call chain of the plugin code running on this (blocking-pool) thread,
    /// so a host callback made from it knows who is calling.
    // The initializer is `const` already; clippy 1.96 flags it anyway on
    // targets without native thread-locals (windows-gnu).
    #[allow(clippy::missing_const_for_thread_local)]
    static CURRENT_CHAIN: RefCell<Option<CallChain>> = const { RefCell::new(None) };
}

/// The library-side object of one plugin, across its lives.
enum Instance {
    /// No instance yet.
    Empty,
    /// Created (and possibly initialized); accepts every call.
    Live(PluginInstanceBox),
    /// `shutdown` has run. Kept so the host can still save its final state;
    /// the next `load_state` or `initialize` replaces it with a fresh instance.
    Stopped(PluginInstanceBox),
}

/// What a call needs from the slot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A live instance, created fresh if there is none or only a stopped one.
    LiveOrFresh,
    /// An existing live instance.
    Live,
    /// Any instance, live or stopped (saving state after shutdown).
    Any,
    /// A live instance, marked stopped once `f` returns (shutdown).
    LiveThenStop,
}

/// A plugin living in a native library.
pub struct FfiPlugin {
    /// The instance: created by the first `load_state`/`initialize`, kept after
    /// `shutdown` (so its final state can be saved), replaced on the next load.
    ///
    /// Guards: the library-side plugin object. Locked only on blocking-pool
    /// threads, around one call into plugin code; never held across `.await`
    /// (it is a `parking_lot` lock and only taken inside `spawn_blocking`).
    /// Re-entrant calls into the same plugin are refused by the call chain
    /// before they reach this lock.
    instance: Arc<Mutex<Instance>>,
    /// The opened library, with its metadata (the one copy: [`Plugin::info`]).
    library: LoadedLibrary,
}

impl FfiPlugin {
    /// Wraps a library opened by the loader.
    pub fn new(library: LoadedLibrary) -> Self {
        Self {
            instance: Arc::new(Mutex::new(Instance::Empty)),
            library,
        }
    }

    /// Runs `f` against the instance on the blocking pool, with `chain` recorded
    /// for host callbacks; `need` says which instance `f` may run against.
    async fn with_instance<T: Send + 'static>(
        &self,
        operation: &str,
        chain: Option<CallChain>,
        need: Need,
        f: impl FnOnce(&mut PluginInstanceBox) -> Result<T, PluginError> + Send + 'static,
    ) -> Result<T, PluginError> {
        let instance = Arc::clone(&self.instance);
        let module = self.library.module;
        let name = self.library.info.name.clone();
        let operation = operation.to_owned();
        let joined = tokio::task::spawn_blocking(move || {
            let Some(mut guard) = instance.try_lock_for(INSTANCE_LOCK_WAIT) else {
                return Err(PluginError::failed(format!(
                    "plugin `{name}` is busy: another call into it has not returned for {INSTANCE_LOCK_WAIT:?}"
                )));
            };
            if need == Need::LiveOrFresh && !matches!(*guard, Instance::Live(_)) {
                // The old instance (if any) is dropped here, on this blocking thread.
                *guard = Instance::Live((module.new_instance())().into_result()?);
            }
            let plugin = match (&mut *guard, need) {
                (Instance::Live(p), _) | (Instance::Stopped(p), Need::Any) => p,
                _ => {
                    return Err(PluginError::failed(format!(
                        "plugin `{name}` has no live instance for {operation} (it is not initialized)"
                    )))
                }
            };
            let previous = CURRENT_CHAIN.with(|c| c.replace(chain));
            let result = f(plugin);
            CURRENT_CHAIN.with(|c| *c.borrow_mut() = previous);
            if need == Need::LiveThenStop {
                if let Instance::Live(p) = std::mem::replace(&mut *guard, Instance::Empty) {
                    *guard = Instance::Stopped(p);
                }
            }
            result
        })
        .await;
        joined.unwrap_or_else(|e| {
            Err(PluginError::new(
                ErrorKind::Panicked,
                format!("host thread running the plugin failed: {e}"),
            ))
        })
    }
}

#[async_trait]
impl Plugin for FfiPlugin {
    fn info(&self) -> &PluginInfo {
        &self.library.info
    }

    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        let host = HostContext::from_api(FfiHost {
            ctx: ctx.clone(),
            runtime: Handle::current(),
        });
        let chain = ctx.chain().clone();
        self.with_instance("initialize", Some(chain), Need::LiveOrFresh, move |p| {
            p.initialize(host).into_result()
        })
        .await
    }

    async fn shutdown(&self, ctx: PluginContext) -> Result<(), PluginError> {
        let chain = ctx.chain().clone();
        // Whatever shutdown returns, the instance is then marked stopped: it takes
        // no more calls, its final state can still be saved, and the next load
        // starts from a fresh instance.
        self.with_instance("shutdown", Some(chain), Need::LiveThenStop, |p| {
            p.shutdown().into_result()
        })
        .await
    }

    async fn save_state(&self) -> Result<Value, PluginError> {
        let text = self
            .with_instance("save_state", None, Need::Any, |p| {
                p.save_state().into_result().map(RString::into_string)
            })
            .await?;
        serde_json::from_str(&text).map_err(|e| {
            PluginError::invalid_input(format!("save_state returned invalid JSON: {e}"))
        })
    }

    async fn load_state(&self, state: Value, saved_by_version: &str) -> Result<(), PluginError> {
        let text = state.to_string();
        let version = saved_by_version.to_owned();
        self.with_instance("load_state", None, Need::LiveOrFresh, move |p| {
            p.load_state(text.as_str().into(), version.as_str().into())
                .into_result()
        })
        .await
    }

    async fn call(
        &self,
        ctx: PluginContext,
        method: &str,
        args: Value,
    ) -> Result<Value, PluginError> {
        let chain = ctx.chain().clone();
        let method = method.to_owned();
        let args = args.to_string();
        let text = self
            .with_instance("call", Some(chain), Need::Live, move |p| {
                p.call(method.as_str().into(), args.as_str().into())
                    .into_result()
                    .map(RString::into_string)
            })
            .await?;
        serde_json::from_str(&text)
            .map_err(|e| PluginError::invalid_input(format!("call returned invalid JSON: {e}")))
    }
}

/// The host side of [`HostApi`] handed to one native plugin.
///
/// Every method catches panics: a panic must not unwind into plugin code
/// (abi_stable would end the process).
#[derive(Clone)]
struct FfiHost {
    ctx: PluginContext,
    runtime: Handle,
}

impl FfiHost {
    /// The chain of the plugin code running on this thread, or, for a callback from
    /// a thread the plugin spawned itself, a chain holding just the plugin.
    fn current_chain(&self) -> CallChain {
        CURRENT_CHAIN
            .with(|c| c.borrow().clone())
            .unwrap_or_else(|| self.ctx.chain().clone())
    }
}

fn host_panic(what: &str) -> PluginError {
    PluginError::new(
        ErrorKind::Host,
        format!("the host failed while handling {what}"),
    )
}

impl HostApi for FfiHost {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.ctx.log(level, message.as_str())));
    }

    fn host_name(&self) -> RString {
        catch_unwind(AssertUnwindSafe(|| self.ctx.host_name()))
            .unwrap_or_default()
            .into()
    }

    fn host_version(&self) -> RString {
        catch_unwind(AssertUnwindSafe(|| self.ctx.host_version()))
            .unwrap_or_default()
            .into()
    }

    fn config(&self) -> RString {
        catch_unwind(AssertUnwindSafe(|| self.ctx.config().to_string()))
            .unwrap_or_else(|_| "null".to_owned())
            .into()
    }

    fn plugin_status(&self, name: RStr<'_>) -> ROption<RString> {
        catch_unwind(AssertUnwindSafe(|| self.ctx.status_of(name.as_str())))
            .ok()
            .flatten()
            .map(RString::from)
            .into()
    }

    fn call_plugin(
        &self,
        name: RStr<'_>,
        method: RStr<'_>,
        args: RStr<'_>,
    ) -> RResult<RString, PluginError> {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let args: Value = if args.as_str().trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(args.as_str())
                    .map_err(|e| PluginError::invalid_input(format!("invalid JSON args: {e}")))?
            };
            let chain = self.current_chain();
            let caller = PluginContext::new(self.ctx.plugin_name(), chain, self.ctx.host_weak());
            let result = self
                .runtime
                .block_on(caller.call(name.as_str(), method.as_str(), args));
            // The called plugin's own error keeps its kind (see `into_plugin_error`).
            result
                .map(|v| RString::from(v.to_string()))
                .map_err(crate::Error::into_plugin_error)
        }));
        match outcome {
            Ok(r) => r.into(),
            Err(_) => RResult::RErr(host_panic("call_plugin")),
        }
    }
}
