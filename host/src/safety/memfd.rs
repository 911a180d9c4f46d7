//! Linux, with [`crate::SafetyConfigBuilder::shadow_in_memory`]: shadow copies
//! in sealed memory files, so a cold admission writes no file to disk before
//! the library is checked and opened.
//!
//! [`seal_copy`] reads the original once, hashing the bytes while writing them
//! into a fresh `memfd_create` file, then seals it (`F_SEAL_WRITE |
//! F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`): from then on nobody — not this
//! process, not another process of the same user — can change its bytes, which
//! is stronger than a 0500 file in a 0700 directory (its owner can `chmod` it).
//! The probe child and the host both open it as `/proc/<host pid>/fd/<n>`, so
//! the checked bytes are the loaded bytes; glibc maps the segments privately,
//! which write seals allow.
//!
//! The descriptor is never closed: glibc recognizes an already-loaded library
//! by its path string first, and a closed descriptor's number (hence its
//! `/proc` path) would be reused by the next copy, which would then silently
//! resolve to the old library. A library that the probe rejects keeps its memory
//! copy until the process exits too (the probe child opened it under that path).
//!
//! Warm starts still map a disk copy (re-copying into memory on every start
//! would cost a read and a write of every library): [`persist_later`] has one
//! background thread write the shadow directory's copy from the sealed file,
//! and admission does not wait for it (the next admission does, see
//! [`flush_shadow_copies`]). Measured: waiting for those writes at the end of
//! a cold admission made it slower still. The bytes are copied twice (into
//! memory, then to disk), which is why this is not the default (see
//! ARCHITECTURE.md).
//!
//! The copy into memory is one in-kernel copy (`copy_file_range`/`sendfile`);
//! the hash is computed afterwards over a read-only mapping of the sealed file,
//! which can no longer shrink (no SIGBUS) or change.
//!
//! Where the kernel refuses (no memfd, `vm.memfd_noexec = 2`, no `/proc`),
//! [`seal_copy`] returns `None` and the pipeline falls back to the disk copy.
//! `MFD_EXEC` (Linux ≥ 6.3) asks for an executable memfd explicitly, which
//! `vm.memfd_noexec = 1` would otherwise deny; older kernels reject the flag
//! and get a plain memfd, which is executable there.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;

use super::cache::FileIdentity;
use super::shadow::{Hasher, Hashes, ShadowDir};
use crate::error::{Error, Result};

/// `MFD_EXEC` from `linux/memfd.h` (Linux ≥ 6.3; not in every libc binding).
const MFD_EXEC: libc::c_uint = 0x0010;

/// The seals of a shadow copy: no writes, no growing, no shrinking, no changing the seals.
const SEALS: libc::c_int =
    libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;

/// A library's bytes in a sealed memory file.
#[derive(Debug)]
pub(crate) struct Sealed {
    /// The hashes of the bytes.
    pub(crate) hashes: Hashes,
    /// `/proc/<pid>/fd/<n>`: opens the sealed file, in this process and in the
    /// probe child alike.
    pub(crate) path: PathBuf,
}

/// Whether `/proc/<pid>/fd` of this process can be listed (mounted, visible).
fn proc_fd_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| Path::new(&format!("/proc/{}/fd", std::process::id())).is_dir())
}

/// A new memfd with sealing allowed and exec permitted, or the kernel's refusal.
fn create(name: &str) -> io::Result<File> {
    let name: String = name
        .chars()
        .filter(|c| *c != '\0')
        .take(200)
        .collect::<String>();
    let name = CString::new(format!("plugbay:{name}")).map_err(io::Error::other)?;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call;
    // memfd_create returns a new descriptor or -1.
    let mut fd: RawFd = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // A kernel before 6.3 does not know MFD_EXEC; its memfds are executable.
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), base) };
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Copies `original` (checked as `expected`) into a new sealed memory file
/// while hashing it (SHA-256 too when `want_sha256`).
///
/// `Ok(None)`: memory files are unavailable here (the caller falls back to the
/// disk copy). `Err`: the original itself is unreadable or changed since its
/// check, exactly as [`ShadowDir::copy_in`] reports it.
pub(crate) fn seal_copy(
    original: &Path,
    expected: &FileIdentity,
    want_sha256: bool,
) -> Result<Option<Sealed>> {
    if !proc_fd_usable() {
        return Ok(None);
    }
    let refuse = |reason: String| Error::Refused {
        path: original.to_path_buf(),
        reason,
    };
    let name = original
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Ok(mut dst) = create(&name) else {
        return Ok(None);
    };
    let mut src = File::open(original).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    let meta = src
        .metadata()
        .map_err(|e| refuse(format!("cannot stat it: {e}")))?;
    if meta.ino() != expected.inode || meta.dev() != expected.dev || meta.len() != expected.size {
        return Err(refuse("it changed while being admitted; scan again".into()));
    }
    // One in-kernel copy (std uses copy_file_range, else sendfile): the bytes
    // never pass through a user-space buffer.
    let total = match io::copy(&mut src, &mut dst) {
        Ok(n) => n,
        Err(e)
            if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::ENOMEM) =>
        {
            // Out of memory (or a memfd size limit): the disk copy may still work.
            return Ok(None);
        }
        Err(e) => return Err(refuse(format!("reading it failed: {e}"))),
    };
    if total != expected.size {
        return Err(refuse(format!(
            "it changed size while being copied ({} bytes expected, {total} read); scan again",
            expected.size
        )));
    }
    let fd = dst.into_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_ADD_SEALS takes an int argument.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, SEALS) } < 0 {
        // SAFETY: `fd` is ours and not used after this.
        drop(unsafe { File::from_raw_fd(fd) });
        return Ok(None);
    }
    // Hash the sealed bytes in place: a read-only mapping of a file that can no
    // longer shrink (so no SIGBUS) or change (so these are the bytes the probe
    // and the host will map).
    let Some(hashes) =
        tracing::debug_span!("hash").in_scope(|| hash_sealed(fd, total, want_sha256))
    else {
        // SAFETY: `fd` is ours and was handed to nobody.
        drop(unsafe { File::from_raw_fd(fd) });
        return Ok(None);
    };
    // From here on the descriptor stays open until the process exits (see the
    // module docs): its number is never reused, so neither is the path.
    Ok(Some(Sealed {
        hashes,
        path: PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id())),
    }))
}

/// The hashes of the first `len` bytes of the sealed memfd `fd`, read through a
/// read-only mapping; `None` if it cannot be mapped.
fn hash_sealed(fd: RawFd, len: u64, want_sha256: bool) -> Option<Hashes> {
    let len = usize::try_from(len).ok()?;
    // SAFETY: a fresh private read-only mapping of `len` bytes of `fd`; the
    // file is sealed against shrinking, so every mapped page stays backed, and
    // against writing, so the bytes cannot change while we read them.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_POPULATE,
            fd,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `addr` points to `len` readable bytes (the mapping above) that
    // live until the munmap below; nothing writes them.
    let bytes = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len) };
    let mut hasher = Hasher::new(want_sha256);
    hasher.update(bytes);
    let hashes = hasher.finish();
    // SAFETY: unmaps exactly the mapping made above; `bytes` is not used after.
    unsafe { libc::munmap(addr, len) };
    Some(hashes)
}

/// One job of the background writer.
enum Job {
    /// Copy the sealed file (first) to the shadow directory's path (second).
    Persist(PathBuf, PathBuf),
    /// Answer once every job queued before this one is done.
    Flush(mpsc::Sender<()>),
}

static WRITER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

/// The process's background writer of disk copies, started on first use; `None`
/// if its thread cannot start (then nothing is persisted: later starts copy again).
fn writer() -> Option<&'static mpsc::Sender<Job>> {
    WRITER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("plugin-shadow-writer".into())
                .spawn(move || {
                    crate::platform::lower_current_thread();
                    for job in rx {
                        match job {
                            // A copy that cannot be written only makes the next
                            // start copy again; nothing to report.
                            Job::Persist(sealed, target) => {
                                let _ = persist(&sealed, &target);
                            }
                            Job::Flush(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Queues writing the disk copy of `sealed` (content `content_id`) into
/// `shadow`, for later starts to map; written by one background thread at
/// background priority, so admission does not wait for the disk.
pub(crate) fn persist_later(sealed: &Path, shadow: &ShadowDir, content_id: &str) {
    if let Some(tx) = writer() {
        let _ = tx.send(Job::Persist(
            sealed.to_path_buf(),
            shadow.path_for(content_id),
        ));
    }
}

/// Waits until every disk copy queued so far is written (or failed). Each
/// admission starts with it, so a scan finds the copies an earlier scan of this
/// process queued.
pub fn flush_shadow_copies() {
    // Never started: nothing queued, and no thread to start for nothing.
    if let Some(Some(tx)) = WRITER.get() {
        let (done_tx, done_rx) = mpsc::channel();
        if tx.send(Job::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

/// Copies `sealed` to `target` (temp name, read-only, rename), unless present.
fn persist(sealed: &Path, target: &Path) -> io::Result<()> {
    if target.exists() {
        return Ok(());
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = target.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".tmp-{}-m{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // A kernel-side copy (sendfile), no hashing: the sealed bytes are the ones
    // hashed when they were written.
    let copied = std::fs::copy(sealed, &tmp)
        .and_then(|_| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o500)))
        .and_then(|()| std::fs::rename(&tmp, target));
    if copied.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn sealed_copy_holds_the_bytes_and_refuses_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let original = tmp.path().join("a.so");
        std::fs::write(&original, b"hello bytes").unwrap();
        let id =
            FileIdentity::new(original.clone(), &std::fs::metadata(&original).unwrap()).unwrap();
        let sealed = seal_copy(&original, &id, true)
            .unwrap()
            .expect("memfd works here");
        assert_eq!(
            sealed.hashes.content_id,
            blake3::hash(b"hello bytes").to_hex().as_str()
        );
        assert!(sealed.hashes.sha256.is_some());
        assert_eq!(std::fs::read(&sealed.path).unwrap(), b"hello bytes");
        // Opening for writing works (a memfd is read-write), writing does not.
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&sealed.path)
            .unwrap();
        let err = w.write_all(b"evil").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        assert!(w.set_len(3).is_err());
        assert!(w.set_len(100).is_err());
        // Overwriting the original changes nothing in the copy.
        std::fs::write(&original, b"other").unwrap();
        assert_eq!(std::fs::read(&sealed.path).unwrap(), b"hello bytes");
    }

    #[test]
    fn a_file_that_changed_since_its_check_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let original = tmp.path().join("a.so");
        std::fs::write(&original, b"hello bytes").unwrap();
        let id =
            FileIdentity::new(original.clone(), &std::fs::metadata(&original).unwrap()).unwrap();
        std::fs::write(&original, b"hello").unwrap();
        let err = seal_copy(&original, &id, false).unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
    }

    #[test]
    fn persisted_copies_are_read_only_and_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let shadow = ShadowDir::open(&tmp.path().join("shadow")).unwrap();
        let original = tmp.path().join("a.so");
        std::fs::write(&original, b"hello bytes").unwrap();
        let id =
            FileIdentity::new(original.clone(), &std::fs::metadata(&original).unwrap()).unwrap();
        let sealed = seal_copy(&original, &id, false).unwrap().unwrap();
        persist_later(&sealed.path, &shadow, &sealed.hashes.content_id);
        flush_shadow_copies();
        let copy = shadow
            .existing(&sealed.hashes.content_id, 11)
            .expect("persisted");
        assert_eq!(std::fs::read(&copy).unwrap(), b"hello bytes");
        assert_eq!(std::fs::metadata(&copy).unwrap().mode() & 0o777, 0o500);
    }
}
