//! Opening real libraries: per-file loading, bad files, metadata. These open files
//! directly through the documented opt-out `load_library_unchecked`, so the loader
//! itself is tested without the admission pipeline in front of it.

use integration_tests::PluginDir;
use plugbay_host::{load_library_unchecked, Error, FfiPlugin, Plugin, PluginContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_different_libraries_load_independently() {
    let dir = PluginDir::with(&["hello", "counter"]);
    let hello = load_library_unchecked(dir.library("hello"))
        .await
        .expect("hello loads");
    let counter = load_library_unchecked(dir.library("counter"))
        .await
        .expect("counter loads");
    // Proof that loading is per file: RootModule::load_from* would give hello twice.
    assert_eq!(hello.info.name, "hello");
    assert_eq!(counter.info.name, "counter");
    assert_eq!(counter.info.version.to_string(), "1.0.0");
    assert_eq!(hello.info.interface_version, plugbay_api::INTERFACE_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_initialize_is_an_error_and_the_host_lives_on() {
    let dir = PluginDir::with(&["fixture-panicky"]);
    let lib = load_library_unchecked(dir.library("fixture-panicky"))
        .await
        .expect("loads");
    let plugin = FfiPlugin::new(lib);
    let err = plugin
        .initialize(PluginContext::detached("panicky"))
        .await
        .expect_err("initialize panics");
    assert_eq!(err.kind, plugbay_api::ErrorKind::Panicked);
    assert!(err.message().contains("panicky refuses to start"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_file_named_like_a_library_is_a_clear_error() {
    let dir = PluginDir::with(&["hello"]);
    let bogus = dir.write("x.so", b"this is not a library\n");
    let err = load_library_unchecked(bogus.clone())
        .await
        .expect_err("not a library");
    match &err {
        Error::OpenFailed { path, reason } => {
            assert_eq!(path, &bogus);
            assert!(
                reason.contains("too short") || reason.contains("ELF"),
                "{reason}"
            );
        }
        other => panic!("expected OpenFailed for {}, got {other:?}", bogus.display()),
    }
    assert!(err.to_string().contains("x.so"), "{err}");
    load_library_unchecked(dir.library("hello"))
        .await
        .expect("hello still loads");
}
