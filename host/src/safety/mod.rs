//! Admitting plugin files safely: a host no broken or hostile library can kill.
//!
//! `dlopen` runs a library's constructors before any check can look at it, and
//! a truncated or overwritten library kills the process inside the dynamic
//! loader. So before the host opens a file it has not seen, [`pipeline`]:
//!
//! 1. refuses unsafe files up front ([`permissions`]: group/other-writable or
//!    foreign-owned files and dirs, symlinks leaving the plugin dir, non-regular,
//!    empty or oversized files);
//! 2. copies the file into a private directory while hashing it ([`shadow`]),
//!    so the checked bytes are the loaded bytes and the original may change;
//! 3. checks the hash against an optional allowlist ([`integrity`]);
//! 4. asks the scan cache ([`cache`]) whether these exact bytes were already
//!    checked by this exact interface build, else has a separate probe process
//!    open the copy ([`probe`], [`probe_child`], over [`protocol`]); a probe that
//!    dies, hangs or sends garbage quarantines the file; what it found is a
//!    [`verdict::Verdict`];
//! 5. opens compatible copies in the host ([`crate::loader`]), on a thread of
//!    their own ([`opener`]) so opening overlaps copying, hashing and probing.
//!
//! Entry points: [`scan_dirs`] (report only; nothing is opened in the host),
//! [`admit_dirs`] / [`admit_dirs_async`] (report + loaded libraries) and
//! [`integrity::write_lockfile`]. Configure with [`SafetyConfig`].

pub mod cache;
pub mod config;
pub mod integrity;
#[cfg(target_os = "linux")]
pub(crate) mod memfd;
mod opener;
pub mod permissions;
pub mod pipeline;
pub mod probe;
pub mod probe_child;
pub mod protocol;
pub mod report;
pub mod shadow;
pub mod verdict;

pub use config::{default_work_dir, SafetyConfig, SafetyConfigBuilder};
pub use integrity::write_lockfile;
pub use pipeline::{admit_dirs, admit_dirs_async, scan_dirs, scan_dirs_with_progress};
pub(crate) use pipeline::{admit_dirs_observed, KeepClosed, ProgressObserver};
pub(crate) use report::ClosedLibrary;
pub use report::{Admission, FileReport, FileStatus, PermissionCheck, Progress, ScanReport};
