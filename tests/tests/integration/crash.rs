//! PluginStateManager across processes, with the `state-writer` child: SIGKILL
//! mid-save, a second host locked out, a write failing as the disk fills.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use integration_tests::names_in;
use integration_tests::state_writer::{expected_state, PLUGIN, VERSION};
use plugbay_host::{Error, PluginStateManager};
use serde_json::Value;

const WRITER: &str = env!("CARGO_BIN_EXE_state-writer");

fn spawn_writer(args: &[&str]) -> Child {
    Command::new(WRITER)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {WRITER} {args:?}: {e}"))
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("state");
    (tmp, dir)
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_torn_or_lost_state() {
    const KILLS: usize = 250;
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let (_tmp, dir) = state_dir();
    let dir_arg = dir.to_str().unwrap().to_owned();
    let rt = runtime();
    // The n of the state on disk after the previous kill.
    let mut on_disk: Option<u64> = None;
    let (mut acked_total, mut kills_with_temp, mut kills_between) = (0usize, 0usize, 0usize);

    for kill in 0..KILLS {
        let context = format!("seed {seed}, kill {kill}, dir {}", dir.display());
        let start = on_disk.map_or(0, |n| n + 1);
        let mut child = spawn_writer(&["loop", &dir_arg, &start.to_string()]);
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut ready = String::new();
        out.read_line(&mut ready).expect("read child stdout");
        if ready != "ready\n" {
            let _ = child.kill();
            panic!(
                "{context}: child did not start: {ready:?}\n{}",
                stderr_of(&mut child)
            );
        }
        // Every other round, first let one save complete, so kills also land in
        // the steady loop and not only around the first save. Then kill at a
        // random moment within the next few saves (each is tens of KiB and two
        // fsyncs, a few ms in a debug build).
        let mut acked_first = Vec::new();
        if kill % 2 == 1 {
            let mut line = String::new();
            out.read_line(&mut line).expect("read child stdout");
            acked_first.push(line);
        }
        std::thread::sleep(Duration::from_micros(rng.u64(0..12_000)));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{context}: child ended on its own ({status}):\n{}",
            stderr_of(&mut child)
        );
        let mut rest: String = acked_first.concat();
        out.read_to_string(&mut rest).expect("read child stdout");
        // Saves whose write returned before the kill, in order, from `start`.
        let acked: Vec<u64> = rest
            .lines()
            .map(|l| {
                l.parse()
                    .unwrap_or_else(|e| panic!("{context}: line {l:?}: {e}"))
            })
            .collect();
        let expected_acks: Vec<u64> = (start..start + acked.len() as u64).collect();
        assert_eq!(acked, expected_acks, "{context}");
        acked_total += acked.len();

        let manager = PluginStateManager::open(dir.clone())
            .unwrap_or_else(|e| panic!("{context}: reopen after kill: {e}"));
        if manager.stale_temps_removed() > 0 {
            kills_with_temp += 1;
        }
        let saved = rt
            .block_on(manager.read(PLUGIN))
            .unwrap_or_else(|e| panic!("{context}: state file unreadable after SIGKILL: {e}"));
        // The newest acknowledged state, or the one after it (renamed but not yet
        // acknowledged when the kill came).
        let floor = acked.last().copied().or(on_disk);
        match saved {
            None => assert!(
                floor.is_none(),
                "{context}: state file lost after save {floor:?} returned"
            ),
            Some(saved) => {
                let n = saved.state["n"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{context}: no n in state"));
                assert_eq!(
                    saved.state,
                    expected_state(n),
                    "{context}: state {n} is not what was written"
                );
                assert_eq!(saved.plugin_version.to_string(), VERSION, "{context}");
                let allowed = floor.map_or(vec![start], |f| vec![f, f + 1]);
                assert!(
                    allowed.contains(&n),
                    "{context}: state {n} on disk, expected one of {allowed:?} (acked {acked:?})"
                );
                if Some(n) != acked.last().copied() && !acked.is_empty() {
                    kills_between += 1;
                }
                on_disk = Some(n);
            }
        }
        drop(manager);
    }
    assert!(
        acked_total > 0,
        "the child never completed a save: kills came too early"
    );
    assert_eq!(
        names_in(&dir),
        [".lock", &format!("{PLUGIN}.json")],
        "only the state file remains after the last reopen"
    );
    println!(
        "{KILLS} SIGKILLs (seed {seed}): {acked_total} acknowledged saves, final n = {on_disk:?}, \
         {kills_with_temp} kills left a temp file behind, \
         {kills_between} landed after a rename but before the acknowledgement"
    );
}

#[test]
fn second_process_is_locked_out_and_told_the_holders_pid() {
    let (_tmp, dir) = state_dir();
    let dir_arg = dir.to_str().unwrap().to_owned();

    // Another process holds the dir: this one is refused, naming that pid.
    let mut holder = spawn_writer(&["hold", &dir_arg]);
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read child stdout");
    assert_eq!(
        line,
        format!("locked {}\n", holder.id()),
        "{}",
        stderr_of(&mut holder)
    );
    match PluginStateManager::open(dir.clone()) {
        Err(err @ Error::StateDirLocked { .. }) => {
            let Error::StateDirLocked { path, holder: pid } = &err else {
                unreachable!()
            };
            assert_eq!(path, &dir);
            assert_eq!(pid, &holder.id().to_string());
            assert!(
                err.to_string().contains(&format!("pid {}", holder.id())),
                "{err}"
            );
        }
        other => panic!(
            "expected StateDirLocked while pid {} holds {}, got {other:?}",
            holder.id(),
            dir.display()
        ),
    }
    drop(holder.stdin.take()); // lets the holder exit, releasing the lock
    let status = holder.wait().expect("wait");
    assert!(
        status.success(),
        "holder failed: {status}\n{}",
        stderr_of(&mut holder)
    );

    // This process holds it: a second process is refused and told our pid.
    let manager = PluginStateManager::open(dir.clone()).expect("free after the holder exited");
    let out = Command::new(WRITER)
        .args(["hold", &dir_arg])
        .stdin(Stdio::null())
        .output()
        .expect("run second writer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second host was let in: {stderr}");
    assert!(
        stderr.contains(&format!(
            "in use by another host (pid {})",
            std::process::id()
        )),
        "{stderr}"
    );
    drop(manager);
}

#[test]
fn write_failing_midway_names_path_and_operation_and_keeps_the_old_file() {
    // Root ignores permission bits; a file-size limit (RLIMIT_FSIZE) makes the
    // kernel fail the write with EFBIG for anyone, like a full disk would.
    let (_tmp, dir) = state_dir();
    let rt = runtime();
    let version = semver::Version::parse(VERSION).unwrap();
    {
        let manager = PluginStateManager::open(dir.clone()).unwrap();
        rt.block_on(manager.write(PLUGIN, &version, expected_state(1)))
            .unwrap();
    }
    let file = dir.join(format!("{PLUGIN}.json"));
    let before = std::fs::read(&file).unwrap();

    let out = Command::new(WRITER)
        .args(["fill", dir.to_str().unwrap(), "4096"])
        .output()
        .expect("run writer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{stdout}: {e}"));
    assert_eq!(report["operation"], "write", "{report}");
    let path = PathBuf::from(
        report["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{report}")),
    );
    assert_eq!(path.parent(), Some(dir.as_path()), "{report}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with(&format!(".{PLUGIN}.json.")) && name.ends_with(".tmp"),
        "{report}"
    );
    assert!(
        report["reason"].as_str().unwrap().contains("too large"),
        "{report}"
    );

    // The old file is byte for byte intact and the temp file is gone.
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "{} changed",
        file.display()
    );
    assert_eq!(names_in(&dir), [".lock", &format!("{PLUGIN}.json")]);
    let manager = PluginStateManager::open(dir.clone()).unwrap();
    let saved = rt.block_on(manager.read(PLUGIN)).unwrap().unwrap();
    assert_eq!(saved.state, expected_state(1));
}
