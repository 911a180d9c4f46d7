//! The event bus's unit tests.

use super::*;
use serde_json::json;

#[test]
fn bad_names_payloads_and_patterns_are_typed_errors() {
    let bus = EventBus::new();
    let long = "x".repeat(MAX_EVENT_NAME_LEN + 1);
    for name in ["", long.as_str(), "a\u{7}b", "a b", "a*b"] {
        let err = bus.publish("p", name, Value::Null).unwrap_err();
        assert!(matches!(err, Error::InvalidEvent { .. }), "{name:?}: {err}");
    }
    let big = json!("y".repeat(MAX_PAYLOAD_BYTES));
    assert!(bus
        .publish("p", "big", big)
        .unwrap_err()
        .to_string()
        .contains("bytes"));
    let mut deep = json!(1);
    for _ in 0..=MAX_PAYLOAD_DEPTH {
        deep = json!([deep]);
    }
    assert!(bus
        .publish("p", "deep", deep)
        .unwrap_err()
        .to_string()
        .contains("levels"));
    assert!(bus.publish_json("p", "text", "{nope").is_err());
    assert!(bus.subscribe("a*b*", 1).is_err());
    assert!(bus.subscribe("", 1).is_err());
    assert_eq!(bus.publish("p", "ok.name", json!({"a": [1]})).unwrap(), 0);
}

#[test]
fn exact_and_prefix_patterns_and_sequence_numbers() {
    let bus = EventBus::new();
    let mut exact = bus.subscribe("counter.changed", 8).unwrap();
    let mut prefix = bus.subscribe("counter.*", 8).unwrap();
    let mut all = bus.subscribe("*", 8).unwrap();
    bus.publish("counter", "counter.changed", json!(1)).unwrap();
    bus.publish("counter", "counter.reset", json!(0)).unwrap();
    bus.publish("other", "other.thing", json!(null)).unwrap();
    let names = |r: &mut EventReceiver| {
        std::iter::from_fn(|| r.try_recv())
            .map(|e| (e.name, e.seq))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&mut exact), [("counter.changed".to_owned(), 1)]);
    assert_eq!(
        names(&mut prefix),
        [
            ("counter.changed".to_owned(), 1),
            ("counter.reset".to_owned(), 2)
        ]
    );
    assert_eq!(names(&mut all).len(), 3);
}

#[test]
fn lifecycle_events_count_while_nobody_listens_and_reach_later_subscribers() {
    let bus = EventBus::new();
    // Nobody listens: nothing is built, but the source's count goes on.
    bus.lifecycle("p", "registered", "initializing");
    let mut rx = bus.subscribe("plugbay.plugin.*", 8).unwrap();
    bus.lifecycle("p", "initializing", "active");
    bus.lifecycle("p", "active", "shutting_down");
    bus.lifecycle("p", "shutting_down", "unloaded");
    bus.lifecycle("p", "unloaded", "failed");
    let got: Vec<(String, u64, Value)> = std::iter::from_fn(|| rx.try_recv())
        .map(|e| (e.name, e.seq, e.payload))
        .collect();
    let plugin = json!({ "plugin": "p" });
    assert_eq!(
        got,
        [
            ("plugbay.plugin.started".to_owned(), 2, plugin.clone()),
            ("plugbay.plugin.stopping".to_owned(), 3, plugin.clone()),
            ("plugbay.plugin.stopped".to_owned(), 4, plugin.clone()),
            ("plugbay.plugin.failed".to_owned(), 5, plugin),
        ]
    );
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking_the_publisher() {
    let bus = EventBus::new();
    let stalled = bus.subscribe("e", 2).unwrap();
    let mut live = bus.subscribe("e", 16).unwrap();
    for i in 0..10 {
        bus.publish("p", "e", json!(i)).unwrap();
    }
    assert_eq!(stalled.stats().queued.load(Ordering::Relaxed), 2);
    assert_eq!(stalled.stats().dropped.load(Ordering::Relaxed), 8);
    assert_eq!(stalled.queued_now(), 2);
    let got: Vec<Value> = std::iter::from_fn(|| live.try_recv())
        .map(|e| e.payload)
        .collect();
    assert_eq!(got, (0..10).map(|i| json!(i)).collect::<Vec<_>>());
    drop(stalled);
    bus.publish("p", "e", json!(10)).unwrap();
    assert_eq!(
        bus.subscription_count(),
        1,
        "a dropped receiver is forgotten"
    );
}

#[test]
fn lifecycle_events_are_published_and_leaving_active_unsubscribes() {
    let bus = EventBus::new();
    let mut watcher = bus.subscribe("plugbay.plugin.*", 8).unwrap();
    let _plugin = bus.add(
        Some("counter".to_owned()),
        Pattern::parse("x").unwrap(),
        mpsc::channel(1).0,
        Arc::default(),
    );
    bus.lifecycle("counter", "initializing", "active");
    assert_eq!(bus.subscription_count(), 2);
    bus.lifecycle("counter", "active", "shutting_down");
    assert_eq!(bus.subscription_count(), 1);
    let got: Vec<(String, Value)> = std::iter::from_fn(|| watcher.try_recv())
        .map(|e| (e.name, e.payload))
        .collect();
    assert_eq!(
        got,
        [
            (
                "plugbay.plugin.started".to_owned(),
                json!({"plugin": "counter"})
            ),
            (
                "plugbay.plugin.stopping".to_owned(),
                json!({"plugin": "counter"})
            ),
        ]
    );
}
