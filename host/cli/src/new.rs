//! `plugin-host new`: scaffold a plugin crate that builds, tests and loads with no edits.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The scaffold's files, with `{{...}}` placeholders.
const CARGO_TOML: &str = include_str!("../templates/plugin/Cargo.toml.in");
const LIB_RS: &str = include_str!("../templates/plugin/lib.rs.in");
const README_MD: &str = include_str!("../templates/plugin/README.md.in");
const GITIGNORE: &str = include_str!("../templates/plugin/gitignore.in");

/// The `plugin-api/` directory of the checkout this binary was built from; a
/// scaffold points its `plugbay-api` there while that version is unpublished.
const CHECKOUT_API_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugin-api");

/// Names Cargo or rustc would refuse or confuse for a library crate.
const RESERVED: &[&str] = &[
    "alloc",
    "core",
    "proc_macro",
    "proc-macro",
    "std",
    "test",
    "self",
    "super",
    "crate",
];

/// `new --help`: its exit codes.
pub const EXIT_CODES: &str = "Exit status:
  0  the crate was created
  2  the name is not a valid plugin name, or the directory exists and is not empty, or a file
     could not be written";

/// `new --json`'s `data`.
#[derive(serde::Serialize)]
struct NewData<'a> {
    /// The plugin's name.
    name: &'a str,
    /// The crate's directory.
    dir: &'a Path,
    /// The library file `cargo build` makes (in `target/debug/`).
    library_file: &'a str,
    /// What to run next, in order.
    next: Vec<String>,
}

/// Creates the plugin crate `name` in `dir` (default `./<name>`).
pub fn new(name: &str, dir: Option<PathBuf>, json: bool) -> ExitCode {
    match scaffold(name, dir.unwrap_or_else(|| PathBuf::from(name))) {
        Ok(dir) => {
            let lib = format!(
                "{}{}{}",
                std::env::consts::DLL_PREFIX,
                name.replace('-', "_"),
                std::env::consts::DLL_SUFFIX
            );
            let next = vec![
                format!("cd {} && cargo test && cargo build", dir.display()),
                format!("plugin-host call target/debug {name} greet '{{\"name\": \"Ada\"}}'"),
            ];
            if json {
                let data = NewData {
                    name,
                    dir: &dir,
                    library_file: &lib,
                    next,
                };
                return match crate::json::print("new", &data) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(code) => code,
                };
            }
            println!("created plugin `{name}` in {}", dir.display());
            println!("next: {}", next[0]);
            println!("then: {}  (loads target/debug/{lib})", next[1]);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plugin-host: cannot create plugin `{name}`: {e}");
            ExitCode::from(2)
        }
    }
}

/// Checks `name` and `dir`, then writes the crate. Returns the directory.
fn scaffold(name: &str, dir: PathBuf) -> Result<PathBuf, String> {
    check_name(name)?;
    prepare_dir(&dir)?;
    let api_requirement = api_requirement();
    let patch = checkout_patch(&api_requirement);
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{type_name}}", &type_name(name))
            .replace("{{api_requirement}}", &api_requirement)
            .replace(
                "{{library_file}}",
                &format!(
                    "{}{}{}",
                    std::env::consts::DLL_PREFIX,
                    name.replace('-', "_"),
                    std::env::consts::DLL_SUFFIX
                ),
            )
            .replace("{{patch}}", &patch)
    };
    let src = dir.join("src");
    std::fs::create_dir_all(&src)
        .map_err(|e| format!("cannot create directory {}: {e}", src.display()))?;
    for (path, template) in [
        (dir.join("Cargo.toml"), CARGO_TOML),
        (src.join("lib.rs"), LIB_RS),
        (dir.join("README.md"), README_MD),
        (dir.join(".gitignore"), GITIGNORE),
    ] {
        std::fs::write(&path, fill(template))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(dir)
}

/// The host's plugin-name rule (the state-file rule: it names the plugin's state
/// file), plus what a Cargo package name needs on top of it.
fn check_name(name: &str) -> Result<(), String> {
    if let Err(e) = plugbay_host::validate_plugin_name(name) {
        return Err(e.to_string());
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "plugin name {name:?} must start with a letter (it is also the crate's name)"
        ));
    }
    if name.contains('.') {
        return Err(format!(
            "plugin name {name:?} contains `.`, which a crate name cannot; use `-` or `_`"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "plugin name {name:?} is reserved by Rust or Cargo; choose another"
        ));
    }
    Ok(())
}

/// Refuses an existing non-empty directory (or a file) at `dir`; creates it otherwise.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} already exists and is not empty; choose a new directory with --dir",
                    dir.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display())),
        Err(e) if dir.exists() && !dir.is_dir() => Err(format!(
            "{} exists and is not a directory ({e})",
            dir.display()
        )),
        Err(e) => Err(format!("cannot read directory {}: {e}", dir.display())),
    }
}

/// `MAJOR.MINOR` of the plugbay-api this host speaks: any later 1.x release is
/// additive, so the scaffold accepts it.
fn api_requirement() -> String {
    match semver::Version::parse(plugbay_api::INTERFACE_VERSION) {
        Ok(v) => format!("{}.{}", v.major, v.minor),
        Err(_) => plugbay_api::INTERFACE_VERSION.to_owned(),
    }
}

/// The `[patch.crates-io]` section pointing `plugbay-api` at this host's own
/// checkout, when there is one (a host built from a source tree); empty otherwise.
fn checkout_patch(api_requirement: &str) -> String {
    let Ok(path) = Path::new(CHECKOUT_API_DIR).canonicalize() else {
        return String::new();
    };
    if !path.join("Cargo.toml").is_file() {
        return String::new();
    }
    format!(
        "\n# This plugin-host was built from a plugbay checkout; build against its plugbay-api.\n\
         # Delete this section once plugbay-api {api_requirement} is published on crates.io.\n\
         [patch.crates-io]\n\
         plugbay-api = {{ path = {} }}\n",
        toml_string(&path.to_string_lossy())
    )
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `my-plugin_2` → `MyPlugin2`: the plugin's Rust type name.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("my-plugin_2"), "MyPlugin2");
        assert_eq!(type_name("a"), "A");
        assert_eq!(type_name("a--b"), "AB");
    }

    #[test]
    fn names_follow_the_host_rule_and_cargo_rules() {
        assert!(check_name("my-plugin").is_ok());
        for bad in ["", "My", "a b", ".x", "1abc", "-x", "a.b", "std", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn toml_strings_escape_quotes_and_backslashes() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }
}
