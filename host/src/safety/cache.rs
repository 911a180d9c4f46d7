//! The scan cache: what was found out about each file, keyed so that a hit
//! proves the file is unchanged and was checked by this very interface build.
//!
//! An entry is used only when *all* of these match the file as it is now:
//! canonical path, device, inode, size, mtime and ctime (nanoseconds) — and the
//! entry's interface build id equals [`crate::loader::interface_build_id`]. The
//! entry also records the file's content id (BLAKE3, naming its shadow copy) and,
//! once an allowlist asked for it, its SHA-256, so a hit yields the hashes
//! without reading the file (git's index makes the same bet: any write through
//! the filesystem moves mtime/ctime, and ctime cannot be set back from user
//! space). A miss re-hashes and re-probes; so a quarantined file stays
//! quarantined until it changes, and then it is retried.
//!
//! Racy entries (git's "racily clean" problem): file timestamps come from a
//! coarse clock, so a file rewritten with the same size moments after it was
//! checked can keep the same mtime/ctime. An entry whose file changed status
//! less than [`RACY_MARGIN`] before the check was recorded is therefore
//! [`Lookup::Racy`]: the caller must re-hash the file and compare content ids (no
//! probe needed if they match), after which the entry is refreshed and clean.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::verdict::{MetadataRecord, Rejection};
use crate::platform;

/// Bumped when the file format changes; other formats are ignored (cold start).
/// 2: content id (BLAKE3) + optional SHA-256 instead of SHA-256 only.
/// 3: rejections are one case per loader error (no free-text "other").
const CACHE_FORMAT: u32 = 3;
/// A file whose ctime is this close to (or after) its check time is racy.
pub const RACY_MARGIN_NS: i128 = RACY_MARGIN.as_nanos() as i128;
/// The racy window: a file changed this close to (or after) its check is checked again.
pub const RACY_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Result of [`ScanCache::lookup`].
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// Same identity, same build, not racy: the entry describes the file.
    Clean(&'a CacheEntry),
    /// Same identity and build, but the file changed too close to the check:
    /// valid only if the file's content id still equals `entry.content_id`.
    Racy(&'a CacheEntry),
    /// No usable entry.
    Miss,
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The stat-level identity of a file (see [`crate::platform`] for what each
/// field is on each OS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Canonical path (symlinks resolved).
    pub canonical_path: PathBuf,
    /// Unix: device id. Windows: volume serial number.
    pub dev: u64,
    /// Unix: inode number. Windows: file index.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Unix: status-change time (ctime). Windows: the last-write time again.
    /// Nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of `canonical_path` with metadata `meta` (from `stat`, not
    /// `lstat`). Unix reads it all from `meta`; Windows opens the file for its
    /// attributes, which can fail.
    pub fn new(canonical_path: PathBuf, meta: &Metadata) -> std::io::Result<Self> {
        let stamp = platform::file_stamp(&canonical_path, meta)?;
        Ok(Self {
            canonical_path,
            dev: stamp.device,
            inode: stamp.index,
            size: meta.len(),
            mtime_ns: stamp.modified_ns,
            ctime_ns: stamp.changed_ns,
        })
    }
}

/// What a check concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum CachedVerdict {
    /// Opened, passed abi_stable's layout check under `interface_build_id`, metadata valid.
    Compatible {
        /// Its metadata.
        plugin: MetadataRecord,
    },
    /// The loader refused it.
    Rejected {
        /// Why.
        rejection: Rejection,
    },
    /// Opening it killed, hung or confused the probe.
    Quarantined {
        /// What happened.
        reason: String,
    },
}

/// One file's cached result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The file as it was checked.
    pub identity: FileIdentity,
    /// BLAKE3 of its bytes (hex): names its shadow copy.
    pub content_id: String,
    /// SHA-256 of its bytes (hex), once computed (only when an allowlist is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The interface build that did the check.
    pub interface_build_id: String,
    /// What the check found.
    pub verdict: CachedVerdict,
    /// When the entry was recorded or last confirmed (ns since the epoch).
    pub checked_at_ns: i128,
    /// How long the probe child worked on the file when this verdict was made
    /// (microseconds); `None` when no probe ran (probe off) or for entries
    /// written before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_us: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    entries: Vec<CacheEntry>,
}

/// The cache, loaded from and saved to one JSON file.
#[derive(Debug, Default)]
pub struct ScanCache {
    path: Option<PathBuf>,
    entries: HashMap<PathBuf, CacheEntry>,
    dirty: bool,
}

impl ScanCache {
    /// Loads the cache at `path` (`None`: an in-memory cache that is never saved).
    /// A missing, unreadable, corrupt or other-format file gives an empty cache:
    /// the cache only saves work, it is never needed for correctness.
    pub fn load(path: Option<&Path>) -> Self {
        let entries = path
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|f| f.format == CACHE_FORMAT)
            .map(|f| {
                f.entries
                    .into_iter()
                    .map(|e| (e.identity.canonical_path.clone(), e))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            path: path.map(Path::to_path_buf),
            entries,
            dirty: false,
        }
    }

    /// The entry for exactly this identity checked by exactly this interface build.
    pub fn lookup(&self, identity: &FileIdentity, interface_build_id: &str) -> Lookup<'_> {
        match self
            .entries
            .get(&identity.canonical_path)
            .filter(|e| &e.identity == identity && e.interface_build_id == interface_build_id)
        {
            None => Lookup::Miss,
            Some(e)
                if identity.ctime_ns.max(identity.mtime_ns) + RACY_MARGIN_NS > e.checked_at_ns =>
            {
                Lookup::Racy(e)
            }
            Some(e) => Lookup::Clean(e),
        }
    }

    /// Marks the entry for `canonical_path` as confirmed now (after a racy hit's
    /// content id matched).
    pub fn confirm(&mut self, canonical_path: &Path) {
        if let Some(e) = self.entries.get_mut(canonical_path) {
            e.checked_at_ns = now_ns();
            self.dirty = true;
        }
    }

    /// Records the SHA-256 of the entry for `canonical_path` (computed later,
    /// when an allowlist first asked for it).
    pub fn set_sha256(&mut self, canonical_path: &Path, sha256: &str) {
        if let Some(e) = self.entries.get_mut(canonical_path) {
            if e.sha256.as_deref() != Some(sha256) {
                e.sha256 = Some(sha256.to_owned());
                self.dirty = true;
            }
        }
    }

    /// Records (or replaces) the entry for its canonical path.
    pub fn insert(&mut self, entry: CacheEntry) {
        self.entries
            .insert(entry.identity.canonical_path.clone(), entry);
        self.dirty = true;
    }

    /// Number of entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no entries.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the cache back if it changed: to a private temp file (Unix: mode 0600) renamed
    /// over the old one, so readers never see half a file.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut entries: Vec<CacheEntry> = self.entries.values().cloned().collect();
        entries.sort_by(|a, b| a.identity.canonical_path.cmp(&b.identity.canonical_path));
        let bytes = serde_json::to_vec(&CacheFile {
            format: CACHE_FORMAT,
            entries,
        })
        .map_err(std::io::Error::other)?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut file = platform::private_file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(identity: FileIdentity) -> CacheEntry {
        CacheEntry {
            identity,
            content_id: "ab".repeat(32),
            sha256: None,
            interface_build_id: "build-1".into(),
            verdict: CachedVerdict::Quarantined {
                reason: "SIGSEGV".into(),
            },
            checked_at_ns: now_ns() + 10 * RACY_MARGIN_NS,
            probe_us: None,
        }
    }

    #[test]
    fn hit_needs_same_identity_and_same_build() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.so");
        std::fs::write(&file, b"one").unwrap();
        let id = FileIdentity::new(file.clone(), &std::fs::metadata(&file).unwrap()).unwrap();
        let cache_path = dir.path().join("cache.json");
        let mut cache = ScanCache::load(Some(&cache_path));
        cache.insert(entry(id.clone()));
        cache.save().unwrap();

        let cache = ScanCache::load(Some(&cache_path));
        assert_eq!(cache.len(), 1);
        assert!(matches!(cache.lookup(&id, "build-1"), Lookup::Clean(_)));
        assert!(
            matches!(cache.lookup(&id, "build-2"), Lookup::Miss),
            "another interface build must miss"
        );

        std::fs::write(&file, b"three").unwrap();
        let changed = FileIdentity::new(file.clone(), &std::fs::metadata(&file).unwrap()).unwrap();
        assert_ne!(changed, id);
        assert!(
            matches!(cache.lookup(&changed, "build-1"), Lookup::Miss),
            "a changed file must miss"
        );
    }

    #[test]
    fn an_entry_recorded_right_after_a_change_is_racy_until_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.so");
        std::fs::write(&file, b"one").unwrap();
        let id = FileIdentity::new(file.clone(), &std::fs::metadata(&file).unwrap()).unwrap();
        let mut cache = ScanCache::load(None);
        let mut e = entry(id.clone());
        e.checked_at_ns = now_ns();
        cache.insert(e);
        assert!(matches!(cache.lookup(&id, "build-1"), Lookup::Racy(_)));
        cache.entries.get_mut(&file).unwrap().checked_at_ns = now_ns() + 10 * RACY_MARGIN_NS;
        assert!(matches!(cache.lookup(&id, "build-1"), Lookup::Clean(_)));
    }

    #[test]
    fn corrupt_cache_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join("cache.json");
        std::fs::write(&cache_path, b"{ not json").unwrap();
        assert!(ScanCache::load(Some(&cache_path)).is_empty());
    }
}
