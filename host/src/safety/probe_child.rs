//! The probe child: opens libraries the host has not seen before, in a process
//! of its own, and reports back over the probe channel.
//!
//! Started by [`super::probe`]; the channel is set up by the platform layer
//! (Unix: a socket on fd 3, stdin/stdout/stderr on `/dev/null`; Windows: the
//! stdin/stdout pipes, moved to private handles here before any library is
//! opened, std handles then on `NUL`). It serves many libraries in a row and
//! exits when the host closes the channel. A library that crashes, aborts or
//! hangs takes only this process down; the host notices and quarantines it.

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
        let verdict = match loader::check_library(&path, &path, LayoutCheck::Verify) {
            Ok(lib) => Verdict::Compatible {
                plugin: MetadataRecord::from_info(&lib.info),
            },
            Err(rejection) => Verdict::Rejected { rejection },
        };
        if write_frame(&mut channel, &nonce, &FromChild::Verdict { id, verdict }).is_err() {
            return ExitCode::from(3);
        }
    }
}
