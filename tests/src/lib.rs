//! The one helper library of the integration tests: building plugin libraries on
//! demand and laying out fresh temporary plugin directories (this file), in-process
//! test plugins (`support`; `crashable`, one that can die on its own), the
//! deadlock detector and watchdog (`watch`), hostile plugin directories for the
//! safety tests (`safety_support`), and the
//! state-writer child process (`state_writer`), and the released 1.0.0 interface
//! with what the compatibility tests build against it (`compat`).

pub mod compat;
pub mod crashable;
#[cfg(unix)]
pub mod safety_support;
pub mod state_writer;
pub mod support;
pub mod watch;

/// The Rust examples of README.md and AUTHORING.md, compiled and run as doctests
/// (`cargo test -p plugbay-tests --doc`), so they cannot go stale.
#[cfg(doctest)]
pub mod docs {
    #[doc = include_str!("../../README.md")]
    pub struct Readme;

    #[doc = include_str!("../../AUTHORING.md")]
    pub struct Authoring;
}

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where on-demand builds of plugin crates go. A separate target dir, so building
/// from inside a running `cargo test` never waits on the outer cargo's lock.
pub fn fixture_target_dir() -> PathBuf {
    workspace_root().join("target").join("fixture-build")
}

/// The platform file name of the cdylib built from crate `package`.
pub fn library_file_name(package: &str) -> String {
    let stem = package.replace('-', "_");
    format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Builds the given cdylib crates (once per test process) and returns the path of
/// each built library, in order. Panics with the cargo command and its output if
/// the build fails, so a failure never shows up as a confusing missing file.
pub fn built_libraries(packages: &[&str]) -> Vec<PathBuf> {
    BUILT.get_or_init(build_all_test_libraries);
    let dir = fixture_target_dir().join("debug");
    packages
        .iter()
        .map(|p| {
            let path = dir.join(library_file_name(p));
            assert!(
                path.is_file(),
                "{} was not built; run `cargo build --target-dir {} -p {}`",
                path.display(),
                fixture_target_dir().display(),
                package_of(p)
            );
            path
        })
        .collect()
}

/// Every cdylib the tests load, by library name: the samples and the test-only fixtures.
pub const ALL_TEST_LIBRARIES: &[&str] = &[
    "hello",
    "counter",
    "greeter",
    "fixture-panicky",
    "fixture-calls",
    "fixture-errors",
    "fixture-services",
    "fixture-counter-next",
    "fixture-counter-major",
    "fixture-crashy",
];

/// The workspace package that builds the library `lib` of [`ALL_TEST_LIBRARIES`]:
/// samples are `plugbay-sample-<lib>`, test fixtures `plugbay-<lib>`.
pub fn package_of(lib: &str) -> String {
    if lib.starts_with("fixture-") {
        format!("plugbay-{lib}")
    } else {
        format!("plugbay-sample-{lib}")
    }
}

/// Guards the one build of everything the tests load.
static BUILT: OnceLock<()> = OnceLock::new();

fn build_all_test_libraries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .arg("build")
        .arg("--quiet")
        .arg("--target-dir")
        .arg(fixture_target_dir());
    for lib in ALL_TEST_LIBRARIES {
        cmd.arg("-p").arg(package_of(lib));
    }
    // The command-line host (`plugin-host`) too.
    cmd.arg("-p").arg("plugbay-cli");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        out.status.success(),
        "building test plugins failed ({cmd:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `plugin-host` binary, built on demand like the test libraries.
pub fn plugin_host_bin() -> PathBuf {
    BUILT.get_or_init(build_all_test_libraries);
    let path = fixture_target_dir()
        .join("debug")
        .join(format!("plugin-host{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} was not built; run `cargo build --target-dir {} -p plugbay-cli`",
        path.display(),
        fixture_target_dir().display()
    );
    path
}

/// Runs `plugin-host` with `args`; returns (exit code, stdout, stderr).
pub fn run_plugin_host(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let bin = plugin_host_bin();
    let out = Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `data` of a `plugin-host COMMAND --json` document printed on `stdout`,
/// after checking the document's `schema_version` and `command`.
pub fn cli_json_data(stdout: &str, command: &str) -> serde_json::Value {
    let document: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("{command} --json printed invalid JSON ({e}):\n{stdout}"));
    assert_eq!(document["schema_version"], 1, "{stdout}");
    assert_eq!(document["command"], command, "{stdout}");
    document["data"].clone()
}

/// A fresh temporary plugin directory holding copies of the given built libraries
/// (each under its own file name). Dropping it deletes the directory.
pub struct PluginDir {
    /// The temporary directory.
    pub dir: tempfile::TempDir,
}

impl PluginDir {
    /// A directory with copies of `packages`' libraries.
    pub fn with(packages: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("create temp plugin dir");
        for lib in built_libraries(packages) {
            let dest = dir.path().join(lib.file_name().expect("file name"));
            std::fs::copy(&lib, &dest)
                .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", lib.display(), dest.display()));
        }
        Self { dir }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file with `bytes` into the directory and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Safety settings for admitting this directory in tests: the real preflight
    /// probe (built on demand), with the scan cache and shadow copies in a private
    /// work dir inside the temp dir (discovery is not recursive, so it is not scanned).
    pub fn safety(&self) -> plugbay_host::SafetyConfig {
        plugbay_host::SafetyConfig::builder()
            .probe_program(probe_binary(), Vec::new())
            .work_dir(self.dir.path().join(".host-work"))
            .build()
            .expect("valid safety config")
    }

    /// A manager whose `load_directory` admits libraries with [`PluginDir::safety`].
    pub fn manager(&self) -> plugbay_host::PluginManager {
        plugbay_host::PluginManager::new(
            plugbay_host::ManagerConfig::builder()
                .safety(self.safety())
                .build()
                .expect("valid manager config"),
        )
    }

    /// The path of `package`'s library inside this directory.
    pub fn library(&self, package: &str) -> PathBuf {
        self.dir.path().join(library_file_name(package))
    }
}

/// The plugin library `lib<name>.so` built from the example `name` of the
/// graph fixture (`tests/fixtures/graph`: plugins that only declare
/// dependencies), built once per test process into the fixture target dir.
pub fn graph_library(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        cargo_build(
            &workspace_root(),
            &["-p", "plugbay-fixture-graph", "--examples"],
            &fixture_target_dir(),
        );
    });
    let path = fixture_target_dir()
        .join("debug")
        .join("examples")
        .join(format!(
            "{}{name}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Builds the host's `embed` example (`host/examples/embed.rs`) with the probe
/// binary next to it (once per test process) into the fixture target dir and
/// returns the example's path.
pub fn embed_example() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            cargo_build(
                &workspace_root(),
                &[
                    "-p",
                    "plugbay-host",
                    "--example",
                    "embed",
                    "--bin",
                    "plugin-probe",
                ],
                &fixture_target_dir(),
            );
            let path = fixture_target_dir()
                .join("debug")
                .join("examples")
                .join(format!("embed{}", std::env::consts::EXE_SUFFIX));
            assert!(path.is_file(), "{} was not built", path.display());
            path
        })
        .clone()
}

/// Builds the dedicated probe binary `plugin-probe` (once per test process) into
/// the fixture target dir and returns its path.
pub fn probe_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            cargo_build(
                &workspace_root(),
                &["-p", "plugbay-host", "--bin", "plugin-probe"],
                &fixture_target_dir(),
            );
            let path = fixture_target_dir()
                .join("debug")
                .join(format!("plugin-probe{}", std::env::consts::EXE_SUFFIX));
            assert!(path.is_file(), "{} was not built", path.display());
            path
        })
        .clone()
}

/// The edits that turn plugbay-api into the "edited interface" the abi-mismatch
/// fixture is built against: `Dependency::optional` becomes a `u32`. Same package
/// name and version, so abi_stable's version check passes and only its layout
/// check can catch the difference. `(file, from, to)`; every `from` must occur.
const INTERFACE_EDITS: &[(&str, &str, &str)] = &[
    ("metadata.rs", "pub optional: bool,", "pub optional: u32,"),
    ("metadata.rs", "optional: false,", "optional: 0,"),
    ("metadata.rs", "optional: true,", "optional: 1,"),
];

/// Writes `bytes` to `path` unless it already holds them (keeps cargo's
/// fingerprints, so repeated test runs do not rebuild the fixture).
pub(crate) fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The `version = "..."` of a Cargo manifest's `[package]`.
fn package_version(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest)
        .unwrap_or_else(|e| panic!("read {}: {e}", manifest.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("version = \""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no package version in {}", manifest.display()))
        .to_owned()
}

/// Builds (once per test process) a plugin compiled against an edited copy of
/// plugbay-api and returns the library's path.
///
/// The edited interface is generated from the real `plugin-api/src` with
/// [`INTERFACE_EDITS`], so it never drifts from the real one; it lives under
/// `target/fixture-build/abi-mismatch/` as its own workspace (a second package
/// named `plugbay-api` can never be a member of ours), pinned by a copy of our
/// `Cargo.lock`.
pub fn abi_mismatch_library() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let work = fixture_target_dir().join("abi-mismatch");
            let api_src = root.join("plugin-api").join("src");
            let entries = std::fs::read_dir(&api_src)
                .unwrap_or_else(|e| panic!("read {}: {e}", api_src.display()));
            for entry in entries {
                let path = entry.expect("dir entry").path();
                let name = path
                    .file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned();
                let mut text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                for (file, from, to) in INTERFACE_EDITS.iter().filter(|(f, ..)| *f == name) {
                    assert!(
                        text.contains(from),
                        "plugin-api/src/{file} no longer contains `{from}`: update INTERFACE_EDITS \
                         in tests/src/lib.rs so the abi-mismatch fixture still edits one field"
                    );
                    text = text.replace(from, to);
                }
                write_if_changed(&work.join("edited-api/src").join(&name), text.as_bytes());
            }
            let version = package_version(&root.join("plugin-api/Cargo.toml"));
            let api_manifest = format!(
                "# GENERATED by tests/src/lib.rs: plugbay-api with INTERFACE_EDITS applied.\n\
                 [package]\nname = \"plugbay-api\"\nversion = \"{version}\"\nedition = \"2021\"\n\
                 publish = false\n\n[dependencies]\nabi_stable = \"0.11.3\"\nserde_json = \"1\"\n"
            );
            write_if_changed(&work.join("edited-api/Cargo.toml"), api_manifest.as_bytes());
            let plugin_manifest =
                "# GENERATED by tests/src/lib.rs: tests/fixtures/abi_mismatch_plugin.rs \
                 built against ../edited-api.\n[workspace]\n\n[package]\n\
                 name = \"fixture-abi-mismatch\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
                 publish = false\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n\
                 plugbay-api = { path = \"../edited-api\" }\nserde_json = \"1\"\n\n\
                 [profile.dev]\npanic = \"unwind\"\n";
            write_if_changed(&work.join("plugin/Cargo.toml"), plugin_manifest.as_bytes());
            let source = std::fs::read(root.join("tests/fixtures/abi_mismatch_plugin.rs"))
                .expect("read tests/fixtures/abi_mismatch_plugin.rs");
            write_if_changed(&work.join("plugin/src/lib.rs"), &source);
            let lock_path = work.join("plugin/Cargo.lock");
            if !lock_path.exists() {
                let lock = std::fs::read(root.join("Cargo.lock")).expect("read Cargo.lock");
                write_if_changed(&lock_path, &lock);
            }
            let target = fixture_target_dir().join("standalone");
            cargo_build(&work.join("plugin"), &[], &target);
            let path = target
                .join("debug")
                .join(library_file_name("fixture-abi-mismatch"));
            assert!(path.is_file(), "{} was not built", path.display());
            path
        })
        .clone()
}

pub(crate) fn cargo_build(dir: &Path, args: &[&str], target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(dir)
        .arg("build")
        .arg("--quiet")
        .args(args)
        .arg("--target-dir")
        .arg(target_dir);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        out.status.success(),
        "build failed ({cmd:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles `tests/fixtures/<name>.c` into a shared library with the system
/// `cc` (once per test process) and returns its path.
pub fn c_library(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let source = workspace_root()
        .join("tests/fixtures")
        .join(format!("{name}.c"));
    let out_dir = fixture_target_dir().join("c");
    std::fs::create_dir_all(&out_dir).expect("create the C fixture dir");
    let path = out_dir.join(format!("lib{name}.so"));
    // Unique temp name, then rename: parallel test processes never see half a file.
    let tmp = out_dir.join(format!(".lib{name}.{}.so", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O0", "-o"])
        .arg(&tmp)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc} for {}: {e}", source.display()));
    assert!(
        out.status.success(),
        "{cc} failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &path).expect("move the built C fixture into place");
    built.push((name.to_owned(), path.clone()));
    path
}

/// The file names in `dir`, sorted (panics naming the dir if it cannot be listed).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
