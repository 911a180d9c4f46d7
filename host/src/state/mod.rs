//! Durable, crash-safe, concurrent per-plugin state: [`PluginStateManager`].
//!
//! # Layout
//! One directory, locked by one host at a time (`.lock`, holding the pid). Each
//! plugin's state is `<name>.json` (see [`state_file_name`] for the name rule),
//! a JSON envelope `{"format": 1, "plugin", "plugin_version", "saved_at",
//! "state"}`. Writes go through a hidden temp file (`.<name>.json.<random>.tmp`)
//! that is fsynced and renamed over the old file, then the directory is fsynced:
//! a crash leaves the old state or the new one, never a mix. Stale temp files
//! are deleted when a manager opens the directory. Without a configured
//! directory, hosts use [`default_state_dir`].
//!
//! # Policies
//! - **Corrupt file** (unparsable, wrong envelope, over 16 MiB, nested past
//!   serde_json's limit, not a regular file): moved aside to
//!   `<name>.json.corrupt-<timestamp>` with its bytes intact, logged as a
//!   warning and sent as [`StateEvent::Quarantined`]; the plugin is not handed
//!   any state and starts empty ([`LoadOutcome::Quarantined`]). Nothing is ever
//!   deleted.
//! - **Other plugin version**: the state is handed over anyway, with the version
//!   that saved it, so the plugin can migrate (or refuse: its `load_state` error
//!   is returned and the file is kept).
//! - **`Value::Null` from `save_state`** means "nothing to save" (as the
//!   [`Plugin`] trait documents): nothing is written and an existing file is
//!   kept ([`SaveOutcome::NothingToSave`]). The raw [`PluginStateManager::write`]
//!   writes `null` like any other value.
//! - **I/O errors** are [`Error::StateIo`] naming the path and the operation; the
//!   previous file is untouched and the manager stays usable.
//! - **States that could not be read back** (nested deeper than
//!   [`MAX_STATE_DEPTH`] or larger than [`MAX_STATE_FILE_BYTES`]) are refused
//!   before anything is written ([`Error::PluginFailed`] for `save_state`).
//!
//! # Concurrency
//! All state operations of one plugin (save, load, raw read/write) are
//! serialized by that plugin's async mutex, held from before the plugin is asked
//! for its state until the file is renamed into place; so of two concurrent
//! saves, the one that collected its state later is also the one on disk.
//! Operations on different plugins run in parallel. All file I/O runs on
//! tokio's blocking pool; no synchronous lock is held while it runs or across
//! any `.await`.

mod atomic;
mod default_dir;
mod dirlock;
pub(crate) mod envelope;
mod name;
mod quarantine;
pub(crate) mod read;

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use plugbay_api::{ErrorKind, PluginError};
use semver::Version;
use serde_json::Value;
use tokio::sync::broadcast;

pub use default_dir::default_state_dir;
pub use envelope::{SavedState, MAX_STATE_DEPTH, MAX_STATE_FILE_BYTES};
pub use name::{state_file_name, MAX_STATE_NAME_LEN};

use crate::error::{Error, Result};
use crate::plugin::Plugin;
use atomic::io_error;
use dirlock::DirLock;
use read::ReadOutcome;

/// How many state events a slow subscriber may fall behind before it misses some.
const EVENT_CAPACITY: usize = 256;

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The state was written (durably) to `path`; the file is `bytes` long.
    Saved {
        /// The state file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The plugin returned `Value::Null`: nothing was written, an existing file is kept.
    NothingToSave,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The plugin was handed its saved state.
    Restored {
        /// The plugin version that saved it (may differ from the running one).
        saved_by_version: Version,
        /// When it was saved (RFC 3339).
        saved_at: String,
    },
    /// There is no state file; the plugin was not called.
    NoState,
    /// The state file was corrupt and was moved aside; the plugin was not
    /// called and starts without state.
    Quarantined {
        /// Where the file was.
        path: PathBuf,
        /// Where its bytes are now.
        moved_to: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// Something that happened to a state file that observers should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateEvent {
    /// A corrupt state file was moved aside.
    Quarantined {
        /// The plugin whose file it was.
        plugin: String,
        /// Where the file was.
        path: PathBuf,
        /// Where its bytes are now.
        moved_to: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// Persists plugin state in one directory. `Send + Sync`; share it via `Arc`.
/// Holds the directory's lock until dropped.
pub struct PluginStateManager {
    dir: PathBuf,
    /// Keeps other hosts out of `dir` while this manager lives.
    _lock: DirLock,
    /// One async mutex per plugin name, serializing that plugin's state
    /// operations (see the module docs).
    ///
    /// Guards: the map itself (name -> that plugin's mutex). The `parking_lot`
    /// lock is taken only in [`Self::plugin_lock`] to look up or insert an entry
    /// and clone the `Arc`: never held across `.await`, never during I/O or
    /// plugin code. The per-plugin `tokio::sync::Mutex` *is* held across
    /// `.await` (the plugin's `save_state`/`load_state` and the blocking-pool
    /// I/O): that is exactly what serializes one plugin's operations, and it
    /// blocks nothing but the same plugin's next state operation. Entries are
    /// never removed (one small entry per plugin name ever seen).
    plugin_locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    events: broadcast::Sender<StateEvent>,
    stale_temps_removed: usize,
}

// The manager is shared between tasks (and with the plugin manager) via `Arc`.
const _: fn() = || {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<PluginStateManager>();
};

impl std::fmt::Debug for PluginStateManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginStateManager")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PluginStateManager {
    /// Opens (creating it if needed) the state directory `dir`: takes its lock
    /// ([`Error::StateDirLocked`] naming the holder's pid if another manager,
    /// in any process, has it) and deletes stale temp files. Blocking: from
    /// async code use [`Self::open_async`].
    pub fn open(dir: PathBuf) -> Result<Self> {
        let dir = std::path::absolute(&dir).map_err(|e| io_error(&dir, "resolve path", &e))?;
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, "create directory", &e))?;
        if !dir.is_dir() {
            return Err(Error::StateIo {
                path: dir,
                operation: "open directory".to_owned(),
                reason: "it exists but is not a directory".to_owned(),
            });
        }
        let lock = DirLock::acquire(&dir)?;
        let stale_temps_removed = atomic::remove_stale_temps(&dir)?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Self {
            dir,
            _lock: lock,
            plugin_locks: parking_lot::Mutex::new(HashMap::new()),
            events,
            stale_temps_removed,
        })
    }

    /// [`Self::open`] on the blocking pool.
    pub async fn open_async(dir: PathBuf) -> Result<Self> {
        let path = dir.clone();
        tokio::task::spawn_blocking(move || Self::open(dir))
            .await
            .unwrap_or_else(|e| Err(task_failed(&path, "open", &e)))
    }

    /// The state directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state file of `plugin_name` ([`Error::InvalidStateName`] if the name
    /// cannot have one).
    pub fn state_file(&self, plugin_name: &str) -> Result<PathBuf> {
        Ok(self.dir.join(state_file_name(plugin_name)?))
    }

    /// How many stale temp files [`Self::open`] deleted.
    pub fn stale_temps_removed(&self) -> usize {
        self.stale_temps_removed
    }

    /// Events about state files (e.g. [`StateEvent::Quarantined`]).
    pub fn subscribe(&self) -> broadcast::Receiver<StateEvent> {
        self.events.subscribe()
    }

    /// Asks `plugin` for its state and writes it durably.
    ///
    /// Errors: [`Error::InvalidStateName`], the plugin's own failure or panic
    /// ([`Error::PluginFailed`] / [`Error::PluginPanicked`] for `save_state`, also
    /// for a state too deep or too large to store), [`Error::StateIo`]. On any
    /// error the previous state file is kept.
    pub async fn save_state(&self, plugin: &dyn Plugin) -> Result<SaveOutcome> {
        let info = plugin.info();
        let file_name = state_file_name(&info.name)?;
        let lock = self.plugin_lock(&info.name);
        let _turn = lock.lock().await;
        let state = guarded(&info.name, "save_state", plugin.save_state()).await?;
        if state.is_null() {
            tracing::debug!(plugin = %info.name, "save_state returned null: nothing to save");
            return Ok(SaveOutcome::NothingToSave);
        }
        self.write_locked(&info.name, file_name, &info.version, state)
            .await
    }

    /// Reads `plugin`'s state file and hands its state to the plugin.
    ///
    /// A missing file is [`LoadOutcome::NoState`]; a corrupt one is quarantined
    /// ([`LoadOutcome::Quarantined`]). The plugin's own `load_state` failure is
    /// [`Error::PluginFailed`] (the file is kept).
    pub async fn load_state(&self, plugin: &dyn Plugin) -> Result<LoadOutcome> {
        let name = &plugin.info().name;
        let file_name = state_file_name(name)?;
        let lock = self.plugin_lock(name);
        let _turn = lock.lock().await;
        match self.read_locked(name, file_name).await? {
            ReadOutcome::Missing => Ok(LoadOutcome::NoState),
            ReadOutcome::Corrupt {
                path,
                moved_to,
                reason,
            } => {
                self.report_quarantine(name, &path, &moved_to, &reason);
                Ok(LoadOutcome::Quarantined {
                    path,
                    moved_to,
                    reason,
                })
            }
            ReadOutcome::Found(saved) => {
                let version = saved.plugin_version.to_string();
                if saved.plugin_version != plugin.info().version {
                    tracing::info!(
                        plugin = %name,
                        saved_by = %version,
                        running = %plugin.info().version,
                        "handing state saved by another version to the plugin"
                    );
                }
                guarded(name, "load_state", plugin.load_state(saved.state, &version)).await?;
                Ok(LoadOutcome::Restored {
                    saved_by_version: saved.plugin_version,
                    saved_at: saved.saved_at,
                })
            }
        }
    }

    /// Saves every plugin's state concurrently; results in input order.
    pub async fn save_all_states(
        &self,
        plugins: &[Arc<dyn Plugin>],
    ) -> Vec<(String, Result<SaveOutcome>)> {
        futures::future::join_all(
            plugins
                .iter()
                .map(|p| async move { (p.info().name.clone(), self.save_state(p.as_ref()).await) }),
        )
        .await
    }

    /// Loads every plugin's state concurrently; results in input order.
    pub async fn load_all_states(
        &self,
        plugins: &[Arc<dyn Plugin>],
    ) -> Vec<(String, Result<LoadOutcome>)> {
        futures::future::join_all(
            plugins
                .iter()
                .map(|p| async move { (p.info().name.clone(), self.load_state(p.as_ref()).await) }),
        )
        .await
    }

    /// The raw envelope of `plugin_name`, without involving the plugin.
    /// `Ok(None)` if there is none; a corrupt file is quarantined (with warning
    /// and event) and reported as [`Error::StateCorrupt`].
    pub async fn read(&self, plugin_name: &str) -> Result<Option<SavedState>> {
        let file_name = state_file_name(plugin_name)?;
        let lock = self.plugin_lock(plugin_name);
        let _turn = lock.lock().await;
        match self.read_locked(plugin_name, file_name).await? {
            ReadOutcome::Missing => Ok(None),
            ReadOutcome::Found(saved) => Ok(Some(saved)),
            ReadOutcome::Corrupt {
                path,
                moved_to,
                reason,
            } => {
                self.report_quarantine(plugin_name, &path, &moved_to, &reason);
                Err(Error::StateCorrupt {
                    path,
                    moved_to,
                    reason,
                })
            }
        }
    }

    /// Writes `state` as `plugin_name`'s state, saved by `plugin_version`,
    /// without involving the plugin (`Value::Null` is written too).
    pub async fn write(
        &self,
        plugin_name: &str,
        plugin_version: &Version,
        state: Value,
    ) -> Result<()> {
        let file_name = state_file_name(plugin_name)?;
        let lock = self.plugin_lock(plugin_name);
        let _turn = lock.lock().await;
        self.write_locked(plugin_name, file_name, plugin_version, state)
            .await
            .map(|_| ())
    }

    /// This plugin's state mutex (created on first use).
    fn plugin_lock(&self, plugin_name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.plugin_locks.lock();
        Arc::clone(locks.entry(plugin_name.to_owned()).or_default())
    }

    /// Encodes and writes on the blocking pool. Caller holds the plugin's mutex.
    async fn write_locked(
        &self,
        plugin_name: &str,
        file_name: String,
        version: &Version,
        state: Value,
    ) -> Result<SaveOutcome> {
        let dir = self.dir.clone();
        let path = dir.join(&file_name);
        let name = plugin_name.to_owned();
        let version = version.clone();
        let task_path = path.clone();
        tokio::task::spawn_blocking(move || {
            let bytes = envelope::encode(&name, &version, &state).map_err(|reason| {
                Error::PluginFailed {
                    plugin: name.clone(),
                    operation: "save_state".to_owned(),
                    kind: ErrorKind::Host,
                    reason: format!("{reason}; nothing was written, the previous state is kept"),
                }
            })?;
            atomic::write_atomic(&dir, &file_name, &bytes)?;
            Ok(SaveOutcome::Saved {
                path,
                bytes: bytes.len() as u64,
            })
        })
        .await
        .unwrap_or_else(|e| Err(task_failed(&task_path, "write", &e)))
    }

    /// Reads (quarantining if corrupt) on the blocking pool. Caller holds the
    /// plugin's mutex.
    async fn read_locked(&self, plugin_name: &str, file_name: String) -> Result<ReadOutcome> {
        let dir = self.dir.clone();
        let name = plugin_name.to_owned();
        let task_path = dir.join(&file_name);
        tokio::task::spawn_blocking(move || read::read_or_quarantine(&dir, &file_name, &name))
            .await
            .unwrap_or_else(|e| Err(task_failed(&task_path, "read", &e)))
    }

    fn report_quarantine(&self, plugin: &str, path: &Path, moved_to: &Path, reason: &str) {
        tracing::warn!(
            plugin,
            path = %path.display(),
            moved_to = %moved_to.display(),
            reason,
            "corrupt state file moved aside; the plugin starts without state"
        );
        // No subscriber is fine: the warning above is the record.
        let _ = self.events.send(StateEvent::Quarantined {
            plugin: plugin.to_owned(),
            path: path.to_path_buf(),
            moved_to: moved_to.to_path_buf(),
            reason: reason.to_owned(),
        });
    }
}

/// Runs a plugin's state method, turning its error or panic into a host error.
async fn guarded<T>(
    plugin: &str,
    operation: &str,
    call: impl Future<Output = Result<T, PluginError>>,
) -> Result<T> {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if e.kind == ErrorKind::Panicked => Err(Error::PluginPanicked {
            plugin: plugin.to_owned(),
            operation: operation.to_owned(),
            message: e.message().to_owned(),
        }),
        Ok(Err(e)) => Err(Error::PluginFailed {
            plugin: plugin.to_owned(),
            operation: operation.to_owned(),
            kind: e.kind,
            reason: e.to_string(),
        }),
        Err(panic) => Err(Error::PluginPanicked {
            plugin: plugin.to_owned(),
            operation: operation.to_owned(),
            message: panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_owned()),
        }),
    }
}

fn task_failed(path: &Path, operation: &str, err: &tokio::task::JoinError) -> Error {
    Error::StateIo {
        path: path.to_path_buf(),
        operation: operation.to_owned(),
        reason: format!("the blocking i/o task failed: {err}"),
    }
}
