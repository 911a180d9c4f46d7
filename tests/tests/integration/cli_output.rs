//! What every subcommand prints, whatever it is: colours only when asked for
//! and never with NO_COLOR, no progress line off a terminal, and one JSON
//! document shape (`schema_version`, `command`, `data`) for every `--json`.

use std::ffi::OsStr;
use std::process::Command;

use integration_tests::safety_support::copy;
use integration_tests::{c_library, cli_json_data, plugin_host_bin, run_plugin_host, PluginDir};

/// Runs `plugin-host` with `args` and colour settings `env` (the inherited
/// colour variables removed first); stdout and stderr are pipes, not terminals.
fn run_with_env(args: &[&OsStr], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(plugin_host_bin());
    cmd.args(args);
    for var in ["NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "TERM"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run plugin-host");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn no_escape_codes_off_a_terminal_or_with_no_color_and_no_progress_line() {
    let dir = PluginDir::with(&["hello", "greeter"]);
    copy(&c_library("ctor_segv"), &dir.path().join("libsegv.so"));
    let work = dir.path().join(".host-work");
    let d = dir.path().as_os_str();
    let greeter = dir.library("greeter");
    let commands: Vec<Vec<&OsStr>> = vec![
        vec!["list".as_ref(), d],
        vec!["check".as_ref(), d],
        vec!["inspect".as_ref(), greeter.as_os_str()],
        vec!["inspect".as_ref(), "segv".as_ref(), d],
        vec!["explain".as_ref(), "greeter".as_ref(), d],
        vec!["explain".as_ref(), "segv".as_ref(), d],
    ];
    for command in &commands {
        let mut args = command.clone();
        args.extend(["--work-dir".as_ref(), work.as_os_str()]);
        // Forced colours show the styling is there at all ...
        let (_, forced, _) = run_with_env(&args, &[("CLICOLOR_FORCE", "1")]);
        assert!(
            forced.contains('\x1b'),
            "{command:?} has no styles even when forced:\n{forced}"
        );
        // ... a pipe gets none, and NO_COLOR wins even over forcing.
        for env in [&[][..], &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")][..]] {
            let (_, stdout, stderr) = run_with_env(&args, env);
            assert!(
                !stdout.contains('\x1b') && !stderr.contains('\x1b'),
                "{command:?} with {env:?} wrote escape codes:\n{stdout}\n{stderr}"
            );
            assert!(
                !stderr.contains("checking plugin libraries") && !stderr.contains('\r'),
                "{command:?}: a progress line on a pipe:\n{stderr}"
            );
        }
    }
}

#[test]
fn every_subcommand_json_is_one_document_with_schema_version_and_command() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let work = dir.path().join(".host-work");
    let state = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let d = dir.path().as_os_str();
    let w = work.as_os_str();
    let lock = scratch.path().join("plugins.lock");
    let new_dir = scratch.path().join("fresh");
    let greeter = dir.library("greeter");
    let cases: Vec<(&str, Vec<&OsStr>, i32)> = vec![
        (
            "list",
            vec![
                "list".as_ref(),
                "--json".as_ref(),
                "--work-dir".as_ref(),
                w,
                d,
            ],
            0,
        ),
        (
            "check",
            vec![
                "check".as_ref(),
                "--json".as_ref(),
                "--work-dir".as_ref(),
                w,
                d,
            ],
            0,
        ),
        (
            "inspect",
            vec![
                "inspect".as_ref(),
                "--json".as_ref(),
                "--work-dir".as_ref(),
                w,
                greeter.as_os_str(),
            ],
            0,
        ),
        (
            "explain",
            vec![
                "explain".as_ref(),
                "--json".as_ref(),
                "--work-dir".as_ref(),
                w,
                "greeter".as_ref(),
                d,
            ],
            0,
        ),
        (
            "lock",
            vec![
                "lock".as_ref(),
                "--json".as_ref(),
                "-o".as_ref(),
                lock.as_os_str(),
                d,
            ],
            0,
        ),
        (
            "new",
            vec![
                "new".as_ref(),
                "--json".as_ref(),
                "--dir".as_ref(),
                new_dir.as_os_str(),
                "fresh".as_ref(),
            ],
            0,
        ),
        (
            "call",
            vec![
                "call".as_ref(),
                "--json".as_ref(),
                "--work-dir".as_ref(),
                w,
                "--state-dir".as_ref(),
                state.path().as_os_str(),
                d,
                "hello".as_ref(),
                "greet".as_ref(),
                r#"{"name": "Ada"}"#.as_ref(),
            ],
            0,
        ),
    ];
    for (command, args, code) in &cases {
        let (got, stdout, stderr) = run_plugin_host(args);
        assert_eq!(got, Some(*code), "{command}: {stderr}\n{stdout}");
        let data = cli_json_data(&stdout, command);
        assert!(!data.is_null(), "{command} --json has no data:\n{stdout}");
        match *command {
            "lock" => assert_eq!(data["files"].as_array().map(Vec::len), Some(3), "{stdout}"),
            "new" => assert_eq!(data["name"], "fresh", "{stdout}"),
            "call" => {
                assert_eq!(data["ok"], true, "{stdout}");
                assert_eq!(data["result"], "Hello, Ada!", "{stdout}");
                assert_eq!(data["error"], serde_json::Value::Null);
                for step in ["admit", "start", "call", "stop"] {
                    let ms = data["timings_ms"][step].as_f64();
                    assert!(ms.is_some_and(|ms| ms >= 0.0), "{step}: {stdout}");
                }
            }
            _ => {}
        }
    }

    // A failed call is still one document, with the error and the exit code.
    let (code, stdout, stderr) = run_plugin_host(&[
        "call".as_ref(),
        "--json".as_ref(),
        "--work-dir".as_ref(),
        w,
        "--state-dir".as_ref(),
        state.path().as_os_str(),
        d,
        "hello".as_ref(),
        "no_such_method".as_ref(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    let data = cli_json_data(&stdout, "call");
    assert_eq!(data["ok"], false, "{stdout}");
    assert_eq!(data["result"], serde_json::Value::Null);
    assert_eq!(data["error"]["exit_code"], 1, "{stdout}");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_method"),
        "{stdout}"
    );
}

#[test]
fn every_subcommand_lists_its_exit_codes_in_its_help() {
    for command in ["list", "check", "inspect", "explain", "call", "new", "lock"] {
        let (code, stdout, stderr) = run_plugin_host(&[command.as_ref(), "--help".as_ref()]);
        assert_eq!(code, Some(0), "{command} --help: {stderr}");
        assert!(
            stdout.contains("Exit status:") && stdout.contains("  0  ") && stdout.contains("  2  "),
            "{command} --help has no exit codes:\n{stdout}"
        );
    }
}

/// The hook behind the progress line: the scan reports every file, in order,
/// and ends with all of them done.
#[test]
fn the_scan_reports_progress_up_to_every_file() {
    let hostile = integration_tests::safety_support::HostileDir::new();
    let mut seen = Vec::new();
    let report =
        plugbay_host::scan_dirs_with_progress(&hostile.dirs(), &hostile.config(), &mut |p| {
            seen.push(p)
        })
        .expect("scan");
    let total = report.files.len();
    let last = seen.last().copied().expect("some progress was reported");
    assert_eq!((last.done, last.total), (total, total), "{seen:?}");
    assert!(
        seen.windows(2)
            .all(|w| w[0].done <= w[1].done && w[0].total <= w[1].total),
        "progress went backwards: {seen:?}"
    );
    assert!(seen.iter().all(|p| p.done <= p.total), "{seen:?}");
    // One report per file at least (each verdict), plus the directory listing.
    assert!(
        seen.len() > total,
        "{} reports for {total} files",
        seen.len()
    );
}

#[test]
fn run_logs_carry_no_escape_codes_off_a_terminal() {
    let dir = PluginDir::with(&["hello"]);
    let state = tempfile::tempdir().unwrap();
    let work = dir.path().join(".host-work");
    let args: Vec<&OsStr> = vec![
        "run".as_ref(),
        "--once".as_ref(),
        "--state-dir".as_ref(),
        state.path().as_os_str(),
        "--work-dir".as_ref(),
        work.as_os_str(),
        dir.path().as_os_str(),
    ];
    let (code, stdout, stderr) = run_with_env(&args, &[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    // The run logs at info level: there are log lines, and they are plain.
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "escape codes on a pipe:\n{stdout}\n{stderr}"
    );
}
