//! The scan cache: a warm scan starts no probe; a changed file is probed again;
//! a quarantined file is retried only once it changes.

use integration_tests::c_library;
use plugbay_host::Error;
use plugbay_host::{scan_dirs, FileStatus};

use crate::safety_support::{copy, HostileDir};

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
