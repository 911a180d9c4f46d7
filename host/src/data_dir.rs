//! Per-plugin data directories: `<data root>/<plugin name>`, created on first use
//! with owner-only permissions (0700 on Unix).
//!
//! The plugin name must pass the same rule as state-file names
//! ([`crate::validate_plugin_name`]): no separators, no `..`, no hidden names,
//! so a name can never reach outside the root.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The data directory of `plugin` under `root`, created (with any missing parent)
/// if absent. Blocking (file system calls); plugin code calls it from the
/// blocking thread it runs on.
pub(crate) fn ensure(root: Option<&Path>, plugin: &str) -> Result<PathBuf> {
    let refuse = |path: PathBuf, reason: String| Error::DataDir {
        plugin: plugin.to_owned(),
        path,
        reason,
    };
    let Some(root) = root else {
        return Err(refuse(
            PathBuf::new(),
            "the host has neither a data root nor a state directory configured".to_owned(),
        ));
    };
    crate::validate_plugin_name(plugin).map_err(|e| refuse(root.to_path_buf(), e.to_string()))?;
    let dir = root.join(plugin);
    create_private_dir(root).map_err(|e| refuse(root.to_path_buf(), e.to_string()))?;
    create_private_dir(&dir).map_err(|e| refuse(dir.clone(), e.to_string()))?;
    Ok(dir)
}

/// Creates `dir` (and missing parents) owner-only, or checks that the existing
/// `dir` is a directory and is not writable by group or others.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("it exists and is not a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "it is writable by group or others (mode {mode:o}); make it owner-only (chmod 700)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_an_owner_only_dir_named_after_the_plugin() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("state-data");
        let dir = ensure(Some(&root), "counter").unwrap();
        assert_eq!(dir, root.join("counter"));
        assert!(dir.is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        // Asking again returns the same directory, contents kept.
        std::fs::write(dir.join("kept"), b"x").unwrap();
        assert_eq!(ensure(Some(&root), "counter").unwrap(), dir);
        assert_eq!(std::fs::read(dir.join("kept")).unwrap(), b"x");
    }

    #[test]
    fn refuses_names_that_could_leave_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["", "..", "../x", "a/b", ".hidden", "UPPER"] {
            let err = ensure(Some(tmp.path()), bad).unwrap_err();
            assert!(matches!(err, Error::DataDir { .. }), "{bad:?}: {err}");
        }
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_root_that_cannot_be_created_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = ensure(Some(&file.join("root")), "counter").unwrap_err();
        let Error::DataDir { path, plugin, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(plugin, "counter");
        assert_eq!(path, &file.join("root"));
        let err = ensure(None, "counter").unwrap_err();
        assert!(err.to_string().contains("neither a data root"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_group_writable_existing_dir() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("counter");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = ensure(Some(tmp.path()), "counter").unwrap_err();
        assert!(err.to_string().contains("chmod 700"), "{err}");
    }
}
