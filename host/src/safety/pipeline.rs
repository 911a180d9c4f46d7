//! The admission pipeline: discover → permission/size/symlink checks → shadow
//! copy + hash → integrity → cache or probe → open the shadow in the host.
//!
//! Cold path per file: one read of the original that hashes and writes the
//! shadow copy at once (with [`SafetyConfig::shadow_in_memory`] on Linux, a
//! sealed memory file whose disk copy is written in the background for later
//! starts), then the probe child opens the
//! *copy*; meanwhile the
//! host thread goes on with the next files and opens copies as verdicts arrive,
//! skipping the layout check the probe already ran on those exact bytes.
//! Warm path per file: `stat`, a cache hit (no read, no probe), and an open of
//! the existing copy with the layout check skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cache::{now_ns, CacheEntry, CachedVerdict, FileIdentity, Lookup, ScanCache};
use super::config::SafetyConfig;
use super::integrity::Allowlist;
use super::opener::Opener;
use super::permissions::{self, Candidate};
use super::probe::{ProbeOutcome, ProbeWorker};
use super::report::{Admission, ClosedLibrary, FileReport, PermissionCheck, Progress, ScanReport};
use super::shadow::{hash_file, Hashes, ShadowDir};
use super::verdict::{MetadataRecord, Verdict};
use crate::discovery;
use crate::error::{Error, Result};
use crate::loader::{self, LayoutCheck, LayoutVerified, LoadedLibrary};

/// Scans plugin directories without opening any library in this process: every
/// file gets a status and reason (probe or cache decides). For `list`/`check`.
pub fn scan_dirs(dirs: &[PathBuf], config: &SafetyConfig) -> Result<ScanReport> {
    Ok(Pipeline::new(config, false)?.run(dirs)?.report)
}

/// [`scan_dirs`], calling `progress` on the scanning thread after each
/// directory is listed and each time a file gets its verdict (for a progress
/// line; keep it cheap, it runs between files).
pub fn scan_dirs_with_progress(
    dirs: &[PathBuf],
    config: &SafetyConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<ScanReport> {
    let mut pipeline = Pipeline::new(config, false)?;
    pipeline.progress = Some(progress);
    Ok(pipeline.run(dirs)?.report)
}

/// Scans plugin directories and opens every compatible library in this process,
/// from its shadow copy. Blocking; from async code use [`admit_dirs_async`].
///
/// Errors only for configuration problems (unusable shadow dir, unreadable
/// allowlist, probe binary missing or built against another interface);
/// everything about individual files is in the report.
pub fn admit_dirs(dirs: &[PathBuf], config: &SafetyConfig) -> Result<Admission> {
    Pipeline::new(config, true)?.run(dirs)
}

/// [`admit_dirs`] on a dedicated thread at background CPU priority, so the
/// runtime's workers stay responsive meanwhile.
pub async fn admit_dirs_async(dirs: Vec<PathBuf>, config: SafetyConfig) -> Result<Admission> {
    admit_dirs_observed(dirs, config, None, None).await.0
}

/// Says, by plugin name, which compatible libraries admission must leave
/// unopened in this process (they run in a runner process).
pub(crate) type KeepClosed = Box<dyn Fn(&str) -> bool + Send>;

/// A progress observer that may run on the admission thread.
pub(crate) type ProgressObserver = Box<dyn FnMut(Progress) + Send>;

/// [`admit_dirs_async`], calling `progress` (if any) on the admission thread
/// after each directory is listed and each time a file gets its verdict; hands
/// the observer back for the next admission.
pub(crate) async fn admit_dirs_observed(
    dirs: Vec<PathBuf>,
    config: SafetyConfig,
    mut progress: Option<ProgressObserver>,
    keep_closed: Option<KeepClosed>,
) -> (Result<Admission>, Option<ProgressObserver>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Both threads start at once (starting a thread takes a few tenths of a
    // millisecond here); the opener computes the interface build id meanwhile.
    let opener = Opener::started();
    let spawned = std::thread::Builder::new()
        .name("plugin-admission".into())
        .spawn(move || {
            crate::platform::lower_current_thread();
            let admission = Pipeline::new(&config, true).and_then(|mut pipeline| {
                pipeline.opener = opener;
                if let Some(progress) = progress.as_mut() {
                    pipeline.progress = Some(progress.as_mut());
                }
                pipeline.keep_closed = keep_closed;
                pipeline.run(&dirs)
            });
            let _ = tx.send((admission, progress));
        });
    if let Err(e) = spawned {
        let error = Error::Config(format!("cannot start the admission thread: {e}"));
        return (Err(error), None);
    }
    rx.await.unwrap_or_else(|_| {
        let error = Error::Config("the admission thread failed".into());
        (Err(error), None)
    })
}

/// [`admit_dirs_async`] for one library file (a reload's new file), its
/// directory checked like a plugin directory; `keep_closed` libraries stay unopened.
pub(crate) async fn admit_file_async(
    file: PathBuf,
    config: SafetyConfig,
    keep_closed: Option<KeepClosed>,
) -> Result<Admission> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("plugin-admission".into())
        .spawn(move || {
            crate::platform::lower_current_thread();
            let admission = Pipeline::new(&config, true).and_then(|mut pipeline| {
                pipeline.keep_closed = keep_closed;
                pipeline.run_file(&file)
            });
            let _ = tx.send(admission);
        });
    spawned.map_err(|e| Error::Config(format!("cannot start the admission thread: {e}")))?;
    rx.await
        .unwrap_or_else(|_| Err(Error::Config("the admission thread failed".into())))
}

/// A file whose bytes are in the shadow dir and whose verdict is not known yet.
struct Copied {
    candidate: Candidate,
    identity: FileIdentity,
    hashes: Hashes,
    shadow: PathBuf,
    /// The load profile's `probe` span: open from submission until the verdict.
    probe: tracing::Span,
}

struct Pipeline<'a> {
    config: &'a SafetyConfig,
    load: bool,
    shadow: ShadowDir,
    allowlist: Option<Allowlist>,
    cache: ScanCache,
    worker: Option<ProbeWorker>,
    waiting: HashMap<usize, Copied>,
    opener: Opener,
    /// Which compatible libraries stay unopened here (by plugin name).
    keep_closed: Option<KeepClosed>,
    /// Libraries opened so far, with their report index (put in file order at the end).
    loaded: Vec<(usize, LoadedLibrary)>,
    unavailable: Option<Error>,
    admission: Admission,
    /// The progress observer, if any ([`scan_dirs_with_progress`]).
    progress: Option<&'a mut dyn FnMut(Progress)>,
    /// Files discovered so far (the progress total).
    discovered: usize,
}

impl<'a> Pipeline<'a> {
    fn new(config: &'a SafetyConfig, load: bool) -> Result<Self> {
        // Disk copies an earlier admission of this process queued are found.
        #[cfg(target_os = "linux")]
        super::memfd::flush_shadow_copies();
        Ok(Self {
            config,
            load,
            shadow: ShadowDir::open(&config.shadow_dir)?,
            allowlist: config
                .allowlist
                .as_deref()
                .map(Allowlist::load)
                .transpose()?,
            cache: ScanCache::load(config.cache_path.as_deref()),
            worker: None,
            waiting: HashMap::new(),
            opener: Opener::default(),
            keep_closed: None,
            loaded: Vec::new(),
            unavailable: None,
            admission: Admission::default(),
            progress: None,
            discovered: 0,
        })
    }

    /// Tells the progress observer (if any) how many files have their verdict.
    fn report_progress(&mut self) {
        if let Some(progress) = self.progress.as_mut() {
            let files = self.admission.report.files.len();
            progress(Progress {
                done: files - self.waiting.len(),
                total: self.discovered.max(files),
            });
        }
    }

    fn run(mut self, dirs: &[PathBuf]) -> Result<Admission> {
        for dir in dirs {
            let canonical_dir = match permissions::check_dir(dir, self.config) {
                Ok(c) => c,
                Err(e) => {
                    self.push_failed(dir, e);
                    continue;
                }
            };
            let found = match discovery::discover(dir) {
                Ok(found) => found,
                Err(e) => {
                    self.push_failed(dir, e);
                    continue;
                }
            };
            self.discovered = self.admission.report.files.len() + found.len();
            self.report_progress();
            for path in found {
                let index = self.admission.report.files.len();
                self.admission.report.files.push(FileReport::new(&path));
                if let Err(e) = self.admit_one(index, &path, &canonical_dir) {
                    self.admission.report.files[index].fail(e);
                }
                // Open whatever the probe finished meanwhile.
                while let Some((i, outcome, took)) =
                    self.worker.as_ref().and_then(ProbeWorker::try_next_timed)
                {
                    self.on_probed(i, outcome, took);
                }
                self.report_progress();
            }
        }
        self.finish()
    }

    /// Admits the one library `file` (its directory checked like a plugin dir).
    fn run_file(mut self, file: &Path) -> Result<Admission> {
        let dir = file.parent().unwrap_or(Path::new("."));
        match permissions::check_dir(dir, self.config) {
            Err(e) => self.push_failed(file, e),
            Ok(canonical_dir) => {
                self.admission.report.files.push(FileReport::new(file));
                if let Err(e) = self.admit_one(0, file, &canonical_dir) {
                    self.admission.report.files[0].fail(e);
                }
            }
        }
        self.finish()
    }

    /// Waits for the probe and the opener, then reports.
    fn finish(mut self) -> Result<Admission> {
        if let Some(mut worker) = self.worker.take() {
            while let Some((i, outcome, took)) = worker.recv_timed() {
                self.on_probed(i, outcome, took);
                self.report_progress();
            }
            let (rest, started) = worker.finish();
            self.admission.report.probe_processes_started = started;
            for (i, outcome) in rest {
                self.on_probed(i, outcome, Duration::ZERO);
            }
        }
        for (i, opened) in std::mem::take(&mut self.opener).finish() {
            match opened {
                Ok(lib) => self.loaded.push((i, lib)),
                Err(e) => self.admission.report.files[i].fail(e),
            }
        }
        self.loaded.sort_by_key(|(i, _)| *i);
        self.admission.libraries = std::mem::take(&mut self.loaded)
            .into_iter()
            .map(|(_, lib)| lib)
            .collect();
        if let Err(e) = self.cache.save() {
            self.admission.report.cache_error = Some(format!(
                "cannot save the scan cache {}: {e}",
                self.config
                    .cache_path
                    .as_deref()
                    .unwrap_or(Path::new("?"))
                    .display()
            ));
        }
        match self.unavailable {
            Some(e) => Err(e),
            None => Ok(self.admission),
        }
    }

    fn push_failed(&mut self, path: &Path, error: Error) {
        let mut report = FileReport::new(path);
        report.fail(error);
        self.admission.report.files.push(report);
    }

    /// Checks, copies and decides (or hands to the probe) one file.
    fn admit_one(&mut self, index: usize, path: &Path, canonical_dir: &Path) -> Result<()> {
        let candidate = tracing::debug_span!("permission_check", file = %path.display())
            .in_scope(|| permissions::check_file(path, canonical_dir, self.config))?;
        // `check_file` gives a non-symlink the canonical path dir + name (a
        // symlink resolves elsewhere: a link to itself is an error), so this
        // costs no extra `lstat`.
        let symlink = path
            .file_name()
            .is_none_or(|name| candidate.canonical != canonical_dir.join(name));
        self.admission.report.files[index].permissions = Some(PermissionCheck::of(
            &candidate.metadata,
            self.config.strict_permissions && permissions::PERMISSIONS_ENFORCED,
            symlink,
        ));
        if let Some(warning) = permissions::unenforced_warning(
            self.config.strict_permissions,
            permissions::PERMISSIONS_ENFORCED,
        ) {
            self.admission.report.files[index]
                .warnings
                .push(warning.to_owned());
        }
        let identity = FileIdentity::new(candidate.canonical.clone(), &candidate.metadata)
            .map_err(|e| Error::Refused {
                path: path.to_path_buf(),
                reason: format!("cannot stat it: {e}"),
            })?;
        let cached = match self.cache.lookup(&identity, loader::interface_build_id()) {
            Lookup::Clean(e) => Some((e.clone(), false)),
            Lookup::Racy(e) => Some((e.clone(), true)),
            Lookup::Miss => None,
        };
        // Find (or make) the shadow copy and the content id; SHA-256 only when
        // an allowlist needs it.
        let want_sha256 = self.allowlist.is_some();
        let unreadable = |e: std::io::Error| Error::Refused {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        };
        let (hashes, shadow, entry) = match cached {
            Some((entry, racy)) => match self.shadow.existing(&entry.content_id, identity.size) {
                Some(shadow) if !racy => (
                    Hashes {
                        content_id: entry.content_id.clone(),
                        sha256: entry.sha256.clone(),
                    },
                    shadow,
                    Some(entry),
                ),
                Some(shadow) => {
                    let hashes = tracing::debug_span!("hash", file = %path.display())
                        .in_scope(|| hash_file(&candidate.canonical, want_sha256))
                        .map_err(unreadable)?;
                    if hashes.content_id == entry.content_id {
                        self.cache.confirm(&identity.canonical_path);
                        (hashes, shadow, Some(entry))
                    } else {
                        let (hashes, shadow) = tracing::debug_span!("copy", file = %path.display())
                            .in_scope(|| {
                                self.copy_in(&candidate.canonical, &identity, want_sha256)
                            })?;
                        (hashes, shadow, None)
                    }
                }
                None => {
                    let (hashes, shadow) = tracing::debug_span!("copy", file = %path.display())
                        .in_scope(|| self.copy_in(&candidate.canonical, &identity, want_sha256))?;
                    let same = hashes.content_id == entry.content_id;
                    if same && racy {
                        self.cache.confirm(&identity.canonical_path);
                    }
                    (hashes, shadow, same.then_some(entry))
                }
            },
            None => {
                let (hashes, shadow) = tracing::debug_span!("copy", file = %path.display())
                    .in_scope(|| self.copy_in(&candidate.canonical, &identity, want_sha256))?;
                (hashes, shadow, None)
            }
        };
        let mut hashes = hashes;
        if want_sha256 && hashes.sha256.is_none() {
            // A cache hit recorded without an allowlist: hash the private copy,
            // which holds exactly the bytes that will be mapped, and remember it.
            let sha = tracing::debug_span!("hash", file = %path.display())
                .in_scope(|| hash_file(&shadow, true))
                .map_err(unreadable)?
                .sha256
                .unwrap_or_default();
            self.cache.set_sha256(&identity.canonical_path, &sha);
            hashes.sha256 = Some(sha);
        }
        {
            let report = &mut self.admission.report.files[index];
            report.content_id = Some(hashes.content_id.clone());
            report.sha256.clone_from(&hashes.sha256);
            report.shadow = Some(shadow.clone());
        }
        if let Some(sha256) = &hashes.sha256 {
            self.check_integrity(index, path, sha256)?;
        }
        let copied = Copied {
            candidate,
            identity,
            hashes,
            shadow,
            probe: tracing::Span::none(),
        };
        if let Some(entry) = entry {
            self.admission.report.cache_hits += 1;
            let report = &mut self.admission.report.files[index];
            report.from_cache = true;
            report.verdict_at_ms = Some(ns_to_ms(entry.checked_at_ns));
            report.probe_us = entry.probe_us;
            self.conclude(index, &copied, entry.verdict, false);
            return Ok(());
        }
        if self.config.probe {
            if self.worker.is_none() {
                let worker = self.config.probe_command().and_then(|(program, args)| {
                    ProbeWorker::start(program, args, self.config.probe_timeout)
                });
                let worker = worker.inspect_err(|e| {
                    self.unavailable.get_or_insert(e.clone());
                })?;
                self.worker = Some(worker);
            }
            self.admission.report.probed += 1;
            let copied = Copied {
                probe: tracing::debug_span!(parent: None, "probe", file = %path.display()),
                ..copied
            };
            if let Some(worker) = &self.worker {
                worker.submit(index, copied.shadow.clone());
            }
            self.waiting.insert(index, copied);
        } else {
            // Probe off (documented risk): check in this process, with the full
            // layout check, on the shadow copy.
            let verdict = match loader::check_library(path, &copied.shadow, LayoutCheck::Verify) {
                Ok(lib) => {
                    let plugin = MetadataRecord::from_info(&lib.info);
                    if self.load {
                        self.loaded.push((index, lib));
                    }
                    CachedVerdict::Compatible { plugin }
                }
                Err(rejection) => CachedVerdict::Rejected { rejection },
            };
            self.remember(&copied, &verdict, None);
            self.admission.report.files[index].verdict_at_ms = Some(ns_to_ms(now_ns()));
            self.conclude(index, &copied, verdict, true);
        }
        Ok(())
    }

    /// Copies `original` while hashing it: into a sealed memory file where
    /// possible (Linux, [`SafetyConfig::shadow_in_memory`]; its disk copy for later
    /// starts is written in the background, not waited for), else into the shadow
    /// directory.
    /// Returns the hashes and the path the probe and the host open.
    fn copy_in(
        &mut self,
        original: &Path,
        identity: &FileIdentity,
        want_sha256: bool,
    ) -> Result<(Hashes, PathBuf)> {
        #[cfg(target_os = "linux")]
        if self.config.shadow_in_memory() {
            if let Some(sealed) = super::memfd::seal_copy(original, identity, want_sha256)? {
                let id = &sealed.hashes.content_id;
                if self.shadow.existing(id, identity.size).is_none() {
                    super::memfd::persist_later(&sealed.path, &self.shadow, id);
                }
                return Ok((sealed.hashes, sealed.path));
            }
        }
        self.shadow.copy_in(original, identity, want_sha256)
    }

    fn check_integrity(&mut self, index: usize, path: &Path, sha256: &str) -> Result<()> {
        let Some(list) = &self.allowlist else {
            return Ok(());
        };
        match list.check(path, sha256) {
            Ok(()) => Ok(()),
            Err(e) if self.config.enforce_allowlist => Err(e),
            Err(e) => {
                self.admission.report.files[index]
                    .warnings
                    .push(e.to_string());
                Ok(())
            }
        }
    }

    /// A probe outcome arrived for file `index`; the probe worked `took` on it.
    fn on_probed(&mut self, index: usize, outcome: ProbeOutcome, took: Duration) {
        let Some(mut copied) = self.waiting.remove(&index) else {
            return;
        };
        drop(std::mem::replace(&mut copied.probe, tracing::Span::none()));
        let verdict = match outcome {
            ProbeOutcome::Verdict(Verdict::Compatible { plugin }) => {
                CachedVerdict::Compatible { plugin }
            }
            ProbeOutcome::Verdict(Verdict::Rejected { rejection }) => CachedVerdict::Rejected {
                rejection: rejection.readdressed(&copied.shadow, &copied.candidate.path),
            },
            ProbeOutcome::Quarantined { reason } => CachedVerdict::Quarantined { reason },
            ProbeOutcome::Unavailable(e) => {
                self.admission.report.files[index].fail(e.clone());
                self.unavailable.get_or_insert(e);
                return;
            }
        };
        let probe_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.remember(&copied, &verdict, Some(probe_us));
        let report = &mut self.admission.report.files[index];
        report.verdict_at_ms = Some(ns_to_ms(now_ns()));
        report.probe_us = Some(probe_us);
        self.conclude(index, &copied, verdict, false);
    }

    fn remember(&mut self, copied: &Copied, verdict: &CachedVerdict, probe_us: Option<u64>) {
        self.cache.insert(CacheEntry {
            identity: copied.identity.clone(),
            content_id: copied.hashes.content_id.clone(),
            sha256: copied.hashes.sha256.clone(),
            interface_build_id: loader::interface_build_id().to_owned(),
            verdict: verdict.clone(),
            checked_at_ns: now_ns(),
            probe_us,
        });
    }

    /// Records the verdict for file `index` and, when admitting, opens a
    /// compatible library's shadow copy (unless `already_loaded`).
    fn conclude(
        &mut self,
        index: usize,
        copied: &Copied,
        verdict: CachedVerdict,
        already_loaded: bool,
    ) {
        let path = copied.candidate.path.clone();
        let report = &mut self.admission.report.files[index];
        match verdict {
            CachedVerdict::Compatible { plugin } => {
                // The one conversion of the wire/cache form into the host's metadata.
                let info = match plugin.to_info(&path) {
                    Ok(info) => info,
                    Err(reason) => {
                        report.fail(Error::InvalidMetadata { path, reason });
                        return;
                    }
                };
                let closed = self.keep_closed.as_ref().is_some_and(|f| f(&info.name));
                report.succeed(info.clone());
                if self.load && !already_loaded && closed {
                    // Runs in a runner process: its constructors never run here.
                    self.admission.kept_closed.push(ClosedLibrary {
                        path,
                        shadow: copied.shadow.clone(),
                        info,
                    });
                } else if self.load && !already_loaded {
                    // SAFETY: `copied.shadow` is either a sealed memory file
                    // (`memfd::seal_copy`: written from exactly the bytes it
                    // hashed, then sealed against writes, growing and shrinking,
                    // its descriptor never closed so its `/proc` path names it
                    // alone) or the copy named by its content id (BLAKE3,
                    // `copied.hashes.content_id`) in our private 0700
                    // directory, written by `ShadowDir::copy_in` from exactly the
                    // bytes it hashed and renamed into place only
                    // when complete (read-only, checked again for owner/size before
                    // reuse). The `Compatible` verdict was produced by abi_stable's
                    // full layout check on those bytes — in the probe child, which
                    // proved in its handshake that its interface build id equals
                    // ours, or in this process — and a cached verdict is only used
                    // when its entry's interface build id equals ours
                    // (`ScanCache::lookup`) and its content hash names this copy.
                    // Same bytes + same expected layout = same check result, so
                    // repeating the check could only pass again.
                    let proof = unsafe { LayoutVerified::assume() };
                    self.opener
                        .open(index, path, copied.shadow.clone(), proof, info);
                }
            }
            CachedVerdict::Rejected { rejection } => report.fail(rejection.into_error(&path)),
            CachedVerdict::Quarantined { reason } => {
                report.fail(Error::Quarantined { path, reason })
            }
        }
    }
}

/// Nanoseconds since the epoch to whole milliseconds (0 before the epoch).
fn ns_to_ms(ns: i128) -> u64 {
    u64::try_from(ns / 1_000_000).unwrap_or(0)
}
