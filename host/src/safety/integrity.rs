//! The allowlist: a lockfile mapping plugin files to their SHA-256.
//!
//! The format is exactly `sha256sum`'s: one `<64 hex digits>  <path>` line per
//! file, `#` comments allowed. Relative paths are relative to the lockfile's
//! directory, so `cd DIR && sha256sum -c plugins.lock` verifies it by hand.
//! Files are matched by their canonical directory plus file name (the entry's
//! symlink itself, not its target, is what is listed).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::shadow::sha256_file;
use crate::discovery;
use crate::error::{Error, Result};

/// A loaded allowlist.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: HashMap<PathBuf, String>,
}

/// The key a file is listed under: canonical parent directory + file name.
fn key(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .unwrap_or_else(|_| parent.to_path_buf())
            .join(name),
        _ => path.to_path_buf(),
    }
}

impl Allowlist {
    /// Reads the lockfile at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read the allowlist {}: {e}", path.display()))
        })?;
        let base = path.parent().unwrap_or(Path::new("/"));
        let mut entries = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let bad = || {
                Error::Config(format!(
                    "allowlist {} line {}: expected `<sha256>  <path>`, got {line:?}",
                    path.display(),
                    n + 1
                ))
            };
            let (hash, file) = line.split_once("  ").ok_or_else(bad)?;
            let file = file.strip_prefix('*').unwrap_or(file);
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || file.is_empty() {
                return Err(bad());
            }
            entries.insert(key(&base.join(file)), hash.to_ascii_lowercase());
        }
        Ok(Self { entries })
    }

    /// The listed hash for `path`, if any.
    pub fn expected(&self, path: &Path) -> Option<&str> {
        self.entries.get(&key(path)).map(String::as_str)
    }

    /// `Ok` when `path` is listed with exactly `sha256`, else
    /// [`Error::IntegrityMismatch`] (`expected` is "not listed" for an unlisted file).
    pub fn check(&self, path: &Path, sha256: &str) -> Result<()> {
        match self.expected(path) {
            Some(expected) if expected == sha256 => Ok(()),
            other => Err(Error::IntegrityMismatch {
                path: path.to_path_buf(),
                expected: other.unwrap_or("not listed").to_owned(),
                found: sha256.to_owned(),
            }),
        }
    }
}

/// Writes the lockfile `lock_path` listing every regular library file (symlinks
/// followed) in `dirs` with its SHA-256; returns the listed paths. Written to a
/// temp file and renamed, so a reader never sees half a list.
pub fn write_lockfile(lock_path: &Path, dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let base = lock_path
        .parent()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut lines =
        vec!["# plugin allowlist: sha256sum format; written by `plugin-host lock`".to_owned()];
    let mut listed = Vec::new();
    for file in discovery::discover_all(dirs)? {
        if !std::fs::metadata(&file)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            continue;
        }
        let sha = sha256_file(&file).map_err(|e| Error::Refused {
            path: file.clone(),
            reason: format!("cannot hash it: {e}"),
        })?;
        let k = key(&file);
        let shown = k
            .strip_prefix(&base)
            .map(Path::to_path_buf)
            .unwrap_or(k.clone());
        lines.push(format!("{sha}  {}", shown.display()));
        listed.push(file);
    }
    let io = |e: std::io::Error| {
        Error::Config(format!(
            "cannot write the allowlist {}: {e}",
            lock_path.display()
        ))
    };
    let tmp = lock_path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all((lines.join("\n") + "\n").as_bytes())
        .map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, lock_path).map_err(io)?;
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_then_check_then_tamper() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugins");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.so"), b"aaa").unwrap();
        std::fs::write(dir.join("b.so"), b"bbb").unwrap();
        std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
        let lock = dir.join("plugins.lock");
        let listed = write_lockfile(&lock, std::slice::from_ref(&dir)).unwrap();
        assert_eq!(listed.len(), 2);
        let text = std::fs::read_to_string(&lock).unwrap();
        assert!(
            text.contains("  a.so\n"),
            "relative to the lockfile: {text}"
        );

        let list = Allowlist::load(&lock).unwrap();
        let a = sha256_file(&dir.join("a.so")).unwrap();
        list.check(&dir.join("a.so"), &a).unwrap();
        match list.check(&dir.join("b.so"), &a) {
            Err(Error::IntegrityMismatch {
                expected, found, ..
            }) => {
                assert_eq!(expected, sha256_file(&dir.join("b.so")).unwrap());
                assert_eq!(found, a);
            }
            other => panic!("expected IntegrityMismatch, got {other:?}"),
        }
        match list.check(&dir.join("c.so"), &a) {
            Err(Error::IntegrityMismatch { expected, .. }) => assert_eq!(expected, "not listed"),
            other => panic!("expected IntegrityMismatch, got {other:?}"),
        }
    }

    #[test]
    fn malformed_lines_are_config_errors_naming_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = tmp.path().join("l");
        std::fs::write(&lock, "# c\nnot a hash  x.so\n").unwrap();
        let err = Allowlist::load(&lock).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
