//! Isolated plugins: a plugin library run in a runner process of its own. The
//! `crashy` fixture dies in every way a native plugin can (segfault, abort,
//! stack overflow, `exit(0)`, unbounded allocation, a hang in `call` or in
//! `initialize`); isolated, each leaves the host alive with the precise reason
//! and the other plugins answering. Calls, state, dependencies, events and
//! callbacks work as in-process, and the re-entrancy rule holds across processes.

use std::ffi::OsString;
use std::time::Duration;

use integration_tests::{
    c_library, cli_json_data, library_file_name, probe_binary, run_plugin_host, PluginDir,
};
use plugbay_host::{
    CrashReason, CrashReport, Error, Limits, ManagerConfig, ManagerConfigBuilder, PluginManager,
    PluginState, RestartPolicy, RUNNER_ARG,
};
use serde_json::json;

use crate::watch::{watchdog, DeadlockDetector};

const LIMIT: Duration = Duration::from_secs(60);

/// A manager over `dir` running the plugins `isolated` in runner processes (the
/// `plugin-probe` binary in its runner mode), with `extra` settings.
async fn manager(
    dir: &PluginDir,
    isolated: &[&str],
    extra: impl FnOnce(ManagerConfigBuilder) -> ManagerConfigBuilder,
) -> PluginManager {
    admitted(dir, PluginManager::new(config(dir, isolated, extra))).await
}

fn config(
    dir: &PluginDir,
    isolated: &[&str],
    extra: impl FnOnce(ManagerConfigBuilder) -> ManagerConfigBuilder,
) -> ManagerConfig {
    let mut builder = ManagerConfig::builder()
        .safety(dir.safety())
        .isolation_runner(probe_binary(), vec![OsString::from(RUNNER_ARG)]);
    for name in isolated {
        builder = builder.isolate(*name);
    }
    extra(builder).build().expect("valid config")
}

/// `manager` with `dir`'s libraries registered.
async fn admitted(dir: &PluginDir, manager: PluginManager) -> PluginManager {
    let report = manager.load_directory(dir.path()).await.expect("admission");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    manager
}

/// The crash report `crashy` died with, from its crash signal.
fn report_of(manager: &PluginManager) -> Option<CrashReport> {
    let plugin = manager.get_plugin_by_name("crashy").expect("registered");
    let signal = plugin
        .crash_signal()
        .expect("an isolated plugin has a crash signal");
    let report = signal.borrow().clone();
    report
}

/// Starts `crashy` (isolated) and `hello` (in-process), calls `crashy.method`,
/// and checks that the call failed with `Error::Crashed`, that the host and
/// `hello` are fine, and that `crashy` starts again in a new runner. Returns
/// the report.
async fn crash_with(method: &str, limits: Limits, call_timeout: Duration) -> CrashReport {
    let detector = DeadlockDetector::start();
    let dir = PluginDir::with(&["fixture-crashy", "hello"]);
    let manager = manager(&dir, &["crashy"], |b| {
        b.isolation_limits(limits)
            .isolated_call_timeout(call_timeout)
    })
    .await;
    let report = watchdog(method, LIMIT, async {
        let started = manager.load_all_plugins().await;
        assert!(started.is_ok(), "{started:?}");
        assert_eq!(
            manager
                .call("crashy", "echo", json!({"x": 1}))
                .await
                .unwrap(),
            json!({"x": 1})
        );
        assert_eq!(report_of(&manager), None, "alive: no report");
        let err = manager.call("crashy", method, json!({})).await.unwrap_err();
        let Error::Crashed { plugin, report } = err else {
            panic!("{method}: expected Error::Crashed, got {err:?}");
        };
        assert_eq!(plugin, "crashy");
        assert_eq!(
            report_of(&manager).as_ref(),
            Some(&report),
            "the signal holds it"
        );
        // The host and the in-process plugin go on.
        assert_eq!(
            manager
                .call("hello", "greet", json!({"name": "Ada"}))
                .await
                .unwrap(),
            json!("Hello, Ada!")
        );
        // A later call fails with the same report, at once.
        let again = manager.call("crashy", "echo", json!(1)).await.unwrap_err();
        assert!(
            matches!(&again, Error::Crashed { report: r, .. } if *r == report),
            "{again:?}"
        );
        // A new incarnation: the signal goes back to None and calls work.
        let id = manager.id_of("crashy").unwrap();
        let _ = manager.unload_plugin(id).await;
        manager
            .load_plugin(id)
            .await
            .expect("restarted in a new runner");
        assert_eq!(
            report_of(&manager),
            None,
            "a new incarnation resets the signal"
        );
        assert_eq!(
            manager.call("crashy", "echo", json!(2)).await.unwrap(),
            json!(2)
        );
        manager.unload_all_plugins().await;
        report
    })
    .await;
    detector.finish();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segfault_is_reported_as_sigsegv() {
    let report = crash_with("segfault", Limits::default(), LIMIT).await;
    assert_eq!(
        report.reason,
        CrashReason::Signal {
            number: libc::SIGSEGV,
            name: "SIGSEGV".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_is_reported_as_sigabrt() {
    let report = crash_with("abort", Limits::default(), LIMIT).await;
    assert_eq!(
        report.reason,
        CrashReason::Signal {
            number: libc::SIGABRT,
            name: "SIGABRT".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_overflow_is_reported_with_its_stderr_line() {
    let report = crash_with("overflow", Limits::default(), LIMIT).await;
    assert!(
        matches!(&report.reason, CrashReason::Signal { name, .. } if name == "SIGABRT" || name == "SIGSEGV"),
        "{report:?}"
    );
    assert!(
        report
            .last_stderr
            .iter()
            .any(|l| l.contains("has overflowed its stack")),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_zero_is_reported_as_an_exit() {
    let report = crash_with("exit", Limits::default(), LIMIT).await;
    assert_eq!(report.reason, CrashReason::Exited { code: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_is_reported_as_the_memory_limit() {
    let limits = Limits {
        memory_bytes: Some(256 << 20),
        ..Limits::default()
    };
    let report = crash_with("allocate", limits, LIMIT).await;
    assert_eq!(
        report.reason,
        CrashReason::Limit {
            limit: "memory limit 256 MiB".into()
        },
        "{report:?}"
    );
    assert_eq!(
        report.to_string().split(';').next(),
        Some("killed: memory limit 256 MiB")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_without_end_is_reported_as_the_cpu_limit() {
    let limits = Limits {
        cpu_seconds: Some(1),
        ..Limits::default()
    };
    let report = crash_with("spin", limits, LIMIT).await;
    assert_eq!(
        report.reason,
        CrashReason::Limit {
            limit: "CPU time 1 s".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_call_is_killed_at_its_deadline() {
    let deadline = Duration::from_millis(500);
    let report = crash_with("hang", Limits::default(), deadline).await;
    assert_eq!(
        report.reason,
        CrashReason::Deadline {
            operation: "call(hang)".into(),
            after: deadline
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_initialize_is_killed_and_the_plugin_fails_crashed() {
    let dir = PluginDir::with(&["fixture-crashy", "hello"]);
    let deadline = Duration::from_millis(500);
    let manager = manager(&dir, &["crashy"], |b| {
        b.isolated_call_timeout(deadline)
            .plugin_config("crashy", json!({"hang_in_initialize": true}))
    })
    .await;
    watchdog("hung initialize", LIMIT, async {
        let started = manager.load_all_plugins().await;
        let id = manager.id_of("crashy").unwrap();
        let expected = CrashReason::Deadline {
            operation: "initialize".into(),
            after: deadline,
        };
        match manager.status(id).unwrap() {
            PluginState::Failed(e) => match *e {
                Error::Crashed { report, .. } => assert_eq!(report.reason, expected),
                other => panic!("expected Crashed, got {other:?}"),
            },
            other => panic!("expected Failed, got {other:?} ({started:?})"),
        }
        assert_eq!(
            manager.call("hello", "greet", json!({})).await.unwrap(),
            json!("Hello, world!")
        );
        // Once its config lets it start, a new runner serves it.
        manager.set_plugin_config("crashy", json!({}));
        manager
            .load_plugin(id)
            .await
            .expect("starts in a new runner");
        assert_eq!(report_of(&manager), None);
        assert_eq!(
            manager.call("crashy", "count", json!({})).await.unwrap(),
            json!(1)
        );
        manager.unload_all_plugins().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_state_dependencies_and_callbacks_work_as_in_process() {
    let detector = DeadlockDetector::start();
    let dir = PluginDir::with(&["fixture-crashy", "hello", "greeter", "counter"]);
    let state = tempfile::tempdir().unwrap();
    let config = config(&dir, &["crashy", "hello", "greeter", "counter"], |b| {
        b.state_dir(state.path().join("state"))
            .host_name("isolation-test")
            .plugin_config("crashy", json!({"colour": "blue"}))
    });
    let open = || async {
        admitted(
            &dir,
            PluginManager::open(config.clone()).await.expect("open"),
        )
        .await
    };
    watchdog("round trip", LIMIT, async {
        let manager = open().await;
        let started = manager.load_all_plugins().await;
        assert!(started.is_ok(), "{started:?}");
        // Dependencies: isolated greeter called isolated hello in its initialize,
        // through the host.
        assert_eq!(
            manager
                .call("greeter", "first_greeting", json!(null))
                .await
                .unwrap(),
            json!("Hello, greeter!")
        );
        assert_eq!(
            manager
                .call("greeter", "greet", json!({"name": "Bo"}))
                .await
                .unwrap(),
            json!("Hello, Bo!")
        );
        // Events: isolated counter publishes, isolated greeter (subscribed in its
        // initialize) receives it.
        assert_eq!(
            manager
                .call("counter", "increment", json!({}))
                .await
                .unwrap(),
            json!(1)
        );
        while manager
            .call("greeter", "last_count", json!(null))
            .await
            .unwrap()
            != json!(1)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Host callbacks: name, config, status.
        assert_eq!(
            manager.call("crashy", "whoami", json!(null)).await.unwrap(),
            json!({"host": "isolation-test", "config": {"colour": "blue"}, "status": "active"})
        );
        // JSON text in and out.
        assert_eq!(
            manager.call_json("crashy", "echo", "[1,2]").await.unwrap(),
            "[1,2]"
        );
        for n in 1..=3 {
            assert_eq!(
                manager.call("crashy", "count", json!(null)).await.unwrap(),
                json!(n)
            );
        }
        let stopped = manager.unload_all_plugins().await;
        assert!(stopped.is_ok(), "{stopped:?}");
        drop(manager);
        // State saved by the isolated plugin is restored into a new runner.
        let manager = open().await;
        assert!(manager.load_all_plugins().await.is_ok());
        assert_eq!(
            manager.call("crashy", "count", json!(null)).await.unwrap(),
            json!(4)
        );
        manager.unload_all_plugins().await;
    })
    .await;
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_cross_processes_and_reentry_is_refused() {
    let detector = DeadlockDetector::start();
    let dir = PluginDir::with(&["fixture-crashy", "fixture-calls", "hello"]);
    let manager = manager(&dir, &["crashy"], |b| b).await;
    watchdog("callbacks", LIMIT, async {
        assert!(manager.load_all_plugins().await.is_ok());
        // Isolated → host → in-process plugin.
        let relayed = manager
            .call(
                "crashy",
                "relay",
                json!({"target": "hello", "method": "greet", "args": {"name": "Cy"}}),
            )
            .await
            .unwrap();
        assert_eq!(relayed, json!("Hello, Cy!"));
        // Isolated → in-process → back into the isolated plugin: refused, not a
        // deadlock, and the isolated plugin keeps working.
        let err = manager
            .call(
                "crashy",
                "relay",
                json!({"target": "calls", "method": "relay",
                       "args": {"target": "crashy", "method": "echo", "args": 1}}),
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("re-enter") && text.contains("crashy -> calls -> crashy"),
            "{text}"
        );
        assert_eq!(
            manager.call("crashy", "echo", json!(5)).await.unwrap(),
            json!(5)
        );
        manager.unload_all_plugins().await;
    })
    .await;
    detector.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_not_named_runs_in_process() {
    let dir = PluginDir::with(&["fixture-crashy", "hello"]);
    let manager = manager(&dir, &["crashy"], |b| b).await;
    let hello = manager.get_plugin_by_name("hello").unwrap();
    assert!(hello.crash_signal().is_none(), "hello runs in-process");
    assert!(hello.call_path().is_some());
    let crashy = manager.get_plugin_by_name("crashy").unwrap();
    assert!(crashy.call_path().is_none());
}

#[test]
fn the_cli_runs_and_calls_plugins_isolated() {
    let dir = PluginDir::with(&["fixture-crashy", "hello"]);
    let state = tempfile::tempdir().unwrap();
    let work = dir.path().join(".host-work");
    let args = |extra: &[&str]| -> Vec<OsString> {
        let mut all: Vec<OsString> = extra.iter().map(OsString::from).collect();
        all.extend([
            "--state-dir".into(),
            state.path().into(),
            "--work-dir".into(),
            work.clone().into(),
            dir.path().into(),
        ]);
        all
    };
    let run = |extra: &[&str]| {
        let all = args(extra);
        let refs: Vec<&std::ffi::OsStr> = all.iter().map(OsString::as_os_str).collect();
        run_plugin_host(&refs)
    };
    let (code, stdout, stderr) = run(&["run", "--once", "--isolate", "crashy"]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains("--isolate crashy:"), "{stderr}");
    // A name no library carries is a warning, not silence.
    let (code, _, stderr) = run(&["run", "--once", "--isolate", "crashyy"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("--isolate crashyy: no plugin named `crashyy` was found"),
        "{stderr}"
    );
    for name in ["crashy", "hello"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(name) && l.contains("active")),
            "{name} not active\n{stdout}"
        );
    }
    // `call` takes the same flags: the plugin's segfault ends its runner, and
    // the host reports it as the plugin's failure (exit 1), not its own death.
    let mut call = args(&["call", "--isolate-all"]);
    call.extend(["crashy".into(), "segfault".into()]);
    let refs: Vec<&std::ffi::OsStr> = call.iter().map(OsString::as_os_str).collect();
    let (code, stdout, stderr) = run_plugin_host(&refs);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("plugin `crashy` crashed: killed by signal 11 (SIGSEGV)"),
        "{stderr}"
    );
}

#[test]
fn list_suggests_isolation_for_a_quarantined_library() {
    let dir = PluginDir::with(&["hello"]);
    let segv = dir.path().join("segv.so");
    std::fs::copy(c_library("ctor_segv"), &segv).unwrap();
    let work = dir.path().join(".host-work");
    let (code, stdout, stderr) = run_plugin_host(&[
        "list".as_ref(),
        "--json".as_ref(),
        "--work-dir".as_ref(),
        work.as_os_str(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let entries = cli_json_data(&stdout, "list");
    let suggests = |file: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with(file)))
            .unwrap_or_else(|| panic!("no entry for {file}: {stdout}"))["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap_or_default().contains("--isolate"))
    };
    assert!(suggests("segv.so"), "{stdout}");
    assert!(!suggests(&library_file_name("hello")), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_isolated_plugin_is_restarted_with_its_saved_state() {
    let detector = DeadlockDetector::start();
    let dir = PluginDir::with(&["fixture-crashy", "hello"]);
    let state = tempfile::tempdir().unwrap();
    let config = config(&dir, &["crashy"], |b| {
        b.state_dir(state.path().join("state")).restart_policy(
            "crashy",
            RestartPolicy::on_failure(3, Duration::from_secs(60))
                .with_backoff(Duration::from_millis(10), Duration::from_millis(10)),
        )
    });
    let manager = admitted(&dir, PluginManager::open(config).await.expect("open")).await;
    watchdog("restart", LIMIT, async {
        assert!(manager.load_all_plugins().await.is_ok());
        for n in 1..=2 {
            assert_eq!(
                manager.call("crashy", "count", json!(null)).await.unwrap(),
                json!(n)
            );
        }
        // The checkpoint the restart restores.
        for (name, saved) in manager.save_all_states().await {
            saved.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let alive = |m: &PluginManager| {
            m.get_plugin_by_name("crashy")
                .and_then(|p| p.crash_signal())
                .map(|s| s.borrow().is_none())
        };
        let err = manager
            .call("crashy", "abort", json!(null))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Crashed { .. }), "{err:?}");
        // The supervisor restarts it in a new runner, its state restored.
        loop {
            if manager.status_by_name("crashy").unwrap().is_active()
                && alive(&manager) == Some(true)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            manager.call("crashy", "count", json!(null)).await.unwrap(),
            json!(3)
        );
        manager.unload_all_plugins().await;
    })
    .await;
    detector.finish();
}

/// The library files this process has mapped (from `/proc/self/maps`).
#[cfg(target_os = "linux")]
fn mapped_files() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5).map(str::to_owned))
        .collect()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_library_is_never_mapped_in_the_host() {
    let dir = PluginDir::with(&["fixture-crashy", "hello"]);
    let manager = manager(&dir, &["crashy"], |b| b).await;
    watchdog("isolated start", LIMIT, async {
        let started = manager.load_all_plugins().await;
        assert!(started.is_ok(), "{started:?}");
        assert_eq!(
            manager.call("crashy", "echo", json!("hi")).await.unwrap(),
            json!("hi")
        );
    })
    .await;
    // Shadow copies are named by content and live in this test's own work dir:
    // hello (in-process) is mapped from there, crashy (isolated) must not be.
    let work = dir.safety().shadow_dir().to_string_lossy().into_owned();
    let mut mapped: Vec<String> = mapped_files()
        .into_iter()
        .filter(|f| f.starts_with(&work))
        .collect();
    mapped.dedup();
    assert_eq!(
        mapped.len(),
        1,
        "expected only hello's copy mapped: {mapped:?}"
    );
    let hello = manager.get_plugin_by_name("hello").unwrap();
    let crashy = manager.get_plugin_by_name("crashy").unwrap();
    assert!(crashy.crash_signal().is_some() && hello.crash_signal().is_none());
    let unloaded = manager.unload_all_plugins().await;
    assert!(unloaded.is_ok(), "{unloaded:?}");
}
