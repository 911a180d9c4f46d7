//! Shadow copies: the host maps a private copy of each library, never the file
//! the user placed.
//!
//! Copies live in a host-owned directory (Unix: mode 0700) and are named by their
//! content id (BLAKE3), so (1) the bytes the probe checked are the bytes the host
//! maps — the probe opens the very same copy; (2) truncating, replacing or
//! rewriting the original in place cannot touch mapped pages (dlopen of a file
//! that is then overwritten in place segfaults; of a truncated one, SIGBUS); (3)
//! identical files share one copy. Copies are made read-only (Unix: 0500) and written
//! under a temporary name, then renamed, so a copy with a content-id name is
//! always complete while the system runs. The copy is not fsynced (cost); the
//! default shadow directory is under `$XDG_RUNTIME_DIR` (tmpfs) when set, which a
//! power loss empties, and a reused copy is checked for type, owner and size.
//!
//! Hashing: the content id is BLAKE3 (a 256-bit cryptographic hash, SIMD, about
//! 2.5× faster than SHA-256 with SHA-NI here). SHA-256 is what allowlists list,
//! so it is computed too — in the same pass — only when an allowlist is
//! configured ([`Hashes::sha256`]). The hash is always of the bytes written to
//! the copy, read once: each chunk is written and hashed from the same buffer.
//! Large files (from `OVERLAP_MIN`, 2 MiB) are hashed on a helper thread while the
//! next chunks are read and written, so the copy and the hash overlap on two
//! cores; the copy's space is reserved up front (Linux: `fallocate`), which
//! takes the per-block reservation out of every write on ext4.
//!
//! On Windows shadow copies matter even more: a loaded `.dll` cannot be
//! overwritten or deleted, so without them a plugin author could not rebuild
//! a plugin while the host runs. The modes and ownership checks are the
//! platform layer's ([`crate::platform`]); on Windows they are weaker (a
//! read-only attribute, the per-user directory's ACL).
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::cache::FileIdentity;

use crate::error::{Error, Result};
use crate::platform;

/// Bytes read per chunk while hashing and copying: small enough to stay in L2
/// between the hash and the write.
const CHUNK: usize = 64 * 1024;

/// The hashes of one file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    /// BLAKE3 (hex): names the shadow copy and keys the scan cache.
    pub content_id: String,
    /// SHA-256 (hex), when asked for (an allowlist is configured).
    pub sha256: Option<String>,
}

/// Hashes fed chunk by chunk: BLAKE3 always, SHA-256 on request.
pub(crate) struct Hasher {
    blake3: blake3::Hasher,
    sha256: Option<Sha256>,
}

impl Hasher {
    pub(crate) fn new(want_sha256: bool) -> Self {
        Self {
            blake3: blake3::Hasher::new(),
            sha256: want_sha256.then(Sha256::new),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.blake3.update(bytes);
        if let Some(sha) = &mut self.sha256 {
            sha.update(bytes);
        }
    }

    pub(crate) fn finish(self) -> Hashes {
        Hashes {
            content_id: self.blake3.finalize().to_hex().to_string(),
            sha256: self.sha256.map(|s| format!("{:x}", s.finalize())),
        }
    }
}

/// The directory of shadow copies.
#[derive(Debug, Clone)]
pub struct ShadowDir {
    dir: PathBuf,
}

impl ShadowDir {
    /// Opens (creating if needed) the shadow directory. Refuses a directory
    /// that is a symlink; on Unix also one not owned by this user, and makes it
    /// private (0700): whoever can write there could swap the bytes we map.
    pub fn open(dir: &Path) -> Result<Self> {
        let io_err = |e: std::io::Error| {
            Error::Config(format!(
                "cannot use the shadow directory {}: {e}",
                dir.display()
            ))
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let meta = std::fs::symlink_metadata(dir).map_err(io_err)?;
        if !meta.is_dir() {
            return Err(Error::Refused {
                path: dir.to_path_buf(),
                reason: "the shadow directory is not a directory (a symlink?)".into(),
            });
        }
        platform::secure_private_dir(dir, &meta)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    #[cfg(all(test, unix))]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the copy of content `content_id` lives.
    pub fn path_for(&self, content_id: &str) -> PathBuf {
        self.dir.join(format!(
            "{content_id}.{}",
            crate::discovery::LIBRARY_EXTENSION
        ))
    }

    /// The existing copy of content `content_id`, if it is a private copy (Unix:
    /// a regular file owned by us, not writable by others; Windows: a regular
    /// read-only file) with the expected size.
    pub fn existing(&self, content_id: &str, size: u64) -> Option<PathBuf> {
        let path = self.path_for(content_id);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        (platform::is_private_copy(&meta) && meta.len() == size).then_some(path)
    }

    /// Copies `original` into the shadow directory while hashing it, in one
    /// pass (SHA-256 too when `want_sha256`), and returns the hashes and the copy's
    /// path. `expected` is the identity the file was checked under: the opened
    /// file must be that inode with that size, and it must not change size while
    /// being copied, else it is refused.
    pub fn copy_in(
        &self,
        original: &Path,
        expected: &FileIdentity,
        want_sha256: bool,
    ) -> Result<(Hashes, PathBuf)> {
        let refuse = |reason: String| Error::Refused {
            path: original.to_path_buf(),
            reason,
        };
        let mut src = File::open(original).map_err(|e| refuse(format!("cannot read it: {e}")))?;
        let meta = src
            .metadata()
            .map_err(|e| refuse(format!("cannot stat it: {e}")))?;
        let stamp =
            platform::open_file_stamp(&src).map_err(|e| refuse(format!("cannot stat it: {e}")))?;
        if stamp.index != expected.inode
            || stamp.device != expected.dev
            || meta.len() != expected.size
        {
            return Err(refuse("it changed while being admitted; scan again".into()));
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let shadow_err = |e: std::io::Error| {
            Error::Config(format!(
                "cannot write a shadow copy in {}: {e}",
                self.dir.display()
            ))
        };
        let mut dst = platform::private_file_options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(shadow_err)?;
        // Best effort: a copy that ends up shorter is refused by the size check.
        platform::preallocate(&dst, expected.size);
        let result = copy_hashing(&mut src, &mut dst, expected.size, want_sha256)
            .map_err(|failure| match failure {
                CopyFailure::Read(e) => refuse(format!("reading it failed: {e}")),
                CopyFailure::Write(e) => shadow_err(e),
            })
            .and_then(|(hashes, total)| {
                if total == expected.size {
                    Ok(hashes)
                } else {
                    Err(refuse(format!(
                        "it changed size while being copied ({} bytes expected, {total} read); scan again",
                        expected.size
                    )))
                }
            });
        drop(dst);
        let hashes = match result {
            Ok(hashes) => hashes,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let target = self.path_for(&hashes.content_id);
        let finish = platform::make_read_only(&tmp).and_then(|()| std::fs::rename(&tmp, &target));
        if let Err(e) = finish {
            let _ = std::fs::remove_file(&tmp);
            // Windows cannot replace a read-only or loaded file: an existing
            // complete copy of the same content is what we wanted anyway.
            return match self.existing(&hashes.content_id, expected.size) {
                Some(existing) => Ok((hashes, existing)),
                None => Err(shadow_err(e)),
            };
        }
        Ok((hashes, target))
    }
}

/// Files at least this large are hashed on a helper thread while they are
/// copied ([`copy_hashing`]); smaller ones in line (a thread per file would
/// cost more than it overlaps, and on a cold scan the probe keeps the other
/// core busy anyway).
pub(crate) const OVERLAP_MIN: u64 = 2 * 1024 * 1024;
/// Chunk size of the overlapped copy: few hand-overs per file, each buffer
/// still small enough to stay in L2 between the write and the hash.
const OVERLAP_CHUNK: usize = 64 * 1024;
/// Buffers circulating between the copying and the hashing thread.
const OVERLAP_BUFFERS: usize = 8;

/// Why [`copy_hashing`] stopped.
#[derive(Debug)]
pub(crate) enum CopyFailure {
    /// Reading the source failed.
    Read(std::io::Error),
    /// Writing the copy failed (or the hashing thread could not finish).
    Write(std::io::Error),
}

/// Copies `src` to `dst` until the end of `src` and hashes exactly the bytes
/// written (BLAKE3, and SHA-256 when `want_sha256`); returns the hashes and the
/// number of bytes copied. `size` is the size the caller expects: from
/// [`OVERLAP_MIN`] on, the hashing runs on a helper thread while this one goes
/// on reading and writing (each chunk is written and hashed from the same
/// immutable buffer, so the hash is the hash of the copy's bytes whatever the
/// source does meanwhile); smaller files are hashed in line.
pub(crate) fn copy_hashing(
    src: &mut impl Read,
    dst: &mut impl Write,
    size: u64,
    want_sha256: bool,
) -> std::result::Result<(Hashes, u64), CopyFailure> {
    if size >= OVERLAP_MIN {
        if let Some(done) = copy_hashing_overlapped(src, dst, want_sha256) {
            return done;
        }
    }
    let mut hasher = Hasher::new(want_sha256);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = read_some(src, &mut buf).map_err(CopyFailure::Read)?;
        if n == 0 {
            break;
        }
        // The load profile's `hash`, nested in the caller's `copy`.
        tracing::debug_span!("hash").in_scope(|| hasher.update(&buf[..n]));
        dst.write_all(&buf[..n]).map_err(CopyFailure::Write)?;
        total += n as u64;
    }
    Ok((hasher.finish(), total))
}

/// [`copy_hashing`] with the hash on a helper thread; `None` if the thread
/// cannot be started (the caller copies in line instead, from the start: nothing
/// was read yet).
fn copy_hashing_overlapped(
    src: &mut impl Read,
    dst: &mut impl Write,
    want_sha256: bool,
) -> Option<std::result::Result<(Hashes, u64), CopyFailure>> {
    use std::sync::mpsc::sync_channel;
    use std::sync::Arc;
    // Chunks to hash go one way, emptied buffers come back; the hasher never
    // blocks on the way back, so the two threads cannot wait for each other.
    let (full_tx, full_rx) = sync_channel::<(Arc<Vec<u8>>, usize)>(OVERLAP_BUFFERS);
    let (empty_tx, empty_rx) = sync_channel::<Arc<Vec<u8>>>(OVERLAP_BUFFERS);
    for _ in 0..OVERLAP_BUFFERS {
        let _ = empty_tx.send(Arc::new(vec![0u8; OVERLAP_CHUNK]));
    }
    // The load profile's `hash`: on the helper thread, beside (not inside) the
    // caller's `copy`, so it is marked as overlapping it.
    let copy_span = tracing::Span::current();
    std::thread::scope(|scope| {
        let hashing = std::thread::Builder::new()
            .name("plugin-hasher".into())
            .spawn_scoped(scope, move || {
                let _span =
                    tracing::debug_span!(parent: &copy_span, "hash", overlapped = true).entered();
                let mut hasher = Hasher::new(want_sha256);
                for (chunk, n) in full_rx {
                    hasher.update(&chunk[..n]);
                    // Never waits: a buffer the channel has no room for (or that
                    // the copier, having stopped, will not take) is just freed.
                    let _ = empty_tx.try_send(chunk);
                }
                hasher.finish()
            })
            .ok()?;
        let mut total = 0u64;
        let copied = loop {
            // The hasher holds every other buffer only while hashing it.
            let mut chunk = empty_rx
                .recv()
                .unwrap_or_else(|_| Arc::new(vec![0u8; OVERLAP_CHUNK]));
            if Arc::get_mut(&mut chunk).is_none() {
                chunk = Arc::new(vec![0u8; OVERLAP_CHUNK]);
            }
            let Some(buf) = Arc::get_mut(&mut chunk) else {
                break Err(CopyFailure::Write(std::io::Error::other(
                    "a copy buffer is still shared",
                )));
            };
            let n = match read_some(src, buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(CopyFailure::Read(e)),
            };
            // Hashed and written from the same bytes, which nobody can change now.
            if full_tx.send((Arc::clone(&chunk), n)).is_err() {
                break Err(CopyFailure::Write(std::io::Error::other(
                    "the hashing thread stopped",
                )));
            }
            if let Err(e) = dst.write_all(&chunk[..n]) {
                break Err(CopyFailure::Write(e));
            }
            total += n as u64;
        };
        drop(full_tx);
        let hashes = hashing.join();
        Some(match (copied, hashes) {
            (Err(e), _) => Err(e),
            (Ok(()), Ok(hashes)) => Ok((hashes, total)),
            (Ok(()), Err(_)) => Err(CopyFailure::Write(std::io::Error::other(
                "the hashing thread failed",
            ))),
        })
    })
}

/// One `read`, retried when interrupted.
fn read_some(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The hashes of a file's bytes (SHA-256 too when `want_sha256`), read in chunks
/// (never mapped: a file truncated while mapped would raise SIGBUS).
pub fn hash_file(path: &Path, want_sha256: bool) -> std::io::Result<Hashes> {
    let mut file = File::open(path)?;
    let mut hasher = Hasher::new(want_sha256);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_some(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// SHA-256 (hex) of a file's bytes (what allowlists list).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    Ok(hash_file(path, true)?.sha256.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copy_is_named_by_hash_read_only_in_a_private_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let shadow = ShadowDir::open(&tmp.path().join("shadow")).unwrap();
        #[cfg(unix)]
        assert_eq!(
            std::fs::metadata(shadow.path()).unwrap().mode() & 0o777,
            0o700
        );
        let original = tmp.path().join("a.so");
        std::fs::write(&original, b"hello bytes").unwrap();
        let id =
            FileIdentity::new(original.clone(), &std::fs::metadata(&original).unwrap()).unwrap();
        let (hashes, copy) = shadow.copy_in(&original, &id, true).unwrap();
        assert_eq!(hashes, hash_file(&original, true).unwrap());
        // Same as `printf 'hello bytes' | sha256sum`.
        assert_eq!(
            hashes.sha256.as_deref(),
            Some("5608b71da2b2228faf1aa9fcfdfca682607045d650b3a984b4c752991f97b86d")
        );
        assert_eq!(
            hashes.content_id,
            blake3::hash(b"hello bytes").to_hex().as_str()
        );
        let (without_sha, _) = shadow.copy_in(&original, &id, false).unwrap();
        assert_eq!(without_sha.sha256, None);
        assert_eq!(without_sha.content_id, hashes.content_id);
        let sha = hashes.content_id;
        assert_eq!(copy, shadow.path_for(&sha));
        assert_eq!(std::fs::read(&copy).unwrap(), b"hello bytes");
        #[cfg(unix)]
        assert_eq!(std::fs::metadata(&copy).unwrap().mode() & 0o777, 0o500);
        assert!(std::fs::metadata(&copy).unwrap().permissions().readonly());
        assert_eq!(shadow.existing(&sha, 11), Some(copy.clone()));
        assert_eq!(shadow.existing(&sha, 12), None);
        // The original can be truncated: the copy keeps its bytes.
        std::fs::write(&original, b"").unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"hello bytes");
    }

    #[test]
    fn a_file_that_changed_since_its_check_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let shadow = ShadowDir::open(&tmp.path().join("shadow")).unwrap();
        let original = tmp.path().join("a.so");
        std::fs::write(&original, b"hello bytes").unwrap();
        let id =
            FileIdentity::new(original.clone(), &std::fs::metadata(&original).unwrap()).unwrap();
        std::fs::write(&original, b"hello").unwrap();
        let err = shadow.copy_in(&original, &id, false).unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{err}");
        assert!(err.to_string().contains("changed"), "{err}");
    }

    /// Deterministic pseudo-random bytes (xorshift), so chunk boundaries
    /// matter to the hash.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn a_large_file_hashed_while_copying_matches_a_straight_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let shadow = ShadowDir::open(&tmp.path().join("shadow")).unwrap();
        let original = tmp.path().join("big.so");
        // Past the overlap threshold and not a whole number of chunks.
        let bytes = noise(OVERLAP_MIN as usize * 2 + 12_345, 7);
        std::fs::write(&original, &bytes).unwrap();
        let id =
            FileIdentity::new(original.clone(), &std::fs::metadata(&original).unwrap()).unwrap();
        let (hashes, copy) = shadow.copy_in(&original, &id, true).unwrap();
        assert_eq!(hashes.content_id, blake3::hash(&bytes).to_hex().as_str());
        assert_eq!(
            hashes.sha256.as_deref(),
            Some(format!("{:x}", Sha256::digest(&bytes)).as_str())
        );
        assert_eq!(hashes, hash_file(&original, true).unwrap());
        assert_eq!(std::fs::read(&copy).unwrap(), bytes);
        let (without_sha, _) = shadow.copy_in(&original, &id, false).unwrap();
        assert_eq!(without_sha.content_id, hashes.content_id);
        assert_eq!(without_sha.sha256, None);
    }

    /// A source whose bytes change while it is being read (a file rewritten in
    /// place during admission): each read returns the next chunk of `first`
    /// until `switch_at`, then of `second`.
    struct Changing {
        first: Vec<u8>,
        second: Vec<u8>,
        switch_at: usize,
        at: usize,
    }

    impl Read for Changing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let source = if self.at < self.switch_at {
                &self.first
            } else {
                &self.second
            };
            let n = buf.len().min(source.len() - self.at).min(100_000);
            buf[..n].copy_from_slice(&source[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn the_content_id_names_the_bytes_written_even_if_the_source_changes_midway() {
        for len in [300_000, OVERLAP_MIN as usize + 700_000] {
            let first = noise(len, 1);
            let second = noise(len, 2);
            let mut src = Changing {
                first: first.clone(),
                second,
                switch_at: len / 2,
                at: 0,
            };
            let mut written = Vec::new();
            let (hashes, total) = copy_hashing(&mut src, &mut written, len as u64, true).unwrap();
            assert_eq!(total as usize, len);
            assert_ne!(written, first, "the source did change midway");
            // What gets checked and mapped is the copy: its hash is the one reported.
            assert_eq!(hashes.content_id, blake3::hash(&written).to_hex().as_str());
            assert_eq!(
                hashes.sha256,
                Some(format!("{:x}", Sha256::digest(&written)))
            );
        }
    }

    #[test]
    fn read_and_write_failures_are_told_apart() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for size in [10, OVERLAP_MIN] {
            let err = copy_hashing(&mut Failing, &mut Vec::new(), size, false).unwrap_err();
            assert!(
                matches!(&err, CopyFailure::Read(e) if e.to_string() == "disk gone"),
                "{err:?}"
            );
            let bytes = noise(size as usize, 3);
            let err = copy_hashing(&mut &bytes[..], &mut Failing, size, false).unwrap_err();
            assert!(
                matches!(&err, CopyFailure::Write(e) if e.to_string() == "disk full"),
                "{err:?}"
            );
        }
    }
}
