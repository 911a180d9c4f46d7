//! `event_throughput_per_s`, `event_latency_p99_us`: the event bus under load.
//!
//! 4 publisher threads publish as fast as they can to 8 subscribers, each
//! drained by its own tokio task (the shape of the plugin delivery tasks, minus
//! the plugin call). Throughput: published events per second until every
//! subscriber has received all of them; queues have room for the whole round,
//! so nothing is dropped (checked). Latency: publish → receive (a timestamp in
//! the payload), p99 over every received event, in separate rounds where one
//! publisher publishes every [`PACE`] to the same 8 subscribers (so it measures
//! the bus and the wake-up, not a backlog of a flood).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use plugbay_host::EventBus;
use serde_json::json;

use crate::report::{Goal, Report};
use crate::stats::{median, percentile};
use crate::Options;

const PUBLISHERS: usize = 4;
const SUBSCRIBERS: usize = 8;
/// The gap between two events in the latency rounds.
const PACE: std::time::Duration = std::time::Duration::from_micros(100);

/// One round's figures.
struct Round {
    per_s: f64,
    p99_us: f64,
}

/// Measures and reports the metrics.
pub async fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let per_publisher = if opts.quick { 2_500 } else { 25_000 };
    let rounds = if opts.quick { 1 } else { 3 };
    round(PUBLISHERS, per_publisher / 5, None).await?; // warm-up
    let paced = if opts.quick { 500 } else { 5_000 };
    let (mut rates, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        rates.push(round(PUBLISHERS, per_publisher, None).await?.per_s);
        p99s.push(round(1, paced, Some(PACE)).await?.p99_us);
    }
    let per_s = median(&rates);
    let p99 = median(&p99s);
    let total = per_publisher * PUBLISHERS;
    report.add(
        "event_throughput_per_s",
        per_s,
        Goal::None,
        format!(
            "{PUBLISHERS} publishers x {per_publisher}, {SUBSCRIBERS} subscribers each receiving all {total}; median of {rounds}"
        ),
    );
    report.add(
        "event_latency_p99_us",
        p99,
        Goal::None,
        format!(
            "publish -> subscriber task receives; 1 publisher, {paced} events {} us apart, {SUBSCRIBERS} subscribers; median of {rounds}",
            PACE.as_micros()
        ),
    );
    Ok(())
}

async fn round(
    publishers: usize,
    per_publisher: usize,
    pace: Option<std::time::Duration>,
) -> Result<Round, String> {
    let total = per_publisher * publishers;
    let bus = Arc::new(EventBus::new());
    let base = Instant::now();
    let mut drains = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut rx = bus.subscribe("bench.*", total).map_err(|e| e.to_string())?;
        drains.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total);
            for _ in 0..total {
                let event = rx.recv().await.ok_or("the bus went away")?;
                let sent = event.payload.as_u64().unwrap_or(0) as f64;
                latencies.push(base.elapsed().as_nanos() as f64 - sent);
            }
            let dropped = rx.stats().dropped.load(Ordering::Relaxed);
            if dropped != 0 {
                return Err(format!("{dropped} events dropped"));
            }
            Ok::<_, String>(latencies)
        }));
    }
    let start = Instant::now();
    let threads: Vec<_> = (0..publishers)
        .map(|p| {
            let bus = Arc::clone(&bus);
            std::thread::spawn(move || {
                let source = format!("publisher-{p}");
                for _ in 0..per_publisher {
                    let now = base.elapsed().as_nanos() as u64;
                    bus.publish(&source, "bench.tick", json!(now))
                        .map_err(|e| e.to_string())?;
                    if let Some(pace) = pace {
                        std::thread::sleep(pace);
                    }
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for p in threads {
        p.join().map_err(|_| "a publisher panicked")??;
    }
    let mut latencies = Vec::new();
    for d in drains {
        latencies.extend(d.await.map_err(|e| e.to_string())??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Round {
        per_s: total as f64 / secs,
        p99_us: percentile(&latencies, 0.99) / 1_000.0,
    })
}
