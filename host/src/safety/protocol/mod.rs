//! The probe channel: the messages host and probe child exchange, in
//! versioned, length-capped, nonce-tagged frames ([`frame`]).
//!
//! # Threat model (honest version)
//!
//! The channel is private to host and child and is never where a library's
//! output goes: on Unix a socketpair handed to the child as fd 3 (stdout/stderr
//! are `/dev/null`); on Windows the child's stdin/stdout pipes, which the child
//! moves to private handles before it opens any library, pointing its std
//! handles to `NUL` (see [`crate::platform`]). Every frame carries a magic, the protocol version, a length capped at
//! [`frame::MAX_PAYLOAD`] and a per-session random nonce that the host sends as the very
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

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::verdict::Verdict;

pub mod frame;

pub use frame::{new_nonce, read_frame, write_frame, FrameError, Nonce};

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
