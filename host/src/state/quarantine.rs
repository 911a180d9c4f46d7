//! Moving a corrupt state file aside: `<name>.json` becomes
//! `<name>.json.corrupt-<timestamp>` in the same directory, bytes untouched.
//! Nothing is ever deleted or overwritten: if that name is taken, `-1`, `-2`, ...
//! is appended.

use std::path::{Path, PathBuf};

use super::atomic::{fsync_dir, io_error};
use super::envelope::now_rfc3339;
use crate::error::Result;

/// Renames `dir/file_name` to a fresh `dir/<file_name>.corrupt-<UTC timestamp>`
/// and returns the new path. Blocking; callers hold the plugin's state lock, so
/// nothing else creates names in the directory meanwhile.
pub fn quarantine(dir: &Path, file_name: &str) -> Result<PathBuf> {
    let path = dir.join(file_name);
    // 2026-11-01T12:03:04.123Z -> 20261101T120304.123Z: sortable, no `:`.
    let stamp: String = now_rfc3339()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let base = format!("{file_name}.corrupt-{stamp}");
    let mut attempt = 0u32;
    let moved_to = loop {
        let name = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        let candidate = dir.join(name);
        match candidate.symlink_metadata() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break candidate,
            Err(e) => return Err(io_error(&candidate, "inspect quarantine target", &e)),
            Ok(_) => attempt += 1,
        }
    };
    std::fs::rename(&path, &moved_to)
        .map_err(|e| io_error(&path, "move corrupt file aside (rename)", &e))?;
    fsync_dir(dir)?;
    Ok(moved_to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_bytes_aside_without_overwriting_an_earlier_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, b"first").unwrap();
        let first = quarantine(dir.path(), "p.json").unwrap();
        std::fs::write(&path, b"second").unwrap();
        let second = quarantine(dir.path(), "p.json").unwrap();
        assert_ne!(first, second);
        assert!(!path.exists());
        assert_eq!(std::fs::read(&first).unwrap(), b"first");
        assert_eq!(std::fs::read(&second).unwrap(), b"second");
        let name = first.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("p.json.corrupt-"), "{name}");
    }
}
