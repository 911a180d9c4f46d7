//! Turning hangs into failures: parking_lot's deadlock detector on a background
//! thread, and a tokio watchdog around whole test bodies.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Polls `parking_lot::deadlock::check_deadlock` every 50 ms until finished;
/// [`DeadlockDetector::finish`] fails the test if it ever reported a cycle.
pub struct DeadlockDetector {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl DeadlockDetector {
    /// Starts the detector thread.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut reports = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                for (i, cycle) in parking_lot::deadlock::check_deadlock().iter().enumerate() {
                    for t in cycle {
                        let report = format!(
                            "deadlock #{i}: thread {:?}\n{:?}",
                            t.thread_id(),
                            t.backtrace()
                        );
                        eprintln!("{report}");
                        reports.push(report);
                    }
                }
            }
            reports
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the detector and fails the test on any report.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let reports = self
            .thread
            .take()
            .expect("detector thread")
            .join()
            .expect("detector thread panicked");
        assert!(
            reports.is_empty(),
            "parking_lot detected deadlocks:\n{}",
            reports.join("\n")
        );
    }
}

impl Drop for DeadlockDetector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Awaits `fut`, failing the test (instead of hanging CI) if it takes longer
/// than `limit` — which for these tests means a deadlock.
pub async fn watchdog<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("watchdog: {what} did not finish within {limit:?}: probably a deadlock"),
    }
}
