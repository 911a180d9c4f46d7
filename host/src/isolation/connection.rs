//! One runner process of an isolated plugin (one incarnation): starting it,
//! its reader, writer and stderr threads, answering its callbacks, and reading
//! its death (see [`super::proxy`]).
// Runners start on Unix only; elsewhere `spawn` refuses and the rest is unused.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use plugbay_api::{services, ErrorKind, PluginError};
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

use super::limits::{classify, Limits};
use super::proxy::{crashed_error, IsolatedPlugin};
use super::stderr::keep_stderr;
use super::wire::{decode, Callback, Msg, Op, WireResult, MAX_PAYLOAD};
use crate::context::{CallChain, PluginContext};
use crate::crash::{CrashReason, CrashReport};
use crate::error::Error;
use crate::safety::protocol::frame::{new_nonce, read_payload, write_frame_capped, FrameError};

#[cfg(unix)]
use crate::platform::ChannelCloser;

/// Where runners cannot start there is no channel to close.
#[cfg(not(unix))]
struct ChannelCloser;

#[cfg(not(unix))]
impl ChannelCloser {
    fn close(&self) {}
}

/// How long a runner that closed its channel may take to exit before it is killed.
const REAP_GRACE: Duration = Duration::from_millis(500);
/// How long a new runner may take to open its library and say it is ready.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests waiting for their answers, by id.
type Waiting = HashMap<u64, oneshot::Sender<WireResult>>;

/// One runner process and its channel.
pub(super) struct Connection {
    plugin: String,
    pub(super) pid: u32,
    limits: Limits,
    /// Outgoing frames, written by the writer thread.
    out: mpsc::Sender<Msg>,
    next_id: AtomicU64,
    /// Requests waiting for their answers.
    ///
    /// Guards: the waiting map. Locked only to insert, remove or drain entries
    /// (no I/O, no `.await`, no other lock; the answers are sent after it is
    /// released).
    waiting: Mutex<Waiting>,
    /// The runner process: only `try_wait` and `kill` (non-blocking system
    /// calls) run under this lock, never a blocking wait.
    child: Mutex<Child>,
    closer: ChannelCloser,
    /// The last stderr lines (newest last).
    ///
    /// Guards: the line buffer; locked to push one line or to copy it out.
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Why the host killed the runner (set once, before the kill).
    ///
    /// Guards: that reason; locked to set or take it.
    kill_reason: Mutex<Option<CrashReason>>,
    /// The host closed the channel on purpose: its end is no crash.
    closing: AtomicBool,
    /// The runner is gone (its death was handled).
    dead: AtomicBool,
    /// The context of the plugin's latest `initialize` or call, for its callbacks
    /// (the host behind it).
    ///
    /// Guards: that context; locked to clone or replace it.
    ctx: Mutex<PluginContext>,
}

impl Connection {
    /// Starts a runner for `plugin` (incarnation `number`), hands it the
    /// library and waits for it to be ready.
    pub(super) async fn start(
        plugin: &IsolatedPlugin,
        number: u64,
    ) -> Result<Arc<Self>, PluginError> {
        let name = plugin.info.name.clone();
        let failed = |why: String| {
            PluginError::new(
                ErrorKind::Host,
                format!("plugin `{name}`: cannot start its runner process: {why}"),
            )
        };
        let settings = &plugin.settings;
        let mut cmd = Command::new(&settings.program);
        cmd.args(&settings.args).env_clear();
        for key in &settings.keep_env {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        let (conn, ready) = spawn(
            cmd,
            &name,
            settings.limits,
            &plugin.library,
            Arc::clone(&plugin.crash),
            Arc::clone(&plugin.incarnation),
            number,
        )
        .map_err(failed)?;
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, ready).await {
            Ok(Ok(Ok(()))) => Ok(conn),
            Ok(Ok(Err(why))) => {
                conn.close();
                Err(failed(why))
            }
            Ok(Err(_)) => Err(failed(
                "it ended before it was ready (see the crash report)".to_owned(),
            )),
            Err(_) => {
                conn.kill(CrashReason::Deadline {
                    operation: "opening the library".to_owned(),
                    after: HANDSHAKE_TIMEOUT,
                });
                Err(failed(format!(
                    "it was not ready within {HANDSHAKE_TIMEOUT:?}"
                )))
            }
        }
    }

    pub(super) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// A chain holding just this plugin (operations the manager runs without a
    /// context).
    pub(super) fn own_chain(&self) -> CallChain {
        self.ctx.lock().chain().clone()
    }

    pub(super) fn set_context(&self, ctx: &PluginContext) {
        let ctx = PluginContext::new(&self.plugin, own_chain(&self.plugin), ctx.host_weak());
        *self.ctx.lock() = ctx;
    }

    /// Queues request `op` and returns its id and where its answer arrives.
    pub(super) fn send_request(
        &self,
        chain: &CallChain,
        op: Op,
    ) -> (u64, oneshot::Receiver<WireResult>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(id, tx);
        // A send error means the writer is gone: the reader reports the death
        // and drops the waiting sender.
        let _ = self.out.send(Msg::Request {
            id,
            chain: chain.plugins().to_vec(),
            op,
        });
        if self.is_dead() {
            // The death was handled before this request was registered.
            self.waiting.lock().remove(&id);
        }
        (id, rx)
    }

    /// Kills the runner for `reason` (kept for the crash report, unless an
    /// earlier reason was recorded first).
    pub(super) fn kill(&self, reason: CrashReason) {
        {
            let mut slot = self.kill_reason.lock();
            if slot.is_none() {
                *slot = Some(reason);
            }
        }
        let _ = self.child.lock().kill();
    }

    /// Ends the runner on purpose: it reads end-of-file and exits; no crash.
    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.closer.close();
    }

    /// Answers one callback from the plugin's code.
    fn answer(self: &Arc<Self>, runtime: &Handle, id: u64, chain: Vec<String>, call: Callback) {
        let ctx = {
            let base = self.ctx.lock().clone();
            let chain = chain_from(&self.plugin, chain);
            PluginContext::new(&self.plugin, chain, base.host_weak())
        };
        let reply = move |conn: &Connection, result: Result<String, PluginError>| {
            let _ = conn.out.send(Msg::CallbackReply {
                id,
                result: WireResult::from_result(result),
            });
        };
        match call {
            Callback::HostName => reply(self, Ok(ctx.host_name())),
            Callback::HostVersion => reply(self, Ok(ctx.host_version())),
            Callback::Config => reply(self, Ok(ctx.config().to_string())),
            Callback::Status { plugin } => {
                reply(self, Ok(Value::from(ctx.status_of(&plugin)).to_string()))
            }
            Callback::CallPlugin {
                target,
                method,
                args,
            } => {
                let args: Value = if args.trim().is_empty() {
                    Value::Null
                } else {
                    match serde_json::from_str(&args) {
                        Ok(v) => v,
                        Err(e) => {
                            return reply(
                                self,
                                Err(PluginError::invalid_input(format!(
                                    "invalid JSON args: {e}"
                                ))),
                            )
                        }
                    }
                };
                if target == services::HOST {
                    // Events need the runtime (subscribing starts a delivery task).
                    let _runtime = runtime.enter();
                    let result = crate::ffi::host_service(&ctx, &method, &args);
                    return reply(self, result.map(|v| v.to_string()));
                }
                let conn = Arc::clone(self);
                runtime.spawn(async move {
                    let result = ctx
                        .call(&target, &method, args)
                        .await
                        .map(|v| v.to_string())
                        .map_err(Error::into_plugin_error);
                    reply(&conn, result);
                });
            }
        }
    }
}

/// A chain holding just `plugin`.
pub(super) fn own_chain(plugin: &str) -> CallChain {
    CallChain::default().enter(plugin).unwrap_or_default()
}

/// The chain a callback runs on: the runner's, if it is a valid chain ending
/// with this plugin; otherwise just the plugin.
fn chain_from(plugin: &str, names: Vec<String>) -> CallChain {
    if names.last().map(String::as_str) != Some(plugin) {
        return own_chain(plugin);
    }
    names
        .iter()
        .try_fold(CallChain::default(), |chain, name| chain.enter(name))
        .unwrap_or_else(|_| own_chain(plugin))
}

/// Where a new runner's handshake outcome arrives (`Err`: why it cannot serve).
type Handshake = oneshot::Receiver<Result<(), String>>;

/// Starts the runner process and its threads. Returns the connection and
/// where the handshake's outcome arrives.
#[cfg(unix)]
fn spawn(
    cmd: Command,
    name: &str,
    limits: Limits,
    library: &std::path::Path,
    crash: Arc<watch::Sender<Option<CrashReport>>>,
    incarnation: Arc<AtomicU64>,
    number: u64,
) -> Result<(Arc<Connection>, Handshake), String> {
    use crate::platform::IsolatedChannel;

    let runtime = Handle::current();
    let (mut child, channel) = IsolatedChannel::spawn(cmd).map_err(|e| e.to_string())?;
    let stderr = child.stderr.take();
    let (mut reader, mut writer, closer) = match channel.split() {
        Ok(parts) => parts,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.to_string());
        }
    };
    let nonce = new_nonce();
    let (out, outgoing) = mpsc::channel::<Msg>();
    let conn = Arc::new(Connection {
        plugin: name.to_owned(),
        pid: child.id(),
        limits,
        out,
        next_id: AtomicU64::new(1),
        waiting: Mutex::new(HashMap::new()),
        child: Mutex::new(child),
        closer,
        stderr: Arc::new(Mutex::new(VecDeque::new())),
        kill_reason: Mutex::new(None),
        closing: AtomicBool::new(false),
        dead: AtomicBool::new(false),
        ctx: Mutex::new(PluginContext::detached(name)),
    });
    let hello = Msg::Hello {
        path: library.to_string_lossy().into_owned(),
        plugin: name.to_owned(),
        limits: limits.to_wire(),
    };
    // The hello goes first, before any request can be queued.
    let _ = conn.out.send(hello);
    let thread = |what: &str| format!("plugin-{what}-{name}");
    let stderr_done = {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let lines = Arc::clone(&conn.stderr);
        let plugin = name.to_owned();
        let started = std::thread::Builder::new()
            .name(thread("stderr"))
            .spawn(move || {
                if let Some(stderr) = stderr {
                    keep_stderr(stderr, &lines, &plugin);
                }
                let _ = done_tx.send(());
            });
        started.map(|_| done_rx).ok()
    };
    std::thread::Builder::new()
        .name(thread("writer"))
        .spawn(move || {
            for msg in outgoing {
                if write_frame_capped(&mut writer, &nonce, &msg, MAX_PAYLOAD).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let reader_conn = Arc::clone(&conn);
    let spawned = std::thread::Builder::new()
        .name(thread("reader"))
        .spawn(move || {
            let conn = reader_conn;
            let mut ready = Some(ready_tx);
            let ended = read_loop(&conn, &mut reader, &nonce, &runtime, &mut ready);
            conn.on_end(ended, stderr_done, &crash, &incarnation, number);
        });
    if let Err(e) = spawned {
        conn.kill(CrashReason::Protocol {
            reason: format!("no reader thread: {e}"),
        });
        return Err(e.to_string());
    }
    Ok((conn, ready_rx))
}

#[cfg(not(unix))]
fn spawn(
    _cmd: Command,
    _name: &str,
    _limits: Limits,
    _library: &std::path::Path,
    _crash: Arc<watch::Sender<Option<CrashReport>>>,
    _incarnation: Arc<AtomicU64>,
    _number: u64,
) -> Result<(Arc<Connection>, Handshake), String> {
    Err("isolated plugins are supported on Unix only".to_owned())
}

/// Reads frames until the channel ends; returns why it ended when that was
/// not a plain end-of-file (a protocol violation).
fn read_loop(
    conn: &Arc<Connection>,
    reader: &mut impl Read,
    nonce: &crate::safety::protocol::Nonce,
    runtime: &Handle,
    ready: &mut Option<oneshot::Sender<Result<(), String>>>,
) -> Option<String> {
    loop {
        let bytes = match read_payload(reader, Some(nonce), MAX_PAYLOAD) {
            Ok((bytes, _)) => bytes,
            Err(FrameError::Closed | FrameError::Io(_)) => return None,
            Err(FrameError::Garbage(why)) => return Some(why),
        };
        let msg = match decode(&bytes) {
            Ok(msg) => msg,
            Err(e) => return Some(e.to_string()),
        };
        match msg {
            Msg::Ready {
                interface_build_id,
                plugin,
                ..
            } if ready.is_some() => {
                let outcome = if interface_build_id != crate::loader::interface_build_id() {
                    Err("the runner was built against another plugin interface; \
                         rebuild it together with the host"
                        .to_owned())
                } else if plugin != conn.plugin {
                    Err(format!("the runner serves `{plugin}`"))
                } else {
                    Ok(())
                };
                if let Some(tx) = ready.take() {
                    let _ = tx.send(outcome);
                }
            }
            Msg::OpenFailed { reason } if ready.is_some() => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(reason));
                }
            }
            Msg::Reply { id, result } if ready.is_none() => {
                let waiter = conn.waiting.lock().remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(result);
                }
            }
            Msg::Callback { id, chain, call } if ready.is_none() => {
                conn.answer(runtime, id, chain, call);
            }
            Msg::Log { level, message } => {
                let ctx = conn.ctx.lock().clone();
                ctx.log(level.into(), &message);
            }
            other => {
                return Some(format!(
                    "unexpected message {}",
                    format!("{other:?}").chars().take(120).collect::<String>()
                ))
            }
        }
    }
}

impl Connection {
    /// The channel ended (`violation`: because of garbage): reap the runner,
    /// report its death (unless the host closed it on purpose or a newer
    /// incarnation replaced it), then fail every waiting request.
    fn on_end(
        &self,
        violation: Option<String>,
        stderr_done: Option<mpsc::Receiver<()>>,
        crash: &watch::Sender<Option<CrashReport>>,
        incarnation: &AtomicU64,
        number: u64,
    ) {
        if let Some(reason) = violation {
            self.kill(CrashReason::Protocol { reason });
        }
        let status = self.reap();
        if let Some(done) = stderr_done {
            // The pipe ends with the process (unless something it started
            // still holds it).
            let _ = done.recv_timeout(REAP_GRACE);
        }
        self.dead.store(true, Ordering::SeqCst);
        let last_stderr: Vec<String> = self.stderr.lock().iter().cloned().collect();
        let killed_for = self.kill_reason.lock().take();
        let report = if self.closing.load(Ordering::SeqCst) && killed_for.is_none() {
            None
        } else {
            let reason = match (killed_for, status) {
                (Some(reason), _) => reason,
                (None, Some(status)) => classify(
                    crate::platform::exit_reason(&status),
                    &self.limits,
                    &last_stderr,
                ),
                (None, None) => CrashReason::Protocol {
                    reason: "the runner vanished (no exit status)".to_owned(),
                },
            };
            Some(CrashReport {
                reason,
                last_stderr,
            })
        };
        if let Some(report) = &report {
            tracing::warn!(plugin = %self.plugin, pid = self.pid, crash = %report, "isolated plugin died");
            crash.send_if_modified(|current| {
                if incarnation.load(Ordering::SeqCst) == number {
                    *current = Some(report.clone());
                    true
                } else {
                    false
                }
            });
        }
        let message = match &report {
            Some(report) => crashed_error(&self.plugin, report),
            None => PluginError::new(
                ErrorKind::Host,
                format!("plugin `{}`: its runner process was stopped", self.plugin),
            ),
        };
        let waiting: Vec<_> = self.waiting.lock().drain().map(|(_, tx)| tx).collect();
        for tx in waiting {
            let _ = tx.send(WireResult::from_result(Err(message.clone())));
        }
    }

    /// Waits (briefly) for the runner to exit, kills it if it does not, and
    /// returns its exit status.
    fn reap(&self) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + REAP_GRACE;
        loop {
            let polled = self.child.lock().try_wait();
            match polled {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) => {
                    let _ = self.child.lock().kill();
                    // SIGKILL cannot be ignored: the wait ends promptly.
                    return loop {
                        match self.child.lock().try_wait() {
                            Ok(Some(status)) => break Some(status),
                            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                            Err(_) => break None,
                        }
                    };
                }
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_chains_must_end_with_the_plugin() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(chain_from("p", names(&["a", "p"])).to_string(), "a -> p");
        // A chain that does not end with the plugin, or repeats one, is not trusted.
        assert_eq!(chain_from("p", names(&["a"])).to_string(), "p");
        assert_eq!(chain_from("p", names(&[])).to_string(), "p");
        assert_eq!(chain_from("p", names(&["p", "a", "p"])).to_string(), "p");
    }
}
