//! The `plugin-host` binary, run as a user would.

use integration_tests::{run_plugin_host, PluginDir};
use serde_json::Value;

#[test]
fn list_json_reports_every_sample_and_the_bad_file() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let bogus = dir.write("x.so", b"not a library\n");
    let (code, stdout, stderr) =
        run_plugin_host(&["list".as_ref(), "--json".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, Some(0), "stderr:\n{stderr}\nstdout:\n{stdout}");
    let entries: Vec<Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("list --json printed invalid JSON ({e}):\n{stdout}"));
    assert_eq!(entries.len(), 4, "{stdout}");
    for entry in &entries {
        for key in ["path", "name", "version", "dependencies", "status", "error"] {
            assert!(entry.get(key).is_some(), "entry lacks `{key}`: {entry}");
        }
    }
    let mut names: Vec<&str> = entries
        .iter()
        .filter(|e| e["error"].is_null())
        .map(|e| e["name"].as_str().expect("good entries have a name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["counter", "greeter", "hello"], "{stdout}");
    let greeter = entries.iter().find(|e| e["name"] == "greeter").unwrap();
    assert_eq!(greeter["dependencies"][0]["name"], "hello");
    assert_eq!(greeter["dependencies"][0]["requirement"], "^1.0");
    let bad = entries
        .iter()
        .find(|e| e["path"] == bogus.to_str().unwrap())
        .unwrap_or_else(|| panic!("no entry for {}:\n{stdout}", bogus.display()));
    let error = bad["error"].as_str().expect("bad file has an error");
    assert!(
        error.contains("x.so") && error.contains("too short"),
        "{error}"
    );
}
