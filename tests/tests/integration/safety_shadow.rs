//! Shadow copies: truncating or replacing a loaded plugin's original file while
//! the process runs cannot crash it, and it shuts down cleanly afterwards.

use std::io::{Seek, SeekFrom, Write};

use integration_tests::PluginDir;
use plugbay_host::{admit_dirs, admit_dirs_async};
use plugbay_host::{FfiPlugin, Plugin, PluginContext};
use serde_json::json;

use crate::safety_support::config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncating_or_overwriting_loaded_originals_does_not_crash_the_host() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let work = tempfile::tempdir().unwrap();
    let admission = admit_dirs_async(vec![dir.path().to_path_buf()], config(work.path()))
        .await
        .expect("admission runs");
    assert!(admission.report.all_ok(), "{}", admission.report.to_json());
    let mut plugins = Vec::new();
    for lib in admission.libraries {
        assert_ne!(lib.shadow.as_deref(), Some(lib.path.as_path()));
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
