//! The Unix implementation of [`crate::platform`] (Linux, macOS, the BSDs).
//!
//! Permissions follow sshd's StrictModes: a file or directory is trusted only
//! if neither group nor others can write it and it belongs to us or root. The
//! probe child talks over one end of a socketpair placed on fd [`CHANNEL_FD`];
//! its stdin, stdout and stderr are `/dev/null`.

use std::fs::{Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{ExitReason, FileStamp};
use crate::error::{Error, Result};

/// Nice value of background admission threads and of the probe child.
pub(crate) const BACKGROUND_NICE: i32 = 10;

/// Permission checks are enforced on Unix.
pub(crate) const PERMISSIONS_ENFORCED: bool = true;

/// The file descriptor the probe child receives its channel on.
pub(crate) const CHANNEL_FD: RawFd = 3;

/// How the probe channel is reached in the child, for messages.
pub(crate) const CHANNEL_NAME: &str = "file descriptor 3";

/// The current effective uid.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn ns(secs: i64, nanos: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nanos)
}

/// The stamp of a file from its `stat` (`meta`); `path` is not touched.
pub(crate) fn file_stamp(_path: &Path, meta: &Metadata) -> io::Result<FileStamp> {
    Ok(stamp_of(meta))
}

/// The stamp of an open file.
pub(crate) fn open_file_stamp(file: &std::fs::File) -> io::Result<FileStamp> {
    Ok(stamp_of(&file.metadata()?))
}

fn stamp_of(meta: &Metadata) -> FileStamp {
    FileStamp {
        device: meta.dev(),
        index: meta.ino(),
        modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
        changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
    }
}

/// Refuses `path` (with `meta` from `stat`) if it is writable by group or
/// others or owned by a user other than us and root.
pub(crate) fn check_owner_and_mode(path: &Path, meta: &Metadata) -> Result<()> {
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    // A sticky, world-writable directory (like /tmp) still lets others add files
    // but not replace ours; plugin dirs should not be like that either.
    if mode & 0o022 != 0 || (owner != euid() && owner != 0) {
        return Err(Error::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
            owner,
        });
    }
    Ok(())
}

/// Makes sure the shadow directory `dir` (with `meta` from `lstat`) is ours and
/// private: refuses another owner, tightens its mode to 0700.
pub(crate) fn secure_private_dir(dir: &Path, meta: &Metadata) -> Result<()> {
    if meta.uid() != euid() {
        return Err(Error::InsecurePermissions {
            path: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
            owner: meta.uid(),
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            Error::Config(format!(
                "cannot make the shadow directory {} private: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// Options for files only we may read and write (mode 0600).
pub(crate) fn private_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(0o600);
    options
}

/// Reserves `size` bytes for a new shadow copy before it is written (Linux:
/// `fallocate`; elsewhere nothing). On ext4 this takes the per-block
/// reservation out of every write: the copy costs about a fifth less CPU.
/// Best effort: a file system that cannot preallocate gets the plain writes.
pub(crate) fn preallocate(file: &std::fs::File, size: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(len) = libc::off_t::try_from(size) {
            if len > 0 {
                // SAFETY: `file` owns an open descriptor for the whole call;
                // fallocate only changes the file's allocation, no memory of ours.
                let _ = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, size);
}

/// Makes a finished shadow copy read-only (0500: read and map, no write).
pub(crate) fn make_read_only(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o500))
}

/// Whether an existing shadow copy (`meta` from `lstat`) can be trusted: a
/// regular file owned by us that nobody else can write.
pub(crate) fn is_private_copy(meta: &Metadata) -> bool {
    meta.is_file() && meta.uid() == euid() && meta.mode() & 0o022 == 0
}

/// Name of the default work directory under the temp dir: one per user.
pub(crate) fn default_work_dir_name() -> String {
    format!("plugin-host-{}", euid())
}

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`] (never
/// raises it). Best effort. On Linux the nice value is per thread
/// (`setpriority(PRIO_PROCESS, tid)`); elsewhere it is per process, so this
/// does nothing there (lowering the whole host would defeat the purpose).
pub(crate) fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority on our own thread id
        // only changes this thread's scheduling priority and reports failure
        // through its return value, which we ignore (best effort).
        unsafe {
            let tid = libc::gettid();
            let current = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            if current < BACKGROUND_NICE {
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE);
            }
        }
    }
}

/// Nothing to prepare: `dlopen` of an absolute path resolves the library's
/// dependencies through its own RUNPATH and the system paths, never the
/// current directory.
pub(crate) fn prepare_library(_path: &Path) -> std::result::Result<(), String> {
    Ok(())
}

/// How a child process ended.
pub(crate) fn exit_reason(status: &ExitStatus) -> ExitReason {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Code(code),
        (None, Some(number)) => ExitReason::Signal {
            number,
            name: signal_name(number),
        },
        (None, None) => ExitReason::Unknown,
    }
}

/// `SIGSEGV` and the other signals a crashing or killed probe ends with.
pub(crate) fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGXCPU => "SIGXCPU",
        _ => return None,
    })
}

/// The host's end of the channel to a probe child: a Unix socket.
pub(crate) struct ProbeChannel {
    stream: UnixStream,
}

impl ProbeChannel {
    /// Starts `cmd` as a probe child at background priority, with the other end
    /// of a new socketpair as its fd [`CHANNEL_FD`] and stdin/stdout/stderr on
    /// `/dev/null`. Writes to the child give up after `timeout`.
    pub(crate) fn spawn(mut cmd: Command, timeout: Duration) -> io::Result<(Child, Self)> {
        let (parent_end, child_end) = UnixStream::pair()?;
        no_sigpipe(&parent_end)?;
        let child_fd = child_end.as_raw_fd();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (dup2, fcntl) on descriptors it owns, plus
        // setpriority, a plain system call on the child itself (no locks, no
        // allocation) that lowers its CPU priority for the background probe;
        // its failure is ignored.
        unsafe {
            cmd.pre_exec(move || {
                libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE);
                if child_fd == CHANNEL_FD {
                    // Already fd 3: just let it survive exec.
                    let flags = libc::fcntl(child_fd, libc::F_GETFD);
                    if flags < 0
                        || libc::fcntl(child_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(child_fd, CHANNEL_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(child_end);
        let _ = parent_end.set_write_timeout(Some(timeout));
        Ok((child, Self { stream: parent_end }))
    }

    /// Writes to the child; a dead child gives an error, never a SIGPIPE.
    pub(crate) fn writer(&mut self) -> impl Write + '_ {
        NoSigPipe(&self.stream)
    }

    /// Reads from the child that fail with `TimedOut` once `deadline` passed.
    pub(crate) fn reader(&mut self, deadline: Instant) -> impl Read + '_ {
        DeadlineReader {
            stream: &self.stream,
            deadline,
        }
    }
}

/// Reads that fail with `TimedOut` once `deadline` has passed.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(self.deadline - now))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

/// Writes that give an error when the child is gone, never a SIGPIPE that
/// would kill a host which did not ignore it: `send` with `MSG_NOSIGNAL` where
/// it exists; on Apple systems, which lack it, the socket has `SO_NOSIGPIPE`
/// set when the channel is made.
struct NoSigPipe<'a>(&'a UnixStream);

#[cfg(not(target_vendor = "apple"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(target_vendor = "apple")]
const SEND_FLAGS: libc::c_int = 0;

/// Sets `SO_NOSIGPIPE` on Apple systems (see [`NoSigPipe`]); nothing elsewhere.
fn no_sigpipe(stream: &UnixStream) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        let on: libc::c_int = 1;
        // SAFETY: `on` is a valid c_int for the call's duration and its size is
        // passed along; the fd is owned by `stream`.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NOSIGPIPE,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let _ = stream;
    Ok(())
}

impl Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes and the fd is owned by
            // the borrowed stream for the duration of the call.
            let n = unsafe {
                libc::send(
                    self.0.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    SEND_FLAGS,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The host's end of the channel to an isolated plugin's runner child (a Unix
/// socket), split so one thread reads while others write.
pub(crate) struct IsolatedChannel {
    stream: UnixStream,
}

impl IsolatedChannel {
    /// Starts `cmd` as an isolated plugin's runner: the other end of a new
    /// socketpair on its fd [`CHANNEL_FD`], stdin and stdout on `/dev/null`,
    /// stderr piped to the host (its last lines explain a crash). On Linux the
    /// child is killed when the host dies (`PR_SET_PDEATHSIG`), so a hung
    /// plugin never outlives its host.
    pub(crate) fn spawn(mut cmd: Command) -> io::Result<(Child, Self)> {
        let (parent_end, child_end) = UnixStream::pair()?;
        no_sigpipe(&parent_end)?;
        let child_fd = child_end.as_raw_fd();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (prctl, dup2, fcntl) on the child itself and on
        // descriptors it owns.
        unsafe {
            cmd.pre_exec(move || {
                #[cfg(target_os = "linux")]
                {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                }
                if child_fd == CHANNEL_FD {
                    let flags = libc::fcntl(child_fd, libc::F_GETFD);
                    if flags < 0
                        || libc::fcntl(child_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(child_fd, CHANNEL_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(child_end);
        Ok((child, Self { stream: parent_end }))
    }

    /// Splits the channel: a blocking reader (no deadline), a writer that
    /// gives an error instead of a SIGPIPE when the child is gone, and a
    /// closer that shuts the socket down for both (waking the reader).
    pub(crate) fn split(
        self,
    ) -> io::Result<(
        impl Read + Send + 'static,
        impl Write + Send + 'static,
        ChannelCloser,
    )> {
        let reader = self.stream.try_clone()?;
        let closer = ChannelCloser(self.stream.try_clone()?);
        Ok((reader, OwnedNoSigPipe(self.stream), closer))
    }
}

/// Shuts an isolated plugin's channel down (both directions).
pub(crate) struct ChannelCloser(UnixStream);

impl ChannelCloser {
    /// Shuts the socket down: the child reads end-of-file, a blocked reader
    /// here wakes up with end-of-file. Idempotent.
    pub(crate) fn close(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// [`NoSigPipe`] owning its stream.
struct OwnedNoSigPipe(UnixStream);

impl Write for OwnedNoSigPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        NoSigPipe(&self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// In an isolated plugin's runner child: a second handle on the channel, so
/// one thread reads while another writes.
pub(crate) fn clone_child_channel(channel: &ChildChannel) -> io::Result<ChildChannel> {
    channel.try_clone()
}

/// A resource limit the runner child sets on itself before opening a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceLimit {
    /// Address space, bytes (`RLIMIT_AS`).
    AddressSpace(u64),
    /// CPU time, seconds (`RLIMIT_CPU`: `SIGXCPU` at the limit).
    CpuSeconds(u64),
    /// Open file descriptors (`RLIMIT_NOFILE`).
    OpenFiles(u64),
}

/// Sets `limit` on this process: soft and hard alike, except CPU time, whose
/// hard limit is one second later (at the soft limit the kernel sends
/// `SIGXCPU`, which names the cause; at the hard one `SIGKILL`).
pub(crate) fn set_resource_limit(limit: ResourceLimit) -> io::Result<()> {
    let (resource, soft, hard) = match limit {
        ResourceLimit::AddressSpace(v) => (libc::RLIMIT_AS, v, v),
        ResourceLimit::CpuSeconds(v) => (libc::RLIMIT_CPU, v, v.saturating_add(1)),
        ResourceLimit::OpenFiles(v) => (libc::RLIMIT_NOFILE, v, v),
    };
    let rlim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `rlim` is a valid rlimit for the call's duration; setrlimit only
    // reads it and reports failure through its return value.
    let rc = unsafe { libc::setrlimit(resource, &rlim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The signal a process gets when it goes over its CPU time limit.
pub(crate) const CPU_LIMIT_SIGNAL: i32 = libc::SIGXCPU;

/// The probe child's end of the channel.
pub(crate) type ChildChannel = UnixStream;

/// In the probe child: takes the channel the host set up on fd [`CHANNEL_FD`].
/// Call once, before opening any library. Errors (in words) when fd 3 is not a
/// socket, i.e. the process was not started by the host.
pub(crate) fn take_child_channel() -> std::result::Result<ChildChannel, String> {
    // SAFETY: fstat only writes into the zeroed struct we pass; an invalid fd
    // makes it return -1, which we check.
    let is_socket = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(CHANNEL_FD, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    };
    if !is_socket {
        return Err(format!("fd {CHANNEL_FD} is not its channel"));
    }
    // SAFETY: fd 3 is an open socket (checked above) that the host set up for
    // this process alone; nothing else in this process owns it.
    Ok(unsafe { UnixStream::from_raw_fd(CHANNEL_FD) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_map_to_named_reasons() {
        let segv = ExitStatus::from_raw(libc::SIGSEGV);
        assert_eq!(
            exit_reason(&segv).describe(),
            format!("was killed by SIGSEGV (signal {})", libc::SIGSEGV)
        );
        let exit1 = ExitStatus::from_raw(1 << 8);
        assert_eq!(exit_reason(&exit1), ExitReason::Code(1));
        assert_eq!(signal_name(libc::SIGBUS), Some("SIGBUS"));
        assert_eq!(signal_name(libc::SIGUSR1), None);
    }

    #[test]
    fn stamps_tell_files_and_versions_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"one").unwrap();
        let stamp = |p: &Path| file_stamp(p, &std::fs::metadata(p).unwrap()).unwrap();
        assert_eq!(stamp(&a), stamp(&a));
        assert_ne!(stamp(&a).index, stamp(&b).index);
        let open = open_file_stamp(&std::fs::File::open(&a).unwrap()).unwrap();
        assert_eq!(open, stamp(&a));
    }
}
