//! The proptest fuzzers: structured inputs (valid frames, messages and
//! envelopes, then mutated, mixed with raw bytes) fed to the targets of
//! [`super`], each run's allocations measured. Bounded for every test run;
//! `PLUGBAY_FUZZ_CASES=N` runs N cases per fuzzer instead. Below them, the
//! explicit limit tests and one regression test per finding.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

use super::alloc::peak_during;
use super::*;
use crate::safety::protocol::frame::{MAGIC, MAX_PAYLOAD, PROTOCOL_VERSION};

/// What a frame's payload buffer starts with (the frame reader's first capacity).
const PAYLOAD_START: usize = 64 * 1024;
use crate::safety::protocol::ToChild;
use crate::safety::verdict::DependencyRecord;
use crate::state::read::{read_or_quarantine, ReadOutcome};

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

// ---- strategies ----

/// Strings that matter to the decoders (names, versions, requirements) mixed
/// with arbitrary ones.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", " ", "\t", "@host", "@", "hello", "a b", "1.0.0", "0.1.0-alpha.1+build.5",
            "01.0.0", "1.0", "1", "^1", "~1.2", ">=1, <2", "*", "=1.2.3", ">>1", "\0", "é",
            "/work/shadow/0123abcd.so",
        ])
        .prop_map(str::to_owned),
        2 => "[a-z0-9@ .^~<>=*,+-]{0,12}",
        1 => any::<String>(),
    ]
    .boxed()
}

fn record() -> impl Strategy<Value = MetadataRecord> {
    (
        text(),
        text(),
        text(),
        text(),
        prop::collection::vec((text(), text(), any::<bool>()), 0..3),
    )
        .prop_map(
            |(name, version, description, interface_version, deps)| MetadataRecord {
                name,
                version,
                description,
                interface_version,
                dependencies: deps
                    .into_iter()
                    .map(|(name, requirement, optional)| DependencyRecord {
                        name,
                        requirement,
                        optional,
                    })
                    .collect(),
            },
        )
}

fn rejection() -> impl Strategy<Value = Rejection> {
    prop_oneof![
        text().prop_map(|reason| Rejection::OpenFailed { reason }),
        Just(Rejection::NotAPlugin),
        (text(), text()).prop_map(|(summary, host_interface)| Rejection::AbiMismatch {
            summary,
            host_interface
        }),
        (text(), text())
            .prop_map(|(expected, found)| Rejection::InterfaceVersionMismatch { expected, found }),
        text().prop_map(|reason| Rejection::InvalidMetadata { reason }),
        text().prop_map(|reason| Rejection::Refused { reason }),
    ]
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        record().prop_map(|plugin| Verdict::Compatible { plugin }),
        rejection().prop_map(|rejection| Verdict::Rejected { rejection }),
    ]
}

fn from_child() -> impl Strategy<Value = FromChild> {
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(pid, interface_build_id)| FromChild::Ready {
            pid,
            interface_build_id
        }),
        (any::<u64>(), verdict()).prop_map(|(id, verdict)| FromChild::Verdict { id, verdict }),
    ]
}

fn to_child() -> impl Strategy<Value = ToChild> {
    prop_oneof![
        Just(ToChild::Hello),
        (any::<u64>(), text()).prop_map(|(id, path)| ToChild::Probe {
            id,
            path: PathBuf::from(path)
        }),
    ]
}

/// Byte edits: replace, insert or delete at a position.
fn mutations() -> impl Strategy<Value = Vec<(Index, u8, u8)>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec((any::<Index>(), 0u8..3, any::<u8>()), 1..4),
    ]
}

fn mutate(mut bytes: Vec<u8>, edits: &[(Index, u8, u8)]) -> Vec<u8> {
    for (at, kind, byte) in edits {
        let i = at.index(bytes.len() + 1);
        match kind {
            0 if i < bytes.len() => bytes[i] = *byte,
            1 => bytes.insert(i, *byte),
            _ if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => {}
        }
    }
    bytes
}

/// The JSON of a message, sometimes mutated, or arbitrary bytes.
fn payload<T: serde::Serialize + std::fmt::Debug>(
    message: impl Strategy<Value = T>,
) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (message, mutations()).prop_map(|(m, edits)| {
            mutate(serde_json::to_vec(&m).expect("messages serialize"), &edits)
        }),
        1 => prop::collection::vec(any::<u8>(), 0..48),
    ]
}

/// What to get wrong in a frame's header, if anything.
#[derive(Debug, Clone)]
enum Header {
    Right,
    Magic([u8; 4]),
    Version(u16),
    Reserved(u16),
    Length(u32),
    Nonce([u8; 16]),
    Truncated(Index),
}

fn header() -> impl Strategy<Value = Header> {
    header_capped(MAX_PAYLOAD)
}

/// [`header`] for a channel whose cap is `cap`.
fn header_capped(cap: usize) -> impl Strategy<Value = Header> {
    prop_oneof![
        12 => Just(Header::Right),
        1 => any::<[u8; 4]>().prop_map(Header::Magic),
        1 => any::<u16>().prop_map(Header::Version),
        1 => any::<u16>().prop_map(Header::Reserved),
        1 => prop_oneof![
            Just(0),
            Just(cap as u32),
            Just(cap as u32 + 1),
            Just(u32::MAX),
            any::<u32>(),
            0u32..64,
        ]
        .prop_map(Header::Length),
        1 => any::<[u8; 16]>().prop_map(Header::Nonce),
        1 => any::<Index>().prop_map(Header::Truncated),
    ]
}

fn frame(nonce: &Nonce, payload: &[u8], header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    match header {
        Header::Magic(m) => out.extend_from_slice(m),
        _ => out.extend_from_slice(&MAGIC),
    }
    match header {
        Header::Version(v) => out.extend_from_slice(&v.to_le_bytes()),
        _ => out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes()),
    }
    match header {
        Header::Reserved(r) => out.extend_from_slice(&r.to_le_bytes()),
        _ => out.extend_from_slice(&0u16.to_le_bytes()),
    }
    match header {
        Header::Length(l) => out.extend_from_slice(&l.to_le_bytes()),
        _ => out.extend_from_slice(&(payload.len() as u32).to_le_bytes()),
    }
    match header {
        Header::Nonce(n) => out.extend_from_slice(n),
        _ => out.extend_from_slice(nonce),
    }
    out.extend_from_slice(payload);
    if let Header::Truncated(at) = header {
        out.truncate(at.index(out.len()));
    }
    out
}

/// A channel's bytes: frames of `message` (under `nonce`, headers sometimes
/// wrong) and now and then raw bytes.
fn stream<T: serde::Serialize + std::fmt::Debug>(
    nonce: Nonce,
    message: impl Strategy<Value = T>,
) -> impl Strategy<Value = Vec<u8>> {
    stream_capped(nonce, message, MAX_PAYLOAD)
}

/// [`stream`] for a channel whose cap is `cap`.
fn stream_capped<T: serde::Serialize + std::fmt::Debug>(
    nonce: Nonce,
    message: impl Strategy<Value = T>,
    cap: usize,
) -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        8 => (payload(message), header_capped(cap)).prop_map(move |(p, h)| frame(&nonce, &p, &h)),
        1 => prop::collection::vec(any::<u8>(), 0..32),
    ];
    prop::collection::vec(chunk, 0..5).prop_map(|chunks| chunks.concat())
}

/// What the host sends: mostly a hello first (under a random nonce), then
/// requests.
fn host_stream() -> impl Strategy<Value = Vec<u8>> {
    any::<[u8; 16]>().prop_flat_map(|nonce| {
        (
            (
                payload(prop_oneof![4 => Just(ToChild::Hello), 1 => to_child()]),
                header(),
            ),
            stream(nonce, to_child()),
        )
            .prop_map(move |((p, h), rest)| [frame(&nonce, &p, &h), rest].concat())
    })
}

/// Messages of an isolated plugin's channel, both directions.
fn wire_message() -> BoxedStrategy<wire::Msg> {
    use wire::{Callback, Msg, Op, WireKind, WireLevel, WireLimits, WireResult};
    let result = prop_oneof![
        text().prop_map(|value| WireResult::Ok { value }),
        (
            prop::sample::select(vec![
                WireKind::Failed,
                WireKind::Panicked,
                WireKind::UnknownMethod,
                WireKind::InvalidInput,
                WireKind::Host,
            ]),
            text()
        )
            .prop_map(|(kind, message)| WireResult::Err { kind, message }),
    ]
    .boxed();
    let op = prop_oneof![
        Just(Op::Initialize),
        Just(Op::Shutdown),
        Just(Op::SaveState),
        (text(), text()).prop_map(|(state, version)| Op::LoadState { state, version }),
        (text(), text()).prop_map(|(method, args)| Op::Call { method, args }),
    ]
    .boxed();
    let call = prop_oneof![
        Just(Callback::HostName),
        Just(Callback::HostVersion),
        Just(Callback::Config),
        text().prop_map(|plugin| Callback::Status { plugin }),
        (text(), text(), text()).prop_map(|(target, method, args)| Callback::CallPlugin {
            target,
            method,
            args
        }),
    ]
    .boxed();
    let chain = || prop::collection::vec(text(), 0..3);
    prop_oneof![
        (text(), text(), any::<[Option<u64>; 3]>()).prop_map(|(path, plugin, [m, c, f])| {
            Msg::Hello {
                path,
                plugin,
                limits: WireLimits {
                    memory_bytes: m,
                    cpu_seconds: c,
                    open_files: f,
                },
            }
        }),
        (any::<u32>(), text(), text()).prop_map(|(pid, interface_build_id, plugin)| {
            Msg::Ready {
                pid,
                interface_build_id,
                plugin,
            }
        }),
        text().prop_map(|reason| Msg::OpenFailed { reason }),
        (any::<u64>(), chain(), op).prop_map(|(id, chain, op)| Msg::Request { id, chain, op }),
        (any::<u64>(), result.clone()).prop_map(|(id, result)| Msg::Reply { id, result }),
        (any::<u64>(), chain(), call).prop_map(|(id, chain, call)| Msg::Callback {
            id,
            chain,
            call
        }),
        (any::<u64>(), result).prop_map(|(id, result)| Msg::CallbackReply { id, result }),
        (
            prop::sample::select(vec![
                WireLevel::Error,
                WireLevel::Warn,
                WireLevel::Info,
                WireLevel::Debug,
                WireLevel::Trace,
            ]),
            text()
        )
            .prop_map(|(level, message)| Msg::Log { level, message }),
    ]
    .boxed()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// State files: an envelope of a random state with some fields wrong, as
/// JSON, sometimes mutated; or arbitrary bytes.
fn state_file() -> impl Strategy<Value = Vec<u8>> {
    let envelope = (
        prop_oneof![4 => Just(json!(1)), 1 => json_value()],
        prop_oneof![4 => Just(json!("p")), 1 => json_value()],
        prop_oneof![3 => Just(json!("1.2.3")), 1 => text().prop_map(Value::from)],
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(format, plugin, version, state, pretty)| {
            let envelope = json!({
                "format": format,
                "plugin": plugin,
                "plugin_version": version,
                "saved_at": "2026-11-29T00:00:00.000Z",
                "state": state,
            });
            if pretty {
                serde_json::to_vec_pretty(&envelope)
            } else {
                serde_json::to_vec(&envelope)
            }
            .expect("values serialize")
        });
    prop_oneof![
        8 => (envelope, mutations()).prop_map(|(bytes, edits)| mutate(bytes, &edits)),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Metadata inputs: verdict and cache-verdict JSON (sometimes mutated), FFI
/// fields joined by `0x1f`, or arbitrary bytes.
fn metadata_input() -> impl Strategy<Value = Vec<u8>> {
    let cached = prop_oneof![
        record().prop_map(|plugin| CachedVerdict::Compatible { plugin }),
        rejection().prop_map(|rejection| CachedVerdict::Rejected { rejection }),
        text().prop_map(|reason| CachedVerdict::Quarantined { reason }),
    ];
    prop_oneof![
        3 => payload(verdict()),
        2 => payload(cached),
        3 => prop::collection::vec(text(), 0..9).prop_map(|f| f.join("\u{1f}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// abi_stable-report-like text: its structural lines in random order, with
/// arbitrary ones between them.
fn report_text() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        4 => prop::sample::select(vec![
            "1 error(s)inside:", "0 error(s)inside:", "x error(s)inside:", "    <other>",
            "    field_name:optional", "    type:u32", "field_name:", "type:",
            "Layout of expected type:", "Error:mismatched type", "Error:", "Expected:",
            "Found:", "    bool", "", "\0",
        ])
        .prop_map(str::to_owned),
        1 => text(),
        1 => "[a-z ]{100,200}",
    ];
    prop::collection::vec(line, 0..40).prop_map(|lines| lines.join("\n").into_bytes())
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
