//! The host side of an isolated plugin: [`IsolatedPlugin`], a [`Plugin`] whose
//! library runs in a runner child process.
//!
//! One runner process is one *incarnation*. It starts on the first `load_state`
//! or `initialize` (and on the first one after a crash, which resets the crash
//! signal to `None`), and lives until the plugin is dropped or dies. Per
//! incarnation (`Connection`):
//! - a reader thread reads every frame from the child: replies complete the
//!   waiting request, callbacks are answered (calls to other plugins on the
//!   async runtime, the rest at once), log lines go to `tracing`; when the
//!   channel ends or carries garbage it reaps the child, reads the death
//!   ([`super::limits::classify`], or the reason the host killed it for), sets
//!   the crash signal, then fails every request still waiting;
//! - a writer thread writes every outgoing frame (no lock is held around I/O);
//! - a stderr thread keeps the child's last stderr lines (and logs them).
//!
//! Every request has a deadline (a call: the configured call timeout; a
//! lifecycle operation: that or the manager's phase timeout, whichever is
//! shorter). Past it the host kills the child (`Deadline`). A lifecycle
//! request dropped before its answer (the manager's own deadline fired first)
//! kills the child too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use plugbay_api::{ErrorKind, PluginError};
use serde_json::Value;
use tokio::sync::watch;

use super::connection::Connection;
use super::wire::Op;
use super::RunnerSettings;
use crate::context::{CallChain, PluginContext};
use crate::crash::{CrashReason, CrashReport, CrashSignal};
use crate::error::Error;
use crate::info::PluginInfo;
use crate::plugin::Plugin;

/// How long the host waits for a killed runner's death to be reported.
const DEATH_WAIT: Duration = Duration::from_secs(5);

/// A plugin whose library runs in a runner child process (see the module docs).
pub struct IsolatedPlugin {
    pub(super) info: PluginInfo,
    /// The library file the runner opens (the verified shadow copy).
    pub(super) library: std::path::PathBuf,
    pub(super) settings: RunnerSettings,
    /// The current incarnation, if one was started.
    ///
    /// Guards: which runner is current. Locked only to clone or replace the
    /// `Arc` (no I/O, no `.await`, no other lock); starting a runner happens
    /// outside it, serialized by `starting`.
    current: Mutex<Option<Arc<Connection>>>,
    /// Serializes starting a new runner (a tokio mutex: held across the
    /// handshake's await; the manager's lifecycle lock already serializes
    /// `load_state` / `initialize`, so it is never contended in practice).
    starting: tokio::sync::Mutex<()>,
    /// The crash signal's sending side (`None` while the current runner lives).
    pub(super) crash: Arc<watch::Sender<Option<CrashReport>>>,
    /// Counts incarnations; a dying runner reports only if it is still current.
    pub(super) incarnation: Arc<AtomicU64>,
}

impl IsolatedPlugin {
    /// An isolated plugin for the admitted library `library` (opened by the
    /// runner, never by the host) with metadata `info`.
    pub(crate) fn new(
        info: PluginInfo,
        library: std::path::PathBuf,
        settings: RunnerSettings,
    ) -> Self {
        let (crash, _) = watch::channel(None);
        Self {
            info,
            library,
            settings,
            current: Mutex::new(None),
            starting: tokio::sync::Mutex::new(()),
            crash: Arc::new(crash),
            incarnation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The process id of the current runner, if one is alive.
    pub fn runner_pid(&self) -> Option<u32> {
        self.live().map(|c| c.pid)
    }

    fn live(&self) -> Option<Arc<Connection>> {
        self.current.lock().clone().filter(|c| !c.is_dead())
    }

    /// The current runner, started if there is none or it died (a new
    /// incarnation: the crash signal goes back to `None`).
    async fn live_or_start(&self) -> Result<Arc<Connection>, PluginError> {
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        let _starting = self.starting.lock().await;
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        let number = self.incarnation.fetch_add(1, Ordering::SeqCst) + 1;
        self.crash.send_replace(None);
        let conn = Connection::start(self, number).await?;
        *self.current.lock() = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// The current runner for an operation that never starts one.
    fn existing(&self, operation: &str) -> Result<Arc<Connection>, PluginError> {
        if let Some(report) = self.crash.borrow().clone() {
            return Err(crashed_error(&self.info.name, &report));
        }
        self.live().ok_or_else(|| {
            PluginError::failed(format!(
                "plugin `{}` has no runner process for {operation} (it is not initialized)",
                self.info.name
            ))
        })
    }

    /// Sends `op` on `chain` and waits for its answer, up to `deadline`; past
    /// it the runner is killed. `lifecycle`: dropping the wait kills it too.
    async fn request(
        &self,
        conn: &Arc<Connection>,
        chain: &CallChain,
        op: Op,
        deadline: Duration,
        lifecycle: bool,
    ) -> Result<String, PluginError> {
        let operation = op.describe();
        let (id, answer) = conn.send_request(chain, op);
        let mut guard = KillOnDrop {
            conn: lifecycle.then(|| Arc::clone(conn)),
            operation: operation.clone(),
            deadline,
        };
        let outcome = tokio::time::timeout(deadline, answer).await;
        guard.conn = None;
        match outcome {
            Ok(Ok(result)) => result.into_result(),
            Ok(Err(_)) => Err(self.death_error(id).await),
            Err(_elapsed) => {
                conn.kill(CrashReason::Deadline {
                    operation,
                    after: deadline,
                });
                Err(self.death_error(id).await)
            }
        }
    }

    /// The error of a request whose runner died: waits (boundedly) for the
    /// death to be reported and names it.
    async fn death_error(&self, _id: u64) -> PluginError {
        let mut signal = self.crash.subscribe();
        let report = tokio::time::timeout(DEATH_WAIT, signal.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|r| r.clone());
        match report {
            Some(report) => crashed_error(&self.info.name, &report),
            None => PluginError::new(
                ErrorKind::Host,
                format!("plugin `{}`: its runner process went away", self.info.name),
            ),
        }
    }

    fn phase_deadline(&self, phase: Duration) -> Duration {
        self.settings.call_timeout.min(phase)
    }
}

impl Drop for IsolatedPlugin {
    fn drop(&mut self) {
        if let Some(conn) = self.current.get_mut().take() {
            conn.close();
        }
    }
}

/// The error an operation on a crashed plugin gets: kind `Host`, the report in
/// the message (the manager turns it into [`Error::Crashed`] from the signal).
pub(super) fn crashed_error(plugin: &str, report: &CrashReport) -> PluginError {
    PluginError::new(
        ErrorKind::Host,
        Error::Crashed {
            plugin: plugin.to_owned(),
            report: report.clone(),
        }
        .to_string(),
    )
}

/// Kills the runner if a lifecycle request is dropped before its answer.
struct KillOnDrop {
    conn: Option<Arc<Connection>>,
    operation: String,
    deadline: Duration,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.kill(CrashReason::Deadline {
                operation: std::mem::take(&mut self.operation),
                after: self.deadline,
            });
        }
    }
}

#[async_trait]
impl Plugin for IsolatedPlugin {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    async fn initialize(&self, ctx: PluginContext) -> Result<(), PluginError> {
        let conn = self.live_or_start().await?;
        conn.set_context(&ctx);
        let deadline = self.phase_deadline(self.settings.init_timeout);
        self.request(&conn, ctx.chain(), Op::Initialize, deadline, true)
            .await
            .map(drop)
    }

    async fn shutdown(&self, ctx: PluginContext) -> Result<(), PluginError> {
        let conn = self.existing("shutdown")?;
        let deadline = self.phase_deadline(self.settings.shutdown_timeout);
        self.request(&conn, ctx.chain(), Op::Shutdown, deadline, true)
            .await
            .map(drop)
    }

    async fn save_state(&self) -> Result<Value, PluginError> {
        let conn = self.existing("save_state")?;
        let chain = conn.own_chain();
        let text = self
            .request(
                &conn,
                &chain,
                Op::SaveState,
                self.settings.call_timeout,
                true,
            )
            .await?;
        serde_json::from_str(&text).map_err(|e| {
            PluginError::invalid_input(format!("save_state returned invalid JSON: {e}"))
        })
    }

    async fn load_state(&self, state: Value, saved_by_version: &str) -> Result<(), PluginError> {
        let conn = self.live_or_start().await?;
        let chain = conn.own_chain();
        let op = Op::LoadState {
            state: state.to_string(),
            version: saved_by_version.to_owned(),
        };
        self.request(&conn, &chain, op, self.settings.call_timeout, true)
            .await
            .map(drop)
    }

    async fn call(
        &self,
        ctx: PluginContext,
        method: &str,
        args: Value,
    ) -> Result<Value, PluginError> {
        let text = self.call_json(ctx, method, &args.to_string()).await?;
        serde_json::from_str(&text)
            .map_err(|e| PluginError::invalid_input(format!("call returned invalid JSON: {e}")))
    }

    async fn call_json(
        &self,
        ctx: PluginContext,
        method: &str,
        args: &str,
    ) -> Result<String, PluginError> {
        let conn = self.existing("call")?;
        conn.set_context(&ctx);
        let op = Op::Call {
            method: method.to_owned(),
            args: if args.trim().is_empty() {
                "null".to_owned()
            } else {
                args.to_owned()
            },
        };
        let text = self
            .request(&conn, ctx.chain(), op, self.settings.call_timeout, false)
            .await?;
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| PluginError::invalid_input(format!("call returned invalid JSON: {e}")))?;
        Ok(text)
    }

    fn crash_signal(&self) -> Option<CrashSignal> {
        Some(self.crash.subscribe())
    }
}
