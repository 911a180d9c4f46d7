//! The probe child: opens libraries the host has not seen before, in a process
//! of its own, and reports back over the probe channel.
//!
//! Started by [`super::probe`]; the channel is set up by the platform layer
//! (Unix: a socket on fd 3, stdin/stdout/stderr on `/dev/null`; Windows: the
//! stdin/stdout pipes, moved to private handles here before any library is
//! opened, std handles then on `NUL`). It serves many libraries in a row and
//! exits when the host closes the channel. A library that crashes, aborts or
//! hangs takes only this process down; the host notices and quarantines it.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use super::protocol::{read_frame, write_frame, FrameError, FromChild, ToChild};
use super::verdict::{MetadataRecord, Verdict};
use crate::loader::{self, LayoutCheck};
use crate::platform;

/// The whole program of a probe binary: runs the probe protocol on the channel
/// the host set up (Unix: fd 3; Windows: stdin/stdout, moved to private handles
/// before any library is opened) until the host hangs up, opening
/// each library the host names in this process and reporting its metadata or
/// why it failed.
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
    let mut channel = match platform::take_child_channel() {
        Ok(channel) => channel,
        Err(why) => {
            eprintln!(
                "plugin-probe is started by the plugin host to check libraries in isolation; \
                 it is not meant to be run by hand ({why})"
            );
            return ExitCode::from(2);
        }
    };
    let end = serve(&mut channel, |path| {
        match loader::check_library(path, path, LayoutCheck::Verify) {
            Ok(lib) => Verdict::Compatible {
                plugin: MetadataRecord::from_info(&lib.info),
            },
            Err(rejection) => Verdict::Rejected { rejection },
        }
    });
    match end {
        SessionEnd::HostClosed => ExitCode::SUCCESS,
        SessionEnd::ProtocolError(why) => {
            eprintln!("plugin-probe: {why}");
            ExitCode::from(3)
        }
        SessionEnd::WriteFailed => ExitCode::from(3),
    }
}

/// How a probe session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The host closed the channel between frames: the normal end.
    HostClosed,
    /// The host's frames were malformed or out of order; the text says how.
    ProtocolError(String),
    /// An answer could not be written (the host is gone).
    WriteFailed,
}

/// The child's side of the protocol on `channel`: learns the session nonce
/// from the host's hello, answers it, then answers every probe request with
/// `check`'s verdict for the named file, until the host hangs up or breaks
/// the protocol.
pub(crate) fn serve<C: Read + Write>(
    channel: &mut C,
    mut check: impl FnMut(&Path) -> Verdict,
) -> SessionEnd {
    let nonce = match read_frame::<ToChild>(channel, None) {
        Ok((ToChild::Hello, nonce)) => nonce,
        Ok((other, _)) => {
            return SessionEnd::ProtocolError(format!("expected hello, got {other:?}"))
        }
        Err(FrameError::Closed) => return SessionEnd::HostClosed,
        Err(e) => return SessionEnd::ProtocolError(e.to_string()),
    };
    let ready = FromChild::Ready {
        pid: std::process::id(),
        interface_build_id: loader::interface_build_id().to_owned(),
    };
    if write_frame(channel, &nonce, &ready).is_err() {
        return SessionEnd::WriteFailed;
    }
    loop {
        let (id, path) = match read_frame::<ToChild>(channel, Some(&nonce)) {
            Ok((ToChild::Probe { id, path }, _)) => (id, path),
            Ok((ToChild::Hello, _)) => continue,
            Err(FrameError::Closed) => return SessionEnd::HostClosed,
            Err(e) => return SessionEnd::ProtocolError(e.to_string()),
        };
        let verdict = check(&path);
        if write_frame(channel, &nonce, &FromChild::Verdict { id, verdict }).is_err() {
            return SessionEnd::WriteFailed;
        }
    }
}
