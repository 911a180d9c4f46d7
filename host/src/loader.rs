//! Opening plugin libraries.
//!
//! Architecture invariant: this is the only module that opens libraries
//! (`lib_header_from_path`). Each file is opened independently; abi_stable's
//! `RootModule::load_from*` is never used because it caches the first module per
//! root-module type and would return it for every later file.
//!
//! Refusals are built here as [`Rejection`]s (typed, path-less) and become the
//! host's [`Error`] once, for the plugin file the user placed. On Windows the
//! platform layer first loads each file with a DLL search path that leaves out
//! the current directory (see `crate::platform`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule, RootModuleError};
use abi_stable::StableAbi;
use plugbay_api::{PluginModRef, INTERFACE_VERSION};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::info::PluginInfo;
use crate::platform;
use crate::safety::verdict::Rejection;

/// A library that passed the ABI checks, with its root module and metadata.
///
/// The library stays mapped for the life of the process (abi_stable never
/// unloads); dropping this forgets it, nothing more.
#[derive(Clone)]
pub struct LoadedLibrary {
    /// The plugin's file as the user placed it (absolute path).
    pub path: PathBuf,
    /// The private copy the code was actually mapped from, when it was admitted
    /// through admission ([`crate::admit_dirs`]); then `path` may change or vanish
    /// harmlessly.
    pub shadow: Option<PathBuf>,
    /// The plugin's root module.
    pub module: PluginModRef,
    /// Its parsed metadata.
    pub info: PluginInfo,
}

impl std::fmt::Debug for LoadedLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedLibrary")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Identifies the interface layout this build checks plugins against: a SHA-256
/// over the plugbay-api version, the root module's version strings and the
/// printed type layout (`Display`: type, size, alignment, package and version,
/// fields, tags, extra checks, repr) of the root module and of every type nested
/// in it. Two builds with the same id run abi_stable's layout check against
/// identical expectations, so the check's outcome for given library bytes is the
/// same in both. Addresses and type ids (which differ per process) are not part
/// of it. Computed once per process.
pub fn interface_build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut hasher = Sha256::new();
        hasher.update(b"plugin-host interface build id v1\n");
        hasher.update(INTERFACE_VERSION.as_bytes());
        hasher
            .update(format!("\n{:?}\n", <PluginModRef as RootModule>::VERSION_STRINGS).as_bytes());
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![<PluginModRef as StableAbi>::LAYOUT];
        while let Some(layout) = stack.pop() {
            if !seen.insert(layout.get_utypeid()) {
                continue;
            }
            hasher.update(layout.to_string().as_bytes());
            for nested in layout.shared_vars().type_layouts() {
                stack.push(nested());
            }
            if let Some(extra) = layout.extra_checks() {
                stack.extend(extra.nested_type_layouts().iter().copied());
            }
        }
        format!("{:x}", hasher.finalize())
    })
}

/// Whether [`open_library_as`] runs abi_stable's layout check.
#[derive(Debug, Clone, Copy)]
pub enum LayoutCheck {
    /// Run the full check (the default, and what the probe child does).
    Verify,
    /// Skip it: the caller holds proof that it already passed for these bytes.
    AlreadyVerified(LayoutVerified),
}

/// Proof token: abi_stable's layout check already passed for the exact bytes of
/// the file about to be opened, under this build's [`interface_build_id`].
#[derive(Debug, Clone, Copy)]
pub struct LayoutVerified {
    _private: (),
}

impl LayoutVerified {
    /// Asserts the proof.
    ///
    /// # Safety
    ///
    /// The file passed along with this token to [`open_library_as`] must hold
    /// exactly the bytes (same SHA-256) on which abi_stable's layout check for
    /// [`PluginModRef`] already succeeded in a build whose [`interface_build_id`]
    /// equals this process's, and nobody may change them before they are mapped.
    /// Otherwise the root module is transmuted to a type it may not have, which
    /// is undefined behaviour.
    pub unsafe fn assume() -> Self {
        Self { _private: () }
    }
}

/// Opens the library at `path`, checks its ABI and reads its metadata. Blocking:
/// runs the library's constructors. From async code use `load_library`.
pub fn open_library(path: &Path) -> Result<LoadedLibrary> {
    open_library_as(path, path, LayoutCheck::Verify)
}

/// Opens the file `open_path` (a private shadow copy when it differs from
/// `path`) on behalf of the plugin file `path`: errors and metadata name `path`.
/// With [`LayoutCheck::AlreadyVerified`] the layout check and the regular-file
/// `stat` are skipped (the token vouches for a file's bytes; the version check
/// still runs). Blocking: runs the library's constructors.
pub fn open_library_as(
    path: &Path,
    open_path: &Path,
    layout: LayoutCheck,
) -> Result<LoadedLibrary> {
    check_library(path, open_path, layout).map_err(|rejection| rejection.into_error(path))
}

/// [`open_library_as`] with the refusal as a path-less [`Rejection`] (already
/// naming `path`, not `open_path`, in its texts): what the probe child sends
/// and the scan cache keeps.
pub(crate) fn check_library(
    path: &Path,
    open_path: &Path,
    layout: LayoutCheck,
) -> std::result::Result<LoadedLibrary, Rejection> {
    open_as(path, open_path, layout, None)
}

/// Opens the shadow copy `shadow` of the plugin file `path` that admission has
/// already checked (`proof`), with the metadata that check read: `info` is what
/// the probe child (or, for a cached verdict, the check recorded in the scan
/// cache) got from this very library's `metadata()`, converted and validated by
/// admission. So the library's `metadata()` does not run again here, and the
/// plugin is registered under exactly the name, version and dependencies that
/// admission judged (a plugin whose `metadata()` answers differently on a second
/// call cannot slip past the duplicate-name check). Blocking: runs the library's
/// constructors.
pub(crate) fn open_admitted(
    path: &Path,
    shadow: &Path,
    proof: LayoutVerified,
    info: PluginInfo,
) -> Result<LoadedLibrary> {
    open_as(
        path,
        shadow,
        LayoutCheck::AlreadyVerified(proof),
        Some(info),
    )
    .map_err(|rejection| rejection.into_error(path))
}

/// Opens `open_path` on behalf of `path` (see [`open_library_as`]) and reads
/// its metadata, unless the caller already has it (`known`).
fn open_as(
    path: &Path,
    open_path: &Path,
    layout: LayoutCheck,
    known: Option<PluginInfo>,
) -> std::result::Result<LoadedLibrary, Rejection> {
    // A phase of the load profile (`plugin-host run --profile`).
    let _span = tracing::debug_span!("open", file = %path.display()).entered();
    let module = open_root_module(open_path, layout).map_err(|r| r.readdressed(open_path, path))?;
    let info = match known {
        Some(info) => info,
        None => read_info(module, path)?,
    };
    Ok(LoadedLibrary {
        path: path.to_path_buf(),
        shadow: (open_path != path).then(|| open_path.to_path_buf()),
        module,
        info,
    })
}

/// Calls the library's `metadata()` and converts the answer, naming `path`.
fn read_info(module: PluginModRef, path: &Path) -> std::result::Result<PluginInfo, Rejection> {
    let metadata = (module.metadata())()
        .into_result()
        .map_err(|e| Rejection::InvalidMetadata {
            reason: format!("reading metadata failed: {e}"),
        })?;
    PluginInfo::from_ffi(&metadata, path.to_path_buf())
        .map_err(|reason| Rejection::InvalidMetadata { reason })
}

/// Opens `path` and returns its root module (running the library's
/// constructors and, unless `layout` vouches for it, abi_stable's layout check).
fn open_root_module(
    path: &Path,
    layout: LayoutCheck,
) -> std::result::Result<PluginModRef, Rejection> {
    if !path.is_absolute() {
        // dlopen would search the system path for a bare name.
        return Err(Rejection::Refused {
            reason: "the loader only opens absolute paths".to_owned(),
        });
    }
    // An already-verified file is a shadow copy admission has just checked
    // (regular, private, the expected size) or written: no second `stat` on
    // the opener's critical path. Anything else is checked here.
    if matches!(layout, LayoutCheck::Verify) {
        let meta = std::fs::metadata(path).map_err(|e| Rejection::OpenFailed {
            reason: e.to_string(),
        })?;
        if !meta.is_file() {
            return Err(Rejection::Refused {
                reason: "not a regular file".to_owned(),
            });
        }
    }
    // Windows: load with a search path that excludes the current directory
    // first; abi_stable's open below then reuses that module.
    platform::prepare_library(path).map_err(|reason| Rejection::OpenFailed { reason })?;
    let header = lib_header_from_path(path).map_err(|e| map_library_error(path, e))?;
    match layout {
        LayoutCheck::Verify => header.init_root_module::<PluginModRef>(),
        // SAFETY: the `LayoutVerified` token's contract (see its `assume`) says the
        // layout check already passed for exactly these bytes under this
        // interface build, so the unchecked transmute is to the right type.
        LayoutCheck::AlreadyVerified(_) => unsafe {
            header.init_root_module_with_unchecked_layout::<PluginModRef>()
        },
    }
    .map_err(|e| map_library_error(path, e))
}

/// [`open_library`] on the blocking pool, so the async runtime keeps running while
/// the dynamic loader maps the file and runs its constructors.
pub async fn load_library(path: PathBuf) -> Result<LoadedLibrary> {
    let for_error = path.clone();
    tokio::task::spawn_blocking(move || open_library(&path))
        .await
        .unwrap_or_else(|join| {
            Err(Error::OpenFailed {
                path: for_error,
                reason: format!("the loader thread failed: {join}"),
            })
        })
}

/// Turns abi_stable's error into a [`Rejection`], with short readable text.
/// abi_stable's own texts start with a newline, may contain NUL bytes and can
/// be hundreds of lines.
fn map_library_error(path: &Path, err: LibraryError) -> Rejection {
    match err {
        LibraryError::OpenError { err, .. } => {
            // dlerror() repeats the path ("/p/x.so: file too short"); ours names it already.
            let reason = clean(&err.to_string());
            let prefix = format!("{}: ", path.display());
            let reason = match reason.rfind(&prefix) {
                Some(at) => reason[at + prefix.len()..].to_owned(),
                None => reason,
            };
            Rejection::OpenFailed { reason }
        }
        LibraryError::GetSymbolError { .. } => Rejection::NotAPlugin,
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => Rejection::InterfaceVersionMismatch {
            expected: expected_version.to_string(),
            found: actual_version.to_string(),
        },
        LibraryError::ParseVersionError(e) => Rejection::InvalidMetadata {
            reason: format!("unparsable interface version: {}", clean(&e.to_string())),
        },
        LibraryError::RootModule { err, .. } => Rejection::InvalidMetadata {
            reason: match err {
                RootModuleError::Unwound => "the root module constructor panicked".to_owned(),
                RootModuleError::Returned(e) => {
                    format!(
                        "the root module constructor failed: {}",
                        clean(&e.to_string())
                    )
                }
            },
        },
        LibraryError::InvalidAbiHeader(_) => Rejection::AbiMismatch {
            summary: "built with an incompatible abi_stable version".to_owned(),
            host_interface: INTERFACE_VERSION.to_owned(),
        },
        other @ (LibraryError::AbiInstability(_) | LibraryError::InvalidCAbi { .. }) => {
            Rejection::AbiMismatch {
                summary: crate::abi_summary::summarize(&other.to_string()),
                host_interface: INTERFACE_VERSION.to_owned(),
            }
        }
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => map_library_error(path, first),
            None => Rejection::OpenFailed {
                reason: "unknown loader error".to_owned(),
            },
        },
    }
}

/// Trims, drops NUL bytes and folds whitespace in a loader message.
fn clean(text: &str) -> String {
    text.replace('\0', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
