//! Frames on the probe channel: magic, version, length capped at
//! [`MAX_PAYLOAD`], per-session nonce, then a JSON payload. Knows nothing of
//! the messages inside (see [`super`]).

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

/// Bumped on any incompatible change of the frame layout or the messages.
pub const PROTOCOL_VERSION: u16 = 1;
/// Every frame starts with these bytes.
pub const MAGIC: [u8; 4] = *b"PLPB";
/// Largest accepted payload. Reports are small; anything bigger is garbage.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The payload buffer's first capacity; it grows as the payload arrives.
const PAYLOAD_BUFFER_START: usize = 64 * 1024;
/// Length of the per-session nonce.
pub const NONCE_LEN: usize = 16;
/// Bytes before the payload: magic + version + reserved + length + nonce.
pub const HEADER_LEN: usize = 4 + 2 + 2 + 4 + NONCE_LEN;

/// The per-session random value every frame must carry.
pub type Nonce = [u8; NONCE_LEN];

/// A fresh random nonce (OS randomness, through uuid's v4 generator).
pub fn new_nonce() -> Nonce {
    *uuid::Uuid::new_v4().as_bytes()
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
    write_frame_capped(w, nonce, message, MAX_PAYLOAD)
}

/// [`write_frame`] for a channel whose payloads may be up to `cap` bytes (the
/// isolated-plugin channel carries call arguments and results).
pub fn write_frame_capped<T: Serialize>(
    w: &mut impl Write,
    nonce: &Nonce,
    message: &T,
    cap: usize,
) -> io::Result<()> {
    let payload = serde_json::to_vec(message).map_err(io::Error::other)?;
    if payload.len() > cap || u32::try_from(payload.len()).is_err() {
        return Err(io::Error::other(format!(
            "frame payload of {} bytes exceeds the {cap}-byte cap",
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
    let (payload, nonce) = read_payload(r, expected_nonce, MAX_PAYLOAD)?;
    let message = serde_json::from_slice(&payload)
        .map_err(|e| FrameError::Garbage(format!("undecodable payload: {e}")))?;
    Ok((message, nonce))
}

/// Reads one frame's raw payload (at most `cap` bytes), checking magic,
/// version, length and nonce like [`read_frame`], for channels that decode
/// their messages themselves.
pub fn read_payload(
    r: &mut impl Read,
    expected_nonce: Option<&Nonce>,
    cap: usize,
) -> Result<(Vec<u8>, Nonce), FrameError> {
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
    if len > cap {
        return Err(FrameError::Garbage(format!(
            "payload length {len} exceeds the {cap}-byte cap"
        )));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[12..]);
    if let Some(expected) = expected_nonce {
        if &nonce != expected {
            return Err(FrameError::Garbage("wrong session nonce".into()));
        }
    }
    // The buffer grows with the bytes that arrive, not with the length the
    // header claims: a peer that announces a full-cap frame and stalls (or
    // hangs up) makes this side hold only what it really sent.
    let mut payload = Vec::with_capacity(len.min(PAYLOAD_BUFFER_START));
    r.take(len as u64)
        .read_to_end(&mut payload)
        .map_err(FrameError::Io)?;
    if payload.len() < len {
        return Err(FrameError::Garbage("the channel closed mid-frame".into()));
    }
    Ok((payload, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::safety::protocol::ToChild;

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
}
