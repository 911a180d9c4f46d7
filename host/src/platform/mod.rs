//! Everything that differs between operating systems, behind one small surface.
//!
//! The rest of the host is written against this module; each OS family has one
//! implementation of it: `unix` (Linux, macOS, the BSDs) and `windows`. Both
//! offer the same items with the same meaning:
//!
//! | Concern | Unix | Windows |
//! |---|---|---|
//! | file identity for the scan cache ([`FileStamp`]) | device + inode + mtime + ctime from `stat` | volume serial + file index + last-write time from `GetFileInformationByHandle` |
//! | permission checks (`check_owner_and_mode`) | refuse group/other-writable or foreign-owned files and dirs | **not enforced**: a logged warning, once per process ([`PERMISSIONS_ENFORCED`] is `false`) |
//! | shadow copies | private dir 0700, temp file 0600 (space reserved first on Linux: `fallocate`), copy made read-only 0500, reuse checks owner and mode | the per-user temp/work dir's default ACL; copy made read-only (attribute), reuse checks it |
//! | background priority | nice 10 per thread (Linux), probe child at nice 10 | `THREAD_PRIORITY_BELOW_NORMAL`, probe child in `BELOW_NORMAL_PRIORITY_CLASS` |
//! | probe channel | a socketpair on fd 3; stdin/stdout/stderr are `/dev/null` | the child's stdin/stdout pipes, moved to private handles before any library is opened; std handles then point to `NUL` |
//! | exit reasons ([`ExitReason`]) | signals, named (`SIGSEGV (signal 11)`) | NTSTATUS exception codes, named (`STATUS_ACCESS_VIOLATION (0xC0000005)`) |
//! | isolated plugins' runner (`IsolatedChannel`, `set_resource_limit`) | socketpair on fd 3, stderr piped, `PR_SET_PDEATHSIG` on Linux; `setrlimit` (address space, CPU time, open files) | **not supported yet**: isolating a plugin is a configuration error |
//! | opening a library (`prepare_library`) | nothing to do (`dlopen` of an absolute path) | pre-load with `LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR \| LOAD_LIBRARY_SEARCH_DEFAULT_DIRS`, so dependencies resolve from the plugin's own dir, never the current dir |
//!
//! The mapping from exit reasons to words ([`ExitReason::describe`],
//! [`exception_name`]) is platform-independent and tested on every platform.

use std::fmt;

#[cfg(unix)]
pub(crate) mod unix;
#[cfg(unix)]
pub(crate) use unix as imp;

#[cfg(windows)]
pub(crate) mod windows;
#[cfg(windows)]
pub(crate) use windows as imp;

pub(crate) use imp::{
    check_owner_and_mode, default_work_dir_name, exit_reason, file_stamp, is_private_copy,
    lower_current_thread, make_read_only, open_file_stamp, preallocate, prepare_library,
    private_file_options, secure_private_dir, take_child_channel, ProbeChannel, CHANNEL_NAME,
    PERMISSIONS_ENFORCED,
};
/// Isolated plugins' runner processes: Unix only for now (see `crate::isolation`).
#[cfg(unix)]
pub(crate) use imp::{
    clone_child_channel, set_resource_limit, ChannelCloser, IsolatedChannel, ResourceLimit,
    CPU_LIMIT_SIGNAL,
};

/// What identifies one version of a file without reading it: which file
/// (device and file number) and when it last changed. Any write through the
/// file system moves the times; a replaced file has another number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Unix: device id. Windows: volume serial number.
    pub device: u64,
    /// Unix: inode number. Windows: file index.
    pub index: u64,
    /// Last modification, nanoseconds since the Unix epoch.
    pub modified_ns: i128,
    /// Unix: status change (ctime), which user space cannot set back.
    /// Windows: the last-write time again (there is no ctime in the stamp).
    pub changed_ns: i128,
}

/// A Windows `FILETIME` (100 ns ticks since 1601-01-01) as nanoseconds since
/// the Unix epoch.
// Used by the Windows implementation; tested everywhere.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn filetime_to_unix_ns(ticks: u64) -> i128 {
    /// 1601-01-01 to 1970-01-01 in 100 ns ticks.
    const EPOCH_OFFSET_TICKS: i128 = 116_444_736_000_000_000;
    (i128::from(ticks) - EPOCH_OFFSET_TICKS) * 100
}

/// How a child process ended, independent of the OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// It exited with this code.
    Code(i32),
    /// Unix: it was killed by this signal (`name` when it is a well-known one).
    #[cfg_attr(not(unix), allow(dead_code))]
    Signal {
        /// The signal number (numbers differ between OSes, hence the name).
        number: i32,
        /// `SIGSEGV` and friends.
        name: Option<&'static str>,
    },
    /// Windows: it ended with this NTSTATUS exception code (`0xC0000005`...).
    #[cfg_attr(not(windows), allow(dead_code))]
    Exception(u32),
    /// The OS reported neither a code nor a signal.
    Unknown,
}

impl ExitReason {
    /// A Windows exit code: NTSTATUS error codes (severity bits `11`, i.e.
    /// `0xC...`) are exceptions that ended the process, anything else a code.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub fn from_windows_code(code: u32) -> Self {
        if code & 0xC000_0000 == 0xC000_0000 {
            Self::Exception(code)
        } else {
            Self::Code(code as i32)
        }
    }

    /// What happened, as a verb phrase: "was killed by SIGSEGV (signal 11)",
    /// "crashed with STATUS_ACCESS_VIOLATION (0xC0000005)", "exited (status 1)".
    pub fn describe(&self) -> String {
        match *self {
            Self::Code(code) => format!("exited (status {code})"),
            Self::Signal {
                number,
                name: Some(name),
            } => format!("was killed by {name} (signal {number})"),
            Self::Signal { number, name: None } => format!("was killed by signal {number}"),
            Self::Exception(code) => match exception_name(code) {
                Some(name) => format!("crashed with {name} (0x{code:08X})"),
                None => format!("crashed with exception 0x{code:08X}"),
            },
            Self::Unknown => "ended (status unknown)".to_owned(),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The name of a Windows NTSTATUS exception code a crashing process ends with.
pub fn exception_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0xC000_0005 => "STATUS_ACCESS_VIOLATION",
        0xC000_0006 => "STATUS_IN_PAGE_ERROR",
        0xC000_001D => "STATUS_ILLEGAL_INSTRUCTION",
        0xC000_0025 => "STATUS_NONCONTINUABLE_EXCEPTION",
        0xC000_008C => "STATUS_ARRAY_BOUNDS_EXCEEDED",
        0xC000_0094 => "STATUS_INTEGER_DIVIDE_BY_ZERO",
        0xC000_0095 => "STATUS_INTEGER_OVERFLOW",
        0xC000_0096 => "STATUS_PRIVILEGED_INSTRUCTION",
        0xC000_00FD => "STATUS_STACK_OVERFLOW",
        0xC000_0135 => "STATUS_DLL_NOT_FOUND",
        0xC000_0139 => "STATUS_ENTRYPOINT_NOT_FOUND",
        0xC000_0142 => "STATUS_DLL_INIT_FAILED",
        0xC000_013A => "STATUS_CONTROL_C_EXIT",
        0xC000_0374 => "STATUS_HEAP_CORRUPTION",
        0xC000_0409 => "STATUS_STACK_BUFFER_OVERRUN (fail-fast, e.g. an abort)",
        0xC000_0420 => "STATUS_ASSERTION_FAILURE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_exception_codes_are_named() {
        let av = ExitReason::from_windows_code(0xC000_0005);
        assert_eq!(av, ExitReason::Exception(0xC000_0005));
        assert_eq!(
            av.describe(),
            "crashed with STATUS_ACCESS_VIOLATION (0xC0000005)"
        );
        assert_eq!(
            ExitReason::from_windows_code(0xC000_0409).describe(),
            "crashed with STATUS_STACK_BUFFER_OVERRUN (fail-fast, e.g. an abort) (0xC0000409)"
        );
        assert_eq!(
            ExitReason::from_windows_code(0xC0AB_CDEF).describe(),
            "crashed with exception 0xC0ABCDEF"
        );
    }

    #[test]
    fn plain_windows_exit_codes_stay_codes() {
        assert_eq!(ExitReason::from_windows_code(3), ExitReason::Code(3));
        assert_eq!(
            ExitReason::from_windows_code(101).describe(),
            "exited (status 101)"
        );
        // Warning-severity values (0x8...) are not crashes.
        assert_eq!(
            ExitReason::from_windows_code(0x8000_0003),
            ExitReason::Code(0x8000_0003_u32 as i32)
        );
    }

    #[test]
    fn windows_file_times_convert_to_unix_nanoseconds() {
        assert_eq!(filetime_to_unix_ns(116_444_736_000_000_000), 0);
        // 2001-09-09T01:46:40Z = 1e9 s after the epoch.
        assert_eq!(
            filetime_to_unix_ns(116_444_736_000_000_000 + 10_000_000_000_000_000),
            1_000_000_000_000_000_000
        );
        assert_eq!(filetime_to_unix_ns(0), -11_644_473_600_000_000_000);
    }

    #[test]
    fn signals_are_named_when_known() {
        let segv = ExitReason::Signal {
            number: 11,
            name: Some("SIGSEGV"),
        };
        assert_eq!(segv.describe(), "was killed by SIGSEGV (signal 11)");
        let other = ExitReason::Signal {
            number: 42,
            name: None,
        };
        assert_eq!(other.describe(), "was killed by signal 42");
        assert_eq!(ExitReason::Unknown.describe(), "ended (status unknown)");
    }
}
