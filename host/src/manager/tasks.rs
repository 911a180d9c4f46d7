//! The tasks the manager spawns for its own work: a lifecycle operation on its
//! own task (so cancelling the caller cannot leave a plugin half-way through a
//! transition), the tasks of a batch, and the one error for a task that ended
//! abnormally.

use std::future::Future;
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::task::{JoinError, JoinHandle};

use super::batch_report::BatchReport;
use super::reentry;
use super::registry::Slot;
use crate::error::{Error, Result};

/// One plugin's outcome in a batch, awaitable by every plugin that must wait for it.
pub(crate) type Outcome = Shared<BoxFuture<'static, Result<()>>>;

/// The error for a manager task running `operation` of `plugin` that ended
/// abnormally (a manager bug, or the runtime shutting down).
pub(crate) fn task_failed(plugin: &str, operation: &str, join: JoinError) -> Error {
    Error::PluginFailed {
        plugin: plugin.to_owned(),
        operation: operation.to_owned(),
        kind: plugbay_api::ErrorKind::Host,
        reason: format!("the manager task running it ended abnormally: {join}"),
    }
}

/// Spawns `work` on its own task, carrying the caller's lifecycle path.
pub(crate) fn spawn<F>(work: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(reentry::within(reentry::current(), work))
}

/// Runs a lifecycle operation on its own task (see [`spawn`]) and waits for it.
pub(crate) async fn detached(
    plugin: &str,
    operation: &str,
    work: impl Future<Output = Result<()>> + Send + 'static,
) -> Result<()> {
    spawn(work)
        .await
        .unwrap_or_else(|join| Err(task_failed(plugin, operation, join)))
}

/// The report of a batch task: a panic in it (a manager bug) is re-raised in
/// the caller; a cancelled task (the runtime is shutting down) reports nothing.
pub(crate) async fn joined(task: JoinHandle<BatchReport>) -> BatchReport {
    match task.await {
        Ok(report) => report,
        Err(e) => match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(_) => BatchReport::default(),
        },
    }
}

/// A spawned task's result as an [`Outcome`]. Only the rare abnormal path
/// reads the slot's name, so the hot path allocates nothing for it.
pub(crate) fn outcome(
    slot: Arc<Slot>,
    operation: &'static str,
    task: JoinHandle<Result<()>>,
) -> Outcome {
    task.map(move |joined| joined.unwrap_or_else(|e| Err(task_failed(&slot.name, operation, e))))
        .boxed()
        .shared()
}
