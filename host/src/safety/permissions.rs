//! File-level admission checks done before any byte of a library is read:
//! permissions (sshd StrictModes style), symlinks, file type and size.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use super::config::SafetyConfig;
use crate::error::{Error, Result};
use crate::platform;

/// A file that passed [`check_file`]: where it really is and what it looks like.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The path as discovered in the plugin directory.
    pub path: PathBuf,
    /// The canonical path (symlinks resolved).
    pub canonical: PathBuf,
    /// `stat` of the canonical path.
    pub metadata: Metadata,
}

/// With strict permissions: refuses `path` if it is writable by group or others
/// or owned by a user other than us and root (Unix). Not enforced on Windows:
/// there it logs so once per process (see [`crate::platform`]) and
/// [`PERMISSIONS_ENFORCED`] is `false`.
pub fn check_owner_and_mode(path: &Path, meta: &Metadata, config: &SafetyConfig) -> Result<()> {
    if !config.strict_permissions {
        return Ok(());
    }
    platform::check_owner_and_mode(path, meta)
}

/// Whether [`check_owner_and_mode`] enforces anything on this platform.
pub const PERMISSIONS_ENFORCED: bool = platform::PERMISSIONS_ENFORCED;

/// The warning every file report carries where permissions are not enforced.
pub const NOT_ENFORCED_WARNING: &str = "file and directory permissions are not checked on this \
     platform (Windows): make sure only administrators and you can write to the plugin directory";

/// The warning a file report gets: [`NOT_ENFORCED_WARNING`] when strict
/// permissions were asked for but the platform does not enforce them (so the
/// report never looks as if they had been checked).
pub fn unenforced_warning(strict: bool, enforced: bool) -> Option<&'static str> {
    (strict && !enforced).then_some(NOT_ENFORCED_WARNING)
}

/// Checks a plugin directory itself (strict permissions) and returns its canonical path.
pub fn check_dir(dir: &Path, config: &SafetyConfig) -> Result<PathBuf> {
    let unreadable = |e: std::io::Error| Error::DirUnreadable {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let canonical = std::fs::canonicalize(dir).map_err(unreadable)?;
    let meta = std::fs::metadata(&canonical).map_err(unreadable)?;
    check_owner_and_mode(dir, &meta, config)?;
    Ok(canonical)
}

/// Checks one discovered file of the plugin directory whose canonical path is
/// `canonical_dir` (`path` is a direct entry of it, as
/// [`crate::discovery::discover`] lists them): symlinks must stay inside it
/// (unless allowed), the target must be a non-empty regular file within the
/// size limit, with safe permissions.
///
/// A path that is not a symlink costs one `lstat`: its canonical path is the
/// canonical directory plus its name, and its `lstat` is its `stat`.
pub fn check_file(path: &Path, canonical_dir: &Path, config: &SafetyConfig) -> Result<Candidate> {
    let refuse = |reason: String| Error::Refused {
        path: path.to_path_buf(),
        reason,
    };
    let link_meta =
        std::fs::symlink_metadata(path).map_err(|e| refuse(format!("cannot stat it: {e}")))?;
    let (canonical, meta) = match path.file_name() {
        Some(name) if !link_meta.file_type().is_symlink() => (canonical_dir.join(name), link_meta),
        _ => {
            let canonical = std::fs::canonicalize(path).map_err(|e| {
                if link_meta.file_type().is_symlink() {
                    refuse(format!("it is a broken symlink ({e})"))
                } else {
                    refuse(format!("cannot resolve it: {e}"))
                }
            })?;
            if link_meta.file_type().is_symlink()
                && !config.allow_symlinks_outside
                && !canonical.starts_with(canonical_dir)
            {
                return Err(refuse(format!(
                    "it is a symlink resolving outside the plugin directory (to {}); \
                     copy the library in, or allow symlinks outside",
                    canonical.display()
                )));
            }
            let meta = std::fs::metadata(&canonical)
                .map_err(|e| refuse(format!("cannot stat it: {e}")))?;
            (canonical, meta)
        }
    };
    let file_type = meta.file_type();
    if !file_type.is_file() {
        let what = if file_type.is_dir() {
            "a directory"
        } else {
            "a special file (fifo, socket or device)"
        };
        return Err(refuse(format!("not a regular file: it is {what}")));
    }
    if meta.len() == 0 {
        return Err(refuse("the file is empty".into()));
    }
    if meta.len() > config.max_file_size {
        return Err(refuse(format!(
            "it is {} bytes, over the size limit of {} bytes",
            meta.len(),
            config.max_file_size
        )));
    }
    check_owner_and_mode(path, &meta, config)?;
    Ok(Candidate {
        path: path.to_path_buf(),
        canonical,
        metadata: meta,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::platform::unix::euid;
    use std::os::unix::fs::PermissionsExt;

    fn strict() -> SafetyConfig {
        SafetyConfig::builder().build().unwrap()
    }

    #[test]
    fn refusals_each_have_their_own_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugins");
        let outside = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let canon = check_dir(&dir, &strict()).unwrap();
        std::fs::write(dir.join("good.so"), b"ELF").unwrap();
        std::fs::write(dir.join("empty.so"), b"").unwrap();
        std::fs::write(dir.join("big.so"), vec![0u8; 100]).unwrap();
        std::fs::create_dir(dir.join("dir.so")).unwrap();
        std::fs::write(dir.join("ww.so"), b"ELF").unwrap();
        std::fs::set_permissions(dir.join("ww.so"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        std::fs::write(outside.join("t.so"), b"ELF").unwrap();
        std::os::unix::fs::symlink(outside.join("t.so"), dir.join("out.so")).unwrap();
        std::os::unix::fs::symlink("good.so", dir.join("in.so")).unwrap();
        std::os::unix::fs::symlink("nowhere.so", dir.join("dangling.so")).unwrap();
        let config = SafetyConfig::builder().max_file_size(50).build().unwrap();

        assert!(check_file(&dir.join("good.so"), &canon, &config).is_ok());
        let inside = check_file(&dir.join("in.so"), &canon, &config).unwrap();
        assert_eq!(inside.canonical, canon.join("good.so"));
        let reason = |name: &str| match check_file(&dir.join(name), &canon, &config) {
            Err(Error::Refused { reason, path }) => {
                assert_eq!(path, dir.join(name));
                reason
            }
            other => panic!("{name}: expected Refused, got {other:?}"),
        };
        assert_eq!(reason("empty.so"), "the file is empty");
        assert!(reason("big.so").contains("over the size limit of 50 bytes"));
        assert_eq!(reason("dir.so"), "not a regular file: it is a directory");
        assert!(reason("out.so").contains("symlink resolving outside the plugin directory"));
        assert!(reason("dangling.so").contains("broken symlink"));
        match check_file(&dir.join("ww.so"), &canon, &config) {
            Err(Error::InsecurePermissions { mode, owner, .. }) => {
                assert_eq!(mode, 0o666);
                assert_eq!(owner, euid());
            }
            other => panic!("expected InsecurePermissions, got {other:?}"),
        }
        let lax = SafetyConfig::builder()
            .strict_permissions(false)
            .allow_symlinks_outside(true)
            .build()
            .unwrap();
        assert!(check_file(&dir.join("ww.so"), &canon, &lax).is_ok());
        assert!(check_file(&dir.join("out.so"), &canon, &lax).is_ok());
    }

    #[test]
    fn group_writable_dir_is_insecure() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(
            check_dir(tmp.path(), &strict()),
            Err(Error::InsecurePermissions { mode: 0o775, .. })
        ));
    }
}

/// Platform-independent parts, tested everywhere.
#[cfg(test)]
mod any_platform_tests {
    use super::*;

    #[test]
    fn asking_for_unenforced_checks_gives_a_warning() {
        assert_eq!(unenforced_warning(true, false), Some(NOT_ENFORCED_WARNING));
        assert_eq!(unenforced_warning(true, true), None);
        assert_eq!(unenforced_warning(false, false), None);
        assert_eq!(PERMISSIONS_ENFORCED, cfg!(unix));
    }
}

/// Windows: the check lets files pass and says so (compiled by the cross check).
#[cfg(all(test, windows))]
mod windows_tests {
    use super::*;

    #[test]
    fn a_file_anyone_may_write_passes_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.dll");
        std::fs::write(&file, b"MZ").unwrap();
        let strict = SafetyConfig::builder().build().unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert!(check_owner_and_mode(&file, &meta, &strict).is_ok());
        assert!(unenforced_warning(strict.strict_permissions, PERMISSIONS_ENFORCED).is_some());
    }
}
