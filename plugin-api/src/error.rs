//! The error value that crosses the library boundary.

use std::fmt;

use abi_stable::{std_types::RString, StableAbi};

/// What kind of failure a plugin reports; lets the host react without parsing text.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The operation failed for a reason the plugin describes in the message.
    Failed,
    /// Plugin code panicked; the panic was caught at the boundary and the message kept.
    Panicked,
    /// `call` was given a method name the plugin does not expose.
    UnknownMethod,
    /// Arguments or state handed to the plugin could not be understood (bad JSON, wrong shape).
    InvalidInput,
    /// A call the plugin made back into the host failed (see the message).
    Host,
}

/// An error returned across the FFI boundary: a kind and a human-readable message.
///
/// Build one with [`PluginError::failed`] and friends, or with `?` from any
/// `std::error::Error` (it converts into [`ErrorKind::Failed`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// The category of failure.
    pub kind: ErrorKind,
    /// What happened, in words.
    pub message: RString,
}

impl PluginError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: RString::from(message.into()),
        }
    }

    /// A general failure with a message.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }

    /// The error for a `call` whose method the plugin does not expose.
    pub fn unknown_method(method: &str) -> Self {
        Self::new(
            ErrorKind::UnknownMethod,
            format!("unknown method `{method}`"),
        )
    }

    /// The error for arguments or state the plugin cannot use.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The error a plugin gets when it uses `service` on a host built against an
    /// older 1.x that lacks it: kind [`ErrorKind::Host`], for example "this
    /// host provides plugin API 1.0.0; the \`data-dir\` service needs 1.1.0".
    pub fn needs_newer_host(service: &str, host_version: &str) -> Self {
        let since = crate::services::since(service).unwrap_or("a newer version");
        Self::new(
            ErrorKind::Host,
            format!("this host provides plugin API {host_version}; the `{service}` service needs {since}"),
        )
    }

    /// The message as a `&str`.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Panicked => write!(f, "plugin panicked: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PluginError {}

impl From<serde_json::Error> for PluginError {
    fn from(e: serde_json::Error) -> Self {
        Self::invalid_input(format!("invalid JSON: {e}"))
    }
}

impl From<String> for PluginError {
    fn from(message: String) -> Self {
        Self::failed(message)
    }
}

impl From<&str> for PluginError {
    fn from(message: &str) -> Self {
        Self::failed(message)
    }
}
