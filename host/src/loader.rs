//! Opening plugin libraries.
//!
//! Architecture invariant: this is the only module that opens libraries
//! (`lib_header_from_path`). Each file is opened independently; abi_stable's
//! `RootModule::load_from*` is never used because it caches the first module per
//! root-module type and would return it for every later file.

use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModuleError};
use plugin_api::{PluginModRef, INTERFACE_VERSION};

use crate::error::{Error, Result};
use crate::info::PluginInfo;

/// A library that passed the ABI checks, with its root module and metadata.
///
/// The library stays mapped for the life of the process (abi_stable never
/// unloads); dropping this forgets it, nothing more.
#[derive(Clone)]
pub struct LoadedLibrary {
    /// The absolute path it was opened from.
    pub path: PathBuf,
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

/// Opens the library at `path`, checks its ABI and reads its metadata. Blocking:
/// runs the library's constructors. From async code use [`load_library`].
pub fn open_library(path: &Path) -> Result<LoadedLibrary> {
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
    let module = header
        .init_root_module::<PluginModRef>()
        .map_err(|e| map_library_error(path, e))?;
    let metadata = (module.metadata())()
        .into_result()
        .map_err(|e| Error::InvalidMetadata {
            path: path.to_path_buf(),
            reason: format!("reading metadata failed: {e}"),
        })?;
    let info = PluginInfo::from_ffi(&metadata, path.to_path_buf()).map_err(|reason| {
        Error::InvalidMetadata {
            path: path.to_path_buf(),
            reason,
        }
    })?;
    Ok(LoadedLibrary {
        path: path.to_path_buf(),
        module,
        info,
    })
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
