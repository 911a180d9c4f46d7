//! Opening plugin libraries.
//!
//! Architecture invariant: this is the only module that opens libraries
//! (`lib_header_from_path`). Each file is opened independently; abi_stable's
//! `RootModule::load_from*` is never used because it caches the first module per
//! root-module type and would return it for every later file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule, RootModuleError};
use abi_stable::StableAbi;
use plugbay_api::{PluginModRef, INTERFACE_VERSION};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::info::PluginInfo;

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
/// With [`LayoutCheck::AlreadyVerified`] the layout check is skipped (the version
/// check still runs). Blocking: runs the library's constructors.
pub fn open_library_as(
    path: &Path,
    open_path: &Path,
    layout: LayoutCheck,
) -> Result<LoadedLibrary> {
    let shadow = (open_path != path).then(|| open_path.to_path_buf());
    let loaded = open_checked_file(open_path, layout).map_err(|e| renamed(e, open_path, path))?;
    let info = PluginInfo::from_ffi(&loaded.1, path.to_path_buf()).map_err(|reason| {
        Error::InvalidMetadata {
            path: path.to_path_buf(),
            reason,
        }
    })?;
    Ok(LoadedLibrary {
        path: path.to_path_buf(),
        shadow,
        module: loaded.0,
        info,
    })
}

/// An error about `from` re-addressed to `to` (the shadow's errors name the original).
fn renamed(error: Error, from: &Path, to: &Path) -> Error {
    if from == to {
        return error;
    }
    let text = |s: String| s.replace(&*from.to_string_lossy(), &to.to_string_lossy());
    let to = to.to_path_buf();
    match error {
        Error::OpenFailed { reason, .. } => Error::OpenFailed {
            path: to,
            reason: text(reason),
        },
        Error::NotAPlugin { .. } => Error::NotAPlugin { path: to },
        Error::AbiMismatch {
            summary,
            host_interface,
            ..
        } => Error::AbiMismatch {
            path: to,
            summary,
            host_interface,
        },
        Error::InterfaceVersionMismatch {
            expected, found, ..
        } => Error::InterfaceVersionMismatch {
            path: to,
            expected,
            found,
        },
        Error::InvalidMetadata { reason, .. } => Error::InvalidMetadata {
            path: to,
            reason: text(reason),
        },
        Error::Refused { reason, .. } => Error::Refused {
            path: to,
            reason: text(reason),
        },
        other => other,
    }
}

/// Opens `path` and returns its root module and raw metadata.
fn open_checked_file(
    path: &Path,
    layout: LayoutCheck,
) -> Result<(PluginModRef, plugbay_api::PluginMetadata)> {
    if !path.is_absolute() {
        // dlopen would search the system path for a bare name.
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: "the loader only opens absolute paths".to_owned(),
        });
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::OpenFailed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !meta.is_file() {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: "not a regular file".to_owned(),
        });
    }
    let header = lib_header_from_path(path).map_err(|e| map_library_error(path, e))?;
    let module = match layout {
        LayoutCheck::Verify => header.init_root_module::<PluginModRef>(),
        // SAFETY: the `LayoutVerified` token's contract (see its `assume`) says the
        // layout check already passed for exactly these bytes under this
        // interface build, so the unchecked transmute is to the right type.
        LayoutCheck::AlreadyVerified(_) => unsafe {
            header.init_root_module_with_unchecked_layout::<PluginModRef>()
        },
    }
    .map_err(|e| map_library_error(path, e))?;
    let metadata = (module.metadata())()
        .into_result()
        .map_err(|e| Error::InvalidMetadata {
            path: path.to_path_buf(),
            reason: format!("reading metadata failed: {e}"),
        })?;
    Ok((module, metadata))
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

/// Turns abi_stable's error into ours, with short readable text. abi_stable's own
/// texts start with a newline, may contain NUL bytes and can be hundreds of lines.
fn map_library_error(path: &Path, err: LibraryError) -> Error {
    let path = path.to_path_buf();
    match err {
        LibraryError::OpenError { err, .. } => {
            // dlerror() repeats the path ("/p/x.so: file too short"); ours names it already.
            let reason = clean(&err.to_string());
            let prefix = format!("{}: ", path.display());
            let reason = match reason.rfind(&prefix) {
                Some(at) => reason[at + prefix.len()..].to_owned(),
                None => reason,
            };
            Error::OpenFailed { path, reason }
        }
        LibraryError::GetSymbolError { .. } => Error::NotAPlugin { path },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => Error::InterfaceVersionMismatch {
            path,
            expected: expected_version.to_string(),
            found: actual_version.to_string(),
        },
        LibraryError::ParseVersionError(e) => Error::InvalidMetadata {
            path,
            reason: format!("unparsable interface version: {}", clean(&e.to_string())),
        },
        LibraryError::RootModule { err, .. } => Error::InvalidMetadata {
            path,
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
        LibraryError::InvalidAbiHeader(_) => Error::AbiMismatch {
            path,
            summary: "built with an incompatible abi_stable version".to_owned(),
            host_interface: INTERFACE_VERSION.to_owned(),
        },
        other @ (LibraryError::AbiInstability(_) | LibraryError::InvalidCAbi { .. }) => {
            Error::AbiMismatch {
                path,
                summary: crate::abi_summary::summarize(&other.to_string()),
                host_interface: INTERFACE_VERSION.to_owned(),
            }
        }
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => map_library_error(&path, first),
            None => Error::OpenFailed {
                path,
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
