//! `plugin-host explain`: the tree from a plugin down to the root cause of each
//! kind of block, as text and JSON, and its exit codes.

use std::ffi::OsStr;
use std::path::Path;

use integration_tests::safety_support::copy;
use integration_tests::{c_library, cli_json_data, graph_library, run_plugin_host, PluginDir};
use serde_json::Value;

/// A plugin dir holding the given samples plus the given graph fixtures
/// (`tests/fixtures/graph`: top needs mid needs base, ping and pong need each
/// other, picky needs hello ^2).
fn dir_with(samples: &[&str], graph: &[&str]) -> PluginDir {
    let dir = PluginDir::with(samples);
    for name in graph {
        copy(
            &graph_library(name),
            &dir.path().join(format!("lib{name}.so")),
        );
    }
    dir
}

/// `plugin-host explain NAME DIR... [--json]` with a private work dir: (exit
/// code, stdout, stderr).
fn explain(dirs: &[&Path], name: &str, json: bool) -> (Option<i32>, String, String) {
    let work = dirs[0].join(".host-work");
    let mut args: Vec<&OsStr> = vec!["explain".as_ref(), "--work-dir".as_ref(), work.as_os_str()];
    if json {
        args.push("--json".as_ref());
    }
    args.push(name.as_ref());
    args.extend(dirs.iter().map(|d| d.as_os_str()));
    run_plugin_host(&args)
}

/// `explain --json`'s data, after checking the exit code.
fn explain_json(dirs: &[&Path], name: &str, code: i32) -> Value {
    let (got, stdout, stderr) = explain(dirs, name, true);
    assert_eq!(got, Some(code), "stderr:\n{stderr}\nstdout:\n{stdout}");
    cli_json_data(&stdout, "explain")
}

fn root_causes(data: &Value) -> Vec<String> {
    data["root_causes"]
        .as_array()
        .unwrap_or_else(|| panic!("no root_causes: {data}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_two_level_chain_ends_at_the_quarantined_library_with_the_probes_reason() {
    let dir = dir_with(&[], &["top", "mid"]);
    copy(&c_library("ctor_segv"), &dir.path().join("libbase.so"));
    let data = explain_json(&[dir.path()], "top", 1);
    assert_eq!(data["startable"], false, "{data}");
    let top = &data["explanation"];
    assert_eq!(top["plugin"], "top");
    assert_eq!(top["cause"]["kind"], "dependency_failed", "{data}");
    assert_eq!(top["cause"]["dependency"], "mid");
    let mid = &top["cause"]["because"];
    assert_eq!(mid["plugin"], "mid", "{data}");
    assert_eq!(mid["startable"], false);
    assert_eq!(mid["cause"]["kind"], "missing_dependency", "{data}");
    assert_eq!(mid["cause"]["dependency"], "base");
    assert_eq!(mid["cause"]["requirement"], "^1");
    let closest = &mid["cause"]["closest"][0];
    assert_eq!(closest["status"], "quarantined", "{data}");
    assert!(
        closest["path"].as_str().unwrap().ends_with("libbase.so"),
        "{data}"
    );
    assert!(
        closest["reason"].as_str().unwrap().contains("SIGSEGV"),
        "the probe's reason: {data}"
    );
    let causes = root_causes(&data);
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert!(
        causes[0].starts_with("mid: needs base ^1")
            && causes[0].contains("libbase.so is quarantined")
            && causes[0].contains("SIGSEGV"),
        "{causes:?}"
    );

    let (code, text, stderr) = explain(&[dir.path()], "top", false);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("top 1.0.0 (libtop.so): cannot start"),
        "{text}"
    );
    assert!(
        lines[1].contains("needs mid ^1: mid 1.0.0 (libmid.so): cannot start"),
        "{text}"
    );
    assert!(
        lines[2].contains("needs base ^1, which is not installed"),
        "{text}"
    );
    assert!(
        lines[3].contains("libbase.so is quarantined") && lines[3].contains("SIGSEGV"),
        "{text}"
    );
    // Each level is indented under the one above.
    let indent = |l: &str| l.find('└').unwrap_or(usize::MAX);
    assert!(
        indent(lines[1]) < indent(lines[2]) && indent(lines[2]) < indent(lines[3]),
        "{text}"
    );
}

#[test]
fn a_refused_or_insecure_dependency_file_is_named_with_the_rule_it_broke() {
    let empty = dir_with(&[], &["mid"]);
    empty.write("libbase.so", b"");
    let data = explain_json(&[empty.path()], "mid", 1);
    let closest = &data["explanation"]["cause"]["closest"][0];
    assert_eq!(closest["status"], "refused", "{data}");
    assert!(
        closest["reason"].as_str().unwrap().contains("empty"),
        "{data}"
    );

    let writable = dir_with(&["hello"], &["mid"]);
    let base = writable.path().join("libbase.so");
    std::fs::rename(writable.library("hello"), &base).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let data = explain_json(&[writable.path()], "mid", 1);
    let closest = &data["explanation"]["cause"]["closest"][0];
    assert_eq!(closest["status"], "insecure", "{data}");
    let reason = closest["reason"].as_str().unwrap();
    assert!(
        reason.contains("mode 666") && reason.contains("writable"),
        "{reason}"
    );
}

#[test]
fn a_missing_dependency_with_no_file_like_it_says_so() {
    let dir = dir_with(&[], &["mid"]);
    let data = explain_json(&[dir.path()], "mid", 1);
    let cause = &data["explanation"]["cause"];
    assert_eq!(cause["kind"], "missing_dependency", "{data}");
    assert_eq!(cause["closest"], serde_json::json!([]), "{data}");
    assert_eq!(
        root_causes(&data),
        ["mid: needs base ^1, which is not installed (no file in the directories is named like it)"]
    );
}

#[test]
fn a_version_conflict_names_both_sides() {
    let dir = dir_with(&["hello"], &["picky"]);
    let data = explain_json(&[dir.path()], "picky", 1);
    let cause = &data["explanation"]["cause"];
    assert_eq!(cause["kind"], "version_conflict", "{data}");
    assert_eq!(cause["dependency"], "hello");
    assert_eq!(cause["requirement"], "^2");
    assert_eq!(cause["found"], "1.0.0");
    assert!(
        cause["found_source"]
            .as_str()
            .unwrap()
            .ends_with("libhello.so"),
        "{data}"
    );
    let (_, text, _) = explain(&[dir.path()], "picky", false);
    assert!(
        text.contains("needs hello ^2, but the installed hello is 1.0.0 (libhello.so)"),
        "{text}"
    );
}

#[test]
fn a_cycle_is_named_with_its_path() {
    let dir = dir_with(&[], &["ping", "pong"]);
    let data = explain_json(&[dir.path()], "ping", 1);
    let cause = &data["explanation"]["cause"];
    assert_eq!(cause["kind"], "cycle", "{data}");
    assert_eq!(cause["path"], serde_json::json!(["ping", "pong", "ping"]));
    let (_, text, _) = explain(&[dir.path()], "pong", false);
    assert!(text.contains("dependency cycle"), "{text}");
}

#[test]
fn a_name_claimed_twice_is_named_with_both_files() {
    let a = PluginDir::with(&["hello"]);
    let b = PluginDir::with(&["hello"]);
    let data = explain_json(&[a.path(), b.path()], "hello", 1);
    let cause = &data["explanation"]["cause"];
    assert_eq!(cause["kind"], "duplicate_name", "{data}");
    let both = format!("{} {}", cause["first"], cause["second"]);
    assert!(
        both.contains(a.path().to_str().unwrap()) && both.contains(b.path().to_str().unwrap()),
        "{data}"
    );
}

#[test]
fn a_startable_plugin_exits_0_and_shows_what_its_dependencies_resolve_to() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let data = explain_json(&[dir.path()], "greeter", 0);
    assert_eq!(data["startable"], true);
    assert_eq!(data["explanation"]["cause"]["kind"], "startable");
    assert_eq!(data["root_causes"], serde_json::json!([]));
    let (code, text, _) = explain(&[dir.path()], "greeter", false);
    assert_eq!(code, Some(0));
    assert!(
        text.starts_with("greeter 1.2.0 (libgreeter.so): would start"),
        "{text}"
    );
    assert!(
        text.contains("needs hello ^1.0: hello 1.0.0 (libhello.so)"),
        "{text}"
    );
}

#[test]
fn an_unknown_name_exits_1_and_a_usage_error_exits_2() {
    let dir = PluginDir::with(&["hello"]);
    let data = explain_json(&[dir.path()], "nothing", 1);
    assert_eq!(data["explanation"], Value::Null);
    assert_eq!(
        root_causes(&data),
        ["nothing: no plugin of that name, and no file named like it"]
    );
    // A quarantined file asked for by its file name is the root cause itself.
    copy(&c_library("ctor_abort"), &dir.path().join("libbroken.so"));
    let data = explain_json(&[dir.path()], "broken", 1);
    assert_eq!(data["closest"][0]["status"], "quarantined", "{data}");

    let (code, _, stderr) = run_plugin_host(&["explain".as_ref(), "hello".as_ref()]);
    assert_eq!(code, Some(2), "no directory is a usage error: {stderr}");
}

#[test]
fn a_startable_plugin_says_which_optional_dependencies_it_starts_without_and_why() {
    let dir = dir_with(&["hello"], &["fan", "picky"]);
    let (code, text, stderr) = explain(&[dir.path()], "fan", false);
    assert_eq!(code, Some(0), "{stderr}\n{text}");
    assert!(
        text.starts_with("fan 1.0.0 (libfan.so): would start"),
        "{text}"
    );
    assert!(
        text.contains("can use hello ^1: hello 1.0.0 (libhello.so)"),
        "{text}"
    );
    assert!(
        text.contains(
            "can use picky ^1: not used (optional: starts without it): picky cannot start"
        ),
        "{text}"
    );
}
