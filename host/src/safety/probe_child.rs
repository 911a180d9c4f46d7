//! The probe child: opens libraries the host has not seen before, in a process
//! of its own, and reports back over the channel on fd [`CHANNEL_FD`].
//!
//! Started by [`super::probe`] with stdin/stdout/stderr on `/dev/null` and the
//! channel (one end of a socketpair) as fd 3. It serves many libraries in a row
//! and exits when the host closes the channel. A library that crashes, aborts
//! or hangs takes only this process down; the host notices and quarantines it.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use super::protocol::{
    read_frame, write_frame, FrameError, FromChild, PluginSummary, Rejection, ToChild, Verdict,
};
use crate::loader;

/// The file descriptor the host hands the channel on.
pub const CHANNEL_FD: RawFd = 3;

/// The whole program of a probe binary: runs the probe protocol on fd 3 (the
/// channel the host hands over) until the host hangs up, opening each library
/// the host names in this process and reporting its metadata or why it failed.
///
/// For embedders that ship their own probe binary: its `main` returns this
/// (`fn main() -> ExitCode { plugbay_host::run_probe_child() }`, as the
/// `plugin-probe` binary of this package does), and the host is pointed at it
/// with [`crate::SafetyConfigBuilder::probe_program`]. Call it before anything
/// else in `main` (no runtime, no threads, no argument parsing that could fail).
///
/// Exit codes: 0 after the host closed the channel, 2 when started without a
/// channel (e.g. by hand), 3 on a protocol error.
pub fn run_probe_child() -> ExitCode {
    if !channel_fd_is_socket() {
        eprintln!(
            "plugin-probe is started by the plugin host to check libraries in isolation; \
             it is not meant to be run by hand (fd {CHANNEL_FD} is not its channel)"
        );
        return ExitCode::from(2);
    }
    // SAFETY: fd 3 is an open socket (checked above) that the host set up for
    // this process alone; nothing else in this process owns it.
    let mut channel = unsafe { UnixStream::from_raw_fd(CHANNEL_FD) };
    let nonce = match read_frame::<ToChild>(&mut channel, None) {
        Ok((ToChild::Hello, nonce)) => nonce,
        Ok((other, _)) => {
            eprintln!("plugin-probe: expected hello, got {other:?}");
            return ExitCode::from(3);
        }
        Err(FrameError::Closed) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugin-probe: {e}");
            return ExitCode::from(3);
        }
    };
    let ready = FromChild::Ready {
        pid: std::process::id(),
        interface_build_id: loader::interface_build_id().to_owned(),
    };
    if write_frame(&mut channel, &nonce, &ready).is_err() {
        return ExitCode::from(3);
    }
    loop {
        let (id, path) = match read_frame::<ToChild>(&mut channel, Some(&nonce)) {
            Ok((ToChild::Probe { id, path }, _)) => (id, path),
            Ok((ToChild::Hello, _)) => continue,
            Err(FrameError::Closed) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("plugin-probe: {e}");
                return ExitCode::from(3);
            }
        };
        let verdict = match loader::open_library(&path) {
            Ok(lib) => Verdict::Compatible {
                plugin: PluginSummary::from_info(&lib.info),
            },
            Err(e) => Verdict::Rejected {
                rejection: Rejection::from_error(&e),
            },
        };
        if write_frame(&mut channel, &nonce, &FromChild::Verdict { id, verdict }).is_err() {
            return ExitCode::from(3);
        }
    }
}

/// Whether fd 3 is open and a socket.
fn channel_fd_is_socket() -> bool {
    // SAFETY: fstat only writes into the zeroed struct we pass; an invalid fd
    // makes it return -1, which we check.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(CHANNEL_FD, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}
