//! The messages host and runner child exchange about one isolated plugin.
//!
//! They travel in the probe channel's frames ([`crate::safety::protocol::frame`]:
//! magic, version, length cap, per-session nonce), with a larger payload cap
//! ([`MAX_PAYLOAD`]) because they carry call arguments and results. Both sides
//! decode every payload through [`decode`], which never panics and allocates
//! at most a bounded multiple of the payload (itself capped).
//!
//! One session:
//! 1. host → child [`Msg::Hello`] (its frame's nonce is the session's), naming
//!    the library, the plugin and the limits; the child sets the limits, opens
//!    the library and answers [`Msg::Ready`] or [`Msg::OpenFailed`];
//! 2. host → child [`Msg::Request`]s (lifecycle operations and calls, each with
//!    its id and the call chain it runs on), answered by [`Msg::Reply`] with the
//!    same id, in any order;
//! 3. while a request runs, the child may send [`Msg::Callback`]s (the plugin
//!    calling back into the host, with the chain it runs on), which the host
//!    answers with [`Msg::CallbackReply`], and [`Msg::Log`] lines (no answer).
//!
//! The session ends when the host closes the channel (the child exits 0).

use plugbay_api::{ErrorKind, LogLevel, PluginError};
use serde::{Deserialize, Serialize};

/// Largest payload of one frame on an isolated plugin's channel: a call's
/// arguments or result must fit (as JSON text, with the envelope).
pub const MAX_PAYLOAD: usize = 8 * 1024 * 1024;

/// One message on an isolated plugin's channel (both directions; each side
/// refuses the other side's messages as a protocol violation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Msg {
    /// Host → child, first frame: open this library and serve this plugin.
    Hello {
        /// The library file (the host's verified shadow copy).
        path: String,
        /// The plugin's name, as the host registered it.
        plugin: String,
        /// Limits the child sets on itself before opening the library.
        limits: WireLimits,
    },
    /// Child → host: the library is open and its plugin is `plugin`.
    Ready {
        /// The child's process id.
        pid: u32,
        /// [`crate::loader::interface_build_id`] of the child's build.
        interface_build_id: String,
        /// The name the library's metadata declares.
        plugin: String,
    },
    /// Child → host: the library could not be opened (or is another plugin).
    OpenFailed {
        /// Why, in words.
        reason: String,
    },
    /// Host → child: run one operation.
    Request {
        /// Matches the reply.
        id: u64,
        /// The plugins on the call path, outermost first, ending with this one.
        chain: Vec<String>,
        /// What to run.
        op: Op,
    },
    /// Child → host: how request `id` ended.
    Reply {
        /// The request's id.
        id: u64,
        /// Its result.
        result: WireResult,
    },
    /// Child → host: the plugin calls back into the host.
    Callback {
        /// Matches the host's answer.
        id: u64,
        /// The call path the plugin code runs on (ends with this plugin).
        chain: Vec<String>,
        /// What it asks.
        call: Callback,
    },
    /// Host → child: the answer to callback `id`.
    CallbackReply {
        /// The callback's id.
        id: u64,
        /// Its result (JSON text on success).
        result: WireResult,
    },
    /// Child → host: a log line from the plugin (no answer).
    Log {
        /// Its level.
        level: WireLevel,
        /// The message.
        message: String,
    },
}

/// A lifecycle operation or call, host → child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// `initialize` (a fresh instance when none is live).
    Initialize,
    /// `shutdown`.
    Shutdown,
    /// `save_state`; the reply is the state as JSON text.
    SaveState,
    /// `load_state` with the state as JSON text.
    LoadState {
        /// The saved state, JSON text.
        state: String,
        /// The plugin version that saved it.
        version: String,
    },
    /// `call(method, args)`; the reply is the result as JSON text.
    Call {
        /// The method.
        method: String,
        /// The arguments, JSON text.
        args: String,
    },
}

impl Op {
    /// The operation in words, for errors and crash reports (`call(greet)`).
    pub fn describe(&self) -> String {
        match self {
            Op::Initialize => "initialize".to_owned(),
            Op::Shutdown => "shutdown".to_owned(),
            Op::SaveState => "save_state".to_owned(),
            Op::LoadState { .. } => "load_state".to_owned(),
            Op::Call { method, .. } => format!("call({method})"),
        }
    }
}

/// What plugin code asks of the host, child → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case", deny_unknown_fields)]
pub enum Callback {
    /// The host's name.
    HostName,
    /// The host's version.
    HostVersion,
    /// This plugin's configuration (JSON text).
    Config,
    /// Another plugin's lifecycle state (JSON: a string or `null`).
    Status {
        /// The plugin asked about.
        plugin: String,
    },
    /// A call to another plugin, or to the host's services (target `@host`).
    CallPlugin {
        /// The plugin called.
        target: String,
        /// The method.
        method: String,
        /// The arguments, JSON text.
        args: String,
    },
}

/// A result on the wire: JSON text, or a plugin error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum WireResult {
    /// Success; JSON text (`null` for operations without a value).
    Ok {
        /// The value.
        value: String,
    },
    /// A [`PluginError`].
    Err {
        /// Its kind.
        kind: WireKind,
        /// Its message.
        message: String,
    },
}

impl WireResult {
    /// `result` on the wire.
    pub fn from_result(result: Result<String, PluginError>) -> Self {
        match result {
            Ok(value) => WireResult::Ok { value },
            Err(e) => WireResult::Err {
                kind: WireKind::from(e.kind),
                message: e.message().to_owned(),
            },
        }
    }

    /// Back to a result.
    pub fn into_result(self) -> Result<String, PluginError> {
        match self {
            WireResult::Ok { value } => Ok(value),
            WireResult::Err { kind, message } => Err(PluginError::new(kind.into(), message)),
        }
    }
}

/// [`ErrorKind`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireKind {
    /// [`ErrorKind::Failed`].
    Failed,
    /// [`ErrorKind::Panicked`].
    Panicked,
    /// [`ErrorKind::UnknownMethod`].
    UnknownMethod,
    /// [`ErrorKind::InvalidInput`].
    InvalidInput,
    /// [`ErrorKind::Host`].
    Host,
}

impl From<ErrorKind> for WireKind {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Failed => WireKind::Failed,
            ErrorKind::Panicked => WireKind::Panicked,
            ErrorKind::UnknownMethod => WireKind::UnknownMethod,
            ErrorKind::InvalidInput => WireKind::InvalidInput,
            ErrorKind::Host => WireKind::Host,
        }
    }
}

impl From<WireKind> for ErrorKind {
    fn from(kind: WireKind) -> Self {
        match kind {
            WireKind::Failed => ErrorKind::Failed,
            WireKind::Panicked => ErrorKind::Panicked,
            WireKind::UnknownMethod => ErrorKind::UnknownMethod,
            WireKind::InvalidInput => ErrorKind::InvalidInput,
            WireKind::Host => ErrorKind::Host,
        }
    }
}

/// [`LogLevel`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireLevel {
    /// [`LogLevel::Error`].
    Error,
    /// [`LogLevel::Warn`].
    Warn,
    /// [`LogLevel::Info`].
    Info,
    /// [`LogLevel::Debug`].
    Debug,
    /// [`LogLevel::Trace`].
    Trace,
}

impl From<LogLevel> for WireLevel {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => WireLevel::Error,
            LogLevel::Warn => WireLevel::Warn,
            LogLevel::Info => WireLevel::Info,
            LogLevel::Debug => WireLevel::Debug,
            LogLevel::Trace => WireLevel::Trace,
        }
    }
}

impl From<WireLevel> for LogLevel {
    fn from(level: WireLevel) -> Self {
        match level {
            WireLevel::Error => LogLevel::Error,
            WireLevel::Warn => LogLevel::Warn,
            WireLevel::Info => LogLevel::Info,
            WireLevel::Debug => LogLevel::Debug,
            WireLevel::Trace => LogLevel::Trace,
        }
    }
}

/// Limits as the child receives them (`None`: not limited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireLimits {
    /// Address space, bytes.
    pub memory_bytes: Option<u64>,
    /// CPU time, seconds.
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors.
    pub open_files: Option<u64>,
}

/// Why a payload is not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable message: {}", self.0)
    }
}

/// Decodes one frame's payload into a message. Never panics; refuses payloads
/// over [`MAX_PAYLOAD`] before parsing; JSON nesting is bounded by serde_json's
/// recursion limit, and every string it allocates is a slice of the payload.
pub fn decode(bytes: &[u8]) -> Result<Msg, WireError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(WireError(format!(
            "payload of {} bytes exceeds the {MAX_PAYLOAD}-byte cap",
            bytes.len()
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| WireError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let messages = [
            Msg::Hello {
                path: "/x/libp.so".into(),
                plugin: "p".into(),
                limits: WireLimits {
                    memory_bytes: Some(1 << 28),
                    cpu_seconds: None,
                    open_files: Some(64),
                },
            },
            Msg::Ready {
                pid: 7,
                interface_build_id: "abc".into(),
                plugin: "p".into(),
            },
            Msg::OpenFailed {
                reason: "no".into(),
            },
            Msg::Request {
                id: 1,
                chain: vec!["a".into(), "p".into()],
                op: Op::Call {
                    method: "m".into(),
                    args: "{\"x\":1}".into(),
                },
            },
            Msg::Request {
                id: 2,
                chain: vec![],
                op: Op::LoadState {
                    state: "{}".into(),
                    version: "1.0.0".into(),
                },
            },
            Msg::Reply {
                id: 1,
                result: WireResult::from_result(Err(PluginError::unknown_method("m"))),
            },
            Msg::Callback {
                id: 3,
                chain: vec!["p".into()],
                call: Callback::CallPlugin {
                    target: "q".into(),
                    method: "m".into(),
                    args: "null".into(),
                },
            },
            Msg::CallbackReply {
                id: 3,
                result: WireResult::Ok {
                    value: "\"hi\"".into(),
                },
            },
            Msg::Log {
                level: WireLevel::Warn,
                message: "careful".into(),
            },
        ];
        for msg in messages {
            let bytes = serde_json::to_vec(&msg).unwrap();
            assert_eq!(decode(&bytes).unwrap(), msg);
        }
        let err = WireResult::from_result(Err(PluginError::invalid_input("bad")));
        let back = err.into_result().unwrap_err();
        assert_eq!(
            (back.kind, back.message()),
            (ErrorKind::InvalidInput, "bad")
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for bytes in [
            &b""[..],
            b"null",
            b"{\"type\":\"reply\"}",
            b"{\"type\":\"nope\"}",
            b"{\"type\":\"log\",\"level\":\"loud\",\"message\":\"x\"}",
            b"{\"type\":\"hello\",\"path\":\"p\",\"plugin\":\"p\",\"limits\":{},\"extra\":1}",
            &[0xff, 0xfe, 0x00],
        ] {
            assert!(decode(bytes).is_err(), "{bytes:?}");
        }
        let deep = "[".repeat(100_000);
        assert!(decode(deep.as_bytes()).is_err());
        let huge = vec![b' '; MAX_PAYLOAD + 1];
        assert!(decode(&huge).unwrap_err().0.contains("exceeds"));
    }
}
