//! A hostile plugin directory through the library API: the scan ends normally,
//! every good sample loads, every bad file gets its own precise reason.

use plugbay_host::Error;
use plugbay_host::{admit_dirs, FileReport, FileStatus};

use crate::safety_support::{HostileDir, GOOD};

fn describe(files: &[FileReport]) -> String {
    files
        .iter()
        .map(|f| format!("  {} {:?}: {:?}", f.path.display(), f.status, f.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hostile_dir_admits_the_good_and_names_every_bad_file() {
    let hostile = HostileDir::new();
    let admission = admit_dirs(&hostile.dirs(), &hostile.config()).expect("admission runs");
    let report = &admission.report;
    let all = describe(&report.files);
    let error_of = |name: &str| -> Error {
        let path = hostile.file(name);
        let file = report
            .file(&path)
            .unwrap_or_else(|| panic!("{} not in the report:\n{all}", path.display()));
        let err = file
            .error
            .clone()
            .unwrap_or_else(|| panic!("{} should have failed:\n{all}", path.display()));
        assert!(
            err.to_string().contains(&*path.to_string_lossy()),
            "the message must name the user's file, not the shadow copy: {err}"
        );
        err
    };
    let quarantined = |name: &str, needle: &str| match error_of(name) {
        Error::Quarantined { reason, .. } => {
            assert!(reason.contains(needle), "{name}: {reason}\n{all}")
        }
        other => panic!("{name}: expected Quarantined({needle}), got {other:?}\n{all}"),
    };
    let refused = |name: &str, needle: &str| match error_of(name) {
        Error::Refused { reason, .. } => assert!(reason.contains(needle), "{name}: {reason}"),
        other => panic!("{name}: expected Refused({needle}), got {other:?}"),
    };

    // Every good sample loads, from its shadow copy.
    let mut loaded: Vec<_> = admission
        .libraries
        .iter()
        .map(|l| l.info.name.clone())
        .collect();
    loaded.sort();
    let mut want: Vec<_> = GOOD.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(loaded, want, "\n{all}");
    for lib in &admission.libraries {
        let shadow = lib
            .shadow
            .as_ref()
            .expect("admitted libraries run a shadow copy");
        // A disk copy in the work dir, or (Linux) a sealed memory file.
        let in_memory = format!("/proc/{}/fd/", std::process::id());
        assert!(
            shadow.starts_with(hostile.work.path()) || shadow.starts_with(&in_memory),
            "{}",
            shadow.display()
        );
        assert_eq!(
            std::fs::read(shadow).unwrap(),
            std::fs::read(&lib.path).unwrap()
        );
    }
    assert_eq!(
        report.problems().count(),
        report.files.len() - GOOD.len(),
        "\n{all}"
    );

    // Every bad file, its own reason.
    match error_of("x.so") {
        Error::OpenFailed { reason, .. } => assert!(
            reason.contains("invalid ELF header") || reason.contains("too short"),
            "{reason}"
        ),
        other => panic!("x.so: expected OpenFailed, got {other:?}"),
    }
    refused("empty.so", "the file is empty");
    quarantined("truncated.so", "SIGBUS");
    quarantined("segv.so", "SIGSEGV");
    quarantined("abort.so", "SIGABRT");
    quarantined("hang.so", "did not finish within 3s");
    quarantined("fd3.so", "garbage");
    assert!(matches!(error_of("noroot.so"), Error::NotAPlugin { .. }));
    // Its constructor printed a fake report on stdout: ignored.
    assert!(matches!(error_of("noisy.so"), Error::NotAPlugin { .. }));
    match error_of("abi-mismatch.so") {
        Error::AbiMismatch { summary, .. } => {
            assert!(summary.contains("optional"), "{summary}");
            assert!(
                summary.contains("bool") && summary.contains("u32"),
                "{summary}"
            );
        }
        other => panic!("abi-mismatch.so: expected AbiMismatch, got {other:?}"),
    }
    match error_of("world-writable.so") {
        Error::InsecurePermissions { mode, .. } => assert_eq!(mode, 0o666),
        other => panic!("world-writable.so: expected InsecurePermissions, got {other:?}"),
    }
    refused(
        "outside.so",
        "symlink resolving outside the plugin directory",
    );
    refused("outside.so", &hostile.outside.path().to_string_lossy());
    refused("dir.so", "not a regular file: it is a directory");

    let status = |name: &str| report.file(&hostile.file(name)).unwrap().status;
    assert_eq!(status("segv.so"), FileStatus::Quarantined);
    assert_eq!(status("abi-mismatch.so"), FileStatus::Incompatible);
    assert_eq!(status("world-writable.so"), FileStatus::Insecure);
    assert_eq!(status("x.so"), FileStatus::Unopenable);

    // The report is JSON for `plugin-host list --json`.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
    assert_eq!(json["files"].as_array().unwrap().len(), report.files.len());
    assert!(report.probe_processes_started >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managers_admission_progress_counts_each_directory_up_to_its_files() {
    use std::sync::{Arc, Mutex};

    use integration_tests::PluginDir;
    use plugbay_host::{ManagerConfig, PluginManager, Progress};

    let first = PluginDir::with(&["hello", "counter"]);
    first.write("x.so", b"not a library\n");
    let second = PluginDir::with(&["greeter"]);
    let work = tempfile::tempdir().unwrap();
    let config = ManagerConfig::builder()
        .plugin_dir(first.path())
        .plugin_dir(second.path())
        .safety(crate::safety_support::config(work.path()))
        .build()
        .unwrap();
    let manager = PluginManager::new(config);
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let report = manager
        .load_plugin_dirs_with_progress(move |p| sink.lock().unwrap().push(p))
        .await;
    assert_eq!(report.registered.len(), 3, "{report:?}");
    let seen: Vec<Progress> = seen
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|p| p.total > 0)
        .collect();
    // One run per directory: done never goes back within a directory's total,
    // and each ends with every file counted (the bad file included).
    let ends: Vec<(usize, usize)> = seen
        .windows(2)
        .filter(|w| w[1].total != w[0].total || w[1].done < w[0].done)
        .map(|w| (w[0].done, w[0].total))
        .chain(seen.last().map(|p| (p.done, p.total)))
        .collect();
    assert_eq!(ends, [(3, 3), (1, 1)], "{seen:?}");
}
