//! The runner child: serves one isolated plugin over the channel its host set
//! up (fd 3), until the host closes it.
//!
//! Threads: the main thread reads the host's frames (requests go to the worker,
//! callback answers to the plugin code waiting for them); one worker thread
//! runs requests one at a time against the plugin's instance (like the
//! in-process instance lock, calls into one plugin never overlap); one writer
//! thread writes every outgoing frame (replies, callbacks, log lines), so no
//! lock is held around a write.
// The runner serves on Unix only; elsewhere it refuses and the rest is unused.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use plugbay_api::{
    abi_stable::std_types::{ROption, RResult, RStr, RString},
    ErrorKind, HostApi, HostContext, LogLevel, PluginError, PluginInstanceBox,
};

use super::wire::{decode, Callback, Msg, Op, WireResult, MAX_PAYLOAD};
use crate::loader::{self, LayoutCheck};
use crate::safety::protocol::frame::{read_payload, write_frame_capped, FrameError, Nonce};

/// Exit code when started without a channel (by hand).
const EXIT_NO_CHANNEL: u8 = 2;
/// Exit code after a protocol error.
const EXIT_PROTOCOL: u8 = 3;

thread_local! {
    /// The call chain of the request running on this thread, so a callback made
    /// from it tells the host who is calling.
    #[allow(clippy::missing_const_for_thread_local)]
    static CURRENT_CHAIN: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// The whole program of an isolated plugin's runner: serves the plugin the
/// host names over the channel the host set up, until the host hangs up.
///
/// Embedders ship it like the probe: their binary's `main` calls it first when
/// started with [`super::RUNNER_ARG`]
/// (`if std::env::args_os().nth(1).as_deref() == Some("__isolate".as_ref()) {
/// return plugbay_host::run_isolated_child(); }`), and the host is pointed at
/// that binary with [`crate::ManagerConfigBuilder::isolation_runner`]. Call it
/// before anything else in `main` (no runtime, no threads).
///
/// Exit codes: 0 after the host closed the channel, 2 when started without a
/// channel (e.g. by hand) or on a system without isolation, 3 on a protocol
/// error. A plugin that crashes ends it however the crash does.
pub fn run_isolated_child() -> ExitCode {
    #[cfg(unix)]
    {
        serve()
    }
    #[cfg(not(unix))]
    {
        eprintln!("plugin runner: isolated plugins are supported on Unix only");
        ExitCode::from(EXIT_NO_CHANNEL)
    }
}

#[cfg(unix)]
fn serve() -> ExitCode {
    let mut reader = match crate::platform::take_child_channel() {
        Ok(channel) => channel,
        Err(why) => {
            eprintln!(
                "plugin runner: started by the plugin host to run an isolated plugin; \
                 not meant to be run by hand ({why})"
            );
            return ExitCode::from(EXIT_NO_CHANNEL);
        }
    };
    let mut writer = match crate::platform::clone_child_channel(&reader) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("plugin runner: cannot use the channel: {e}");
            return ExitCode::from(EXIT_PROTOCOL);
        }
    };
    let (path, plugin, limits, nonce) = match read_payload(&mut reader, None, MAX_PAYLOAD)
        .map_err(|e| e.to_string())
        .and_then(|(bytes, nonce)| Ok((decode(&bytes).map_err(|e| e.to_string())?, nonce)))
    {
        Ok((
            Msg::Hello {
                path,
                plugin,
                limits,
            },
            nonce,
        )) => (path, plugin, limits, nonce),
        Ok((other, _)) => {
            eprintln!("plugin runner: expected hello, got {}", short(&other));
            return ExitCode::from(EXIT_PROTOCOL);
        }
        Err(e) => {
            eprintln!("plugin runner: {e}");
            return ExitCode::from(EXIT_PROTOCOL);
        }
    };
    let opened = super::limits::apply(&limits).and_then(|()| open(&path, &plugin));
    let module = match opened {
        Ok(module) => module,
        Err(reason) => {
            let _ = write_frame_capped(
                &mut writer,
                &nonce,
                &Msg::OpenFailed { reason },
                MAX_PAYLOAD,
            );
            return ExitCode::SUCCESS;
        }
    };
    let (out, outgoing) = mpsc::channel::<Msg>();
    let ready = Msg::Ready {
        pid: std::process::id(),
        interface_build_id: loader::interface_build_id().to_owned(),
        plugin: plugin.clone(),
    };
    if write_frame_capped(&mut writer, &nonce, &ready, MAX_PAYLOAD).is_err() {
        return ExitCode::from(EXIT_PROTOCOL);
    }
    std::thread::spawn(move || write_loop(writer, nonce, outgoing));
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let host = ChildHost {
        plugin: plugin.clone(),
        out: out.clone(),
        pending: Arc::clone(&pending),
        next_id: Arc::new(AtomicU64::new(1)),
    };
    let (work, requests) = mpsc::channel::<(u64, Vec<String>, Op)>();
    let worker_out = out.clone();
    std::thread::spawn(move || work_loop(module, host, requests, worker_out));
    loop {
        let msg = match read_payload(&mut reader, Some(&nonce), MAX_PAYLOAD) {
            Ok((bytes, _)) => match decode(&bytes) {
                Ok(msg) => msg,
                Err(e) => {
                    eprintln!("plugin runner: {e}");
                    return ExitCode::from(EXIT_PROTOCOL);
                }
            },
            // The host hung up: done, even if plugin code is still running.
            Err(FrameError::Closed) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("plugin runner: {e}");
                return ExitCode::from(EXIT_PROTOCOL);
            }
        };
        match msg {
            Msg::Request { id, chain, op } => {
                if work.send((id, chain, op)).is_err() {
                    return ExitCode::from(EXIT_PROTOCOL);
                }
            }
            Msg::CallbackReply { id, result } => {
                let waiter = pending.lock().ok().and_then(|mut p| p.remove(&id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(result);
                }
            }
            other => {
                eprintln!("plugin runner: unexpected message {}", short(&other));
                return ExitCode::from(EXIT_PROTOCOL);
            }
        }
    }
}

/// Opens the library at `path` and checks that it is the plugin `plugin`.
fn open(path: &str, plugin: &str) -> Result<plugbay_api::PluginModRef, String> {
    let path = std::path::Path::new(path);
    let lib = loader::check_library(path, path, LayoutCheck::Verify)
        .map_err(|r| r.into_error(path).to_string())?;
    if lib.info.name != plugin {
        return Err(format!(
            "the library is plugin `{}`, not `{plugin}`",
            lib.info.name
        ));
    }
    Ok(lib.module)
}

fn short(msg: &Msg) -> String {
    format!("{msg:?}").chars().take(120).collect()
}

/// Writes every outgoing message, in order, until every sender is gone or the
/// host stops reading.
fn write_loop(
    mut writer: crate::platform::imp::ChildChannel,
    nonce: Nonce,
    outgoing: mpsc::Receiver<Msg>,
) {
    for msg in outgoing {
        if let Err(e) = write_frame_capped(&mut writer, &nonce, &msg, MAX_PAYLOAD) {
            // A message too large for a frame: tell the waiting side instead.
            let fallback = match &msg {
                Msg::Reply { id, .. } => Some(Msg::Reply {
                    id: *id,
                    result: WireResult::from_result(Err(PluginError::failed(format!(
                        "the answer cannot be sent to the host: {e}"
                    )))),
                }),
                _ => None,
            };
            let sent = fallback
                .map(|m| write_frame_capped(&mut writer, &nonce, &m, MAX_PAYLOAD).is_ok())
                .unwrap_or(false);
            if !sent {
                eprintln!("plugin runner: cannot write to the host: {e}");
            }
        }
    }
}

/// The plugin's instance across its lives (see `crate::ffi`'s `Instance`).
enum Instance {
    Empty,
    Live(PluginInstanceBox),
    Stopped(PluginInstanceBox),
}

/// Runs requests one at a time against the plugin's instance.
fn work_loop(
    module: plugbay_api::PluginModRef,
    host: ChildHost,
    requests: mpsc::Receiver<(u64, Vec<String>, Op)>,
    out: mpsc::Sender<Msg>,
) {
    let mut instance = Instance::Empty;
    for (id, chain, op) in requests {
        CURRENT_CHAIN.with(|c| *c.borrow_mut() = Some(chain));
        let result = run(&module, &host, &mut instance, op);
        CURRENT_CHAIN.with(|c| *c.borrow_mut() = None);
        let reply = Msg::Reply {
            id,
            result: WireResult::from_result(result),
        };
        if out.send(reply).is_err() {
            return;
        }
    }
}

fn run(
    module: &plugbay_api::PluginModRef,
    host: &ChildHost,
    instance: &mut Instance,
    op: Op,
) -> Result<String, PluginError> {
    let fresh = matches!(op, Op::Initialize | Op::LoadState { .. })
        && !matches!(instance, Instance::Live(_));
    if fresh {
        *instance = Instance::Live((module.new_instance())().into_result()?);
    }
    let null = || "null".to_owned();
    match (op, &mut *instance) {
        (Op::Initialize, Instance::Live(p)) => p
            .initialize(HostContext::from_api(host.clone()))
            .into_result()
            .map(|()| null()),
        (Op::LoadState { state, version }, Instance::Live(p)) => p
            .load_state(state.as_str().into(), version.as_str().into())
            .into_result()
            .map(|()| null()),
        (Op::Call { method, args }, Instance::Live(p)) => p
            .call(method.as_str().into(), args.as_str().into())
            .into_result()
            .map(RString::into_string),
        (Op::SaveState, Instance::Live(p) | Instance::Stopped(p)) => {
            p.save_state().into_result().map(RString::into_string)
        }
        (Op::Shutdown, Instance::Live(_)) => {
            let Instance::Live(mut p) = std::mem::replace(instance, Instance::Empty) else {
                return Err(PluginError::failed("no live instance to shut down"));
            };
            let result = p.shutdown().into_result().map(|()| null());
            *instance = Instance::Stopped(p);
            result
        }
        (op, _) => Err(PluginError::failed(format!(
            "plugin `{}` has no live instance for {} (it is not initialized)",
            host.plugin,
            op.describe()
        ))),
    }
}

/// Plugin code waiting for the host's answers to its callbacks, by id.
///
/// Guards: the waiting map; locked only to insert or remove one entry (the
/// runner is a process of its own, with no async runtime and no other lock).
type Pending = Arc<Mutex<HashMap<u64, mpsc::SyncSender<WireResult>>>>;

/// The [`HostApi`] the plugin gets in the runner: every callback goes to the
/// host over the channel, with the call chain of the code making it.
#[derive(Clone)]
struct ChildHost {
    plugin: String,
    out: mpsc::Sender<Msg>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

impl ChildHost {
    /// Sends `call` to the host and waits for its answer.
    fn ask(&self, call: Callback) -> Result<String, PluginError> {
        let chain = CURRENT_CHAIN
            .with(|c| c.borrow().clone())
            .unwrap_or_else(|| vec![self.plugin.clone()]);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id, tx);
        }
        let lost = || PluginError::new(ErrorKind::Host, "the host is gone");
        self.out
            .send(Msg::Callback { id, chain, call })
            .map_err(|_| lost())?;
        rx.recv().map_err(|_| lost())?.into_result()
    }
}

impl HostApi for ChildHost {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let _ = self.out.send(Msg::Log {
            level: level.into(),
            message: message.as_str().to_owned(),
        });
    }

    fn host_name(&self) -> RString {
        catch_unwind(AssertUnwindSafe(|| self.ask(Callback::HostName)))
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into()
    }

    fn host_version(&self) -> RString {
        catch_unwind(AssertUnwindSafe(|| self.ask(Callback::HostVersion)))
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into()
    }

    fn config(&self) -> RString {
        catch_unwind(AssertUnwindSafe(|| self.ask(Callback::Config)))
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| "null".to_owned())
            .into()
    }

    fn plugin_status(&self, name: RStr<'_>) -> ROption<RString> {
        let plugin = name.as_str().to_owned();
        catch_unwind(AssertUnwindSafe(|| self.ask(Callback::Status { plugin })))
            .ok()
            .and_then(Result::ok)
            .and_then(|json| serde_json::from_str::<Option<String>>(&json).ok().flatten())
            .map(RString::from)
            .into()
    }

    fn call_plugin(
        &self,
        name: RStr<'_>,
        method: RStr<'_>,
        args: RStr<'_>,
    ) -> RResult<RString, PluginError> {
        let call = Callback::CallPlugin {
            target: name.as_str().to_owned(),
            method: method.as_str().to_owned(),
            args: args.as_str().to_owned(),
        };
        match catch_unwind(AssertUnwindSafe(|| self.ask(call))) {
            Ok(result) => result.map(RString::from).into(),
            Err(_) => RResult::RErr(PluginError::new(
                ErrorKind::Host,
                "the runner failed while handling call_plugin",
            )),
        }
    }
}
