//! The event bus: plugins, the embedder and the host's lifecycle publishing and
//! subscribing; overflow, panicking subscribers and bad input.

use std::sync::atomic::Ordering;
use std::time::Duration;

use integration_tests::PluginDir;
use plugbay_host::{EventBus, ManagerConfig, PluginManager, MAX_HANDLER_PANICS};
use serde_json::{json, Value};

/// A manager running the `services` fixture subscribed to `patterns`, with data
/// dirs under `data`.
async fn start(dir: &PluginDir, data: &std::path::Path, patterns: Value) -> PluginManager {
    let config = ManagerConfig::builder()
        .safety(dir.safety())
        .data_root(data)
        .plugin_config("services", json!({ "subscribe": patterns }))
        .build()
        .expect("valid config");
    let manager = PluginManager::new(config);
    let report = manager.load_directory(dir.path()).await.expect("dir loads");
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(manager.load_all_plugins().await.is_ok());
    manager
}

/// Polls `services.received` until it holds `n` events (bounded, then fails
/// naming what arrived).
async fn received(manager: &PluginManager, n: usize) -> Vec<Value> {
    for _ in 0..2000 {
        let got = manager
            .call("services", "received", Value::Null)
            .await
            .unwrap();
        let got = got.as_array().cloned().unwrap_or_default();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = manager
        .call("services", "received", Value::Null)
        .await
        .unwrap();
    panic!("expected {n} events, got {got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedder_events_reach_a_plugin_in_order_and_plugin_events_reach_the_embedder() {
    let dir = PluginDir::with(&["fixture-services"]);
    let data = tempfile::tempdir().unwrap();
    let manager = start(&dir, data.path(), json!(["app.*"])).await;
    let mut from_plugin = manager.subscribe_events("services.*", 16).unwrap();
    for i in 0..100 {
        manager.publish("app.tick", json!(i)).unwrap();
    }
    manager.publish("other.tick", json!(-1)).unwrap();
    let got = received(&manager, 100).await;
    let payloads: Vec<Value> = got.iter().map(|e| e["payload"].clone()).collect();
    assert_eq!(payloads, (0..100).map(|i| json!(i)).collect::<Vec<_>>());
    assert!(got
        .iter()
        .all(|e| e["source"] == "host" && e["name"] == "app.tick"));

    manager
        .call(
            "services",
            "publish",
            json!({ "name": "services.hello", "payload": {"x": 1} }),
        )
        .await
        .unwrap();
    let event = from_plugin.recv().await.expect("the plugin's event");
    assert_eq!(
        (event.name.as_str(), event.source.as_str()),
        ("services.hello", "services")
    );
    assert_eq!(event.payload, json!({"x": 1}));
    assert!(manager.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_are_published_and_subscriptions_end_with_the_plugin() {
    let dir = PluginDir::with(&["fixture-services"]);
    let data = tempfile::tempdir().unwrap();
    let config = ManagerConfig::builder()
        .safety(dir.safety())
        .data_root(data.path())
        .plugin_config("services", json!({ "subscribe": ["app.*"] }))
        .build()
        .unwrap();
    let manager = PluginManager::new(config);
    let mut lifecycle = manager.subscribe_events("plugbay.plugin.*", 64).unwrap();
    manager.load_directory(dir.path()).await.unwrap();
    assert!(manager.load_all_plugins().await.is_ok());
    assert_eq!(
        manager.event_bus().subscription_count(),
        2,
        "embedder + plugin"
    );
    assert!(manager.unload_all_plugins().await.is_ok());
    assert_eq!(
        manager.event_bus().subscription_count(),
        1,
        "the plugin's ended"
    );
    let names: Vec<String> = std::iter::from_fn(|| lifecycle.try_recv())
        .filter(|e| e.payload["plugin"] == "services")
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        [
            "plugbay.plugin.initializing",
            "plugbay.plugin.started",
            "plugbay.plugin.stopping",
            "plugbay.plugin.stopped"
        ]
    );
    // Publishing while shutting down was refused with a typed error.
    let outcome =
        std::fs::read_to_string(data.path().join("services/shutdown-publish.txt")).unwrap();
    assert!(
        outcome.contains("may not use events now") && outcome.contains("shutting down"),
        "{outcome}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_subscriber_is_cut_off_after_the_limit_and_the_host_stays_up() {
    let dir = PluginDir::with(&["fixture-services"]);
    let data = tempfile::tempdir().unwrap();
    let manager = start(&dir, data.path(), json!(["app.*"])).await;
    for _ in 0..MAX_HANDLER_PANICS + 2 {
        manager.publish("app.boom", Value::Null).unwrap();
    }
    for _ in 0..2000 {
        if manager.event_bus().subscription_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(manager.event_bus().subscription_count(), 0, "cut off");
    assert_eq!(manager.publish("app.tick", Value::Null).unwrap(), 0);
    let got = manager
        .call("services", "received", Value::Null)
        .await
        .unwrap();
    assert_eq!(got, json!([]), "the plugin keeps answering calls");
    assert!(manager.unload_all_plugins().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_event_names_and_payloads_from_a_plugin_are_errors_and_the_host_stays_up() {
    let dir = PluginDir::with(&["fixture-services"]);
    let data = tempfile::tempdir().unwrap();
    let manager = start(&dir, data.path(), json!([])).await;
    let long = "x".repeat(plugbay_host::MAX_EVENT_NAME_LEN + 1);
    let huge = "y".repeat(plugbay_host::MAX_PAYLOAD_BYTES);
    for (name, payload, why) in [
        ("", Value::Null, "empty"),
        (long.as_str(), Value::Null, "bytes long"),
        ("bad\u{1b}name", Value::Null, "control"),
        ("big", json!(huge), "bytes"),
    ] {
        let err = manager
            .call(
                "services",
                "publish",
                json!({ "name": name, "payload": payload }),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains(why), "{name:?}: {err}");
    }
    let err = manager
        .call("services", "subscribe", json!({ "pattern": "a b" }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("whitespace"), "{err}");
    assert_eq!(
        manager
            .call("services", "events", Value::Null)
            .await
            .unwrap(),
        json!(true)
    );
    assert!(manager.unload_all_plugins().await.is_ok());
}

/// 100,000 events from 4 publishers to 8 subscribers with room for all: none
/// lost, each publisher's in order. A ninth, stalled subscriber with room for
/// 1,000 loses exactly the rest, holds at most 1,000 (memory bounded), and never
/// held up a publisher (publishing never waits: every publish returned while it
/// was full, and the others got everything).
#[test]
fn a_hundred_thousand_events_none_lost_in_order_overflow_counted_exactly() {
    const PUBLISHERS: u64 = 4;
    const PER_PUBLISHER: u64 = 25_000;
    const TOTAL: u64 = PUBLISHERS * PER_PUBLISHER;
    let bus = std::sync::Arc::new(EventBus::new());
    let mut subscribers: Vec<_> = (0..8)
        .map(|_| bus.subscribe("load.*", TOTAL as usize).unwrap())
        .collect();
    let stalled = bus.subscribe("load.*", 1000).unwrap();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = std::sync::Arc::clone(&bus);
            std::thread::spawn(move || {
                let source = format!("publisher-{p}");
                for i in 0..PER_PUBLISHER {
                    bus.publish(&source, "load.tick", json!(i)).unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    for sub in &mut subscribers {
        let mut next = std::collections::HashMap::<String, u64>::new();
        let mut count = 0;
        while let Some(event) = sub.try_recv() {
            let expected = next.entry(event.source.clone()).or_insert(0);
            assert_eq!(
                event.payload,
                json!(*expected),
                "{} out of order",
                event.source
            );
            assert_eq!(event.seq, *expected + 1);
            *expected += 1;
            count += 1;
        }
        assert_eq!(count, TOTAL);
        assert_eq!(sub.stats().dropped.load(Ordering::Relaxed), 0);
    }
    assert_eq!(stalled.stats().queued.load(Ordering::Relaxed), 1000);
    assert_eq!(
        stalled.stats().dropped.load(Ordering::Relaxed),
        TOTAL - 1000
    );
    assert_eq!(stalled.queued_now(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_samples_counter_publishes_counter_changed_and_greeter_hears_it() {
    let dir = PluginDir::with(&["hello", "counter", "greeter"]);
    let manager = dir.manager();
    manager.load_directory(dir.path()).await.unwrap();
    assert!(manager.load_all_plugins().await.is_ok());
    for _ in 0..3 {
        manager
            .call("counter", "increment", Value::Null)
            .await
            .unwrap();
    }
    let mut seen = Value::Null;
    for _ in 0..2000 {
        seen = manager
            .call("greeter", "last_count", Value::Null)
            .await
            .unwrap();
        if seen == json!(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        seen,
        json!(3),
        "greeter heard every counter.changed, the last one last"
    );
    assert!(manager.unload_all_plugins().await.is_ok());
}
