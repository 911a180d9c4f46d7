//! `cargo xtask <task>`: the project's build, test and CI entry points
//! (matklad's xtask pattern; the alias lives in `.cargo/config.toml`).
//!
//! Only std, so it compiles in a second and needs nothing installed.

mod loom;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod abi_gate;
mod cross;
mod fuzz;

/// The sample plugins `build-samples` builds and copies, by library name
/// (package `plugbay-sample-<name>`).
const SAMPLES: &[&str] = &["hello", "counter", "greeter"];

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  build-samples   build the sample plugins (release) into target/plugins/
  run             build-samples, then `plugin-host run --once target/plugins`
  test            every test of the project (builds what the tests need first)
  bench           all benchmarks in release: criterion micro-benches, then the
                  scenarios; prints the results table, writes target/bench/summary.json
  bench --quick   the same at small sizes, one round, criterion in test mode (CI's smoke run)
  tidy            repository hygiene checks (xtask/src/tidy.rs)
  loom            the loom models of the call gate, of supervision and of the
                  append-only list (host/src/manager/gate.rs,
                  host/src/manager/supervise/book.rs, host/src/manager/append_only.rs)
  abi-gate        compare plugin-api's type layouts with the last release's (tests/frozen/)
  package         package the publishable crates (plugbay-api, plugbay-host,
                  plugbay-cli) and build each from its tarball, then a publish dry run
  fuzz [--seconds N] [TARGET...]
                  the cargo-fuzz targets of host/fuzz/ for N seconds each (default 30;
                  installs nightly and cargo-fuzz when missing); not part of ci, whose
                  test run includes the bounded proptest fuzzers
  cross           type-check + clippy -D warnings for x86_64-pc-windows-gnu and
                  aarch64-apple-darwin (installs the distribution toolchain if root)
  ci              fmt check, tidy, clippy -D warnings on all targets, cross, docs, abi-gate,
                  test, loom, package, bench --quick
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build-samples") => build_samples().map(|_| ()),
        Some("run") => run(),
        Some("test") => test(),
        Some("bench") => match args.get(1).map(String::as_str) {
            None => bench(false),
            Some("--quick") => bench(true),
            Some(other) => Err(format!("unknown bench option `{other}`\n\n{USAGE}")),
        },
        Some("abi-gate") => abi_gate::run(&root()),
        Some("cross") => cross::cross(&root()),
        Some("fuzz") => fuzz::run(&root(), &args[1..]),
        Some("tidy") => tidy::run(&root()),
        Some("loom") => exec(loom::command(cargo(), &root().join("target").join("loom"))),
        Some("package") => package(),
        Some("ci") => ci(),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The host feature that exposes the internals the scenario benchmarks (and the
/// `admission_cost` example) measure; targets that need it declare it in
/// `required-features`, so without it they are skipped, not broken.
const BENCH_INTERNALS: &str = "bench-internals";
/// [`BENCH_INTERNALS`] as a workspace-wide `--features` value, so `--all-targets`
/// builds, lints and tests those targets too.
const WORKSPACE_BENCH_INTERNALS: &str = "plugbay-host/bench-internals";

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd`, failing with the command line if it does not succeed.
fn exec(mut cmd: Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// Builds the samples in release mode and copies their libraries into `target/plugins/`.
fn build_samples() -> Result<PathBuf, String> {
    let mut cmd = cargo();
    cmd.args(["build", "--release"]);
    for s in SAMPLES {
        cmd.arg("-p").arg(format!("plugbay-sample-{s}"));
    }
    exec(cmd)?;
    let out = root().join("target").join("plugins");
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    for s in SAMPLES {
        let file = format!(
            "{}{s}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        let from = root().join("target").join("release").join(&file);
        let to = out.join(&file);
        // Copy to a temp name and rename: a running host keeps the old mapping
        // intact instead of seeing its library overwritten in place.
        let tmp = out.join(format!(".{file}.tmp"));
        std::fs::copy(&from, &tmp)
            .map_err(|e| format!("copy {} -> {}: {e}", from.display(), tmp.display()))?;
        std::fs::rename(&tmp, &to)
            .map_err(|e| format!("rename {} -> {}: {e}", tmp.display(), to.display()))?;
    }
    eprintln!("xtask: sample plugins are in {}", out.display());
    Ok(out)
}

fn run() -> Result<(), String> {
    let plugins = build_samples()?;
    let mut cmd = cargo();
    cmd.args(["run", "--release", "--quiet", "-p", "plugbay-cli", "--"])
        .arg("run")
        .arg("--once")
        .arg(&plugins);
    exec(cmd)
}

fn test() -> Result<(), String> {
    // The integration tests build the plugin libraries they load on demand
    // (see tests/src/lib.rs), so one command runs everything.
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--all-targets",
        "--features",
        WORKSPACE_BENCH_INTERNALS,
    ]);
    exec(cmd)?;
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc"]);
    exec(doc)
}

fn ci() -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    exec(fmt)?;
    tidy::run(&root())?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        WORKSPACE_BENCH_INTERNALS,
        "--",
        "-D",
        "warnings",
    ]);
    exec(clippy)?;
    cross::cross(&root())?;
    docs()?;
    abi_gate::run(&root())?;
    test()?;
    exec(loom::command(cargo(), &root().join("target").join("loom")))?;
    package()?;
    bench(true)
}

/// The crates published to the registry, dependencies first. Every other package
/// of the workspace says `publish = false`.
const PUBLISHED: &[&str] = &["plugbay-api", "plugbay-host", "plugbay-cli"];

/// Removes cargo's extracted copies of earlier tarballs of the published crates.
///
/// Cargo extracts each crate it takes from the temporary local registry into
/// `$CARGO_HOME/registry/src/<that registry>/<name>-<version>/` and, registry
/// crates being immutable, never extracts the same name and version again. Our
/// versions stay put between releases, so the next `package` would verify
/// `plugbay-cli` against the *previous* `plugbay-host` tarball (seen: a function
/// added since was "not found"). Only extracts of our own crates from local
/// registries are removed (never crates.io's); cargo re-extracts them from the
/// fresh tarballs.
fn forget_unpacked_tarballs() -> Result<(), String> {
    let home = match std::env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".cargo"),
            None => return Ok(()),
        },
    };
    let src = home.join("registry").join("src");
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        // crates.io's directory is `index.crates.io-<hash>`; a local registry
        // has no name, so its directory is `-<hash>`.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = PUBLISHED
                .iter()
                .any(|krate| name.strip_prefix(krate).is_some_and(|v| v.starts_with('-')));
            if ours {
                std::fs::remove_dir_all(entry.path())
                    .map_err(|e| format!("cannot remove {}: {e}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Rustdoc of the published crates, warnings denied (what docs.rs will build).
fn docs() -> Result<(), String> {
    let mut doc = cargo();
    doc.args(["doc", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    for krate in PUBLISHED {
        doc.args(["-p", krate]);
    }
    exec(doc)
}

/// `cargo xtask package`: packages the published crates together (cargo puts each
/// into a temporary local registry so the later ones resolve the earlier ones, as
/// they will on crates.io), verifies each by building it from its own tarball, then
/// runs `cargo publish --dry-run`, which adds the registry-side checks of an upload
/// (and reuses the verification builds). `--allow-dirty`: this checks the working
/// tree as it is, it does not release anything.
fn package() -> Result<(), String> {
    forget_unpacked_tarballs()?;
    for step in [&["package"][..], &["publish", "--dry-run"][..]] {
        let mut cmd = cargo();
        cmd.args(step).arg("--allow-dirty");
        for krate in PUBLISHED {
            cmd.args(["-p", krate]);
        }
        exec(cmd)?;
    }
    Ok(())
}

/// Builds the libraries the benchmarks load, in release, and copies them under
/// `target/bench/`: to `sample/`, with their debug info stripped (`-C
/// strip=debuginfo` on the final link only, so nothing else rebuilds), as a
/// plugin would ship, the `hello` sample (which the load benchmarks copy, ≈ 0.8
/// MB) and the `calls` test fixture (whose `sleep_ms` the call benchmark needs),
/// found next to it; to `sample-7mb/`, `hello` as the default `release` profile
/// leaves it (line tables, ≈ 7 MB) for the `_7mb` load-cost rows. Returns the
/// two `hello` copies (stripped, unstripped).
fn bench_sample() -> Result<(PathBuf, PathBuf), String> {
    let unstripped = bench_library("plugbay-sample-hello", "hello", false, "sample-7mb")?;
    bench_library("plugbay-fixture-calls", "fixture_calls", true, "sample")?;
    let stripped = bench_library("plugbay-sample-hello", "hello", true, "sample")?;
    Ok((stripped, unstripped))
}

/// Builds `package` (library `lib`) for [`bench_sample`], its debug info
/// stripped when `strip`, and copies it into `target/bench/<dir>/`; returns
/// the copy's path.
fn bench_library(package: &str, lib: &str, strip: bool, dir: &str) -> Result<PathBuf, String> {
    let mut cmd = cargo();
    cmd.args(["rustc", "--release", "-p", package, "--lib"]);
    if strip {
        cmd.args(["--", "-C", "strip=debuginfo"]);
    }
    exec(cmd)?;
    let file = format!(
        "{}{lib}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let from = root().join("target").join("release").join(&file);
    let dir = root().join("target").join("bench").join(dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let to = dir.join(&file);
    std::fs::copy(&from, &to)
        .map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))?;
    Ok(to)
}

/// `cargo xtask bench [--quick]`: criterion micro-benchmarks, then the scenarios
/// (whose table comes last). Goals are reported, never asserted.
fn bench(quick: bool) -> Result<(), String> {
    let started = std::time::Instant::now();
    let (sample, sample_7mb) = bench_sample()?;
    let mut micro = cargo();
    micro.args(["bench", "-p", "plugbay-host", "--bench", "micro"]);
    if quick {
        // Criterion's test mode: every benchmark runs once.
        micro.args(["--", "--test"]);
    }
    exec(micro)?;
    let mut scenarios = cargo();
    // The scenarios measure a few internals directly (probe worker, scan cache);
    // `bench-internals` exposes them (see `plugbay_host::internals`).
    scenarios.args([
        "bench",
        "-p",
        "plugbay-host",
        "--features",
        BENCH_INTERNALS,
        "--bench",
        "scenarios",
        "--",
    ]);
    if quick {
        scenarios.arg("--quick");
    }
    scenarios.arg("--plugin").arg(&sample);
    scenarios.arg("--plugin-7mb").arg(&sample_7mb);
    exec(scenarios)?;
    eprintln!(
        "xtask: bench{} took {:.0} s",
        if quick { " --quick" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
