//! `cargo xtask tidy`: repository hygiene checks, in the spirit of
//! rust-analyzer's tidy tests. Each check is a pure function over file
//! contents, so its unit test can feed it a deliberately broken input.
//!
//! What is checked (every `.rs` and `.md` file of the repository, skipping
//! `target/` and `.git`):
//!
//! - **File size**: no `.rs` file is longer than [`MAX_LINES`] lines unless
//!   [`LONG_FILES`] lists it with the reason (an entry for a file that no longer
//!   exists or is no longer long is an error too).
//! - **References**: a backticked span that is a path (no spaces, a `/`, made of
//!   path characters) and starts with a top-level directory of the repository
//!   must exist (`host/src/lib.rs`; a trailing `/*` names a directory). A
//!   backticked file name with a directory (`manager/gate.rs`) must be the end
//!   of some file's path. Code and docs must not cite documents that are not in
//!   the repository: the phrases in [`OUTSIDE_DOCUMENTS`] and "issue" followed
//!   by a number are refused.
//! - **No ignored tests**: no test-ignoring attribute anywhere.
//! - **No wall-clock assertions in tests**: in test code (a file under a
//!   `tests/` directory, or the part of a file from its first `#[cfg(test)]`),
//!   no assertion macro whose statement mentions `elapsed`, `Instant`,
//!   `as_millis`, `as_secs` or `as_nanos`. Speed belongs in benchmarks.
//! - **Code map**: ARCHITECTURE.md's "Code map" section names every top-level
//!   module of `host/src` (`` `name.rs` `` or `` `name/` ``).
//!
//! Documented public items and `// SAFETY:` comments are checked by the
//! compiler and clippy lints (`missing_docs`, `undocumented_unsafe_blocks`).

use std::path::{Path, PathBuf};

/// The longest a `.rs` file may be without an entry in [`LONG_FILES`].
pub const MAX_LINES: usize = 600;

/// Files allowed over [`MAX_LINES`], each with the reason.
pub const LONG_FILES: &[(&str, &str)] = &[
    (
        "plugin-api/src/testing.rs",
        "the whole authoring test kit (fake host, plugin driver) with its runnable doc \
         example, a third of the file; one public module so authors find it in one place",
    ),
    (
        "tests/tests/integration/state.rs",
        "one integration test per persistence property (atomic writes, quarantine, locking, \
     version hand-over), sharing small fixtures; splitting it would scatter them",
    ),
];

/// Phrases that cite documents outside the repository.
/// (Spelled with `concat!` so this file does not cite them itself.)
pub const OUTSIDE_DOCUMENTS: &[&str] = &[
    concat!("the ", "spec "),
    concat!("the ", "spec,"),
    concat!("the ", "spec."),
    concat!("the ", "spec's"),
    concat!("issue ", "notes"),
];

/// One file: its path relative to the repository root (with `/`), and its text.
pub struct File {
    pub path: String,
    pub text: String,
}

/// Runs every check on the repository at `root`.
pub fn run(root: &Path) -> Result<(), String> {
    let files = collect(root)?;
    let top_dirs = top_level_dirs(root)?;
    let lib = std::fs::read_to_string(root.join("host/src/lib.rs"))
        .map_err(|e| format!("read host/src/lib.rs: {e}"))?;
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md"))
        .map_err(|e| format!("read ARCHITECTURE.md: {e}"))?;
    let all_paths: Vec<String> = all_files(root, root)?;
    let exists = |p: &str| root.join(p).exists();
    let mut problems = Vec::new();
    problems.extend(check_sizes(&files, LONG_FILES));
    problems.extend(check_references(&files, &top_dirs, &all_paths, exists));
    problems.extend(check_ignored(&files));
    problems.extend(check_wall_clock(&files));
    problems.extend(check_code_map(&lib, &architecture));
    if problems.is_empty() {
        eprintln!("xtask: tidy: {} files checked, all clean", files.len());
        Ok(())
    } else {
        Err(format!(
            "tidy found {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    }
}

/// Whether a directory is skipped by the walk.
fn skipped(name: &str) -> bool {
    name == "target" || name == ".git"
}

/// Every `.rs` and `.md` file under `root`, with its text.
fn collect(root: &Path) -> Result<Vec<File>, String> {
    let mut files = Vec::new();
    for path in all_files(root, root)? {
        if path.ends_with(".rs") || path.ends_with(".md") {
            let text = std::fs::read_to_string(root.join(&path))
                .map_err(|e| format!("read {path}: {e}"))?;
            files.push(File { path, text });
        }
    }
    Ok(files)
}

/// Every file under `dir`, relative to `root`, sorted.
fn all_files(root: &Path, dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("read dir {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("read dir {}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("stat {}: {e}", path.display()))?;
            if kind.is_dir() {
                if !skipped(&name) {
                    stack.push(path);
                }
            } else if let Ok(relative) = path.strip_prefix(root) {
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The repository's top-level directories.
fn top_level_dirs(root: &Path) -> Result<Vec<String>, String> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| format!("read dir {}: {e}", root.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && !skipped(&name) {
            dirs.push(name);
        }
    }
    Ok(dirs)
}

/// `.rs` files over [`MAX_LINES`] without an allow-list entry, and stale entries.
pub fn check_sizes(files: &[File], allowed: &[(&str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| f.path.ends_with(".rs")) {
        let lines = file.text.lines().count();
        let listed = allowed.iter().any(|(p, _)| *p == file.path);
        if lines > MAX_LINES && !listed {
            problems.push(format!(
                "{}: {lines} lines (limit {MAX_LINES}): split it by concern, or list it in \
                 LONG_FILES (xtask/src/tidy.rs) with the reason",
                file.path
            ));
        }
    }
    for (path, _) in allowed {
        match files.iter().find(|f| f.path == *path) {
            None => problems.push(format!("LONG_FILES lists {path}, which does not exist")),
            Some(f) if f.text.lines().count() <= MAX_LINES => problems.push(format!(
                "LONG_FILES lists {path}, which is no longer over {MAX_LINES} lines: remove the entry"
            )),
            Some(_) => {}
        }
    }
    problems
}

/// The backticked spans of `text`.
fn backticked(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().flat_map(|(n, line)| {
        line.split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(move |(_, span)| (n + 1, span))
    })
}

/// Whether `span` looks like a path: path characters only, with a `/`.
fn looks_like_path(span: &str) -> bool {
    span.contains('/')
        && !span.starts_with('/')
        && !span.contains("//")
        && span
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '*'))
}

/// Broken file references and citations of documents outside the repository.
pub fn check_references(
    files: &[File],
    top_dirs: &[String],
    all_paths: &[String],
    exists: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files {
        for (line, span) in backticked(&file.text) {
            if !looks_like_path(span) || span.contains("..") {
                continue;
            }
            let path = span.trim_end_matches("/*").trim_end_matches('/');
            if path.contains('*') {
                continue;
            }
            let first = path.split('/').next().unwrap_or_default();
            if top_dirs.iter().any(|d| d == first) {
                if !exists(path) {
                    problems.push(format!(
                        "{}:{line}: `{span}` does not exist in the repository",
                        file.path
                    ));
                }
            } else if is_file_name(path) {
                let suffix = format!("/{path}");
                if !all_paths.iter().any(|p| p.ends_with(&suffix) || p == path) {
                    problems.push(format!(
                        "{}:{line}: `{span}` is not the end of any file's path in the repository",
                        file.path
                    ));
                }
            }
        }
        for (n, text_line) in file.text.lines().enumerate() {
            let lower = text_line.to_lowercase();
            for phrase in OUTSIDE_DOCUMENTS {
                if lower.contains(phrase) || lower.trim_end().ends_with(phrase.trim_end()) {
                    problems.push(format!(
                        "{}:{}: cites a document outside the repository ({:?}): \
                         say it here, in our own words",
                        file.path,
                        n + 1,
                        phrase.trim_end()
                    ));
                }
            }
            if cites_issue_number(&lower) {
                problems.push(format!(
                    "{}:{}: cites an issue by number: say what matters here instead",
                    file.path,
                    n + 1
                ));
            }
        }
    }
    problems
}

/// Whether `path` names a source or document file (`dir/name.ext`).
fn is_file_name(path: &str) -> bool {
    [".rs", ".md", ".toml", ".c"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// "issue" followed by a number, with or without `#`, but not by a count
/// ("64 tasks issue 10,000 operations").
fn cites_issue_number(lower: &str) -> bool {
    let mut rest = lower;
    while let Some(at) = rest.find("issue ") {
        let after = rest[at + "issue ".len()..].trim_start_matches('#');
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        let next = after[digits..].chars().next();
        if digits > 0 && next != Some(',') && !next.is_some_and(|c| c.is_ascii_digit()) {
            return true;
        }
        rest = &rest[at + 1..];
    }
    false
}

/// Any test-ignoring attribute.
pub fn check_ignored(files: &[File]) -> Vec<String> {
    let needle = concat!("#[", "ignore");
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| f.path.ends_with(".rs")) {
        for (n, line) in file.text.lines().enumerate() {
            if line.contains(needle) {
                problems.push(format!(
                    "{}:{}: ignored test: make it run (and pass), or delete it",
                    file.path,
                    n + 1
                ));
            }
        }
    }
    problems
}

/// Words that make an assertion a wall-clock assertion.
const CLOCK_WORDS: &[&str] = &["elapsed", "Instant", "as_millis", "as_secs", "as_nanos"];

/// Assertions in test code that mention the clock.
pub fn check_wall_clock(files: &[File]) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| f.path.ends_with(".rs")) {
        let test_file = file.path.starts_with("tests/") || file.path.contains("/tests/");
        let lines: Vec<&str> = file.text.lines().collect();
        let first_test = if test_file {
            0
        } else {
            match lines.iter().position(|l| l.contains("#[cfg(test)]")) {
                Some(i) => i,
                None => continue,
            }
        };
        let mut i = first_test;
        while i < lines.len() {
            let trimmed = lines[i].trim_start();
            let is_assert = trimmed.starts_with("assert") || trimmed.starts_with("prop_assert");
            if !is_assert {
                i += 1;
                continue;
            }
            // The whole statement: up to the line that ends it.
            let start = i;
            let mut statement = String::new();
            while i < lines.len() {
                statement.push_str(lines[i]);
                statement.push('\n');
                i += 1;
                if lines[i - 1].trim_end().ends_with(';') {
                    break;
                }
            }
            if let Some(word) = CLOCK_WORDS.iter().find(|w| statement.contains(*w)) {
                problems.push(format!(
                    "{}:{}: assertion on the wall clock (`{word}`): assert the structure \
                     (counts, order, states); measure speed in a benchmark",
                    file.path,
                    start + 1
                ));
            }
        }
    }
    problems
}

/// Top-level modules of `host/src/lib.rs` missing from ARCHITECTURE.md's code map.
pub fn check_code_map(lib_rs: &str, architecture: &str) -> Vec<String> {
    let Some(start) = architecture.find("## Code map") else {
        return vec!["ARCHITECTURE.md has no \"## Code map\" section".to_owned()];
    };
    let section = &architecture[start + 2..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut problems = Vec::new();
    for line in lib_rs.lines() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("pub(crate) mod "))
            .or_else(|| line.strip_prefix("mod "))
        else {
            continue;
        };
        let Some(name) = rest.strip_suffix(';') else {
            continue;
        };
        if !section.contains(&format!("`{name}.rs`")) && !section.contains(&format!("`{name}/`")) {
            problems.push(format!(
                "ARCHITECTURE.md's code map does not mention host/src module `{name}` \
                 (write `{name}.rs` or `{name}/` and what it owns)"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> File {
        File {
            path: path.to_owned(),
            text: text.to_owned(),
        }
    }

    #[test]
    fn a_long_file_fails_unless_listed_with_a_reason() {
        let long = "fn f() {}\n".repeat(MAX_LINES + 1);
        let files = [
            file("host/src/big.rs", &long),
            file("host/src/small.rs", "fn g() {}\n"),
        ];
        let problems = check_sizes(&files, &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("host/src/big.rs:"), "{problems:?}");
        assert!(check_sizes(&files, &[("host/src/big.rs", "why")]).is_empty());
        // Stale entries fail too.
        let stale = check_sizes(
            &files,
            &[("host/src/big.rs", "why"), ("host/src/small.rs", "why")],
        );
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert!(stale[0].contains("no longer over"), "{stale:?}");
        let gone = check_sizes(&files, &[("host/src/big.rs", "why"), ("nope.rs", "why")]);
        assert!(gone[0].contains("does not exist"), "{gone:?}");
    }

    #[test]
    fn a_reference_to_a_missing_file_fails() {
        let tick = '`';
        let text = format!(
            "see {tick}host/src/lib.rs{tick}, {tick}host/src/gone.rs{tick}, {tick}manager/gate.rs{tick}, \
             {tick}bin/plugin-host/inspect.rs{tick}, {tick}sample-plugins/*{tick} and {tick}a / b{tick}\n"
        );
        let files = [file("ARCHITECTURE.md", &text)];
        let top = ["host".to_owned(), "sample-plugins".to_owned()];
        let all = [
            "host/src/lib.rs".to_owned(),
            "host/src/manager/gate.rs".to_owned(),
            "sample-plugins/hello/src/lib.rs".to_owned(),
        ];
        let exists = |p: &str| {
            ["host/src/lib.rs", "sample-plugins"].contains(&p) || all.iter().any(|a| a == p)
        };
        let problems = check_references(&files, &top, &all, exists);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("host/src/gone.rs"), "{problems:?}");
        assert!(
            problems[1].contains("bin/plugin-host/inspect.rs"),
            "{problems:?}"
        );
    }

    #[test]
    fn citing_an_outside_document_fails() {
        let files = [
            file("a.rs", &format!("//! As {} asks.\n", "the spec")),
            file("b.md", &format!("Done for {} 4.\n", "issue")),
            file(
                "c.md",
                &format!("See {}.\n", concat!("the issue ", "notes")),
            ),
            file("ok.rs", "//! 64 tasks issue 10,000 operations.\n"),
        ];
        let problems = check_references(&files, &[], &[], |_| true);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("a.rs:1"), "{problems:?}");
        assert!(problems[1].starts_with("b.md:1"), "{problems:?}");
        assert!(problems[2].starts_with("c.md:1"), "{problems:?}");
    }

    #[test]
    fn an_ignored_test_fails() {
        let text = format!("#[test]\n{}]\nfn slow() {{}}\n", concat!("#[", "ignore"));
        let problems = check_ignored(&[file("tests/tests/x.rs", &text)]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("tests/tests/x.rs:2"),
            "{problems:?}"
        );
        assert!(check_ignored(&[file("tests/tests/x.rs", "#[test]\nfn quick() {}\n")]).is_empty());
    }

    #[test]
    fn a_wall_clock_assertion_in_a_test_fails() {
        let timed = "fn t() {\n    let elapsed = started.elapsed();\n    assert!(\n        elapsed < serial / 4,\n        \"too slow\"\n    );\n}\n";
        let problems = check_wall_clock(&[file("tests/tests/integration/x.rs", timed)]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("tests/tests/integration/x.rs:3"),
            "{problems:?}"
        );
        // In a library file, only the test module counts.
        let lib = format!(
            "fn f() {{ assert!(t.elapsed() < d); }}\n#[cfg(test)]\nmod tests {{\n{timed}}}\n"
        );
        let problems = check_wall_clock(&[file("host/src/x.rs", &lib)]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("host/src/x.rs:6"), "{problems:?}");
        let structural = "fn t() {\n    assert_eq!(peak, 3);\n}\n";
        assert!(check_wall_clock(&[file("tests/tests/x.rs", structural)]).is_empty());
    }

    #[test]
    fn a_module_missing_from_the_code_map_fails() {
        let lib = "pub mod loader;\npub mod manager;\nmod secret;\n";
        let tick = '`';
        let arch = format!(
            "# A\n## Code map\n- {tick}loader.rs{tick} opens.\n- {tick}manager/{tick} runs.\n## Next\n{tick}secret.rs{tick}\n"
        );
        let problems = check_code_map(lib, &arch);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("`secret`"), "{problems:?}");
        assert_eq!(check_code_map(lib, "# no map\n").len(), 1);
    }
}
