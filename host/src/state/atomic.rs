//! Atomic, durable replacement of one file: temp file in the same directory,
//! write, fsync, rename over the target, fsync the directory.
//!
//! A crash at any point leaves either the old file or the new one under the
//! target name, never a mix; at worst a stale temp file, which
//! [`remove_stale_temps`] deletes at the next start.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Temp files are `.<target>.<random>.tmp`: hidden, so no plugin's state file
/// (names never start with `.`) can be mistaken for one.
const TEMP_PREFIX: &str = ".";
const TEMP_SUFFIX: &str = ".tmp";

/// An [`Error::StateIo`] for `operation` on `path`.
pub fn io_error(path: &Path, operation: &str, err: &std::io::Error) -> Error {
    Error::StateIo {
        path: path.to_path_buf(),
        operation: operation.to_owned(),
        reason: err.to_string(),
    }
}

/// Whether `file_name` is one of our temp files.
pub fn is_temp_name(file_name: &str) -> bool {
    file_name.starts_with(TEMP_PREFIX) && file_name.ends_with(TEMP_SUFFIX)
}

/// Replaces `dir/file_name` with `bytes`, atomically and durably. Blocking.
///
/// On error the previous file is untouched (unless only the final directory
/// fsync failed: then the new file is in place but may not survive a power
/// loss) and the temp file is removed (or, if even that fails, left for
/// [`remove_stale_temps`]).
pub fn write_atomic(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<()> {
    let target = dir.join(file_name);
    let mut temp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{file_name}."))
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| io_error(dir, "create temp file", &e))?;
    temp.write_all(bytes)
        .map_err(|e| io_error(temp.path(), "write", &e))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| io_error(temp.path(), "fsync", &e))?;
    // `persist` is a rename(2); on failure the returned temp file is dropped,
    // which deletes it.
    temp.persist(&target)
        .map_err(|e| io_error(&target, "rename temp file onto", &e.error))?;
    fsync_dir(dir)
}

/// fsyncs a directory, making renames and removals in it durable. Blocking.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync directory", &e))
}

/// Deletes temp files left in `dir` by a process that died mid-write and
/// returns how many. Blocking; only call while holding the directory lock.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, "list directory", &e))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list directory", &e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file || !is_temp_name(name) {
            continue;
        }
        let path = entry.path();
        std::fs::remove_file(&path).map_err(|e| io_error(&path, "remove stale temp file", &e))?;
        tracing::info!(path = %path.display(), "removed a stale state temp file");
        removed += 1;
    }
    if removed > 0 {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "p.json", b"one").unwrap();
        write_atomic(dir.path(), "p.json", b"two").unwrap();
        assert_eq!(std::fs::read(dir.path().join("p.json")).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["p.json"]);
    }

    #[test]
    fn stale_temps_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            ".p.json.abc.tmp",
            "p.json",
            "p.json.corrupt-1",
            ".lock",
            "x.tmp",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), 1);
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".lock", "p.json", "p.json.corrupt-1", "x.tmp"]);
    }
}
