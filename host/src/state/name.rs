//! The rule that turns a plugin name into a state-file name.
//!
//! Only names that are already safe file names are accepted; nothing is escaped,
//! folded or truncated, so two different plugin names can never share a file and
//! no name can reach outside the state directory.

use crate::error::{Error, Result};

/// The longest plugin name that can own a state file, in bytes.
pub const MAX_STATE_NAME_LEN: usize = 128;

/// The extension of state files.
pub const STATE_FILE_EXTENSION: &str = "json";

/// Checks `plugin` against the state-name rule and returns its state file name
/// (`<plugin>.json`).
///
/// The rule: 1 to [`MAX_STATE_NAME_LEN`] bytes, each one of `a-z`, `0-9`, `.`,
/// `_`, `-`, and not starting with `.` (which also refuses `.` and `..`; names
/// starting with `.` are reserved for the host's own files: the lock and temp
/// files). Upper case is refused rather than folded, so `Foo` and `foo` cannot
/// collide. Anything else (`/`, `\`, NUL, spaces, non-ASCII) is
/// [`Error::InvalidStateName`].
pub fn state_file_name(plugin: &str) -> Result<String> {
    let refuse = |reason: &str| {
        Err(Error::InvalidStateName {
            name: plugin.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if plugin.is_empty() {
        return refuse("the name is empty");
    }
    if plugin.len() > MAX_STATE_NAME_LEN {
        return refuse(&format!(
            "the name is {} bytes long; at most {MAX_STATE_NAME_LEN} are allowed",
            plugin.len()
        ));
    }
    if plugin.starts_with('.') {
        return refuse("the name starts with `.` (`.`, `..` and hidden names are reserved)");
    }
    if let Some(bad) = plugin
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
    {
        return refuse(&format!(
            "it contains {bad:?}; only lower-case ASCII letters, digits, `.`, `_` and `-` are allowed"
        ));
    }
    Ok(format!("{plugin}.{STATE_FILE_EXTENSION}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_map_to_json_files() {
        assert_eq!(state_file_name("counter").unwrap(), "counter.json");
        assert_eq!(
            state_file_name("my-plugin_2.0").unwrap(),
            "my-plugin_2.0.json"
        );
        let longest = "a".repeat(MAX_STATE_NAME_LEN);
        assert_eq!(
            state_file_name(&longest).unwrap(),
            format!("{longest}.json")
        );
    }

    #[test]
    fn names_that_could_escape_or_collide_are_refused() {
        let too_long = "a".repeat(MAX_STATE_NAME_LEN + 1);
        for name in [
            "", ".", "..", "../x", "/etc/x", "a/b", "a\\b", "a\0b", ".hidden", "UPPER", "Counter",
            "a b", "é", "x\n", &too_long,
        ] {
            match state_file_name(name) {
                Err(Error::InvalidStateName { name: got, reason }) => {
                    assert_eq!(got, name);
                    assert!(!reason.is_empty());
                }
                other => panic!("{name:?} must be refused, got {other:?}"),
            }
        }
    }
}
