//! Native plugins behind the host-side [`Plugin`] trait.
//!
//! Lifecycle calls (`initialize`, `shutdown`, state) always run on tokio's
//! blocking pool. `call` takes one of two paths, chosen per plugin by a
//! measured policy ([`CallMode`](crate::CallMode)):
//! - **blocking** (every plugin starts here): the call runs in `spawn_blocking`,
//!   which costs a thread hand-off (≈ 9 µs) but can never stall an async worker;
//! - **inline**: once a plugin's last [`PROMOTE_AFTER`](crate::PROMOTE_AFTER) calls (doubling after each
//!   demotion) each took less than [`INLINE_LIMIT`](crate::INLINE_LIMIT), its calls run directly on the
//!   calling thread, async worker included, for about what the plugin's own work
//!   costs. An inline call that takes [`DEMOTE_AT_ONCE`](crate::DEMOTE_AT_ONCE) or longer (or that
//!   another caller finds still running past it), or two that overstay
//!   [`INLINE_LIMIT`](crate::INLINE_LIMIT) within [`STRIKE_WINDOW`](crate::STRIKE_WINDOW) inline calls, send the plugin
//!   back to the blocking path and log a warning; [`FfiPlugin::call_path`]
//!   reports where it is.
//!
//! A plugin is promoted only on a multi-thread runtime, and an inline call runs
//! only when the instance lock is free at once (`try_lock`): a contended plugin's
//! call takes the blocking path, so an async worker never waits for the lock.
//!
//! Inside the library the plugin may call back into the host
//! ([`plugbay_api::HostApi`]); those callbacks run synchronously on the thread
//! running the plugin. `FfiHost::call_plugin` polls the host's call once (an
//! inline target completes right there); if it is not done, `finish` completes
//! it with `Handle::block_on`, inside `block_in_place` on a multi-thread runtime,
//! so no worker is blocked by it.

use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use plugbay_api::{
    abi_stable::std_types::{ROption, RResult, RStr, RString},
    services, ErrorKind, HostApi, HostContext, LogLevel, PluginError, PluginInstanceBox,
};
use serde_json::Value;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::call_policy::{CallPath, CallPolicy};
use crate::context::{CallChain, PluginContext};
use crate::info::PluginInfo;
use crate::loader::LoadedLibrary;
use crate::plugin::Plugin;

/// How long a call waits for the instance lock before giving up. The lock is
/// only contended when plugin code is already running for this plugin (its
/// lifecycle serializes the rest), so a long wait means that code is stuck.
const INSTANCE_LOCK_WAIT: Duration = Duration::from_secs(30);

thread_local! {
    /// The call chain of the plugin code running on this thread, so a host
    /// callback made from it knows who is calling.
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

/// What a lifecycle call needs from the slot (`call` always needs a live one).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A live instance, created fresh if there is none or only a stopped one.
    LiveOrFresh,
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
    /// Guards: the library-side plugin object, around one call into plugin code.
    /// On blocking-pool threads it is waited for (up to [`INSTANCE_LOCK_WAIT`]);
    /// on an async worker (an inline call) it is only ever taken with `try_lock`,
    /// and a busy instance sends the call to the blocking pool, so a worker never
    /// waits for it. Held only while plugin code runs (an inline call holds it
    /// for less than [`INLINE_LIMIT`](crate::INLINE_LIMIT) or is demoted); never held across `.await`.
    /// Re-entrant calls into the same plugin are refused by the call chain
    /// before they reach this lock.
    instance: Arc<Mutex<Instance>>,
    /// The opened library, with its metadata (the one copy: [`Plugin::info`]).
    /// Where calls run (inline or on the blocking pool). Atomics, not a lock.
    policy: Arc<CallPolicy>,
    library: LoadedLibrary,
}

impl FfiPlugin {
    /// Wraps a library opened by the loader.
    pub fn new(library: LoadedLibrary) -> Self {
        Self {
            instance: Arc::new(Mutex::new(Instance::Empty)),
            policy: Arc::new(CallPolicy::new()),
            library,
        }
    }

    /// Where this plugin's calls run now, and how often it was demoted.
    pub fn call_path(&self) -> CallPath {
        self.policy.snapshot()
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
                _ => return Err(no_live_instance(&name, &operation)),
            };
            let result = with_chain(chain, || f(plugin));
            if need == Need::LiveThenStop {
                if let Instance::Live(p) = std::mem::replace(&mut *guard, Instance::Empty) {
                    *guard = Instance::Stopped(p);
                }
            }
            result
        })
        .await;
        joined.unwrap_or_else(|e| Err(pool_failed(e)))
    }

    /// One `call` with JSON text in and out: inline when the policy allows it and
    /// the instance is free, otherwise on the blocking pool.
    async fn call_text(
        &self,
        chain: CallChain,
        method: &str,
        args: &str,
    ) -> Result<RString, PluginError> {
        let chain = if self.policy.inline() {
            match self.try_call_inline(chain, method, args) {
                Ok(result) => {
                    // An inline call never waits, so a task calling in a loop would
                    // never yield: spend tokio's cooperative budget as its own
                    // resources do, so other tasks on this worker get their turn.
                    tokio::task::coop::consume_budget().await;
                    return result;
                }
                Err(chain) => chain,
            }
        } else {
            chain
        };
        self.call_blocking_pool(chain, method, args).await
    }

    /// Runs the call on this thread if the instance is free at once; gives the
    /// chain back (the caller takes the blocking path) if it is busy.
    fn try_call_inline(
        &self,
        chain: CallChain,
        method: &str,
        args: &str,
    ) -> std::result::Result<Result<RString, PluginError>, CallChain> {
        let policy = &self.policy;
        let Some(mut guard) = self.instance.try_lock() else {
            policy.check_overstay(&self.library.info.name, method);
            return Err(chain);
        };
        let Instance::Live(plugin) = &mut *guard else {
            return Ok(Err(no_live_instance(&self.library.info.name, "call")));
        };
        let start = policy.begin_inline();
        let result = with_chain(Some(chain), || {
            plugin.call(method.into(), args.into()).into_result()
        });
        drop(guard);
        policy.end_inline(&self.library.info.name, method, start);
        Ok(result)
    }

    /// [`FfiPlugin::call_text`] on the blocking pool, timing the plugin's code for
    /// the policy.
    async fn call_blocking_pool(
        &self,
        chain: CallChain,
        method: &str,
        args: &str,
    ) -> Result<RString, PluginError> {
        let instance = Arc::clone(&self.instance);
        let policy = Arc::clone(&self.policy);
        let name = self.library.info.name.clone();
        let method = method.to_owned();
        let args = args.to_owned();
        let joined = tokio::task::spawn_blocking(move || {
            let Some(mut guard) = instance.try_lock_for(INSTANCE_LOCK_WAIT) else {
                return Err(PluginError::failed(format!(
                    "plugin `{name}` is busy: another call into it has not returned for {INSTANCE_LOCK_WAIT:?}"
                )));
            };
            let Instance::Live(plugin) = &mut *guard else {
                return Err(no_live_instance(&name, "call"));
            };
            let start = Instant::now();
            let result = with_chain(Some(chain), || {
                plugin
                    .call(method.as_str().into(), args.as_str().into())
                    .into_result()
            });
            drop(guard);
            policy.record_blocking(&name, start.elapsed());
            result
        })
        .await;
        joined.unwrap_or_else(|e| Err(pool_failed(e)))
    }
}

thread_local! {
    /// A spare buffer for encoding call arguments, so a call allocates none.
    // Const already; see CURRENT_CHAIN for clippy 1.96 on windows-gnu.
    #[allow(clippy::missing_const_for_thread_local)]
    static ARGS_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The largest argument buffer kept for reuse.
const ARGS_BUFFER_KEEP: usize = 64 * 1024;

/// `args` as JSON text, in this thread's spare buffer when there is one.
fn encode(args: &Value) -> Result<String, PluginError> {
    let mut buf = ARGS_BUFFER.take();
    buf.clear();
    serde_json::to_writer(&mut buf, args)
        .map_err(|e| PluginError::invalid_input(format!("cannot encode the arguments: {e}")))?;
    String::from_utf8(buf)
        .map_err(|e| PluginError::invalid_input(format!("cannot encode the arguments: {e}")))
}

/// Returns an [`encode`]d buffer for reuse by the next call on this thread.
fn recycle(args: String) {
    if args.capacity() <= ARGS_BUFFER_KEEP {
        ARGS_BUFFER.set(args.into_bytes());
    }
}

/// Runs `f` with `chain` recorded as this thread's call chain, restoring the
/// previous one afterwards (a nested inline call runs inside an outer one).
fn with_chain<T>(chain: Option<CallChain>, f: impl FnOnce() -> T) -> T {
    let previous = CURRENT_CHAIN.with(|c| c.replace(chain));
    let result = f();
    CURRENT_CHAIN.with(|c| *c.borrow_mut() = previous);
    result
}

fn no_live_instance(name: &str, operation: &str) -> PluginError {
    PluginError::failed(format!(
        "plugin `{name}` has no live instance for {operation} (it is not initialized)"
    ))
}

fn pool_failed(e: tokio::task::JoinError) -> PluginError {
    PluginError::new(
        ErrorKind::Panicked,
        format!("host thread running the plugin failed: {e}"),
    )
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
        let args = encode(&args)?;
        let text = self.call_text(ctx.into_chain(), method, &args).await;
        recycle(args);
        serde_json::from_str(text?.as_str())
            .map_err(|e| PluginError::invalid_input(format!("call returned invalid JSON: {e}")))
    }

    async fn call_json(
        &self,
        ctx: PluginContext,
        method: &str,
        args: &str,
    ) -> Result<String, PluginError> {
        let text = self.call_text(ctx.into_chain(), method, args).await?;
        serde_json::from_str::<serde::de::IgnoredAny>(text.as_str())
            .map_err(|e| PluginError::invalid_input(format!("call returned invalid JSON: {e}")))?;
        Ok(text.into_string())
    }

    fn call_path(&self) -> Option<CallPath> {
        Some(FfiPlugin::call_path(self))
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

/// Answers a call addressed to the host itself ([`services::HOST`]) from the
/// code of the plugin behind `ctx`: the services added to the interface after
/// 1.0.0. Shared by native plugins' callbacks and isolated plugins' proxied ones.
pub(crate) fn host_service(
    ctx: &PluginContext,
    method: &str,
    args: &Value,
) -> Result<Value, PluginError> {
    match method {
        services::API_VERSION => Ok(Value::from(plugbay_api::INTERFACE_VERSION)),
        services::HAS_SERVICE => {
            let service = args["service"].as_str().unwrap_or_default();
            // Every service this interface version defines is offered,
            // while a host stands behind the context.
            Ok(Value::Bool(
                ctx.attached() && services::since(service).is_some(),
            ))
        }
        services::PUBLISH => {
            let name = args["name"].as_str().unwrap_or_default();
            let payload = args
                .get("payload")
                .cloned()
                .unwrap_or(Value::Null)
                .to_string();
            ctx.publish(name, &payload)
                .map(|()| Value::Null)
                .map_err(|e| PluginError::new(ErrorKind::Host, e.to_string()))
        }
        services::SUBSCRIBE => {
            let pattern = args["pattern"].as_str().unwrap_or_default();
            ctx.subscribe(pattern)
                .map(|()| Value::Null)
                .map_err(|e| PluginError::new(ErrorKind::Host, e.to_string()))
        }
        services::DATA_DIR => ctx
            .data_dir()
            .map(|dir| Value::from(dir.to_string_lossy().into_owned()))
            .map_err(|e| PluginError::new(ErrorKind::Host, e.to_string())),
        _ => Err(PluginError::unknown_method(method)),
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
            if name.as_str() == services::HOST {
                return host_service(&self.ctx, method.as_str(), &args)
                    .map(|v| RString::from(v.to_string()));
            }
            let chain = self.current_chain();
            let caller = PluginContext::new(self.ctx.plugin_name(), chain, self.ctx.host_weak());
            let result = finish(
                &self.runtime,
                caller.call(name.as_str(), method.as_str(), args),
            );
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

/// Drives a host call made from plugin code to completion on this thread.
///
/// Polls it once first: a call into an inline plugin (or one refused at once)
/// completes right there, with no hand-off. Otherwise it is finished with
/// `Handle::block_on`. On an async worker, or inside the runtime already (plugin
/// code running inline within an outer `block_on`), that happens inside
/// `block_in_place`, which hands the worker's other tasks to another thread and
/// leaves the runtime context so `block_on` is allowed; on a blocking-pool thread
/// or a thread the plugin spawned, `block_on` runs directly.
fn finish<T: Send>(runtime: &Handle, call: impl Future<Output = T> + Send) -> T {
    let mut call = std::pin::pin!(call);
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    if let Poll::Ready(out) = call.as_mut().poll(&mut cx) {
        return out;
    }
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| runtime.block_on(call)),
        Err(_) => runtime.block_on(call),
        // A current-thread runtime's thread (plugin code promoted to inline on a
        // multi-thread runtime and now called from a current-thread one, or its
        // blocking pool): `block_on` may not run here, a helper thread does it.
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(call))
                .join()
                .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
        }),
    }
}
