//! `plugin-host run --watch`: follow the plugin directories while the host runs.
//!
//! The `notify` crate reports file-system events (inotify, FSEvents,
//! ReadDirectoryChangesW); an event only says "look at this file again". What
//! happens is decided from the directory itself: each directory is listed, and
//! [`settle::Settler`] reports a file once its size and modification time have
//! stayed the same for the settle interval. Then ([`apply`]) a changed library is
//! reloaded, a new one admitted and started, a removed one stopped and forgotten
//! (refused while running dependents need it, unless `--cascade`). Every status
//! change is one line: on stdout when it happened, on stderr (`plugin-host: `)
//! when something was refused or failed.
//!
//! A watched directory that disappears is reported once; its plugins keep
//! running (they run from their private copies) and the directory is looked for
//! every [`MISSING_POLL`] until it is back, then compared with what was there
//! before it went away.
//!
//! The starting point is the listing taken when the watch starts, right after
//! the initial load: a file replaced between its admission and that listing is
//! not noticed until it changes again.

mod apply;
mod settle;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use plugbay_host::PluginManager;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use settle::{Fingerprint, Settler, Snapshot};

/// How long a library file must stay unchanged (same size, same modification
/// time, no notification about it) before it is loaded, reloaded or unloaded.
///
/// Half a second: longer than the pauses between the steps of a linker writing
/// its output or a copy tool writing chunks (microseconds to tens of
/// milliseconds on a local disk), short enough that a reload still lands well
/// within two seconds of the last write. A writer pausing longer than this
/// (a stalled network copy) gets its half-written file refused by the probe; the
/// file is tried again once it changes again. `--settle-ms` sets it. Measured
/// (debug build, 2 cores): the `reloaded` line 0.55–0.61 s after a new build was
/// renamed over the old file, of which 0.5 s is this wait.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(500);

/// How often a watched directory that disappeared is looked for.
pub const MISSING_POLL: Duration = Duration::from_millis(500);

/// Options of `run --watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Stop the dependents of a removed (or incompatibly reloaded) plugin with it,
    /// instead of refusing.
    pub cascade: bool,
    /// See [`DEFAULT_SETTLE`].
    pub settle: Duration,
}

/// A watch running on its own task, beside `run`'s wait for a stop signal and
/// its checkpoints (which take plugins' lifecycle locks, as reloads do: neither
/// may be paused while the other waits for one).
pub struct Watching {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Watching {
    /// Starts watching `dirs` for `manager` (see [`watch`]).
    pub fn start(manager: PluginManager, dirs: Vec<PathBuf>, options: WatchOptions) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                // A dropped sender stops the watch too.
                let _ = stopped.await;
            };
            watch(&manager, &dirs, &options, stopped).await;
        });
        Self { stop, task }
    }

    /// Stops the watch, letting a change being applied finish first.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            status_problem(&format!("the watch ended abnormally: {e}"));
        }
    }
}

/// One watched directory.
struct Dir {
    /// As given, made absolute (discovery uses the same form, so paths compare
    /// equal with the plugins' sources).
    path: PathBuf,
    /// Its canonical form when it was last watched: some backends (FSEvents)
    /// report paths with symlinks resolved (`/private/var/...` for `/var/...`).
    canonical: Option<PathBuf>,
    settler: Settler,
    /// Whether it could be listed last time.
    present: bool,
    /// Whether the watcher watches it (not recursively: discovery is not
    /// recursive either). When not, it is listed every [`MISSING_POLL`].
    watching: bool,
    /// Not being able to watch it (while it is there) was reported.
    watch_failed: bool,
    /// An event arrived for it since it was last listed.
    dirty: bool,
    /// An event concerned the directory itself (deleted, moved): watch it anew.
    rewatch: bool,
}

/// Watches `dirs` for library changes and applies them to `manager` until `stop`
/// completes. If no watcher can be created, says so and waits for `stop`.
pub async fn watch(
    manager: &PluginManager,
    dirs: &[PathBuf],
    options: &WatchOptions,
    stop: impl Future<Output = ()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = match notify::recommended_watcher(move |event| {
        // The receiver is gone only when the host is stopping.
        let _ = tx.send(event);
    }) {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "plugin-host: cannot watch the plugin directories ({e}); running without --watch"
            );
            stop.await;
            return;
        }
    };
    let mut applier = apply::Applier::new(manager, options.cascade);
    let mut watched = Vec::new();
    for dir in dirs {
        let path = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        // What is there now is what the host loaded (or refused) at startup.
        let (present, snapshot) = match scan(&path).await {
            Ok(snapshot) => (true, snapshot),
            Err(e) => {
                status_problem(&format!(
                    "{} cannot be read ({e}); watching for it to appear",
                    path.display()
                ));
                (false, Snapshot::new())
            }
        };
        let mut dir = Dir {
            path,
            canonical: None,
            settler: Settler::new(options.settle, snapshot),
            present,
            watching: false,
            watch_failed: false,
            dirty: false,
            rewatch: false,
        };
        if present {
            refresh(&mut dir, &mut watcher, &mut applier).await;
        }
        watched.push(dir);
    }
    println!(
        "watch: watching {} for library changes (settle {} ms{})",
        watched
            .iter()
            .map(|d| d.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        options.settle.as_millis(),
        if options.cascade { ", --cascade" } else { "" }
    );
    tokio::pin!(stop);
    loop {
        let wake = next_wake(&watched);
        tokio::select! {
            biased;
            () = &mut stop => break,
            Some(event) = rx.recv() => {
                note(&mut watched, event);
                while let Ok(event) = rx.try_recv() {
                    note(&mut watched, event);
                }
            }
            () = sleep_until(wake) => {}
        }
        let now = std::time::Instant::now();
        for dir in &mut watched {
            let due = dir.settler.next_deadline().is_some_and(|d| d <= now);
            if dir.dirty || due || !dir.watching {
                dir.dirty = false;
                refresh(dir, &mut watcher, &mut applier).await;
            }
        }
    }
}

/// When the loop must look again without an event: the earliest settle deadline,
/// or the next look at a directory that is missing or cannot be watched.
fn next_wake(dirs: &[Dir]) -> Option<Instant> {
    let settle = dirs
        .iter()
        .filter_map(|d| d.settler.next_deadline())
        .min()
        .map(Instant::from_std);
    let unwatched = dirs
        .iter()
        .any(|d| !d.watching)
        .then(|| Instant::now() + MISSING_POLL);
    settle.into_iter().chain(unwatched).min()
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Records one notification: which directory must be listed again, which file
/// was touched. Reads (admission reads the files) are ignored.
fn note(dirs: &mut [Dir], event: notify::Result<notify::Event>) {
    let now = std::time::Instant::now();
    let event = match event {
        Ok(event) if !event.need_rescan() => event,
        Ok(_) => {
            // Events were lost (the kernel queue overflowed): list everything.
            dirs.iter_mut().for_each(|d| d.dirty = true);
            return;
        }
        Err(e) => {
            status_problem(&format!(
                "the file watcher reported an error ({e}); listing the directories again"
            ));
            dirs.iter_mut().for_each(|d| d.dirty = true);
            return;
        }
    };
    if let EventKind::Access(kind) = event.kind {
        if kind != AccessKind::Close(AccessMode::Write) {
            return;
        }
    }
    for path in &event.paths {
        for dir in dirs.iter_mut() {
            let is_dir = |p: &Path| p == dir.path || Some(p) == dir.canonical.as_deref();
            if is_dir(path) {
                dir.rewatch = true;
                dir.dirty = true;
            } else if path.parent().is_some_and(is_dir) && is_library(path) {
                // Under the directory's own spelling, which the listing uses.
                let file = dir.path.join(path.file_name().unwrap_or_default());
                dir.settler.touch(&file, now);
                dir.dirty = true;
            }
        }
    }
}

/// Lists `dir` again and applies what settled; notices it disappearing and
/// coming back, and watches it (again) whenever it is there.
async fn refresh(dir: &mut Dir, watcher: &mut impl Watcher, applier: &mut apply::Applier<'_>) {
    if std::mem::take(&mut dir.rewatch) && dir.watching {
        // The directory itself was deleted or moved: the old watch is gone or
        // follows it elsewhere. The path is watched again below if it is there.
        let _ = watcher.unwatch(&dir.path);
        dir.watching = false;
    }
    match scan(&dir.path).await {
        Ok(snapshot) => {
            if !dir.watching {
                match watcher.watch(&dir.path, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        dir.watching = true;
                        dir.canonical = std::fs::canonicalize(&dir.path).ok();
                    }
                    Err(e) if !dir.watch_failed => {
                        dir.watch_failed = true;
                        status_problem(&format!(
                            "cannot watch {} ({e}); looking at it every {} ms instead",
                            dir.path.display(),
                            MISSING_POLL.as_millis()
                        ));
                    }
                    Err(_) => {}
                }
            }
            if !dir.present {
                dir.present = true;
                println!("watch: {} is there; watching it", dir.path.display());
            }
            let changes = dir.settler.observe(&snapshot, std::time::Instant::now());
            if !changes.is_empty() {
                applier.apply(&dir.path, changes).await;
            }
        }
        Err(e) => {
            dir.settler.forget_pending();
            if dir.watching {
                let _ = watcher.unwatch(&dir.path);
                dir.watching = false;
            }
            if dir.present {
                dir.present = false;
                status_problem(&format!(
                    "{} disappeared ({e}); its plugins keep running; watching for it to come back",
                    dir.path.display()
                ));
            }
        }
    }
}

/// Whether `path` has the platform's library extension (the files discovery lists).
fn is_library(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
}

/// The library files of `dir` with their fingerprints (off the async workers).
async fn scan(dir: &Path) -> std::io::Result<Snapshot> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || scan_blocking(&dir))
        .await
        .map_err(std::io::Error::other)?
}

fn scan_blocking(dir: &Path) -> std::io::Result<Snapshot> {
    let mut snapshot = Snapshot::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !is_library(&path) {
            continue;
        }
        // Not following symlinks: a symlink's own change is what is seen. A file
        // gone between the listing and this look is simply not there.
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            snapshot.insert(path, Fingerprint::of(&meta));
        }
    }
    Ok(snapshot)
}

/// A status change that is a refusal or failure: one line on stderr.
fn status_problem(line: &str) {
    eprintln!("plugin-host: watch: {line}");
}
