//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz targets
//! of `host/fuzz/` (coverage-guided libFuzzer, nightly toolchain) for N
//! seconds each (default [`DEFAULT_SECONDS`]), every target or the ones named.
//!
//! Installs what it needs, only when missing: the nightly toolchain (`rustup
//! toolchain install nightly --profile minimal`) and cargo-fuzz (`cargo
//! install cargo-fuzz --locked`). Each target starts from its seeds
//! (`host/fuzz/seeds/<target>/`, kept valid by a unit test) and the corpus of
//! earlier runs (`target/fuzz/corpus/<target>/`), with the shared dictionary
//! `host/fuzz/plugbay.dict`; builds go to `target/fuzz/build`. A crashing,
//! hanging (over [`TIMEOUT_SECONDS`] per input) or over-allocating (a single
//! allocation over [`MALLOC_LIMIT_MB`] MiB) input is saved under
//! `target/fuzz/artifacts/<target>/` and fails the task. At the end a table
//! gives, per target, the seconds run, the executions and the corpus size.
//!
//! Not part of `cargo xtask ci`: installing nightly and cargo-fuzz and the
//! sanitizer build cost minutes before the first execution. The same targets
//! run every test run as bounded proptest fuzzers (`host/src/fuzzing/`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// The targets, as named in `host/fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &[
    "host_reads_child",
    "child_reads_host",
    "isolation_wire",
    "state_envelope",
    "metadata",
    "abi_summary",
];
/// Seconds per target when `--seconds` is not given: a short smoke run.
pub const DEFAULT_SECONDS: u64 = 30;
/// An input that takes longer than this is a finding (a hang).
pub const TIMEOUT_SECONDS: u64 = 10;
/// A single allocation larger than this is a finding: no decoder needs more
/// than a state file's limit (16 MiB) for anything.
pub const MALLOC_LIMIT_MB: u64 = 64;

/// What one target's run gave.
struct Outcome {
    target: String,
    seconds: u64,
    executions: Option<u64>,
    corpus: Option<u64>,
    ok: bool,
}

/// Parses the arguments after `fuzz`: `--seconds N` and target names.
pub fn parse(args: &[String]) -> Result<(u64, Vec<String>), String> {
    let mut seconds = DEFAULT_SECONDS;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            let value = args.next().ok_or("`--seconds` needs a number")?;
            seconds = value
                .parse()
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| format!("`--seconds {value}`: not a positive number"))?;
        } else if TARGETS.contains(&arg.as_str()) {
            targets.push(arg.clone());
        } else {
            return Err(format!(
                "unknown fuzz target or option `{arg}` (targets: {})",
                TARGETS.join(", ")
            ));
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    Ok((seconds, targets))
}

/// Runs the task: installs what is missing, then fuzzes each target.
pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let (seconds, targets) = parse(args)?;
    ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(fuzz(root, target, seconds)?);
    }
    eprintln!("\nxtask: fuzz results ({seconds} s per target)");
    eprintln!(
        "  {:<18} {:>8} {:>12} {:>8}  result",
        "target", "seconds", "executions", "corpus"
    );
    for o in &outcomes {
        let show = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        eprintln!(
            "  {:<18} {:>8} {:>12} {:>8}  {}",
            o.target,
            o.seconds,
            show(o.executions),
            show(o.corpus),
            match (o.ok, o.executions) {
                (true, _) => "no finding".to_owned(),
                (false, Some(_)) => format!("FINDING: see target/fuzz/artifacts/{}/", o.target),
                (false, None) => "did not run (see the output above)".to_owned(),
            }
        );
    }
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| &o.target)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzzing found problems in {failed:?}"))
    }
}

/// Whether `cmd` runs and succeeds (its output discarded).
fn succeeds(mut cmd: Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_nightly() -> Result<(), String> {
    let mut probe = Command::new("rustup");
    probe.args(["run", "nightly", "rustc", "--version"]);
    if succeeds(probe) {
        return Ok(());
    }
    eprintln!("xtask: installing the nightly toolchain (cargo-fuzz needs it)");
    let mut install = Command::new("rustup");
    install.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
    super::exec(install)
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let mut probe = Command::new("cargo");
    probe.args(["+nightly", "fuzz", "--version"]);
    if succeeds(probe) {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz");
    let mut install = Command::new("cargo");
    install.args(["install", "cargo-fuzz", "--locked"]);
    super::exec(install)
}

/// Runs one target for `seconds`, streaming libFuzzer's output and keeping
/// its final statistics.
fn fuzz(root: &Path, target: &str, seconds: u64) -> Result<Outcome, String> {
    let fuzz_dir = root.join("target").join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let seeds = root.join("host").join("fuzz").join("seeds").join(target);
    let dict = root.join("host").join("fuzz").join("plugbay.dict");
    // rustup's proxy picks the toolchain from `+nightly`; a CARGO from the
    // outer (stable) cargo would bypass it.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["+nightly", "fuzz", "run", "--fuzz-dir", "host/fuzz"])
        .arg("--target-dir")
        .arg(fuzz_dir.join("build"))
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={TIMEOUT_SECONDS}"))
        .arg(format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"))
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .arg(format!("-dict={}", dict.display()))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .stderr(Stdio::piped());
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let mut executions = None;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        eprintln!("{line}");
        if let Some(n) = stat(&line, "stat::number_of_executed_units:") {
            executions = Some(n);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {target}: {e}"))?;
    let corpus_size = std::fs::read_dir(&corpus)
        .ok()
        .map(|entries| entries.count() as u64);
    Ok(Outcome {
        target: target.to_owned(),
        seconds,
        executions,
        corpus: corpus_size,
        ok: status.success(),
    })
}

/// The number after `key` on a libFuzzer statistics line.
fn stat(line: &str, key: &str) -> Option<u64> {
    line.trim().strip_prefix(key)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_choose_seconds_and_targets() {
        let (seconds, targets) = parse(&[]).unwrap();
        assert_eq!(seconds, DEFAULT_SECONDS);
        assert_eq!(targets.len(), TARGETS.len());
        let (seconds, targets) = parse(&args(&["--seconds", "300", "metadata"])).unwrap();
        assert_eq!((seconds, targets), (300, args(&["metadata"])));
        assert!(parse(&args(&["--seconds", "0"]))
            .unwrap_err()
            .contains("positive"));
        assert!(parse(&args(&["--seconds"])).unwrap_err().contains("needs"));
        assert!(parse(&args(&["nope"]))
            .unwrap_err()
            .contains("host_reads_child"));
    }

    #[test]
    fn final_statistics_are_read() {
        assert_eq!(
            stat(
                "stat::number_of_executed_units: 123456",
                "stat::number_of_executed_units:"
            ),
            Some(123456)
        );
        assert_eq!(
            stat("#2 INITED cov: 3", "stat::number_of_executed_units:"),
            None
        );
    }

    #[test]
    fn every_target_has_a_cargo_fuzz_binary_and_seeds() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{target}\"")),
                "{target} is not in host/fuzz/Cargo.toml"
            );
            assert!(fuzz
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file());
            assert!(
                fuzz.join("seeds").join(target).is_dir(),
                "no seeds for {target}"
            );
        }
    }
}
