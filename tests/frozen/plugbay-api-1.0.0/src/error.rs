//! The error value that crosses the library boundary.

use std::any::Any;
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
/// Build one with [`PluginError::failed`] and friends, or with `?` from any error
/// type: every `E: std::error::Error + Send + Sync + 'static` converts into kind
/// [`ErrorKind::Failed`], its message being the error's text followed by the
/// text of its sources (`std::fs::read(path)?` works in plugin code). The one
/// exception is `serde_json::Error`, which converts into
/// [`ErrorKind::InvalidInput`] (`invalid JSON: ...`), since in a plugin it means
/// that arguments or saved state had the wrong shape.
///
/// ```
/// use plugbay_api::{ErrorKind, PluginError};
///
/// fn read_config(path: &str) -> Result<Vec<u8>, PluginError> {
///     Ok(std::fs::read(path)?)
/// }
///
/// let err = read_config("/nonexistent/plugbay-config").unwrap_err();
/// assert_eq!(err.kind, ErrorKind::Failed);
/// let io = std::fs::read("/nonexistent/plugbay-config").unwrap_err();
/// assert_eq!(err.message(), io.to_string());
///
/// let err = PluginError::from(serde_json::from_str::<u32>("x").unwrap_err());
/// assert_eq!(err.kind, ErrorKind::InvalidInput);
/// ```
///
/// Like `anyhow::Error`, and for the same reason, `PluginError` does not itself
/// implement `std::error::Error`: that blanket conversion would otherwise
/// overlap with `From<T> for T`. For the same coherence reason there is no
/// `From<String>`/`From<&str>`; text becomes an error with
/// [`PluginError::failed`] (e.g. `.map_err(PluginError::failed)` on a
/// `Result<_, String>`). To put a `PluginError` where a `std::error::Error` is
/// needed, use [`PluginError::into_std`]; `?` turns that back into the same
/// `PluginError`, kind included.
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

impl<E> From<E> for PluginError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let any: &dyn Any = &error;
        if let Some(wrapped) = any.downcast_ref::<StdPluginError>() {
            return wrapped.0.clone();
        }
        if let Some(json) = any.downcast_ref::<serde_json::Error>() {
            return Self::invalid_input(format!("invalid JSON: {json}"));
        }
        Self::failed(text_with_sources(&error))
    }
}

/// The error's text, then each source's text that it does not already contain,
/// joined by `: ` (many errors print their cause themselves, many do not).
fn text_with_sources(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl PluginError {
    /// This error as a `std::error::Error` (a [`StdPluginError`]), for code that
    /// needs one, e.g. to box it or to give it as another error's source.
    pub fn into_std(self) -> StdPluginError {
        StdPluginError(self)
    }
}

/// A [`PluginError`] that implements `std::error::Error` (see
/// [`PluginError::into_std`]); the error itself is in the public field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdPluginError(pub PluginError);

impl fmt::Display for StdPluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StdPluginError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loading the table")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn read(path: &str) -> Result<Vec<u8>, PluginError> {
        Ok(std::fs::read(path)?)
    }

    #[test]
    fn question_mark_on_io_error_is_failed_with_its_text() {
        let err = read("/nonexistent/plugbay-test-file").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Failed);
        let io = std::fs::read("/nonexistent/plugbay-test-file").unwrap_err();
        assert_eq!(err.message(), io.to_string());
    }

    #[test]
    fn sources_are_kept_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "table.csv is missing");
        let err = PluginError::from(Outer(io));
        assert_eq!(err.kind, ErrorKind::Failed);
        assert_eq!(err.message(), "loading the table: table.csv is missing");
    }

    #[test]
    fn json_errors_stay_invalid_input() {
        let json = serde_json::from_str::<u32>("nope").unwrap_err();
        let err = PluginError::from(json);
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message().starts_with("invalid JSON: "), "{err}");
    }

    #[test]
    fn a_wrapped_plugin_error_comes_back_unchanged() {
        let original = PluginError::unknown_method("nope");
        assert_eq!(PluginError::from(original.clone().into_std()), original);
    }

    #[test]
    fn into_std_is_a_std_error_with_the_same_text() {
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(PluginError::invalid_input("bad shape").into_std());
        assert_eq!(boxed.to_string(), "bad shape");
    }
}
