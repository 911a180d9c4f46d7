//! Shadow copies: truncating or replacing a loaded plugin's original file while
//! the process runs cannot crash it, and it shuts down cleanly afterwards — with
//! the copy in a sealed memory file (Linux, `SafetyConfigBuilder::shadow_in_memory`)
//! and with the disk copy (the default, and the fallback where memory files are
//! refused).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use integration_tests::{probe_binary, PluginDir};
use plugbay_host::{admit_dirs, admit_dirs_async, SafetyConfig};
use plugbay_host::{FfiPlugin, Plugin, PluginContext};
use serde_json::json;

use crate::safety_support::TEST_PROBE_TIMEOUT;

/// Where the shadow copies of a test live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// Sealed memory files (`/proc/<pid>/fd/<n>`; Linux only).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Memory,
    /// Files in the shadow directory.
    Disk,
}

/// The test config (work dir, fresh probe), shadow copies in `backend`.
fn config_with(work: &Path, backend: Backend) -> SafetyConfig {
    SafetyConfig::builder()
        .work_dir(work)
        .probe_program(probe_binary(), Vec::new())
        .probe_timeout(TEST_PROBE_TIMEOUT)
        .shadow_in_memory(backend == Backend::Memory)
        .build()
        .expect("valid test config")
}

/// Asserts that `shadow` is a copy of the kind `backend` makes.
fn assert_backend(shadow: &Path, work: &Path, backend: Backend) {
    let in_memory = PathBuf::from(format!("/proc/{}/fd", std::process::id()));
    match backend {
        Backend::Memory => assert!(shadow.starts_with(&in_memory), "{}", shadow.display()),
        Backend::Disk => assert!(shadow.starts_with(work), "{}", shadow.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncating_or_overwriting_loaded_originals_does_not_crash_the_host() {
    originals_can_change_under_a_running_host(Backend::Disk).await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_memory_copies_truncating_or_overwriting_loaded_originals_does_not_crash_the_host() {
    originals_can_change_under_a_running_host(Backend::Memory).await;
}

async fn originals_can_change_under_a_running_host(backend: Backend) {
    let config = |work: &Path| config_with(work, backend);
    let dir = PluginDir::with(&["hello", "counter"]);
    let work = tempfile::tempdir().unwrap();
    let admission = admit_dirs_async(vec![dir.path().to_path_buf()], config(work.path()))
        .await
        .expect("admission runs");
    assert!(admission.report.all_ok(), "{}", admission.report.to_json());
    let mut plugins = Vec::new();
    for lib in admission.libraries {
        assert_ne!(lib.shadow.as_deref(), Some(lib.path.as_path()));
        assert_backend(
            lib.shadow.as_deref().expect("a shadow copy"),
            work.path(),
            backend,
        );
        plugins.push(FfiPlugin::new(lib));
    }
    for p in &plugins {
        let name = p.info().name.clone();
        p.initialize(PluginContext::detached(&name))
            .await
            .expect("initialize");
    }
    let hello = plugins.iter().find(|p| p.info().name == "hello").unwrap();
    let greet = || {
        hello.call(
            PluginContext::detached("hello"),
            "greet",
            json!({"name": "Ada"}),
        )
    };
    assert_eq!(greet().await.unwrap(), json!("Hello, Ada!"));

    // Truncate hello's original in place (same inode) and scribble over
    // counter's original in place: both would kill a process that mapped them.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.library("hello"))
        .unwrap();
    let mut counter = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.library("counter"))
        .unwrap();
    counter.seek(SeekFrom::Start(0)).unwrap();
    counter.write_all(&vec![0xCC; 1 << 20]).unwrap();
    counter.sync_all().unwrap();
    drop(counter);
    assert_eq!(std::fs::metadata(dir.library("hello")).unwrap().len(), 0);

    // The host runs the shadow copies: calls still work.
    assert_eq!(greet().await.unwrap(), json!("Hello, Ada!"));
    let counter = plugins.iter().find(|p| p.info().name == "counter").unwrap();
    let before = counter
        .call(PluginContext::detached("counter"), "increment", json!({}))
        .await;
    assert!(before.is_ok(), "{before:?}");

    // A rescan sees the damage and refuses the broken files, without crashing.
    let rescan = admit_dirs(&[dir.path().to_path_buf()], &config(work.path())).expect("rescan");
    assert!(!rescan.report.all_ok());
    assert!(rescan.libraries.is_empty(), "{}", rescan.report.to_json());

    for p in &plugins {
        let name = p.info().name.clone();
        p.shutdown(PluginContext::detached(&name))
            .await
            .expect("clean shutdown");
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_memory_copies_cannot_be_written_after_admission() {
    let dir = PluginDir::with(&["hello"]);
    let work = tempfile::tempdir().unwrap();
    let admission = admit_dirs_async(
        vec![dir.path().to_path_buf()],
        config_with(work.path(), Backend::Memory),
    )
    .await
    .expect("admission runs");
    assert!(admission.report.all_ok(), "{}", admission.report.to_json());
    let lib = admission
        .libraries
        .into_iter()
        .next()
        .expect("hello loaded");
    let shadow = lib.shadow.clone().expect("a shadow copy");
    assert_backend(&shadow, work.path(), Backend::Memory);
    let before = std::fs::read(&shadow).unwrap();
    assert_eq!(before, std::fs::read(&lib.path).unwrap());

    // A memory file opens read-write, but the seals refuse every change.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&shadow)
        .expect("open the memory copy for writing");
    let write = file.write_all(&[0xCC; 4096]);
    assert_eq!(
        write.as_ref().map_err(|e| e.raw_os_error()),
        Err(Some(libc::EPERM)),
        "{write:?}"
    );
    assert!(file.set_len(0).is_err(), "shrinking must be refused");
    assert!(
        file.set_len(before.len() as u64 + 1).is_err(),
        "growing must be refused"
    );
    drop(file);
    assert_eq!(std::fs::read(&shadow).unwrap(), before);

    let plugin = FfiPlugin::new(lib);
    plugin
        .initialize(PluginContext::detached("hello"))
        .await
        .expect("initialize");
    let greeting = plugin
        .call(
            PluginContext::detached("hello"),
            "greet",
            json!({"name": "Ada"}),
        )
        .await
        .unwrap();
    assert_eq!(greeting, json!("Hello, Ada!"));
    plugin
        .shutdown(PluginContext::detached("hello"))
        .await
        .expect("clean shutdown");
}

#[cfg(target_os = "linux")]
#[test]
fn a_memory_admission_leaves_disk_copies_for_a_warm_start_without_probes() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let work = tempfile::tempdir().unwrap();
    let config = config_with(work.path(), Backend::Memory);
    let cold = admit_dirs(&[dir.path().to_path_buf()], &config).expect("cold admission");
    assert!(cold.report.all_ok(), "{}", cold.report.to_json());
    for lib in &cold.libraries {
        assert_backend(
            lib.shadow.as_deref().expect("a shadow copy"),
            work.path(),
            Backend::Memory,
        );
    }
    // The next admission waits for the disk copies the first one queued, maps
    // them, and trusts the cached verdicts: no probe.
    let warm = admit_dirs(&[dir.path().to_path_buf()], &config).expect("warm admission");
    assert!(warm.report.all_ok(), "{}", warm.report.to_json());
    assert_eq!(warm.report.probe_processes_started, 0);
    for file in &cold.report.files {
        let id = file.content_id.as_deref().expect("hashed");
        let copy = work.path().join("shadow").join(format!("{id}.so"));
        assert_eq!(
            std::fs::read(&copy).expect("disk copy written"),
            std::fs::read(&file.path).unwrap()
        );
    }
    for lib in &warm.libraries {
        assert_backend(
            lib.shadow.as_deref().expect("a shadow copy"),
            work.path(),
            Backend::Disk,
        );
    }
}
