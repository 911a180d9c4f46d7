//! The scan cache: a warm scan starts no probe; a changed file is probed again;
//! a quarantined file is retried only once it changes; an admitted library
//! carries the metadata admission read.

use integration_tests::{c_library, PluginDir};
use plugbay_host::{admit_dirs, scan_dirs, FileStatus};
use plugbay_host::{Error, FfiPlugin, Plugin, PluginContext, PluginSource};
use serde_json::{json, Value};

use crate::safety_support::{config, copy, HostileDir};

#[test]
fn warm_scan_starts_no_probe_and_changed_files_are_probed_again() {
    let hostile = HostileDir::new();
    let config = hostile.config();
    let cold = scan_dirs(&hostile.dirs(), &config).expect("cold scan");
    assert!(cold.probe_processes_started >= 1, "{}", cold.to_json());
    assert!(cold.probed >= 10, "{}", cold.to_json());
    assert_eq!(cold.cache_hits, 0);

    let warm = scan_dirs(&hostile.dirs(), &config).expect("warm scan");
    assert_eq!(
        warm.probe_processes_started,
        0,
        "a warm scan over an unchanged dir must start no probe:\n{}",
        warm.to_json()
    );
    assert_eq!(warm.probed, 0);
    assert_eq!(
        warm.cache_hits, cold.probed,
        "every probed file is a cache hit now"
    );
    for (c, w) in cold.files.iter().zip(&warm.files) {
        assert_eq!(c.path, w.path);
        assert_eq!(c.status, w.status, "{}", c.path.display());
        assert_eq!(c.reason, w.reason, "{}", c.path.display());
    }
    let segv = hostile.file("segv.so");
    assert!(warm.file(&segv).unwrap().from_cache);
    assert_eq!(warm.file(&segv).unwrap().status, FileStatus::Quarantined);

    // The quarantined file changes (now a harmless non-plugin): it is retried,
    // and only it.
    std::fs::remove_file(&segv).unwrap();
    copy(&c_library("no_root"), &segv);
    let changed = scan_dirs(&hostile.dirs(), &config).expect("scan after a change");
    assert_eq!(
        changed.probed,
        1,
        "only the changed file is probed:\n{}",
        changed.to_json()
    );
    assert_eq!(changed.probe_processes_started, 1);
    let file = changed.file(&segv).unwrap();
    assert!(!file.from_cache);
    assert!(
        matches!(file.error, Some(Error::NotAPlugin { .. })),
        "{:?}",
        file.error
    );
}

/// An admitted library is registered with the metadata admission judged: the
/// probe child read it on the cold start, the scan cache remembered it on the
/// warm one, and the host's own process never runs the library's `metadata()`
/// (the `calls` fixture counts its runs in the process it is loaded in).
#[test]
fn admitted_libraries_carry_the_metadata_admission_read_without_asking_again() {
    let dir = PluginDir::with(&["fixture-calls"]);
    let work = tempfile::tempdir().unwrap();
    let config = config(work.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for start in ["cold", "warm"] {
        let admitted = admit_dirs(&[dir.path().to_path_buf()], &config).expect("admission");
        assert!(admitted.report.all_ok(), "{}", admitted.report.to_json());
        let probed = admitted.report.probed;
        assert_eq!(
            probed,
            usize::from(start == "cold"),
            "{start}: probed {probed}"
        );
        let [lib] = <[_; 1]>::try_from(admitted.libraries).expect("one library");
        let reported = admitted.report.files[0].plugin.clone().expect("admitted");
        assert_eq!(
            lib.info, reported,
            "{start}: registered vs reported metadata"
        );
        assert_eq!(lib.info.name, "calls");
        assert_eq!(lib.info.version.to_string(), "0.1.0");
        assert_eq!(lib.info.description, "call-path test plugin");
        assert_eq!(
            lib.info.source,
            PluginSource::Library(dir.library("fixture-calls"))
        );
        let plugin = FfiPlugin::new(lib);
        let runs = rt.block_on(async {
            plugin
                .initialize(PluginContext::detached("calls"))
                .await
                .expect("initialize");
            plugin
                .call(
                    PluginContext::detached("calls"),
                    "metadata_calls",
                    Value::Null,
                )
                .await
                .expect("metadata_calls")
        });
        assert_eq!(runs, json!(0), "{start}: metadata() ran in the host");
    }
}
