//! The event bus: named events with a JSON payload, from plugins, the host's
//! lifecycle and the embedder, to subscribers by exact name or prefix.
//!
//! **Delivery.** Each subscriber has its own bounded queue
//! ([`DEFAULT_SUBSCRIBER_CAPACITY`] events unless chosen otherwise). Publishing
//! never waits: it puts the event into each matching subscriber's queue with a
//! non-blocking `try_send` and returns. A plugin subscriber's queue is drained by
//! its own delivery task, which hands one event at a time to the plugin's
//! `on_event` through the ordinary call path (the call gate, on a fresh call
//! chain holding only the subscriber, plugin code on a blocking thread). So a
//! slow or stuck subscriber never blocks the publisher, the host or any other
//! subscriber, events reach each subscriber in the order each publisher
//! published them, and nothing is delivered while a lifecycle lock is held or
//! into a plugin that is on the publisher's call chain (the publisher does not
//! wait for delivery at all).
//!
//! **Overflow policy.** When a subscriber's queue is full the new event is
//! dropped for that subscriber only, counted in its
//! [`SubscriberStats::dropped`], and a warning is logged (the first drop, then
//! every [`WARN_EVERY`]th).
//!
//! **Failures.** A panic in a plugin's `on_event` is caught at the library
//! boundary, counted ([`SubscriberStats::panics`]) and logged; after
//! [`MAX_HANDLER_PANICS`] panics the subscription is cut off (removed, with a
//! warning). Other delivery errors (e.g. the plugin is not active) are counted
//! in [`SubscriberStats::failed`].
//!
//! **Limits.** Names: 1 to [`MAX_EVENT_NAME_LEN`] bytes, no control characters
//! or whitespace. Payloads: at most [`MAX_PAYLOAD_BYTES`] of JSON text and
//! [`MAX_PAYLOAD_DEPTH`] levels of nesting. A pattern is a name, or a prefix
//! ending in `*` (`counter.*`; `*` alone matches everything). Anything else is
//! refused with [`Error::InvalidEvent`].
//!
//! **Lifecycle events.** On every plugin lifecycle transition the bus publishes
//! `plugbay.plugin.<state>` (`started` for active, `stopping`, `stopped`,
//! `failed`, `initializing`, `registered`) with payload `{"plugin": NAME}` from
//! source `plugbay`, and removes the subscriptions of a plugin that leaves
//! `Active` (it subscribes again when it starts again).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// The longest event name (or pattern), in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 128;
/// The largest payload, in bytes of JSON text.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The deepest nesting of arrays and objects in a payload.
pub const MAX_PAYLOAD_DEPTH: usize = 32;
/// A subscriber's queue length unless chosen otherwise.
pub const DEFAULT_SUBSCRIBER_CAPACITY: usize = 1024;
/// Panics in `on_event` after which a plugin's subscription is cut off.
pub const MAX_HANDLER_PANICS: u64 = 3;
/// An overflowing subscriber is warned about on its first drop and then every this many.
pub const WARN_EVERY: u64 = 1000;
/// The source name of events the host publishes about plugin lifecycles.
pub const LIFECYCLE_SOURCE: &str = "plugbay";

/// One event as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The event's name, e.g. `counter.changed`.
    pub name: String,
    /// Its JSON payload.
    pub payload: Value,
    /// Who published it: a plugin's name, `host` for the embedder, or
    /// [`LIFECYCLE_SOURCE`].
    pub source: String,
    /// The publisher's sequence number, counting from 1: per source, in publish order.
    pub seq: u64,
}

/// Counters of one subscription; all only ever grow.
#[derive(Debug, Default)]
pub struct SubscriberStats {
    /// Events put into the queue.
    pub queued: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events handed to the plugin's `on_event` that returned normally.
    pub delivered: AtomicU64,
    /// Deliveries that panicked in the plugin.
    pub panics: AtomicU64,
    /// Deliveries that failed otherwise (plugin not active, its error).
    pub failed: AtomicU64,
}

/// What the manager's glue does with one event for a plugin subscriber: call the
/// plugin's `on_event`. `Err(true)` means it panicked.
pub type DeliverFn = Arc<
    dyn Fn(Event) -> Pin<Box<dyn Future<Output = std::result::Result<(), (bool, String)>> + Send>>
        + Send
        + Sync,
>;

/// A subscription's pattern: an exact name or a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(pattern: &str) -> Result<Self> {
        match pattern.strip_suffix('*') {
            Some(prefix) => {
                if !prefix.is_empty() {
                    check_name(prefix)?;
                }
                Ok(Self::Prefix(prefix.to_owned()))
            }
            None => {
                check_name(pattern)?;
                Ok(Self::Exact(pattern.to_owned()))
            }
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// Where one publish goes: queue, counters, subscription id, subscribing plugin.
type Target = (
    mpsc::Sender<Event>,
    Arc<SubscriberStats>,
    u64,
    Option<String>,
);

struct Subscription {
    id: u64,
    /// The plugin that subscribed, or `None` for an embedder's receiver.
    plugin: Option<String>,
    pattern: Pattern,
    tx: mpsc::Sender<Event>,
    stats: Arc<SubscriberStats>,
}

#[derive(Default)]
struct BusState {
    next_id: u64,
    subscriptions: Vec<Subscription>,
    /// The last sequence number per source.
    seqs: std::collections::HashMap<String, u64>,
}

/// The event bus. Cheap to share (`Arc`); every method takes `&self`.
#[derive(Default)]
pub struct EventBus {
    /// Guards: the subscriptions and the per-source sequence numbers. A
    /// `parking_lot` lock held only inside the tiny sync methods below (no
    /// `.await`, no plugin code, no I/O, no other lock; queue sends happen after
    /// it is released).
    state: Mutex<BusState>,
}

/// An embedder's subscription: receive with [`EventReceiver::recv`].
pub struct EventReceiver {
    rx: mpsc::Receiver<Event>,
    stats: Arc<SubscriberStats>,
}

impl EventReceiver {
    /// The next event; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// This subscription's counters.
    pub fn stats(&self) -> &SubscriberStats {
        &self.stats
    }

    /// How many events wait in the queue now.
    pub fn queued_now(&self) -> usize {
        self.rx.len()
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `name` with `payload` from `source`. Never waits: each matching
    /// subscriber gets it queued, or counted as dropped when its queue is full.
    /// Returns how many subscribers it was queued for.
    pub fn publish(&self, source: &str, name: &str, payload: Value) -> Result<usize> {
        check_name(name)?;
        check_payload(name, &payload)?;
        Ok(self.publish_checked(source, name, payload))
    }

    /// [`EventBus::publish`] for a payload still in JSON text (from a plugin):
    /// the size limit is checked before parsing.
    pub fn publish_json(&self, source: &str, name: &str, payload: &str) -> Result<usize> {
        check_name(name)?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(invalid(
                name,
                &format!(
                    "the payload is {} bytes; at most {MAX_PAYLOAD_BYTES} are allowed",
                    payload.len()
                ),
            ));
        }
        let value: Value = serde_json::from_str(payload)
            .map_err(|e| invalid(name, &format!("the payload is not JSON: {e}")))?;
        self.publish(source, name, value)
    }

    fn publish_checked(&self, source: &str, name: &str, payload: Value) -> usize {
        self.publish_lazily(source, name, || payload)
    }

    /// Publishes like [`EventBus::publish_checked`], building the payload only
    /// when some subscription matches: the lifecycle events of a manager nobody
    /// subscribed to cost a sequence number and no allocation.
    fn publish_lazily(&self, source: &str, name: &str, payload: impl FnOnce() -> Value) -> usize {
        let (seq, targets) = {
            let mut state = self.state.lock();
            let seq = match state.seqs.get_mut(source) {
                Some(seq) => seq,
                None => state.seqs.entry(source.to_owned()).or_insert(0),
            };
            *seq += 1;
            let seq = *seq;
            let targets: Vec<Target> = state
                .subscriptions
                .iter()
                .filter(|s| s.pattern.matches(name))
                .map(|s| (s.tx.clone(), Arc::clone(&s.stats), s.id, s.plugin.clone()))
                .collect();
            (seq, targets)
        };
        if targets.is_empty() {
            return 0;
        }
        let event = Event {
            name: name.to_owned(),
            payload: payload(),
            source: source.to_owned(),
            seq,
        };
        let mut queued = 0;
        for (tx, stats, id, plugin) in targets {
            match tx.try_send(event.clone()) {
                Ok(()) => {
                    stats.queued.fetch_add(1, Ordering::Relaxed);
                    queued += 1;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let dropped = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if dropped == 1 || dropped % WARN_EVERY == 0 {
                        tracing::warn!(
                            subscriber = plugin.as_deref().unwrap_or("embedder"),
                            subscription = id,
                            dropped,
                            event = name,
                            "event subscriber's queue is full; events for it are dropped"
                        );
                    }
                }
                // The receiver is gone: the subscription is removed below.
                Err(mpsc::error::TrySendError::Closed(_)) => self.remove(id),
            }
        }
        queued
    }

    /// A subscription for the embedder with a queue of `capacity` events.
    pub fn subscribe(&self, pattern: &str, capacity: usize) -> Result<EventReceiver> {
        let pattern = Pattern::parse(pattern)?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(SubscriberStats::default());
        self.add(None, pattern, tx, Arc::clone(&stats));
        Ok(EventReceiver { rx, stats })
    }

    /// Subscribes plugin `plugin` to `pattern`; its events are handed to
    /// `deliver` one at a time by a delivery task spawned on the current tokio
    /// runtime. Returns the subscription's counters.
    pub fn subscribe_plugin(
        self: &Arc<Self>,
        plugin: &str,
        pattern: &str,
        capacity: usize,
        deliver: DeliverFn,
    ) -> Result<Arc<SubscriberStats>> {
        let pattern = Pattern::parse(pattern)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            invalid(
                pattern_text(&pattern).as_str(),
                "subscribing needs the host's tokio runtime",
            )
        })?;
        let (tx, mut rx) = mpsc::channel::<Event>(capacity.max(1));
        let stats = Arc::new(SubscriberStats::default());
        let id = self.add(Some(plugin.to_owned()), pattern, tx, Arc::clone(&stats));
        let bus = Arc::downgrade(self);
        let task_stats = Arc::clone(&stats);
        let name = plugin.to_owned();
        runtime.spawn(async move {
            while let Some(event) = rx.recv().await {
                match deliver(event).await {
                    Ok(()) => {
                        task_stats.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err((true, message)) => {
                        let panics = task_stats.panics.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(plugin = %name, panics, "on_event panicked: {message}");
                        if panics >= MAX_HANDLER_PANICS {
                            tracing::warn!(
                                plugin = %name,
                                "event subscription cut off after {MAX_HANDLER_PANICS} panics in on_event"
                            );
                            if let Some(bus) = bus.upgrade() {
                                bus.remove(id);
                            }
                            return;
                        }
                    }
                    Err((false, message)) => {
                        task_stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(plugin = %name, "event not delivered: {message}");
                    }
                }
            }
        });
        Ok(stats)
    }

    fn add(
        &self,
        plugin: Option<String>,
        pattern: Pattern,
        tx: mpsc::Sender<Event>,
        stats: Arc<SubscriberStats>,
    ) -> u64 {
        let mut state = self.state.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.subscriptions.push(Subscription {
            id,
            plugin,
            pattern,
            tx,
            stats,
        });
        id
    }

    fn remove(&self, id: u64) {
        self.state.lock().subscriptions.retain(|s| s.id != id);
    }

    /// Removes every subscription of `plugin` (its delivery tasks end once
    /// their queues are drained).
    pub fn unsubscribe_plugin(&self, plugin: &str) {
        self.state
            .lock()
            .subscriptions
            .retain(|s| s.plugin.as_deref() != Some(plugin));
    }

    /// How many subscriptions exist now.
    pub fn subscription_count(&self) -> usize {
        self.state.lock().subscriptions.len()
    }

    /// Publishes the lifecycle event of `plugin` entering state `state` (a
    /// [`crate::PluginState::name`]), and drops its subscriptions when it
    /// leaves `Active`. Called by the manager after each transition.
    pub(crate) fn lifecycle(&self, plugin: &str, from: &str, to: &str) {
        if from == "active" {
            self.unsubscribe_plugin(plugin);
        }
        let name = match to {
            "active" => "plugbay.plugin.started",
            "shutting_down" => "plugbay.plugin.stopping",
            "unloaded" => "plugbay.plugin.stopped",
            "registered" => "plugbay.plugin.registered",
            "initializing" => "plugbay.plugin.initializing",
            "failed" => "plugbay.plugin.failed",
            other => {
                let name = format!("plugbay.plugin.{other}");
                self.publish_checked(
                    LIFECYCLE_SOURCE,
                    &name,
                    serde_json::json!({ "plugin": plugin }),
                );
                return;
            }
        };
        self.publish_lazily(
            LIFECYCLE_SOURCE,
            name,
            || serde_json::json!({ "plugin": plugin }),
        );
    }
}

impl EventBus {
    /// Publishes a reload event (`plugbay.plugin.reload_started`, ...) from
    /// source [`LIFECYCLE_SOURCE`], like the lifecycle events.
    pub(crate) fn reload(&self, name: &str, payload: Value) {
        self.publish_checked(LIFECYCLE_SOURCE, name, payload);
    }
}

fn pattern_text(pattern: &Pattern) -> String {
    match pattern {
        Pattern::Exact(s) => s.clone(),
        Pattern::Prefix(p) => format!("{p}*"),
    }
}

fn invalid(name: &str, reason: &str) -> Error {
    Error::InvalidEvent {
        name: name.chars().take(MAX_EVENT_NAME_LEN).collect(),
        reason: reason.to_owned(),
    }
}

/// Checks an event name (or a pattern's prefix).
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(name, "the name is empty"));
    }
    if name.len() > MAX_EVENT_NAME_LEN {
        return Err(invalid(
            name,
            &format!(
                "the name is {} bytes long; at most {MAX_EVENT_NAME_LEN} are allowed",
                name.len()
            ),
        ));
    }
    if let Some(bad) = name.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            name,
            &format!("it contains {bad:?}; control characters and whitespace are not allowed"),
        ));
    }
    if name.contains('*') {
        return Err(invalid(
            name,
            "`*` is only allowed at the end of a subscription pattern",
        ));
    }
    Ok(())
}

/// Checks a payload's nesting depth and size.
fn check_payload(name: &str, payload: &Value) -> Result<()> {
    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let d = depth(payload);
    if d > MAX_PAYLOAD_DEPTH {
        return Err(invalid(
            name,
            &format!("the payload nests {d} levels deep; at most {MAX_PAYLOAD_DEPTH} are allowed"),
        ));
    }
    let size = payload.to_string().len();
    if size > MAX_PAYLOAD_BYTES {
        return Err(invalid(
            name,
            &format!("the payload is {size} bytes; at most {MAX_PAYLOAD_BYTES} are allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
