//! The allowlist (lockfile) in enforcing and reporting mode, and the probe
//! switched off.

use integration_tests::{probe_binary, PluginDir};
use plugbay_host::Error;
use plugbay_host::{admit_dirs, write_lockfile, SafetyConfig};

use crate::safety_support::{copy, TEST_PROBE_TIMEOUT};

fn names(libs: &[plugbay_host::LoadedLibrary]) -> Vec<String> {
    let mut n: Vec<_> = libs.iter().map(|l| l.info.name.clone()).collect();
    n.sort();
    n
}

#[test]
fn enforced_allowlist_refuses_changed_and_unlisted_files() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let work = tempfile::tempdir().unwrap();
    let lock = work.path().join("plugins.lock");
    let listed = write_lockfile(&lock, &[dir.path().to_path_buf()]).expect("lock");
    assert_eq!(listed.len(), 2);
    let build = |enforce: bool| {
        SafetyConfig::builder()
            .work_dir(work.path())
            .probe_program(probe_binary(), Vec::new())
            .probe_timeout(TEST_PROBE_TIMEOUT)
            .allowlist(&lock, enforce)
            .build()
            .unwrap()
    };
    let ok = admit_dirs(&[dir.path().to_path_buf()], &build(true)).expect("admit");
    assert_eq!(
        names(&ok.libraries),
        ["counter", "hello"],
        "{}",
        ok.report.to_json()
    );

    // counter's file now holds greeter's bytes; a new file appears.
    let locked_counter = ok
        .report
        .file(&dir.library("counter"))
        .unwrap()
        .sha256
        .clone()
        .unwrap();
    let greeter = integration_tests::built_libraries(&["greeter"]).remove(0);
    std::fs::remove_file(dir.library("counter")).unwrap();
    copy(&greeter, &dir.library("counter"));
    copy(&greeter, &dir.path().join("new.so"));

    let enforced = admit_dirs(&[dir.path().to_path_buf()], &build(true)).expect("admit");
    assert_eq!(
        names(&enforced.libraries),
        ["hello"],
        "{}",
        enforced.report.to_json()
    );
    let error = |name: &std::path::Path| enforced.report.file(name).unwrap().error.clone();
    match error(&dir.library("counter")) {
        Some(Error::IntegrityMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, locked_counter);
            assert_ne!(found, expected);
        }
        other => panic!("expected IntegrityMismatch, got {other:?}"),
    }
    match error(&dir.path().join("new.so")) {
        Some(Error::IntegrityMismatch { expected, .. }) => assert_eq!(expected, "not listed"),
        other => panic!("expected IntegrityMismatch, got {other:?}"),
    }

    // Reporting mode: loaded (both are greeter: one copy, one library), with warnings.
    let lax = admit_dirs(&[dir.path().to_path_buf()], &build(false)).expect("admit");
    assert!(lax.report.all_ok(), "{}", lax.report.to_json());
    let counter = lax.report.file(&dir.library("counter")).unwrap();
    assert!(
        counter
            .warnings
            .iter()
            .any(|w| w.contains("does not match the allowlist")),
        "{:?}",
        counter.warnings
    );
}

#[test]
fn probe_off_loads_in_process_and_starts_no_probe() {
    let dir = PluginDir::with(&["hello", "greeter"]);
    let work = tempfile::tempdir().unwrap();
    let config = SafetyConfig::builder()
        .work_dir(work.path())
        .probe(false)
        .build()
        .unwrap();
    let admission = admit_dirs(&[dir.path().to_path_buf()], &config).expect("admit");
    assert_eq!(admission.report.probe_processes_started, 0);
    assert_eq!(admission.report.probed, 0);
    assert_eq!(names(&admission.libraries), ["greeter", "hello"]);
    // Warm, still no probe, now from the cache.
    let warm = admit_dirs(&[dir.path().to_path_buf()], &config).expect("admit");
    assert_eq!(warm.report.cache_hits, 2);
    assert_eq!(names(&warm.libraries), ["greeter", "hello"]);
}
