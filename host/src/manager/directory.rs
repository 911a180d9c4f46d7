//! Registering every plugin library found in a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::PluginManager;
use crate::discovery;
use crate::error::{Error, Result};
use crate::ffi::FfiPlugin;
use crate::loader::load_library;

/// A library registered by [`PluginManager::load_directory`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredLibrary {
    /// The library file.
    pub path: PathBuf,
    /// The plugin's name.
    pub name: String,
    /// The id it was registered under.
    pub id: Uuid,
}

/// What [`PluginManager::load_directory`] did with each file.
#[derive(Debug, Clone, Default)]
pub struct DirectoryReport {
    /// Libraries opened and registered, in path order.
    pub registered: Vec<RegisteredLibrary>,
    /// Files (or directories) that failed, each with its own error.
    pub failed: Vec<(PathBuf, Error)>,
}

impl DirectoryReport {
    /// Appends another report.
    pub fn merge(&mut self, other: DirectoryReport) {
        self.registered.extend(other.registered);
        self.failed.extend(other.failed);
    }
}

pub(crate) async fn load_directory(manager: &PluginManager, dir: &Path) -> Result<DirectoryReport> {
    let owned = dir.to_path_buf();
    let files = tokio::task::spawn_blocking(move || discovery::discover(&owned))
        .await
        .map_err(|join| Error::DirUnreadable {
            path: dir.to_path_buf(),
            reason: format!("the discovery thread failed: {join}"),
        })??;
    // Each library opens on its own blocking-pool thread, all at once.
    let opened = futures::future::join_all(files.into_iter().map(|path| async move {
        let result = load_library(path.clone()).await;
        (path, result)
    }))
    .await;
    let mut report = DirectoryReport::default();
    for (path, result) in opened {
        let registered = result.and_then(|library| {
            let name = library.info.name.clone();
            let id = manager.register_plugin(Arc::new(FfiPlugin::new(library)))?;
            Ok(RegisteredLibrary {
                path: path.clone(),
                name,
                id,
            })
        });
        match registered {
            Ok(r) => report.registered.push(r),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "plugin library not registered");
                report.failed.push((path, e));
            }
        }
    }
    Ok(report)
}
