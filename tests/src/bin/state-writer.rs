//! Child process for the state crash and locking tests.
//!
//! - `state-writer loop DIR START`: opens DIR, prints `ready`, then writes the
//!   states `START, START+1, ...` of [`expected_state`] forever, printing each
//!   `k` after its write returned. The test kills it with SIGKILL.
//! - `state-writer hold DIR`: opens DIR (taking its lock), prints `locked PID`,
//!   and keeps the lock until its stdin closes.
//! - `state-writer fill DIR LIMIT`: limits this process's file size to LIMIT
//!   bytes (RLIMIT_FSIZE, so writes fail with EFBIG even as root), tries to
//!   write a larger state and prints the error as one JSON line.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use integration_tests::state_writer::{expected_state, PLUGIN, VERSION};
use plugbay_host::{Error, PluginStateManager};
use semver::Version;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: state-writer loop DIR START | hold DIR | fill DIR LIMIT";
    let dir = PathBuf::from(args.get(2).expect(usage));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    match args[1].as_str() {
        "loop" => {
            let start: u64 = args[3].parse().expect(usage);
            let manager = open_waiting(dir);
            let version = Version::parse(VERSION).expect("semver");
            let mut out = std::io::stdout().lock();
            writeln!(out, "ready").expect("stdout");
            for k in start.. {
                runtime
                    .block_on(manager.write(PLUGIN, &version, expected_state(k)))
                    .unwrap_or_else(|e| panic!("write {k}: {e}"));
                writeln!(out, "{k}").expect("stdout");
            }
        }
        "hold" => {
            let _manager = open(dir);
            println!("locked {}", std::process::id());
            // Wait for the test to close our stdin.
            for _ in std::io::stdin().lock().lines() {}
        }
        "fill" => {
            let limit: u64 = args[3].parse().expect(usage);
            limit_file_size(limit);
            let manager = open(dir);
            let version = Version::parse(VERSION).expect("semver");
            let big = expected_state(limit);
            let line = match runtime.block_on(manager.write(PLUGIN, &version, big)) {
                Ok(()) => serde_json::json!({ "ok": true }),
                Err(Error::StateIo {
                    path,
                    operation,
                    reason,
                }) => serde_json::json!({
                    "path": path, "operation": operation, "reason": reason,
                }),
                Err(other) => serde_json::json!({ "other": other.to_string() }),
            };
            println!("{line}");
        }
        _ => panic!("{usage}"),
    }
}

/// Opens DIR, refusing at once if it is locked (what the locking tests check).
fn open(dir: PathBuf) -> PluginStateManager {
    PluginStateManager::open(dir.clone())
        .unwrap_or_else(|e| panic!("open state dir {}: {e}", dir.display()))
}

/// Opens DIR for the crash test's `loop`, waiting a bounded while for its lock.
///
/// The test process opens the same directory between two children (to check
/// what a killed child left) and closes it before starting the next one. Its
/// lock can still be held for a moment after that: `flock` locks belong to the
/// open file description, and a child that another test thread forked in that
/// instant shares the descriptor until its `exec` closes it (close-on-exec).
/// That is the test harness's own doing, not a second host, so wait it out.
fn open_waiting(dir: PathBuf) -> PluginStateManager {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match PluginStateManager::open(dir.clone()) {
            Ok(manager) => return manager,
            Err(Error::StateDirLocked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("open state dir {}: {e}", dir.display()),
        }
    }
}

/// Makes writes past `limit` bytes fail with EFBIG instead of killing us.
/// Unix only (`RLIMIT_FSIZE`); the tests that use `fill` run on Unix only.
#[cfg(not(unix))]
fn limit_file_size(_limit: u64) {
    panic!("`fill` needs RLIMIT_FSIZE, which only Unix has");
}

/// Makes writes past `limit` bytes fail with EFBIG instead of killing us.
#[cfg(unix)]
fn limit_file_size(limit: u64) {
    let rlim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct we pass; it lives for the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &rlim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    // SAFETY: ignoring SIGXFSZ installs no handler code; the write then
    // returns EFBIG instead of the signal ending the process.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    assert_ne!(previous, libc::SIG_ERR, "signal(SIGXFSZ)");
}
