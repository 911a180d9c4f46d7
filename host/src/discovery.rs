//! Finding plugin library files in directories.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The platform's shared-library extension (`so`, `dylib` or `dll`).
pub const LIBRARY_EXTENSION: &str = std::env::consts::DLL_EXTENSION;

/// Whether `path` has the platform's shared-library extension.
pub fn has_library_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some(LIBRARY_EXTENSION)
}

/// Lists the library files in `dir` (not recursive), as absolute paths, sorted.
///
/// Files without the platform's extension are ignored. Entries with the extension
/// that are not regular files (a directory named `x.so`, a dangling symlink) are
/// still returned, so the loader can report them instead of silently skipping them.
/// Runs blocking I/O: call it from a blocking context.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = absolute(dir).map_err(|e| Error::DirUnreadable {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    // A phase of the load profile (`plugin-host run --profile`).
    let _span = tracing::debug_span!("discover", dir = %dir.display()).entered();
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::DirUnreadable {
        path: dir.clone(),
        reason: e.to_string(),
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::DirUnreadable {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        let path = entry.path();
        if has_library_extension(&path) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Lists the library files of several directories, in the order given.
pub fn discover_all<P: AsRef<Path>>(dirs: &[P]) -> Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    for dir in dirs {
        all.extend(discover(dir.as_ref())?);
    }
    Ok(all)
}

/// `path` made absolute against the current directory, without resolving symlinks.
/// dlopen treats a bare file name as a search in the system path, so the loader
/// only ever sees absolute paths.
pub fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    std::path::absolute(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_this_platforms_libraries_and_returns_absolute_sorted_paths() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["so", "dll", "dylib"] {
            for stem in ["b", "a"] {
                std::fs::write(dir.path().join(format!("{stem}.{ext}")), b"x").unwrap();
            }
            // Reported too, so the loader can say it is not a regular file.
            std::fs::create_dir(dir.path().join(format!("d.{ext}"))).unwrap();
        }
        for name in ["notes.txt", "lib.so.bak", "lib.dll.old", "so", "x.SO2"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let found = discover(dir.path()).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        let ext = LIBRARY_EXTENSION;
        assert_eq!(
            names,
            [format!("a.{ext}"), format!("b.{ext}"), format!("d.{ext}")]
        );
        assert!(found.iter().all(|p| p.is_absolute()));
    }

    #[test]
    fn the_extension_is_the_platforms() {
        let expected = if cfg!(windows) {
            "dll"
        } else if cfg!(target_vendor = "apple") {
            "dylib"
        } else {
            "so"
        };
        assert_eq!(LIBRARY_EXTENSION, expected);
        assert!(has_library_extension(Path::new(&format!(
            "/p/x.{expected}"
        ))));
        for other in ["so", "dll", "dylib"].iter().filter(|e| **e != expected) {
            assert!(!has_library_extension(Path::new(&format!("/p/x.{other}"))));
        }
    }

    #[test]
    fn missing_dir_is_a_named_error() {
        let err = discover(Path::new("/definitely/not/here")).unwrap_err();
        assert!(matches!(err, Error::DirUnreadable { ref path, .. } if path.ends_with("here")));
        assert!(err.to_string().contains("here"));
    }
}
