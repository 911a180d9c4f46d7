//! The probe channel's wire format: versioned, length-capped, nonce-tagged frames.
//!
//! # Threat model (honest version)
//!
//! The channel is a Unix socketpair handed to the probe child as fd 3 — never the
//! child's stdout/stderr, which the host discards and which any constructor can
//! write to. Every frame carries a magic, the protocol version, a length capped at
//! [`MAX_PAYLOAD`] and a per-session random nonce that the host sends as the very
//! first frame, before the child opens any library.
//!
//! What this defends against: a *broken* or merely noisy library — one that
//! prints, crashes, aborts, hangs, closes or scribbles blindly on file
//! descriptors. Such output can never be mistaken for a report: it is not on the
//! channel, or it fails the magic/version/length/nonce/JSON checks and the file
//! is quarantined as having "sent garbage".
//!
//! What it cannot defend against: a *deliberately hostile* library. Its
//! constructor runs inside the child with the child's full powers, so it can
//! read the nonce from the child's memory and write a well-formed "compatible"
//! report, or simply behave well in the probe and misbehave later in the host.
//! No in-process channel design can prevent that; the defences against hostile
//! libraries are the allowlist ([`super::integrity`]) and the permission checks
//! ([`super::permissions`]), which decide *which bytes* may be opened at all.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::Error;

/// Bumped on any incompatible change of the frame layout or the messages.
pub const PROTOCOL_VERSION: u16 = 1;
/// Every frame starts with these bytes.
pub const MAGIC: [u8; 4] = *b"PLPB";
/// Largest accepted payload. Reports are small; anything bigger is garbage.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Length of the per-session nonce.
pub const NONCE_LEN: usize = 16;
/// magic + version + reserved + length + nonce.
const HEADER_LEN: usize = 4 + 2 + 2 + 4 + NONCE_LEN;

/// The per-session random value every frame must carry.
pub type Nonce = [u8; NONCE_LEN];

/// A fresh random nonce (OS randomness, through uuid's v4 generator).
pub fn new_nonce() -> Nonce {
    *uuid::Uuid::new_v4().as_bytes()
}

/// Host → child messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToChild {
    /// First frame of a session: its header carries the nonce the child must echo.
    Hello,
    /// Open this file, check it and report.
    Probe {
        /// Matches the answer to the request.
        id: u64,
        /// Absolute path of the file (a shadow copy).
        path: PathBuf,
    },
}

/// Child → host messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromChild {
    /// Answer to [`ToChild::Hello`].
    Ready {
        /// The child's process id.
        pid: u32,
        /// [`crate::loader::interface_build_id`] of the child's build: the host
        /// refuses a probe built against another interface.
        interface_build_id: String,
    },
    /// Answer to [`ToChild::Probe`].
    Verdict {
        /// The request's id.
        id: u64,
        /// What the child found.
        verdict: Verdict,
    },
}

/// What a probe (or an in-process check) found out about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The library opened, passed the ABI checks and gave valid metadata.
    Compatible {
        /// Its metadata.
        plugin: PluginSummary,
    },
    /// The loader refused it with a regular error.
    Rejected {
        /// Why.
        rejection: Rejection,
    },
}

/// Plugin metadata as plain strings (what the scan report and cache keep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSummary {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Description.
    pub description: String,
    /// plugbay-api version it was built against.
    pub interface_version: String,
    /// Declared dependencies.
    pub dependencies: Vec<DependencySummary>,
}

/// One declared dependency, as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencySummary {
    /// Name of the plugin depended on.
    pub name: String,
    /// Semver requirement.
    pub requirement: String,
    /// Whether it is optional.
    pub optional: bool,
}

impl PluginSummary {
    /// The summary of parsed metadata.
    pub fn from_info(info: &crate::info::PluginInfo) -> Self {
        Self {
            name: info.name.clone(),
            version: info.version.to_string(),
            description: info.description.clone(),
            interface_version: info.interface_version.clone(),
            dependencies: info
                .dependencies
                .iter()
                .map(|d| DependencySummary {
                    name: d.name.clone(),
                    requirement: d.requirement.to_string(),
                    optional: d.optional,
                })
                .collect(),
        }
    }
}

/// A loader error without its path, so it can cross the channel and sit in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum Rejection {
    /// [`Error::OpenFailed`].
    OpenFailed {
        /// The loader's reason.
        reason: String,
    },
    /// [`Error::NotAPlugin`].
    NotAPlugin,
    /// [`Error::AbiMismatch`].
    AbiMismatch {
        /// What differs.
        summary: String,
        /// The interface version of the checking build.
        host_interface: String,
    },
    /// [`Error::InterfaceVersionMismatch`].
    InterfaceVersionMismatch {
        /// The checking build's version.
        expected: String,
        /// The plugin's.
        found: String,
    },
    /// [`Error::InvalidMetadata`].
    InvalidMetadata {
        /// What is wrong.
        reason: String,
    },
    /// Any other error, kept as text.
    Other {
        /// The error's message.
        message: String,
    },
}

impl Rejection {
    /// The path-less form of a loader error.
    pub fn from_error(error: &Error) -> Self {
        match error.clone() {
            Error::OpenFailed { reason, .. } => Self::OpenFailed { reason },
            Error::NotAPlugin { .. } => Self::NotAPlugin,
            Error::AbiMismatch {
                summary,
                host_interface,
                ..
            } => Self::AbiMismatch {
                summary,
                host_interface,
            },
            Error::InterfaceVersionMismatch {
                expected, found, ..
            } => Self::InterfaceVersionMismatch { expected, found },
            Error::InvalidMetadata { reason, .. } => Self::InvalidMetadata { reason },
            other => Self::Other {
                message: other.to_string(),
            },
        }
    }

    /// The same rejection with every mention of `from` in its texts replaced by
    /// `to` (a probe of a shadow copy names the copy; the user knows the original).
    pub fn readdressed(&self, from: &Path, to: &Path) -> Self {
        let (from, to) = (from.to_string_lossy(), to.to_string_lossy());
        let fix = |s: String| s.replace(&*from, &to);
        match self.clone() {
            Self::OpenFailed { reason } => Self::OpenFailed {
                reason: fix(reason),
            },
            Self::InvalidMetadata { reason } => Self::InvalidMetadata {
                reason: fix(reason),
            },
            Self::Other { message } => Self::Other {
                message: fix(message),
            },
            other => other,
        }
    }

    /// The host error for the file at `path`.
    pub fn to_error(&self, path: &Path) -> Error {
        let path = path.to_path_buf();
        match self.clone() {
            Self::OpenFailed { reason } => Error::OpenFailed { path, reason },
            Self::NotAPlugin => Error::NotAPlugin { path },
            Self::AbiMismatch {
                summary,
                host_interface,
            } => Error::AbiMismatch {
                path,
                summary,
                host_interface,
            },
            Self::InterfaceVersionMismatch { expected, found } => Error::InterfaceVersionMismatch {
                path,
                expected,
                found,
            },
            Self::InvalidMetadata { reason } => Error::InvalidMetadata { path, reason },
            Self::Other { message } => Error::OpenFailed {
                path,
                reason: message,
            },
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The other side closed the channel before a frame started.
    Closed,
    /// Reading failed or timed out (`TimedOut`/`WouldBlock` for a deadline).
    Io(io::Error),
    /// The frame is malformed; the text says how.
    Garbage(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => f.write_str("the channel was closed"),
            FrameError::Io(e) => write!(f, "reading the channel failed: {e}"),
            FrameError::Garbage(why) => write!(f, "invalid frame: {why}"),
        }
    }
}

/// Writes one frame holding `message` as JSON.
pub fn write_frame<T: Serialize>(w: &mut impl Write, nonce: &Nonce, message: &T) -> io::Result<()> {
    let payload = serde_json::to_vec(message).map_err(io::Error::other)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(io::Error::other(format!(
            "frame payload of {} bytes exceeds the {MAX_PAYLOAD}-byte cap",
            payload.len()
        )));
    }
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    frame.extend_from_slice(&0u16.to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(nonce);
    frame.extend_from_slice(&payload);
    w.write_all(&frame)?;
    w.flush()
}

/// Reads one frame. With `expected_nonce` the frame must carry it; without
/// (the child reading the host's first frame) the frame's nonce is returned.
pub fn read_frame<T: DeserializeOwned>(
    r: &mut impl Read,
    expected_nonce: Option<&Nonce>,
) -> Result<(T, Nonce), FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match r.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Garbage("the channel closed mid-frame".into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    if header[..4] != MAGIC {
        return Err(FrameError::Garbage(format!(
            "bad magic {:?}",
            String::from_utf8_lossy(&header[..4])
        )));
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::Garbage(format!(
            "protocol version {version}, expected {PROTOCOL_VERSION}"
        )));
    }
    let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::Garbage(format!(
            "payload length {len} exceeds the {MAX_PAYLOAD}-byte cap"
        )));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[12..]);
    if let Some(expected) = expected_nonce {
        if &nonce != expected {
            return Err(FrameError::Garbage("wrong session nonce".into()));
        }
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Garbage("the channel closed mid-frame".into()),
        _ => FrameError::Io(e),
    })?;
    let message = serde_json::from_slice(&payload)
        .map_err(|e| FrameError::Garbage(format!("undecodable payload: {e}")))?;
    Ok((message, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(nonce: &Nonce, msg: &ToChild) -> Vec<u8> {
        let mut buf = Vec::new();
        write_frame(&mut buf, nonce, msg).unwrap();
        buf
    }

    #[test]
    fn round_trip_with_nonce() {
        let nonce = new_nonce();
        let msg = ToChild::Probe {
            id: 7,
            path: "/x/y.so".into(),
        };
        let bytes = frame_bytes(&nonce, &msg);
        let (back, got): (ToChild, _) = read_frame(&mut bytes.as_slice(), Some(&nonce)).unwrap();
        assert_eq!(back, msg);
        assert_eq!(got, nonce);
        // The child learns the nonce from the first frame.
        let (_, learned): (ToChild, _) = read_frame(&mut bytes.as_slice(), None).unwrap();
        assert_eq!(learned, nonce);
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let nonce = new_nonce();
        let good = frame_bytes(&nonce, &ToChild::Hello);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"Segmentation fault (core dumped)\n and more text".to_vec(),
                "bad magic",
            ),
            (
                {
                    let mut b = good.clone();
                    b[4] = 9;
                    b
                },
                "protocol version 9",
            ),
            (
                {
                    let mut b = good.clone();
                    b[8..12].copy_from_slice(&(1u32 << 30).to_le_bytes());
                    b
                },
                "exceeds",
            ),
            (
                {
                    let mut b = good.clone();
                    b[12] ^= 1;
                    b
                },
                "wrong session nonce",
            ),
            (good[..good.len() - 1].to_vec(), "closed mid-frame"),
            (
                {
                    let mut b = good.clone();
                    let n = b.len();
                    b[n - 2] = b'!';
                    b
                },
                "undecodable",
            ),
        ];
        for (bytes, want) in cases {
            match read_frame::<ToChild>(&mut bytes.as_slice(), Some(&nonce)) {
                Err(FrameError::Garbage(why)) => assert!(why.contains(want), "{why} / {want}"),
                other => panic!("expected garbage ({want}), got {other:?}"),
            }
        }
        assert!(matches!(
            read_frame::<ToChild>(&mut [].as_slice(), Some(&nonce)),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn rejection_round_trips_to_the_same_error() {
        let path = Path::new("/p/a.so");
        let err = Error::AbiMismatch {
            path: path.into(),
            summary: "x".into(),
            host_interface: "1.0.0".into(),
        };
        assert_eq!(Rejection::from_error(&err).to_error(path), err);
        let err = Error::NotAPlugin { path: path.into() };
        assert_eq!(Rejection::from_error(&err).to_error(path), err);
    }
}
