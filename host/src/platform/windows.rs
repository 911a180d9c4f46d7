//! The Windows implementation of [`crate::platform`].
//!
//! What differs from Unix, and why:
//!
//! - **Permissions are not enforced.** Deciding "writable by someone other than
//!   an administrator" means walking the file's DACL (`GetNamedSecurityInfoW`,
//!   every ACE, group membership of every trustee); no well-kept crate does
//!   that, and a hand-written half-check would claim a safety it does not give.
//!   So [`check_owner_and_mode`] logs, once per process, that the check is not
//!   enforced, and the pipeline adds the same warning to every file report.
//! - **Shadow copies matter more.** Windows cannot overwrite or delete a loaded
//!   `.dll`: without shadow copies a plugin author could not rebuild while the
//!   host runs. The host maps the copy, so the original stays free.
//! - **DLL search order.** A plain `LoadLibrary` resolves a plugin's own
//!   dependencies from the current directory among others (DLL planting);
//!   [`prepare_library`] loads it first with `LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR |
//!   LOAD_LIBRARY_SEARCH_DEFAULT_DIRS`, so dependencies come from the plugin's
//!   directory and the system directories only. abi_stable's own open of the
//!   same path then finds the module already loaded and reuses it.
//! - **Probe channel.** The probe child gets the channel as its stdin/stdout
//!   pipes. Before it opens any library, [`take_child_channel`] moves both
//!   pipe handles to private (non-inheritable) handles, closing the originals,
//!   and points the three std handles to `NUL`. A constructor that prints
//!   (Rust's `println!` looks the std handle up on every write) writes to
//!   `NUL`; a C runtime's cached fd 1 holds the closed original handle value,
//!   never the channel's new one. Chosen over an inherited anonymous pipe
//!   handle (any other process spawned by the host at that moment would
//!   inherit it too, since std offers no handle list) and over a named pipe
//!   (a name other local processes can race to open). Pipes have no read
//!   timeout, so a reader thread feeds the host's end and deadlines are
//!   `recv_timeout`s.
//! - **Exit reasons** are NTSTATUS codes (`0xC0000005` ...), named by
//!   [`super::exception_name`].

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, IntoRawHandle, OwnedHandle};
use std::os::windows::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Once;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    DuplicateHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileInformationByHandle, GetFileType, BY_HANDLE_FILE_INFORMATION,
    FILE_FLAG_BACKUP_SEMANTICS, FILE_TYPE_PIPE,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, SetStdHandle, STD_ERROR_HANDLE, STD_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentThread, SetThreadPriority, BELOW_NORMAL_PRIORITY_CLASS,
    CREATE_NO_WINDOW, THREAD_PRIORITY_BELOW_NORMAL,
};

use super::{filetime_to_unix_ns, ExitReason, FileStamp};
use crate::error::Result;

/// Permission checks are not enforced on Windows (see the module docs).
pub(crate) const PERMISSIONS_ENFORCED: bool = false;

/// How the probe channel is reached in the child, for messages.
pub(crate) const CHANNEL_NAME: &str = "the probe's stdin/stdout pipes";

/// `FILE_READ_ATTRIBUTES`: enough access to read a file's identity.
const FILE_READ_ATTRIBUTES: u32 = 0x80;

/// The stamp of the file at `path` (opened for its attributes only).
pub(crate) fn file_stamp(path: &Path, _meta: &Metadata) -> io::Result<FileStamp> {
    let file = OpenOptions::new()
        .access_mode(FILE_READ_ATTRIBUTES)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    open_file_stamp(&file)
}

/// The stamp of an open file: volume serial, file index, last-write time.
pub(crate) fn open_file_stamp(file: &File) -> io::Result<FileStamp> {
    // SAFETY: an all-zero BY_HANDLE_FILE_INFORMATION is a valid value (plain
    // integers); the call only writes into it.
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: the handle is owned by `file` for the duration of the call and
    // `info` is a valid out-pointer.
    if unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let written = (u64::from(info.ftLastWriteTime.dwHighDateTime) << 32)
        | u64::from(info.ftLastWriteTime.dwLowDateTime);
    let written_ns = filetime_to_unix_ns(written);
    Ok(FileStamp {
        device: u64::from(info.dwVolumeSerialNumber),
        index: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        modified_ns: written_ns,
        changed_ns: written_ns,
    })
}

/// Not enforced on Windows: logs that once per process and lets the file pass.
pub(crate) fn check_owner_and_mode(path: &Path, _meta: &Metadata) -> Result<()> {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            first = %path.display(),
            "plugin file and directory permissions are not checked on Windows: \
             make sure only administrators and you can write to the plugin directories"
        );
    });
    Ok(())
}

/// The shadow directory is created under the per-user work directory, whose
/// default ACL admits only the user, SYSTEM and administrators; nothing more
/// is checked or changed (see the module docs on permissions).
pub(crate) fn secure_private_dir(_dir: &Path, _meta: &Metadata) -> Result<()> {
    Ok(())
}

/// Options for private files: the directory's ACL is inherited.
pub(crate) fn private_file_options() -> OpenOptions {
    OpenOptions::new()
}

/// Reserves space for a new shadow copy: nothing on Windows (the plain writes
/// are what the Unix side falls back to as well).
pub(crate) fn preallocate(_file: &std::fs::File, _size: u64) {}

/// Marks a finished shadow copy read-only (the attribute; the loaded `.dll`
/// is locked against writes by the OS anyway).
pub(crate) fn make_read_only(path: &Path) -> io::Result<()> {
    let mut permissions = std::fs::metadata(path)?.permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(path, permissions)
}

/// Whether an existing shadow copy can be reused: a regular, read-only file.
pub(crate) fn is_private_copy(meta: &Metadata) -> bool {
    meta.is_file() && meta.permissions().readonly()
}

/// Name of the default work directory under the (per-user) temp dir.
pub(crate) fn default_work_dir_name() -> String {
    "plugin-host".to_owned()
}

/// Lowers the calling thread's priority to `THREAD_PRIORITY_BELOW_NORMAL`.
/// Best effort: failure leaves it unchanged.
pub(crate) fn lower_current_thread() {
    // SAFETY: GetCurrentThread returns a pseudo-handle valid in this thread;
    // SetThreadPriority reports failure through its return value (ignored).
    unsafe {
        SetThreadPriority(GetCurrentThread(), THREAD_PRIORITY_BELOW_NORMAL);
    }
}

/// Loads `path` with `LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR |
/// LOAD_LIBRARY_SEARCH_DEFAULT_DIRS`, so its dependencies resolve from its own
/// directory and the system directories, never the current directory, and
/// keeps it loaded: abi_stable's following open of the same path gets this
/// module back. The error is the OS's reason.
pub(crate) fn prepare_library(path: &Path) -> std::result::Result<(), String> {
    use libloading::os::windows::{
        Library, LOAD_LIBRARY_SEARCH_DEFAULT_DIRS, LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR,
    };
    // SAFETY: loading runs the library's initialisers, exactly as the open that
    // follows would (the caller is about to open this very file); the module is
    // kept loaded for the life of the process, like every plugin library.
    let library = unsafe {
        Library::load_with_flags(
            path,
            LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_DEFAULT_DIRS,
        )
    }
    .map_err(|e| e.to_string())?;
    let _module = library.into_raw();
    Ok(())
}

/// How a child process ended: NTSTATUS exception codes are crashes.
pub(crate) fn exit_reason(status: &ExitStatus) -> ExitReason {
    match status.code() {
        Some(code) => ExitReason::from_windows_code(code as u32),
        None => ExitReason::Unknown,
    }
}

/// The host's end of the channel to a probe child: the child's stdin pipe for
/// writing, and its stdout pipe drained by a reader thread.
pub(crate) struct ProbeChannel {
    to_child: ChildStdin,
    from_child: mpsc::Receiver<Vec<u8>>,
    /// Bytes received but not read yet.
    buffered: Vec<u8>,
}

impl ProbeChannel {
    /// Starts `cmd` as a probe child in `BELOW_NORMAL_PRIORITY_CLASS`, without
    /// a console window, with piped stdin/stdout (the channel) and stderr on
    /// `NUL`. Writes block only while the child's pipe buffer is full, which
    /// the probe's small request window never reaches; `_timeout` is unused.
    pub(crate) fn spawn(mut cmd: Command, _timeout: Duration) -> io::Result<(Child, Self)> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .creation_flags(BELOW_NORMAL_PRIORITY_CLASS | CREATE_NO_WINDOW);
        let mut child = cmd.spawn()?;
        let pipes = child.stdin.take().zip(child.stdout.take());
        let Some((to_child, mut stdout)) = pipes else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("the probe's pipes were not set up"));
        };
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("plugin-probe-reader".into())
            .spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match stdout.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.send(buf[..n].to_vec()).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        if let Err(e) = reader {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok((
            child,
            Self {
                to_child,
                from_child: rx,
                buffered: Vec::new(),
            },
        ))
    }

    /// Writes to the child; a dead child gives an error (broken pipe).
    pub(crate) fn writer(&mut self) -> impl Write + '_ {
        &mut self.to_child
    }

    /// Reads from the child that fail with `TimedOut` once `deadline` passed.
    pub(crate) fn reader(&mut self, deadline: Instant) -> impl Read + '_ {
        PipeReader {
            channel: self,
            deadline,
        }
    }
}

/// Reads from the reader thread's chunks, with a deadline.
struct PipeReader<'a> {
    channel: &'a mut ProbeChannel,
    deadline: Instant,
}

impl Read for PipeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.channel.buffered.is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.channel.from_child.recv_timeout(left) {
                Ok(chunk) => self.channel.buffered = chunk,
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
                // The child closed its stdout (exited): end of stream.
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = buf.len().min(self.channel.buffered.len());
        buf[..n].copy_from_slice(&self.channel.buffered[..n]);
        self.channel.buffered.drain(..n);
        Ok(n)
    }
}

/// The probe child's end of the channel: private duplicates of the pipes it
/// was started with.
pub(crate) struct ChildChannel {
    from_host: File,
    to_host: File,
}

impl Read for ChildChannel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.from_host.read(buf)
    }
}

impl Write for ChildChannel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.to_host.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.to_host.flush()
    }
}

/// Moves the std handle `which` (a pipe) to a private, non-inheritable handle.
fn take_std_pipe(which: STD_HANDLE) -> std::result::Result<File, String> {
    // SAFETY: GetStdHandle has no preconditions; the value is checked below.
    let handle = unsafe { GetStdHandle(which) };
    let is_pipe = !handle.is_null()
        && handle != INVALID_HANDLE_VALUE
        // SAFETY: GetFileType only inspects a handle value (an invalid one
        // gives FILE_TYPE_UNKNOWN).
        && unsafe { GetFileType(handle) } == FILE_TYPE_PIPE;
    if !is_pipe {
        return Err("its stdin/stdout are not the host's pipes".to_owned());
    }
    let mut private = std::ptr::null_mut();
    // SAFETY: duplicating within our own process (pseudo-handle) into a valid
    // out-pointer; DUPLICATE_CLOSE_SOURCE closes the std handle, which nothing
    // else in this process owns (std's handles do not close it).
    let ok = unsafe {
        let process = GetCurrentProcess();
        DuplicateHandle(
            process,
            handle,
            process,
            &mut private,
            0,
            0,
            DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE,
        )
    };
    if ok == 0 {
        return Err(format!(
            "cannot take its channel: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: `private` is a fresh handle owned by nobody else.
    Ok(File::from(unsafe { OwnedHandle::from_raw_handle(private) }))
}

/// In the probe child: takes the channel (stdin/stdout pipes) and points the
/// std handles to `NUL`. Call once, before opening any library. Errors (in
/// words) when stdin/stdout are not pipes, i.e. not started by the host.
pub(crate) fn take_child_channel() -> std::result::Result<ChildChannel, String> {
    let from_host = take_std_pipe(STD_INPUT_HANDLE)?;
    let to_host = take_std_pipe(STD_OUTPUT_HANDLE)?;
    let nul = OpenOptions::new()
        .read(true)
        .write(true)
        .open("NUL")
        .map_err(|e| format!("cannot open NUL: {e}"))?
        .into_raw_handle();
    for which in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
        // SAFETY: `nul` is an open handle kept for the life of the process
        // (never closed: it became the std handles).
        if unsafe { SetStdHandle(which, nul) } == 0 {
            return Err(format!(
                "cannot redirect its std handles: {}",
                io::Error::last_os_error()
            ));
        }
    }
    Ok(ChildChannel { from_host, to_host })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::windows::process::ExitStatusExt;

    #[test]
    fn stamps_tell_files_and_versions_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"one").unwrap();
        let stamp = |p: &Path| file_stamp(p, &std::fs::metadata(p).unwrap()).unwrap();
        assert_eq!(stamp(&a), stamp(&a));
        assert_ne!(stamp(&a).index, stamp(&b).index);
        let open = open_file_stamp(&File::open(&a).unwrap()).unwrap();
        assert_eq!(open, stamp(&a));
    }

    #[test]
    fn read_only_copies_are_private_copies() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("c.dll");
        std::fs::write(&copy, b"MZ").unwrap();
        assert!(!is_private_copy(&std::fs::metadata(&copy).unwrap()));
        make_read_only(&copy).unwrap();
        assert!(is_private_copy(&std::fs::metadata(&copy).unwrap()));
    }

    #[test]
    fn crash_codes_are_named() {
        let av = ExitStatus::from_raw(0xC000_0005);
        assert_eq!(exit_reason(&av), ExitReason::Exception(0xC000_0005));
        assert!(exit_reason(&av)
            .describe()
            .contains("STATUS_ACCESS_VIOLATION"));
        assert_eq!(exit_reason(&ExitStatus::from_raw(1)), ExitReason::Code(1));
    }
}
