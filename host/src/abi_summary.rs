//! Condensing abi_stable's layout-mismatch report (often 700+ lines) into one
//! short line: which type and field differ, expected vs found.
//!
//! abi_stable only hands out text here (it formats the error eagerly so it does
//! not point into an unloaded library), so this reads the text. A report is a
//! series of blocks; a block with errors looks like:
//!
//! ```text
//! 1 error(s)inside:
//!     <other>
//!     field_name:0
//!     type:PluginMod
//!     ...
//!     field_name:optional
//!     type:u32
//! Layout of expected type:
//!     ...
//! Error:mismatched type
//! Expected:
//!     bool
//! Found:
//!     u32
//! ```
//!
//! The `field_name`/`type` pairs are the path from the root module down to the
//! value that differs; the last pair is the field itself, the one before it
//! names the type that holds it.

/// At most this many differences are spelled out.
const MAX_ERRORS: usize = 3;
/// Each value (type name, expected, found) is cut to this many characters.
const MAX_VALUE: usize = 80;

/// One difference found in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Difference {
    /// The type holding the differing field, if the path names one.
    holder: Option<String>,
    /// The differing field, if the path names one.
    field: Option<String>,
    /// abi_stable's error kind ("mismatched type", "too many fields", ...).
    kind: String,
    expected: String,
    found: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.holder, &self.field) {
            (Some(holder), Some(field)) => write!(f, "type `{holder}` field `{field}`: ")?,
            (None, Some(field)) => write!(f, "field `{field}`: ")?,
            (Some(holder), None) => write!(f, "type `{holder}`: ")?,
            (None, None) => {}
        }
        write!(f, "{}", self.kind)?;
        if !self.expected.is_empty() || !self.found.is_empty() {
            write!(f, ", expected `{}`, found `{}`", self.expected, self.found)?;
        }
        Ok(())
    }
}

fn cut(s: &str) -> String {
    s.trim().chars().take(MAX_VALUE).collect()
}

/// The one-line summary of an abi_stable layout error report.
pub fn summarize(report: &str) -> String {
    let report = report.replace('\0', "");
    let diffs = differences(&report);
    if diffs.is_empty() {
        return fallback(&report);
    }
    let mut parts: Vec<String> = diffs
        .iter()
        .take(MAX_ERRORS)
        .map(ToString::to_string)
        .collect();
    if diffs.len() > MAX_ERRORS {
        parts.push(format!("and {} more", diffs.len() - MAX_ERRORS));
    }
    parts.join("; ")
}

/// Every difference in the report, in order.
fn differences(report: &str) -> Vec<Difference> {
    let lines: Vec<&str> = report.lines().collect();
    let mut diffs = Vec::new();
    let mut path: Vec<(String, String)> = Vec::new();
    let mut in_path = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(count) = line.strip_suffix(" error(s)inside:") {
            in_path = count.trim().parse::<usize>().is_ok_and(|n| n > 0);
            path.clear();
        } else if line.starts_with("Layout of expected type:") {
            in_path = false;
        } else if in_path {
            if let Some(name) = line.strip_prefix("field_name:") {
                let ty = lines
                    .get(i + 1)
                    .and_then(|l| l.trim().strip_prefix("type:"))
                    .unwrap_or("?");
                path.push((name.trim().to_owned(), ty.trim().to_owned()));
            }
        } else if let Some(kind) = line.strip_prefix("Error:") {
            let value_after = |label: &str, from: usize| -> (String, usize) {
                let mut j = from;
                while j < lines.len() && lines[j].trim() != label {
                    if lines[j].trim().starts_with("Error:") {
                        return (String::new(), from);
                    }
                    j += 1;
                }
                if j >= lines.len() {
                    return (String::new(), from);
                }
                let value = lines[j + 1..]
                    .iter()
                    .map(|l| l.trim())
                    .find(|l| !l.is_empty())
                    .unwrap_or("");
                (cut(value), j + 1)
            };
            let (expected, next) = value_after("Expected:", i + 1);
            let (found, _) = value_after("Found:", next);
            let (holder, field) = match path.as_slice() {
                [.., (_, holder), (field, _)] => (Some(cut(holder)), Some(cut(field))),
                [(field, _)] => (None, Some(cut(field))),
                [] => (None, None),
            };
            diffs.push(Difference {
                holder,
                field,
                kind: cut(kind),
                expected,
                found,
            });
        }
        i += 1;
    }
    diffs
}

/// For reports without the usual structure: the first few lines that say something.
fn fallback(report: &str) -> String {
    let meaningful: Vec<String> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error")
                || l.contains("expected")
                || l.contains("found")
                || l.contains("mismatch")
        })
        .take(MAX_ERRORS)
        .map(cut)
        .collect();
    if meaningful.is_empty() {
        report
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(MAX_ERRORS)
            .map(cut)
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        meaningful.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from the real report for a plugin whose `Dependency::optional`
    /// is `u32` (the host expects `bool`).
    const REPORT: &str = "
Compared <this>:
    --- Type Layout ---
0 error(s).

0 error(s)inside:
    <other>

    field_name:0
    type:PluginMod
    size:16 align:8

Layout of expected type:
    type:PluginMod

1 error(s)inside:
    <other>

    field_name:0
    type:PluginMod
    size:16 align:8

    field_name:dependencies
    type:RVec
    size:32 align:8

    field_name:0
    type:Dependency
    size:72 align:8

    field_name:optional
    type:u32
    size:4 align:4

Layout of expected type:
    --- Type Layout ---
    type:bool
Layout of found type:
    --- Type Layout ---
    type:u32

Error:mismatched type
Expected:
    bool
Found:
    u32
";

    #[test]
    fn names_type_field_expected_and_found() {
        assert_eq!(
            summarize(REPORT),
            "type `Dependency` field `optional`: mismatched type, expected `bool`, found `u32`"
        );
    }

    #[test]
    fn unknown_shapes_fall_back_to_a_few_lines() {
        let s = summarize("\nprefix-types have a different prefix\nwhatever\n\0");
        assert_eq!(s, "prefix-types have a different prefix; whatever");
        assert!(summarize(&"Error: x\n".repeat(50)).lines().count() <= 1);
    }
}
