//! `plugin-host run` for operators: the load profile (`--profile --json`), exit
//! codes, `--json` status tables, and checkpoints that survive a SIGKILL.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use integration_tests::{cli_json_data, plugin_host_bin, run_plugin_host, PluginDir};
use plugbay_api::PluginError;
use serde_json::Value;

/// The phases of a plugin's way to Active, as `--profile` names them.
const PHASES: [&str; 10] = [
    "discover",
    "permission_check",
    "copy",
    "hash",
    "probe",
    "open",
    "register",
    "resolve",
    "restore_state",
    "initialize",
];

/// `run --once` over `dir` with a fresh state and work dir plus `extra` options.
struct OnceRun {
    state: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl OnceRun {
    fn new() -> Self {
        Self {
            state: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut args: Vec<&OsStr> = vec![
            "run".as_ref(),
            "--once".as_ref(),
            "--state-dir".as_ref(),
            self.state.path().as_os_str(),
            "--work-dir".as_ref(),
            self.work.path().as_os_str(),
        ];
        args.extend(extra.iter().map(|a| OsStr::new(*a)));
        args.push(dir.as_os_str());
        run_plugin_host(&args)
    }
}

fn number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"))
}

/// Checks a `--profile` JSON profile: every phase for every plugin of `names`,
/// non-negative times, per-plugin totals within the wall time. `cold`: every
/// phase ran (no scan-cache hits), else copy and probe were skipped.
fn check_profile(profile: &Value, names: &[&str], cold: bool) {
    let wall = number(&profile["wall_ms"], "wall_ms");
    assert!(wall > 0.0, "{profile:#}");
    let plugins = profile["plugins"].as_array().expect("plugins is an array");
    assert_eq!(plugins.len(), names.len(), "{profile:#}");
    let totals: Vec<f64> = plugins
        .iter()
        .map(|p| number(&p["total_ms"], "total_ms"))
        .collect();
    assert!(
        totals.windows(2).all(|w| w[0] >= w[1]),
        "plugins are sorted by cost: {totals:?}"
    );
    for name in names {
        let row = plugins
            .iter()
            .find(|p| p["plugin"] == *name)
            .unwrap_or_else(|| panic!("no profile row for {name}: {profile:#}"));
        let total = number(&row["total_ms"], "total_ms");
        assert!(
            (0.0..=wall).contains(&total),
            "{name}: total {total} ms not within the wall time {wall} ms"
        );
        let phases = row["phases"].as_array().expect("phases is an array");
        let listed: Vec<&str> = phases
            .iter()
            .map(|p| p["phase"].as_str().unwrap())
            .collect();
        assert_eq!(listed, PHASES, "{name}: every phase, in order");
        for phase in phases {
            let label = format!("{name}/{}", phase["phase"]);
            let ms = number(&phase["ms"], &label);
            assert!(ms >= 0.0, "{label}: negative time {ms}");
            let runs = phase["runs"].as_u64().expect("runs");
            match phase["phase"].as_str().unwrap() {
                // A scan-cache hit: the shadow copy and the verdict are reused.
                "copy" | "probe" if !cold => {
                    assert_eq!(runs, 0, "{label} ran on a warm start: {row:#}")
                }
                // The files were just written, so the cache confirms their
                // contents by hashing them again ("racy" entries).
                "hash" if !cold => {}
                _ => assert!(runs >= 1, "{label} did not run: {row:#}"),
            }
            if phase["shared"] == false {
                // Its runs never overlap each other, so they fit in the time
                // during which any phase of this plugin was under way. (Two
                // phases may overlap: a large file is hashed beside its copy.)
                assert!(
                    ms <= total + 0.001,
                    "{label}: {ms} ms does not fit in the plugin's total {total} ms"
                );
            } else {
                assert_eq!(phase["phase"], "discover", "{label}");
            }
        }
    }
    let summary = profile["phases"].as_array().expect("phases summary");
    assert_eq!(summary.len(), PHASES.len(), "{profile:#}");
    for phase in summary {
        let phase_wall = number(&phase["wall_ms"], "phase wall_ms");
        assert!(
            (0.0..=wall).contains(&phase_wall),
            "phase {} wall time {phase_wall} ms outside 0..={wall}",
            phase["phase"]
        );
    }
    let path = profile["critical_path"].as_array().expect("critical path");
    assert!(!path.is_empty(), "{profile:#}");
    let on_path = number(&profile["critical_path_ms"], "critical_path_ms");
    assert!(
        on_path <= wall,
        "critical path {on_path} ms exceeds the wall time {wall} ms"
    );
    assert_eq!(
        path.last().unwrap()["phase"],
        "initialize",
        "startup ends with an initialize: {profile:#}"
    );
}

#[test]
fn run_profile_json_lists_every_phase_for_every_plugin_within_the_wall_time() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let run = OnceRun::new();
    let names = ["hello", "counter", "greeter"];
    for (round, cold) in [(1, true), (2, false)] {
        let (code, stdout, stderr) = run.run(dir.path(), &["--profile", "--json"]);
        assert_eq!(
            code,
            Some(0),
            "round {round}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let data = cli_json_data(&stdout, "run");
        check_profile(&data["profile"], &names, cold);
    }
    // The table: a row per plugin, the phase table and the critical path.
    let (code, stdout, stderr) = run.run(dir.path(), &["--profile"]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let table = stdout
        .split_once("load profile")
        .unwrap_or_else(|| panic!("no load profile printed:\n{stdout}"))
        .1;
    for needle in names.iter().chain(&PHASES).chain(&["critical path"]) {
        assert!(table.contains(needle), "`{needle}` missing:\n{stdout}");
    }
    // Without --profile, no profile.
    let (_, stdout, _) = run.run(dir.path(), &["--json"]);
    assert!(
        cli_json_data(&stdout, "run")["profile"].is_null(),
        "{stdout}"
    );
}

#[test]
fn run_json_prints_the_started_and_stopped_tables() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let (code, stdout, stderr) = OnceRun::new().run(dir.path(), &["--json"]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let data = cli_json_data(&stdout, "run");
    for (table, state) in [("started", "active"), ("stopped", "unloaded")] {
        let rows = data[table].as_array().expect("a table is an array");
        let mut names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
        names.sort_unstable();
        assert_eq!(names, ["counter", "greeter", "hello"], "{table}: {data:#}");
        for row in rows {
            assert_eq!(row["state"], state, "{table}: {row}");
            assert!(
                row["version"].is_string() && row["detail"].is_string(),
                "{row}"
            );
            // Nothing was reloaded: no earlier image kept mapped.
            assert_eq!(row["retained_images"], 0, "{row}");
        }
    }
    assert_eq!(data["exit_code"], 0, "{data:#}");
    assert_eq!(data["failures"], Value::Array(Vec::new()), "{data:#}");
    assert_eq!(data["skipped"], Value::Array(Vec::new()), "{data:#}");
}

#[test]
fn run_once_exits_1_when_a_plugin_fails_and_0_with_allow_failures() {
    // `panicky` panics in initialize.
    let dir = PluginDir::with(&["hello", "fixture-panicky"]);
    let run = OnceRun::new();
    let (code, stdout, stderr) = run.run(dir.path(), &[]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("panicky did not start"), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("hello") && l.contains("active")),
        "the others still start: {stdout}"
    );

    let (code, stdout, stderr) = run.run(dir.path(), &["--json"]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let data = cli_json_data(&stdout, "run");
    assert_eq!(data["exit_code"], 1, "{data:#}");
    let failures = data["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{data:#}");
    assert_eq!(failures[0]["plugin"], "panicky");
    assert_eq!(failures[0]["stage"], "start");
    assert!(
        failures[0]["error"].as_str().unwrap().contains("panicky"),
        "{data:#}"
    );

    let (code, _, stderr) = run.run(dir.path(), &["--allow-failures"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("panicky did not start"),
        "still reported: {stderr}"
    );
}

#[test]
fn run_once_exits_1_for_a_skipped_library_and_2_for_setup_errors() {
    let dir = PluginDir::with(&["hello"]);
    dir.write("x.so", b"not a library\n");
    let run = OnceRun::new();
    let (code, stdout, stderr) = run.run(dir.path(), &["--json"]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let data = cli_json_data(&stdout, "run");
    let skipped = data["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{data:#}");
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("x.so"));
    assert!(skipped[0]["error"].as_str().unwrap().contains("too short"));

    // A state dir that is a file: setup error, even with --allow-failures.
    let not_a_dir = dir.write("state-file", b"");
    let (code, _, stderr) = run_plugin_host(&[
        "run".as_ref(),
        "--once".as_ref(),
        "--allow-failures".as_ref(),
        "--state-dir".as_ref(),
        not_a_dir.as_os_str(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("state-file"),
        "the error names it: {stderr}"
    );

    // A bad interval: a usage error naming the value.
    let (code, _, stderr) = run_plugin_host(&[
        "run".as_ref(),
        "--checkpoint-every".as_ref(),
        "5 parsecs".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--checkpoint-every") && stderr.contains("5 parsecs"),
        "{stderr}"
    );
}

/// A running `plugin-host run` whose stderr lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl Running {
    fn start(dir: &Path, state: &Path, work: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(plugin_host_bin())
            .arg("run")
            .arg("--state-dir")
            .arg(state)
            .arg("--work-dir")
            .arg(work)
            .args(extra)
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plugin-host run");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// Waits for a stderr line containing every needle and returns it (fails,
    /// rather than hangs, if none comes in a minute).
    fn wait_for(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!(
                        "no line with {needles:?} ({e}); stderr so far:\n{}",
                        self.seen
                    );
                }
            }
        }
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }
}

/// The `initializations` count saved in `state`'s `counter.json`.
fn saved_initializations(state: &Path) -> u64 {
    let path = state.join("counter.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    let saved: Value = serde_json::from_str(&text).expect("state file is JSON");
    saved["state"]["initializations"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {text}"))
}

#[test]
fn a_checkpoint_keeps_state_a_sigkill_would_lose() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let run = OnceRun::new();
    // First run: counter has been initialized once, saved at shutdown.
    let (code, _, stderr) = run.run(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(saved_initializations(run.state.path()), 1);

    // Second run: counter's state in memory is now 2, on disk still 1, until a
    // checkpoint passes. Then the host dies without shutting down.
    let mut host = Running::start(
        dir.path(),
        run.state.path(),
        run.work.path(),
        &["--checkpoint-every", "200ms"],
    );
    host.wait_for(&["saving plugin state every 200ms"]);
    let line = host.wait_for(&["checkpoint 1 (interval)", "counter saved ("]);
    assert!(line.contains("hello"), "every active plugin: {line}");
    host.signal(libc::SIGKILL);
    let status = host.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(
        saved_initializations(run.state.path()),
        2,
        "the checkpoint saved the state the killed run had"
    );

    // A new run restores what the checkpoint saved.
    let (code, _, stderr) = run.run(dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("initialized 3 time(s)"), "{stderr}");
}

#[test]
fn sighup_takes_a_checkpoint_and_sigterm_stops_cleanly() {
    let dir = PluginDir::with(&["counter"]);
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut host = Running::start(dir.path(), state.path(), work.path(), &[]);
    host.wait_for(&["running", "on SIGHUP"]);
    assert!(
        !state.path().join("counter.json").exists(),
        "nothing saved before the checkpoint"
    );
    host.signal(libc::SIGHUP);
    host.wait_for(&["checkpoint 1 (SIGHUP)", "counter saved ("]);
    assert_eq!(saved_initializations(state.path()), 1);
    host.signal(libc::SIGTERM);
    let status = host.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", host.seen);
}

/// A plugin whose `save_state` waits until released; `ping` answers at once.
struct HeldSave {
    info: plugbay_host::PluginInfo,
    save_started: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl plugbay_host::Plugin for HeldSave {
    fn info(&self) -> &plugbay_host::PluginInfo {
        &self.info
    }

    async fn initialize(&self, _: plugbay_host::PluginContext) -> Result<(), PluginError> {
        Ok(())
    }

    async fn shutdown(&self, _: plugbay_host::PluginContext) -> Result<(), PluginError> {
        Ok(())
    }

    async fn save_state(&self) -> Result<Value, PluginError> {
        self.save_started.notify_one();
        self.release.notified().await;
        Ok(serde_json::json!({"saved": true}))
    }

    async fn load_state(&self, _: Value, _: &str) -> Result<(), PluginError> {
        Ok(())
    }

    async fn call(
        &self,
        _: plugbay_host::PluginContext,
        method: &str,
        _: Value,
    ) -> Result<Value, PluginError> {
        match method {
            "ping" => Ok(serde_json::json!("pong")),
            other => Err(PluginError::unknown_method(other)),
        }
    }
}

/// What `run`'s checkpoints rely on: a checkpoint that is still saving a
/// plugin's state does not hold up calls into that plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_through_while_a_checkpoint_is_saving() {
    let state = tempfile::tempdir().unwrap();
    let config = plugbay_host::ManagerConfig::builder()
        .state_dir(state.path().to_path_buf())
        .build()
        .expect("valid config");
    let manager = plugbay_host::PluginManager::open(config).await.unwrap();
    let save_started = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let id = manager
        .register_plugin(std::sync::Arc::new(HeldSave {
            info: plugbay_host::PluginInfo::in_process("held", "1.0.0").unwrap(),
            save_started: std::sync::Arc::clone(&save_started),
            release: std::sync::Arc::clone(&release),
        }))
        .unwrap();
    manager.load_plugin(id).await.unwrap();

    let checkpoint = tokio::spawn({
        let manager = manager.clone();
        async move { manager.save_all_states().await }
    });
    save_started.notified().await;
    // Fails (rather than hangs) if the call waits for the save.
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        manager.call("held", "ping", serde_json::json!({})),
    )
    .await
    .expect("the call waited for the checkpoint's save")
    .unwrap();
    assert_eq!(answer, "pong");
    release.notify_one();
    let saved = checkpoint.await.unwrap();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(saved[0].1.is_ok(), "{saved:?}");
    assert!(state.path().join("held.json").is_file());
}
