//! Fuzz targets for every decoder that reads bytes the host did not write
//! itself: the probe channel both ways, an isolated plugin's channel (both
//! ways: one decoder serves host and runner), the state envelope, plugin
//! metadata arriving over the channel or from the scan cache, and
//! abi_stable's layout report.
//!
//! Each target takes arbitrary bytes, runs them through the decoder exactly as
//! the host uses it, and checks the decoder's promises: it returns (no panic,
//! no endless loop), every refusal is a typed error with a reason, and what it
//! accepts is well-formed (it converts, round-trips, agrees with the other
//! decoder of the same data). A target panics only when one of those
//! promises is broken: that panic is the fuzzer's finding.
//!
//! Two drivers share these targets:
//! - the proptest fuzzers in this module's tests (`cargo test -p plugbay-host
//!   --lib fuzzing`), bounded so they run in every test run, with structured
//!   inputs (valid frames and messages, then mutated) so they get past the
//!   magic and the nonce; they also measure every run's allocations (see
//!   `alloc.rs`) so a length field cannot make a decoder allocate what it
//!   claims. `PLUGBAY_FUZZ_CASES=N` runs N cases per fuzzer instead;
//! - the cargo-fuzz targets in `host/fuzz/` (`cargo xtask fuzz`), coverage
//!   guided, one per function here, through the `fuzzing` feature of this
//!   package, which makes this module public. libFuzzer's `-malloc_limit_mb`
//!   catches oversized allocations there.
//!
//! Not part of the stable API: it exists for the fuzzers.

use std::io::{Read, Write};
use std::path::Path;

use plugbay_api::{
    abi_stable::std_types::{RString, RVec},
    Dependency, PluginMetadata,
};

use crate::info::{check_plugin_name, PluginInfo};
use crate::isolation::wire;
use crate::safety::cache::CachedVerdict;
use crate::safety::probe_child::{serve, SessionEnd};
use crate::safety::protocol::frame::{read_payload, HEADER_LEN};
use crate::safety::protocol::{read_frame, FrameError, FromChild, Nonce};
use crate::safety::report::FileStatus;
use crate::safety::verdict::{MetadataRecord, Rejection, Verdict};
use crate::state::envelope;

#[cfg(test)]
mod alloc;
#[cfg(test)]
mod strategies;
#[cfg(test)]
mod tests;

/// The session nonce the host-side targets expect on every frame (the host
/// draws a random one per session; a fixed one lets the fuzzer learn it).
pub const SESSION_NONCE: Nonce = *b"plugbay-fuzz-key";

/// The shadow copy and the original file the host-side targets pretend the
/// verdicts are about (a rejection naming the copy is readdressed).
const SHADOW: &str = "/work/shadow/0123abcd.so";
const ORIGINAL: &str = "/plugins/libfuzzed.so";

/// The host reading a probe child's channel: `data` is everything the child
/// wrote. Reads frames with [`SESSION_NONCE`] until the first error, turning
/// each verdict into the host's metadata or error as admission does.
pub fn host_reads_child(data: &[u8]) {
    let mut input = data;
    loop {
        let before = input.len();
        match read_frame::<FromChild>(&mut input, Some(&SESSION_NONCE)) {
            Ok((message, nonce)) => {
                assert_eq!(
                    nonce, SESSION_NONCE,
                    "a frame with another nonce was accepted"
                );
                assert!(
                    before - input.len() >= HEADER_LEN,
                    "a frame was accepted without consuming its header"
                );
                match message {
                    FromChild::Ready {
                        interface_build_id, ..
                    } => {
                        // What the handshake prints about a foreign build.
                        let _ = interface_build_id.get(..12).unwrap_or(&interface_build_id);
                    }
                    FromChild::Verdict { verdict, .. } => conclude(verdict),
                }
            }
            Err(FrameError::Closed) => {
                assert_eq!(before, 0, "`Closed` while bytes were left");
                return;
            }
            Err(FrameError::Garbage(why)) => {
                assert!(!why.is_empty(), "a refusal without a reason");
                return;
            }
            Err(FrameError::Io(e)) => panic!("reading a byte slice cannot fail: {e}"),
        }
    }
}

/// An isolated plugin's channel, read by either side (host and runner share
/// the framing and the one message decoder): `data` as one payload, then as
/// the channel's bytes, frames under [`SESSION_NONCE`] up to the channel's
/// cap. Every accepted message converts as its reader uses it and
/// round-trips.
pub fn isolation_wire(data: &[u8]) {
    isolation_message(wire::decode(data));
    let mut input = data;
    loop {
        let before = input.len();
        match read_payload(&mut input, Some(&SESSION_NONCE), wire::MAX_PAYLOAD) {
            Ok((payload, nonce)) => {
                assert_eq!(
                    nonce, SESSION_NONCE,
                    "a frame with another nonce was accepted"
                );
                assert!(before - input.len() >= HEADER_LEN + payload.len());
                isolation_message(wire::decode(&payload));
            }
            Err(FrameError::Closed) => {
                assert_eq!(before, 0, "`Closed` while bytes were left");
                return;
            }
            Err(FrameError::Garbage(why)) => {
                assert!(!why.is_empty(), "a refusal without a reason");
                return;
            }
            Err(FrameError::Io(e)) => panic!("reading a byte slice cannot fail: {e}"),
        }
    }
}

/// One decoded isolated-channel message: a refusal has a reason; an accepted
/// message encodes back to itself and converts as its reader uses it.
fn isolation_message(decoded: Result<wire::Msg, wire::WireError>) {
    let msg = match decoded {
        Ok(msg) => msg,
        Err(e) => {
            assert!(!e.0.is_empty(), "a refusal without a reason");
            return;
        }
    };
    let bytes = serde_json::to_vec(&msg).expect("a decoded message encodes");
    assert_eq!(
        wire::decode(&bytes).as_ref(),
        Ok(&msg),
        "a message changed on the way"
    );
    match msg {
        wire::Msg::Request { op, .. } => {
            let _ = op.describe();
        }
        wire::Msg::Reply { result, .. } | wire::Msg::CallbackReply { result, .. } => {
            let _ = result.into_result();
        }
        wire::Msg::Log { level, .. } => {
            let _ = plugbay_api::LogLevel::from(level);
        }
        _ => {}
    }
}

/// The probe child reading the host's channel: `data` is everything the host
/// wrote. Runs the child's real session loop (with a check that names no
/// file) and checks every answer it wrote decodes with the nonce it learned.
pub fn child_reads_host(data: &[u8]) {
    let mut channel = Channel {
        input: data,
        output: Vec::new(),
    };
    let mut checks = 0usize;
    let end = serve(&mut channel, |path| {
        checks += 1;
        Verdict::Rejected {
            rejection: Rejection::Refused {
                reason: format!("a path of {} bytes", path.as_os_str().len()),
            },
        }
    });
    match &end {
        SessionEnd::HostClosed => {}
        SessionEnd::ProtocolError(why) => assert!(!why.is_empty(), "a refusal without a reason"),
        SessionEnd::WriteFailed => panic!("an answer could not be written to memory"),
    }
    // Everything the child wrote: `Ready`, then one verdict per check.
    let mut written = channel.output.as_slice();
    if written.is_empty() {
        assert_eq!(checks, 0, "checked a file before the handshake");
        return;
    }
    let (ready, nonce) = read_frame::<FromChild>(&mut written, None)
        .unwrap_or_else(|e| panic!("the child's first answer does not decode: {e}"));
    assert!(matches!(ready, FromChild::Ready { .. }), "{ready:?}");
    let mut verdicts = 0;
    while !written.is_empty() {
        match read_frame::<FromChild>(&mut written, Some(&nonce)) {
            Ok((FromChild::Verdict { .. }, _)) => verdicts += 1,
            other => panic!("the child wrote something other than a verdict: {other:?}"),
        }
    }
    assert_eq!(verdicts, checks, "one verdict per request");
}

/// The state file reader: `data` is a state file's bytes, read for plugin `p`.
/// An accepted envelope names `p` and, stored again, reads back the same.
pub fn state_envelope(data: &[u8]) {
    match envelope::decode("p", data) {
        Ok(saved) => {
            assert_eq!(saved.plugin, "p");
            match envelope::encode("p", &saved.plugin_version, &saved.state) {
                Ok(bytes) => {
                    let again = envelope::decode("p", &bytes)
                        .unwrap_or_else(|e| panic!("a re-encoded state does not decode: {e}"));
                    assert_eq!(again.plugin_version, saved.plugin_version);
                    assert_eq!(again.state, saved.state, "the state changed on the way");
                }
                Err(why) => assert!(!why.is_empty(), "a refusal without a reason"),
            }
        }
        Err(why) => assert!(!why.is_empty(), "a refusal without a reason"),
    }
}

/// Plugin metadata from outside the process: `data` as a verdict and as a
/// scan-cache verdict (JSON), and as the fields of FFI metadata (split at
/// `0x1f`: name, version, description, interface version, then name and
/// requirement of each dependency). The FFI decoder and the wire/cache
/// decoder must accept and refuse the same metadata.
pub fn metadata(data: &[u8]) {
    if let Ok(verdict) = serde_json::from_slice::<Verdict>(data) {
        conclude(verdict);
    }
    if let Ok(cached) = serde_json::from_slice::<CachedVerdict>(data) {
        match cached {
            CachedVerdict::Compatible { plugin } => conclude_record(&plugin),
            CachedVerdict::Rejected { rejection } => conclude_rejection(rejection),
            CachedVerdict::Quarantined { .. } => {}
        }
    }
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\u{1f}');
    let mut next = || fields.next().unwrap_or("").to_owned();
    let (name, version, description, interface_version) = (next(), next(), next(), next());
    let mut dependencies = Vec::new();
    loop {
        let (dep, requirement) = (next(), next());
        if dep.is_empty() && requirement.is_empty() {
            break;
        }
        dependencies.push((dep, requirement));
    }
    let record = MetadataRecord {
        name,
        version,
        description,
        interface_version,
        dependencies: dependencies
            .iter()
            .enumerate()
            .map(
                |(i, (name, requirement))| crate::safety::verdict::DependencyRecord {
                    name: name.clone(),
                    requirement: requirement.clone(),
                    optional: i % 2 == 1,
                },
            )
            .collect(),
    };
    conclude_record(&record);
}

/// abi_stable's layout report, as the loader summarizes it for an
/// `AbiMismatch`: one line, bounded, whatever the text.
pub fn abi_summary(data: &[u8]) {
    let summary = crate::abi_summary::summarize(&String::from_utf8_lossy(data));
    assert!(!summary.contains('\n'), "a multi-line summary: {summary:?}");
    // Three differences of five values (80 characters each) plus their words.
    assert!(
        summary.chars().count() <= 1_500,
        "a summary of {} characters",
        summary.chars().count()
    );
}

/// A verdict as admission concludes it.
fn conclude(verdict: Verdict) {
    match verdict {
        Verdict::Compatible { plugin } => conclude_record(&plugin),
        Verdict::Rejected { rejection } => conclude_rejection(rejection),
    }
}

/// A rejection becomes a typed loader error naming the original file.
fn conclude_rejection(rejection: Rejection) {
    let original = Path::new(ORIGINAL);
    let error = rejection
        .readdressed(Path::new(SHADOW), original)
        .into_error(original);
    assert_ne!(
        FileStatus::of(&error),
        FileStatus::Error,
        "a rejection became an untyped error: {error:?}"
    );
    assert!(error.to_string().contains(ORIGINAL), "{error}");
}

/// A metadata record becomes the host's metadata exactly when the same
/// strings as FFI metadata would, and then the same metadata.
fn conclude_record(record: &MetadataRecord) {
    let path = Path::new(ORIGINAL);
    let from_wire = record.to_info(path);
    let ffi = PluginMetadata {
        name: RString::from(record.name.as_str()),
        version: RString::from(record.version.as_str()),
        description: RString::from(record.description.as_str()),
        dependencies: record
            .dependencies
            .iter()
            .map(|d| Dependency {
                name: RString::from(d.name.as_str()),
                requirement: RString::from(d.requirement.as_str()),
                optional: d.optional,
            })
            .collect::<RVec<_>>(),
        interface_version: RString::from(record.interface_version.as_str()),
    };
    let from_ffi = PluginInfo::from_ffi(&ffi, path.to_path_buf());
    match (&from_wire, &from_ffi) {
        (Ok(wire), Ok(ffi)) => {
            assert_eq!(wire, ffi, "the two decoders disagree");
            assert!(check_plugin_name(&wire.name).is_ok());
            // The record of accepted metadata converts back to the same.
            let again = MetadataRecord::from_info(wire)
                .to_info(path)
                .unwrap_or_else(|e| panic!("accepted metadata does not convert again: {e}"));
            assert_eq!(&again, wire);
        }
        (Err(a), Err(b)) => assert!(!a.is_empty() && !b.is_empty(), "a refusal without a reason"),
        _ => panic!(
            "the wire decoder says {from_wire:?} but the FFI decoder says {from_ffi:?} for {record:?}"
        ),
    }
}

/// A channel whose reads come from `input` and whose writes are kept.
struct Channel<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl Read for Channel<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Channel<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
