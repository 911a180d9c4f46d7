//! `cargo xtask cross`: type-check and lint the whole workspace (all targets)
//! for Windows (`x86_64-pc-windows-gnu`) and macOS (`aarch64-apple-darwin`)
//! on a Linux machine, without rustup targets and without network access once
//! installed.
//!
//! How: the distribution's Rust (`rustc-web`, `cargo-web`, `rust-web-clippy`)
//! ships its own std source (`rust-web-src`), so `-Zbuild-std` builds std for
//! any target (no linking happens: `clippy` only type-checks and lints).
//! Compiler and std source must match exactly, so the distribution's `/usr/bin`
//! comes first in `PATH` (not rustup's toolchain) and `RUSTC_BOOTSTRAP=1`
//! unlocks `-Z` on it. The Windows check needs a mingw `dlltool` (raw-dylib
//! imports), from `binutils-mingw-w64-x86-64`. For Apple targets
//! `CARGO_FEATURE_PURE=1` makes blake3's build script skip its C/assembly
//! (which it would hand to the Linux `cc` with Apple flags). Everything goes to
//! `target/cross`, so the normal build is not invalidated.
//!
//! Missing packages are installed with apt when running as root (a fresh CI
//! machine); otherwise the step fails saying what to install. The first run
//! fetches std's own dependencies from the registry; later runs work offline.
//!
//! The distribution's compiler (1.96 at the time of writing) is newer than the
//! rustup one the rest of CI uses; its lints must be clean too.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The targets checked, with the extra environment each needs.
const TARGETS: &[(&str, &[(&str, &str)])] = &[
    ("x86_64-pc-windows-gnu", &[]),
    ("aarch64-apple-darwin", &[("CARGO_FEATURE_PURE", "1")]),
];

/// The distribution packages the step needs.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-clippy",
    "binutils-mingw-w64-x86-64",
];

/// Files whose presence means the packages are installed.
const NEEDED_FILES: &[&str] = &[
    "/usr/bin/cargo",
    "/usr/bin/rustc",
    "/usr/bin/cargo-clippy",
    "/usr/bin/clippy-driver",
    "/usr/lib/rustlib/src/rust/library/std/Cargo.toml",
    "/usr/bin/x86_64-w64-mingw32-dlltool",
];

/// `cargo xtask cross`.
pub fn cross(root: &Path) -> Result<(), String> {
    ensure_toolchain()?;
    // Every target is checked, so one run shows all failures.
    let mut failed = Vec::new();
    for (target, env) in TARGETS {
        let started = Instant::now();
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.current_dir(root)
            .args([
                "clippy",
                "--locked",
                "-Zbuild-std=std,panic_unwind",
                "--workspace",
                "--all-targets",
                "--features",
                crate::WORKSPACE_BENCH_INTERNALS,
                "--target",
                target,
                "--",
                "-D",
                "warnings",
            ])
            .env("PATH", path_with_usr_bin_first())
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", root.join("target").join("cross"))
            // Set by rustup's proxies or by the outer cargo: they would point
            // the distribution's cargo at the other compiler.
            .env_remove("RUSTC")
            .env_remove("RUSTDOC")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CARGO");
        for (key, value) in *env {
            cmd.env(key, value);
        }
        let result = crate::exec(cmd);
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => eprintln!("xtask: cross {target}: type-check + clippy clean in {secs:.0} s"),
            Err(e) => {
                eprintln!("xtask: cross {target}: FAILED after {secs:.0} s");
                failed.push(format!("{target}: {e}"));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}

/// `/usr/bin` first, then the rest of `PATH`.
fn path_with_usr_bin_first() -> String {
    match std::env::var("PATH") {
        Ok(path) if !path.is_empty() => format!("/usr/bin:{path}"),
        _ => "/usr/bin:/bin".to_owned(),
    }
}

/// Installs the distribution packages when missing (as root), or explains.
fn ensure_toolchain() -> Result<(), String> {
    let missing: Vec<&str> = NEEDED_FILES
        .iter()
        .copied()
        .filter(|f| !Path::new(f).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!(
        "apt-get update && apt-get install -y {}",
        PACKAGES.join(" ")
    );
    if !is_root() {
        return Err(format!(
            "the cross check needs the distribution's Rust toolchain and mingw binutils \
             (missing: {}); install them as root with `{install}`",
            missing.join(", ")
        ));
    }
    eprintln!(
        "xtask: installing the cross-check toolchain ({})",
        missing.join(", ")
    );
    let started = Instant::now();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&install)
        .env("DEBIAN_FRONTEND", "noninteractive");
    crate::exec(cmd)?;
    eprintln!(
        "xtask: installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let still: Vec<&str> = NEEDED_FILES
        .iter()
        .copied()
        .filter(|f| !Path::new(f).exists())
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "after `{install}`, still missing: {}",
            still.join(", ")
        ))
    }
}

/// Whether we run as root (`id -u` prints 0); std has no euid.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usr_bin_comes_first_in_path() {
        assert!(path_with_usr_bin_first().starts_with("/usr/bin:"));
    }

    #[test]
    fn every_needed_file_comes_from_a_listed_package() {
        // The Windows target needs the mingw dlltool, the Apple one blake3's
        // pure build: both targets are configured.
        assert!(TARGETS.iter().any(|(t, _)| t.contains("windows")));
        assert!(TARGETS
            .iter()
            .any(|(t, env)| t.contains("apple") && env.contains(&("CARGO_FEATURE_PURE", "1"))));
        assert!(PACKAGES.contains(&"binutils-mingw-w64-x86-64"));
        assert!(NEEDED_FILES.iter().any(|f| f.ends_with("mingw32-dlltool")));
    }
}
