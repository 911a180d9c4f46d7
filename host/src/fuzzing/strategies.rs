//! The proptest strategies of the fuzzers: channel streams of valid frames
//! (headers sometimes wrong) around valid messages (sometimes mutated), state
//! files, metadata inputs and report text, each mixed with raw bytes.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

use super::*;
use crate::safety::protocol::frame::{MAGIC, MAX_PAYLOAD, PROTOCOL_VERSION};
use crate::safety::protocol::ToChild;
use crate::safety::verdict::DependencyRecord;

/// Strings that matter to the decoders (names, versions, requirements) mixed
/// with arbitrary ones.
pub(super) fn text() -> BoxedStrategy<String> {
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

pub(super) fn record() -> impl Strategy<Value = MetadataRecord> {
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

pub(super) fn rejection() -> impl Strategy<Value = Rejection> {
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

pub(super) fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        record().prop_map(|plugin| Verdict::Compatible { plugin }),
        rejection().prop_map(|rejection| Verdict::Rejected { rejection }),
    ]
}

pub(super) fn from_child() -> impl Strategy<Value = FromChild> {
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(pid, interface_build_id)| FromChild::Ready {
            pid,
            interface_build_id
        }),
        (any::<u64>(), verdict()).prop_map(|(id, verdict)| FromChild::Verdict { id, verdict }),
    ]
}

pub(super) fn to_child() -> impl Strategy<Value = ToChild> {
    prop_oneof![
        Just(ToChild::Hello),
        (any::<u64>(), text()).prop_map(|(id, path)| ToChild::Probe {
            id,
            path: PathBuf::from(path)
        }),
    ]
}

/// Byte edits: replace, insert or delete at a position.
pub(super) fn mutations() -> impl Strategy<Value = Vec<(Index, u8, u8)>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec((any::<Index>(), 0u8..3, any::<u8>()), 1..4),
    ]
}

pub(super) fn mutate(mut bytes: Vec<u8>, edits: &[(Index, u8, u8)]) -> Vec<u8> {
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
pub(super) fn payload<T: serde::Serialize + std::fmt::Debug>(
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
pub(super) enum Header {
    Right,
    Magic([u8; 4]),
    Version(u16),
    Reserved(u16),
    Length(u32),
    Nonce([u8; 16]),
    Truncated(Index),
}

pub(super) fn header() -> impl Strategy<Value = Header> {
    header_capped(MAX_PAYLOAD)
}

/// [`header`] for a channel whose cap is `cap`.
pub(super) fn header_capped(cap: usize) -> impl Strategy<Value = Header> {
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

pub(super) fn frame(nonce: &Nonce, payload: &[u8], header: &Header) -> Vec<u8> {
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
pub(super) fn stream<T: serde::Serialize + std::fmt::Debug>(
    nonce: Nonce,
    message: impl Strategy<Value = T>,
) -> impl Strategy<Value = Vec<u8>> {
    stream_capped(nonce, message, MAX_PAYLOAD)
}

/// [`stream`] for a channel whose cap is `cap`.
pub(super) fn stream_capped<T: serde::Serialize + std::fmt::Debug>(
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
pub(super) fn host_stream() -> impl Strategy<Value = Vec<u8>> {
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
pub(super) fn wire_message() -> BoxedStrategy<wire::Msg> {
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

pub(super) fn json_value() -> impl Strategy<Value = Value> {
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
pub(super) fn state_file() -> impl Strategy<Value = Vec<u8>> {
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
pub(super) fn metadata_input() -> impl Strategy<Value = Vec<u8>> {
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
pub(super) fn report_text() -> impl Strategy<Value = Vec<u8>> {
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
