//! The on-disk envelope around a plugin's state:
//! `{"format": 1, "plugin": name, "plugin_version": "x.y.z", "saved_at": RFC 3339, "state": ...}`.
//!
//! Encoding refuses what decoding would refuse (too large, nested too deep), so
//! the host never writes a file it could not read back.

use std::time::SystemTime;

use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The envelope format this host writes and reads.
pub const FORMAT: u64 = 1;

/// The largest state file the host reads or writes: 16 MiB. Larger files are
/// treated as corrupt before any parsing.
pub const MAX_STATE_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The deepest nesting of arrays/objects a plugin's state may have. serde_json
/// refuses to parse documents nested 128 levels deep; the envelope object adds
/// one level, so states nest at most 126 levels.
pub const MAX_STATE_DEPTH: usize = 126;

/// A state file's contents, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedState {
    /// The plugin that wrote it (always the name it was read for).
    pub plugin: String,
    /// The plugin version that wrote it.
    pub plugin_version: Version,
    /// When it was written (RFC 3339, UTC).
    pub saved_at: String,
    /// The plugin's state.
    pub state: Value,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    format: u64,
    plugin: &'a str,
    plugin_version: String,
    saved_at: String,
    state: &'a Value,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    format: u64,
    plugin: String,
    plugin_version: String,
    saved_at: String,
    state: Value,
}

/// Serializes the envelope for `plugin`. `Err` is the reason the state cannot be
/// stored (too deep, too large); nothing has been written then.
pub fn encode(plugin: &str, version: &Version, state: &Value) -> Result<Vec<u8>, String> {
    let depth = nesting_depth(state);
    if depth > MAX_STATE_DEPTH {
        return Err(format!(
            "the state nests {depth} levels deep; at most {MAX_STATE_DEPTH} can be read back"
        ));
    }
    let envelope = EnvelopeOut {
        format: FORMAT,
        plugin,
        plugin_version: version.to_string(),
        saved_at: now_rfc3339(),
        state,
    };
    let bytes = serde_json::to_vec_pretty(&envelope)
        .map_err(|e| format!("the state cannot be serialized: {e}"))?;
    if bytes.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(format!(
            "the state file would be {} bytes; the limit is {MAX_STATE_FILE_BYTES}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Parses a state file read for `plugin`. `Err` is why the file is corrupt.
pub fn decode(plugin: &str, bytes: &[u8]) -> Result<SavedState, String> {
    if bytes.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(format!(
            "the file is {} bytes; the limit is {MAX_STATE_FILE_BYTES}",
            bytes.len()
        ));
    }
    let envelope: EnvelopeIn =
        serde_json::from_slice(bytes).map_err(|e| format!("not a state envelope: {e}"))?;
    if envelope.format != FORMAT {
        return Err(format!(
            "envelope format {} is not supported (this host reads format {FORMAT})",
            envelope.format
        ));
    }
    if envelope.plugin != plugin {
        return Err(format!(
            "the envelope belongs to plugin {:?}, not {plugin:?}",
            envelope.plugin
        ));
    }
    let plugin_version = Version::parse(&envelope.plugin_version).map_err(|e| {
        format!(
            "plugin_version {:?} is not semver: {e}",
            envelope.plugin_version
        )
    })?;
    Ok(SavedState {
        plugin: envelope.plugin,
        plugin_version,
        saved_at: envelope.saved_at,
        state: envelope.state,
    })
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// How deeply arrays/objects nest in `value` (a scalar is 0). Iterative, so a
/// hostile state cannot overflow the stack here.
pub fn nesting_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let depth = depth + 1;
        deepest = deepest.max(depth);
        stack.extend(children.map(|child| (child, depth)));
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!(0);
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let version = Version::new(1, 2, 3);
        let bytes = encode("counter", &version, &json!({"n": 7})).unwrap();
        let saved = decode("counter", &bytes).unwrap();
        assert_eq!(saved.plugin, "counter");
        assert_eq!(saved.plugin_version, version);
        assert_eq!(saved.state, json!({"n": 7}));
        assert!(saved.saved_at.ends_with('Z'), "{}", saved.saved_at);
    }

    #[test]
    fn depth_limit_matches_serde_json() {
        assert_eq!(nesting_depth(&json!(1)), 0);
        assert_eq!(nesting_depth(&json!({"a": [1, {"b": []}]})), 4);
        // serde_json itself: 127 levels parse, 128 do not.
        assert!(serde_json::from_str::<Value>(&nested(127).to_string()).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(128).to_string()).is_err());
        // The deepest storable state reads back; one level more is refused on write.
        let v = Version::new(1, 0, 0);
        let deepest = nested(MAX_STATE_DEPTH);
        let bytes = encode("p", &v, &deepest).unwrap();
        assert_eq!(decode("p", &bytes).unwrap().state, deepest);
        let err = encode("p", &v, &nested(MAX_STATE_DEPTH + 1)).unwrap_err();
        assert!(err.contains("nests"), "{err}");
    }

    #[test]
    fn wrong_envelopes_are_corrupt() {
        let ok = r#"{"format":1,"plugin":"p","plugin_version":"1.0.0","saved_at":"x","state":1}"#;
        assert!(decode("p", ok.as_bytes()).is_ok());
        for (bad, why) in [
            ("", "EOF"),
            ("{", "EOF"),
            ("[]", "envelope"),
            (
                r#"{"format":1,"plugin":"p","plugin_version":"1.0.0","saved_at":"x"}"#,
                "state",
            ),
            (
                r#"{"format":2,"plugin":"p","plugin_version":"1.0.0","saved_at":"x","state":1}"#,
                "format 2",
            ),
            (
                r#"{"format":1,"plugin":"q","plugin_version":"1.0.0","saved_at":"x","state":1}"#,
                "\"q\"",
            ),
            (
                r#"{"format":1,"plugin":"p","plugin_version":"one","saved_at":"x","state":1}"#,
                "semver",
            ),
            (&format!("{ok} trailing"), "trailing"),
        ] {
            let err = decode("p", bad.as_bytes()).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let deep = format!(
            r#"{{"format":1,"plugin":"p","plugin_version":"1.0.0","saved_at":"x","state":{}}}"#,
            nested(MAX_STATE_DEPTH + 1)
        );
        let err = decode("p", deep.as_bytes()).unwrap_err();
        assert!(err.contains("recursion limit"), "{err}");
    }
}
