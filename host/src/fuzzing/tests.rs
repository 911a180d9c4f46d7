//! The proptest fuzzers: structured inputs (valid frames, messages and
//! envelopes, then mutated, mixed with raw bytes) fed to the targets of
//! [`super`], each run's allocations measured. Bounded for every test run;
//! `PLUGBAY_FUZZ_CASES=N` runs N cases per fuzzer instead. Below them, the
//! explicit limit tests and one regression test per finding.

use std::path::Path;

use proptest::prelude::*;
use serde_json::json;

use super::alloc::peak_during;
use super::strategies::*;
use super::*;
use crate::safety::protocol::frame::MAX_PAYLOAD;
use crate::safety::protocol::ToChild;
use crate::state::read::{read_or_quarantine, ReadOutcome};

/// What a frame's payload buffer starts with (the frame reader's first capacity).
const PAYLOAD_START: usize = 64 * 1024;

/// Cases per fuzzer in a normal test run (all of them together take a few
/// seconds in a debug build).
const DEFAULT_CASES: u32 = 512;

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PLUGBAY_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Findings are reproduced by the regression tests below, not by
        // files proptest would write into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The most a target may hold at once for `len` input bytes: one payload
/// buffer of the largest frame, plus a generous multiple of the input for
/// the decoded values. Nothing proportional to a length the input claims.
fn allocation_limit(len: usize) -> usize {
    4 * MAX_PAYLOAD + 64 * len
}

/// Runs `target` on `bytes` and checks its allocations stayed bounded.
fn metered(target: fn(&[u8]), bytes: &[u8]) -> Result<(), TestCaseError> {
    let ((), peak) = peak_during(|| target(bytes));
    prop_assert!(
        peak <= allocation_limit(bytes.len()),
        "{} input bytes made the decoder hold {peak} bytes",
        bytes.len()
    );
    Ok(())
}

// ---- the fuzzers ----

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn fuzz_host_reads_child(bytes in stream(SESSION_NONCE, from_child())) {
        metered(host_reads_child, &bytes)?;
    }

    #[test]
    fn fuzz_isolation_wire(
        bytes in prop_oneof![
            3 => stream_capped(SESSION_NONCE, wire_message(), wire::MAX_PAYLOAD),
            1 => payload(wire_message()),
        ]
    ) {
        metered(isolation_wire, &bytes)?;
    }

    #[test]
    fn fuzz_child_reads_host(bytes in host_stream()) {
        metered(child_reads_host, &bytes)?;
    }

    #[test]
    fn fuzz_state_envelope(bytes in state_file()) {
        metered(state_envelope, &bytes)?;
    }

    #[test]
    fn fuzz_metadata(bytes in metadata_input()) {
        metered(metadata, &bytes)?;
    }

    #[test]
    fn fuzz_abi_summary(bytes in report_text()) {
        metered(abi_summary, &bytes)?;
    }

    #[test]
    fn fuzz_raw_bytes_everywhere(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for target in [
            host_reads_child,
            child_reads_host,
            isolation_wire,
            state_envelope,
            metadata,
            abi_summary,
        ] {
            metered(target, &bytes)?;
        }
    }
}

proptest! {
    // Each case writes, reads and maybe moves a file: fewer of them.
    #![proptest_config(config(DEFAULT_CASES / 4))]

    /// The state file reader on disk: a file is either read or moved aside with
    /// its bytes intact, never an error, and decoding decides which.
    #[test]
    fn fuzz_state_file_reader(bytes in state_file()) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("p.json"), &bytes).expect("write");
        let (outcome, peak) = peak_during(|| read_or_quarantine(dir.path(), "p.json", "p"));
        prop_assert!(peak <= allocation_limit(bytes.len()), "held {peak} bytes");
        match (outcome, envelope::decode("p", &bytes)) {
            (Ok(ReadOutcome::Found(saved)), Ok(decoded)) => prop_assert_eq!(saved, decoded),
            (Ok(ReadOutcome::Corrupt { path, moved_to, reason }), Err(why)) => {
                prop_assert_eq!(reason, why);
                prop_assert!(!path.exists());
                prop_assert_eq!(std::fs::read(&moved_to).expect("moved file"), bytes);
            }
            (outcome, decoded) => {
                return Err(TestCaseError::fail(format!("read {outcome:?}, decoded {decoded:?}")));
            }
        }
    }
}

// ---- lengths that claim too much ----

/// A header claiming `len` payload bytes, followed by a little of something.
fn claiming(nonce: &Nonce, len: u32) -> Vec<u8> {
    let mut bytes = frame(nonce, &[], &Header::Length(len));
    bytes.extend_from_slice(&[b'x'; 1024]);
    bytes
}

#[test]
fn a_frame_claiming_4_gib_is_refused_before_allocating() {
    for len in [u32::MAX, 1 << 31, MAX_PAYLOAD as u32 + 1] {
        let bytes = claiming(&SESSION_NONCE, len);
        // The host, which knows the nonce, and the child's first read, which does not.
        let (host, peak) =
            peak_during(|| read_frame::<FromChild>(&mut &bytes[..], Some(&SESSION_NONCE)));
        assert!(
            peak < 4096,
            "claiming {len} bytes made the host hold {peak}"
        );
        assert!(
            matches!(&host, Err(FrameError::Garbage(why)) if why.contains("exceeds the 65536-byte cap")),
            "{host:?}"
        );
        let (child, peak) = peak_during(|| read_frame::<ToChild>(&mut &bytes[..], None));
        assert!(
            peak < 4096,
            "claiming {len} bytes made the child hold {peak}"
        );
        assert!(matches!(&child, Err(FrameError::Garbage(_))), "{child:?}");
    }
}

#[test]
fn a_state_file_of_4_gib_is_refused_before_reading() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = std::fs::File::create(dir.path().join("p.json")).expect("create");
    // Sparse: no disk space used.
    file.set_len(4 << 30).expect("set_len");
    drop(file);
    let (outcome, peak) = peak_during(|| read_or_quarantine(dir.path(), "p.json", "p"));
    match outcome {
        Ok(ReadOutcome::Corrupt { reason, .. }) => {
            assert!(reason.contains("the limit is 16777216"), "{reason}")
        }
        other => panic!("expected a corrupt file, got {other:?}"),
    }
    assert!(
        peak < 64 * 1024,
        "a 4 GiB file made the reader hold {peak} bytes"
    );
}

// ---- regression tests, one per finding ----

/// Found by `fuzz_metadata`: a verdict (from the probe or the scan cache)
/// naming a plugin "" or "@host" was admitted, although the same metadata read
/// from the library itself is refused. The wire and cache form now checks the
/// name as the FFI decoder does.
#[test]
fn a_reported_plugin_name_is_checked_like_the_librarys_own() {
    let path = Path::new(ORIGINAL);
    for name in ["", "  ", "@host", "@x"] {
        let record = MetadataRecord {
            name: name.to_owned(),
            version: "1.0.0".to_owned(),
            description: String::new(),
            interface_version: String::new(),
            dependencies: Vec::new(),
        };
        let why = record.to_info(path).expect_err(name);
        let ffi = PluginInfo::from_ffi(&PluginMetadata::new(name, "1.0.0"), path.to_path_buf());
        assert_eq!(Err(why), ffi.map(|_| ()));
    }
    // The exact input, through the target.
    metadata(br#"{"kind":"compatible","plugin":{"name":"","version":"1.0.0","description":"","interface_version":"","dependencies":[]}}"#);
}

/// Found by `fuzz_state_envelope`: a state holding 3.7848993079366223e-109
/// read back as 3.784899307936622e-109 (serde_json's default float parser is
/// not exact). serde_json's `float_roundtrip` parser is now used.
#[test]
fn a_saved_float_reads_back_exactly() {
    let version = semver::Version::new(1, 0, 0);
    for x in [3.784_899_307_936_622_3e-109, -2.117_779_191_774_842e-213] {
        let state = json!([x]);
        let bytes = envelope::encode("p", &version, &state).expect("encode");
        assert_eq!(envelope::decode("p", &bytes).expect("decode").state, state);
    }
    // The exact input, through the target.
    state_envelope(br#"{"format":1,"plugin":"p","plugin_version":"1.2.3","saved_at":"2026-11-29T00:00:00.000Z","state":[{"":-2.117779191774842e-213}]}"#);
}

// ---- the cargo-fuzz seeds ----

/// The seed inputs of the cargo-fuzz targets (`host/fuzz/seeds/<target>/`) are
/// valid inputs, so a fuzz run starts from inputs that reach every decoder's
/// end: checked here so they cannot silently rot when a format changes.
#[test]
fn the_cargo_fuzz_seeds_are_accepted_inputs() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let read = |target: &str| -> Vec<(String, Vec<u8>)> {
        let dir = seeds.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("dir entry").path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).expect("seed"))
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds for {target}");
        files
    };
    for (name, bytes) in read("host_reads_child") {
        let mut input = &bytes[..];
        while !input.is_empty() {
            let frame = read_frame::<FromChild>(&mut input, Some(&SESSION_NONCE));
            assert!(frame.is_ok(), "{name}: {frame:?}");
        }
        host_reads_child(&bytes);
    }
    for (name, bytes) in read("child_reads_host") {
        let mut channel = Channel {
            input: &bytes,
            output: Vec::new(),
        };
        let end = serve(&mut channel, |_| Verdict::Rejected {
            rejection: Rejection::NotAPlugin,
        });
        assert_eq!(end, SessionEnd::HostClosed, "{name}");
        child_reads_host(&bytes);
    }
    for (name, bytes) in read("isolation_wire") {
        if name.ends_with(".json") {
            assert!(wire::decode(&bytes).is_ok(), "{name}");
        } else {
            let mut input = &bytes[..];
            while !input.is_empty() {
                let frame = read_payload(&mut input, Some(&SESSION_NONCE), wire::MAX_PAYLOAD)
                    .map(|(payload, _)| wire::decode(&payload));
                assert!(matches!(frame, Ok(Ok(_))), "{name}: {frame:?}");
            }
        }
        isolation_wire(&bytes);
    }
    for (name, bytes) in read("state_envelope") {
        assert!(envelope::decode("p", &bytes).is_ok(), "{name}");
        state_envelope(&bytes);
    }
    for (name, bytes) in read("metadata") {
        let accepted = serde_json::from_slice::<Verdict>(&bytes).is_ok()
            || serde_json::from_slice::<CachedVerdict>(&bytes).is_ok()
            || !name.ends_with(".json");
        assert!(accepted, "{name}");
        metadata(&bytes);
    }
    for (name, bytes) in read("abi_summary") {
        assert!(
            !crate::abi_summary::summarize(&String::from_utf8_lossy(&bytes)).is_empty(),
            "{name}"
        );
        abi_summary(&bytes);
    }
}

/// Found by `fuzz_isolation_wire`: a frame header announcing a payload of the
/// isolated channel's cap (8 MiB) made the reader allocate all of it before a
/// single payload byte arrived (134 input bytes held 8 MiB). The buffer now
/// grows with the bytes that arrive.
#[test]
fn a_frame_claiming_the_cap_holds_only_what_arrived() {
    let bytes = claiming(&SESSION_NONCE, wire::MAX_PAYLOAD as u32);
    let (read, peak) =
        peak_during(|| read_payload(&mut &bytes[..], Some(&SESSION_NONCE), wire::MAX_PAYLOAD));
    assert!(
        matches!(&read, Err(FrameError::Garbage(why)) if why.contains("closed mid-frame")),
        "{read:?}"
    );
    assert!(peak <= 2 * PAYLOAD_START, "1 KiB sent, {peak} bytes held");
    // The exact input, through the target.
    isolation_wire(&bytes);
}
