//! Errors crossing plugin boundaries: a plugin calling another through the host
//! receives the called plugin's own error kind and message, and `?` on a std error
//! works in plugin code (the `fixture-errors` plugin).

use integration_tests::PluginDir;
use plugbay_host::{Error, ErrorKind, PluginManager};
use serde_json::{json, Value};

/// Asserts that a manager call failed in the plugin with `kind`.
fn assert_kind(err: &Error, kind: ErrorKind) {
    assert!(
        matches!(err, Error::PluginFailed { kind: k, .. } if *k == kind),
        "expected PluginFailed of kind {kind:?}, got {err:?}"
    );
}

async fn started(dir: &PluginDir) -> PluginManager {
    let manager = dir.manager();
    let report = manager.load_directory(dir.path()).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    let started = manager.load_all_plugins().await;
    assert!(started.is_ok(), "{started:?}");
    manager
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_called_plugins_error_kind_reaches_the_calling_plugin() {
    let dir = PluginDir::with(&["hello", "fixture-errors"]);
    let manager = started(&dir).await;

    // hello answers an unknown method with UnknownMethod; errors sees that kind,
    // with hello's message and hello named as the plugin that answered.
    let seen = manager
        .call(
            "errors",
            "observe",
            json!({"plugin": "hello", "method": "no_such_method"}),
        )
        .await
        .unwrap();
    assert_eq!(seen["kind"], "UnknownMethod", "{seen}");
    let message = seen["message"].as_str().unwrap();
    assert!(message.contains("plugin `hello`"), "{message}");
    assert!(
        message.contains("unknown method `no_such_method`"),
        "{message}"
    );

    // A failure of the host itself (no such plugin) stays kind Host.
    let seen = manager
        .call(
            "errors",
            "observe",
            json!({"plugin": "ghost", "method": "greet"}),
        )
        .await
        .unwrap();
    assert_eq!(seen["kind"], "Host", "{seen}");
    assert!(
        seen["message"].as_str().unwrap().contains("ghost"),
        "{seen}"
    );

    // A success still comes back as the value.
    let seen = manager
        .call(
            "errors",
            "observe",
            json!({"plugin": "hello", "method": "greet"}),
        )
        .await
        .unwrap();
    assert_eq!(seen, json!({"ok": "Hello, world!"}));

    // Passed on with `?`, the kind survives a second hop: the host reports errors's
    // failure with hello's kind, and hello's text is in the reason.
    let err = manager
        .call(
            "errors",
            "forward",
            json!({"plugin": "hello", "method": "no_such_method"}),
        )
        .await
        .unwrap_err();
    match &err {
        Error::PluginFailed {
            plugin,
            operation,
            kind,
            reason,
        } => {
            assert_eq!(
                (plugin.as_str(), operation.as_str()),
                ("errors", "call(forward)")
            );
            assert_eq!(*kind, ErrorKind::UnknownMethod);
            assert!(reason.contains("plugin `hello`"), "{reason}");
            assert!(
                reason.contains("unknown method `no_such_method`"),
                "{reason}"
            );
        }
        other => panic!("expected PluginFailed, got {other:?}"),
    }
    // The manager's own error for a direct call carries the kind too.
    let err = manager
        .call("hello", "no_such_method", Value::Null)
        .await
        .unwrap_err();
    assert_kind(&err, ErrorKind::UnknownMethod);
    let report = manager.unload_all_plugins().await;
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_mark_on_an_io_error_in_a_plugin_is_failed_with_its_text() {
    let dir = PluginDir::with(&["fixture-errors"]);
    let manager = started(&dir).await;

    let file = dir.write("data.txt", b"twelve bytes");
    assert_eq!(
        manager
            .call("errors", "read", json!({"path": file}))
            .await
            .unwrap(),
        json!(12)
    );

    let missing = dir.path().join("missing.txt");
    let err = manager
        .call("errors", "read", json!({"path": missing}))
        .await
        .unwrap_err();
    let io_text = std::fs::read(&missing).unwrap_err().to_string();
    match &err {
        Error::PluginFailed { kind, reason, .. } => {
            assert_eq!(*kind, ErrorKind::Failed);
            assert_eq!(reason, &io_text);
        }
        other => panic!("expected PluginFailed, got {other:?}"),
    }

    // Bad arguments are the plugin's InvalidInput, kept as such.
    let err = manager
        .call("errors", "read", json!({"path": 7}))
        .await
        .unwrap_err();
    assert_kind(&err, ErrorKind::InvalidInput);
    let report = manager.unload_all_plugins().await;
    assert!(report.is_ok(), "{report:?}");
}
