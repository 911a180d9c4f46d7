//! Checkpoints while `plugin-host run` runs: every active plugin's state saved
//! every `--checkpoint-every` interval and on SIGHUP (Unix), one line on stderr
//! per checkpoint, so a host killed outright loses at most one interval.
//!
//! A checkpoint is [`PluginManager::save_all_states`]: each plugin's save runs
//! under its lifecycle lock (never during its initialize or shutdown), while
//! calls keep being admitted (calls never take the lifecycle lock).

use std::time::Duration;

use plugbay_host::{PluginManager, SaveOutcome};
use serde::Serialize;

/// Parses a `--checkpoint-every` value: a humantime duration such as `30s`,
/// `5m` or `1h 30m`, more than zero.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like 30s, 5m or 1h 30m")
    })?;
    if interval.is_zero() {
        return Err(format!(
            "`{text}` is zero; a checkpoint interval must be longer"
        ));
    }
    Ok(interval)
}

/// Why a checkpoint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The `--checkpoint-every` interval passed.
    Interval,
    /// SIGHUP arrived (Unix only).
    #[cfg(unix)]
    Sighup,
}

/// What the running host is asked to do next.
pub enum Trigger {
    /// Stop: Ctrl-C, SIGTERM, or Ctrl-Break on Windows.
    Stop,
    /// Save every active plugin's state now.
    Checkpoint(Reason),
}

/// The stop and checkpoint triggers of a running host. The signal listeners
/// are installed once, so a signal that arrives while a checkpoint is saving is
/// kept and seen by the next [`Signals::next`].
pub struct Signals {
    interval: Option<(Duration, tokio::time::Interval)>,
    #[cfg(unix)]
    unix: UnixSignals,
    #[cfg(windows)]
    ctrl_break: Option<tokio::signal::windows::CtrlBreak>,
    #[cfg(windows)]
    ctrl_c: Option<tokio::signal::windows::CtrlC>,
}

#[cfg(unix)]
struct UnixSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
    hangup: Option<tokio::signal::unix::Signal>,
}

/// Waits for the next delivery of `signal`; forever when it could not be watched.
#[cfg(unix)]
async fn delivered(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

impl Signals {
    /// Starts listening (the interval's first tick is one interval from now).
    pub fn new(checkpoint_every: Option<Duration>) -> Self {
        let interval = checkpoint_every.map(|every| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            // A checkpoint that took longer than the interval delays the next
            // one instead of causing a burst.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (every, ticks)
        });
        Self {
            interval,
            #[cfg(unix)]
            unix: {
                use tokio::signal::unix::{signal, SignalKind};
                UnixSignals {
                    interrupt: signal(SignalKind::interrupt()).ok(),
                    terminate: signal(SignalKind::terminate()).ok(),
                    hangup: signal(SignalKind::hangup()).ok(),
                }
            },
            #[cfg(windows)]
            ctrl_break: tokio::signal::windows::ctrl_break().ok(),
            #[cfg(windows)]
            ctrl_c: tokio::signal::windows::ctrl_c().ok(),
        }
    }

    /// The line printed once the host runs: how to stop it and when it saves.
    pub fn running_message(&self) -> String {
        let stop = if cfg!(windows) {
            "press Ctrl-C or Ctrl-Break to stop"
        } else {
            "press Ctrl-C (or send SIGTERM) to stop"
        };
        let every = match &self.interval {
            Some((every, _)) => format!(
                "; saving plugin state every {}",
                humantime::format_duration(*every)
            ),
            None => String::new(),
        };
        let hup = if cfg!(unix) { " and on SIGHUP" } else { "" };
        if every.is_empty() && hup.is_empty() {
            format!("plugin-host: running; {stop}")
        } else if every.is_empty() {
            format!("plugin-host: running; {stop}; saving plugin state on SIGHUP")
        } else {
            format!("plugin-host: running; {stop}{every}{hup}")
        }
    }

    /// Waits for the next stop request or checkpoint.
    pub async fn next(&mut self) -> Trigger {
        let tick = async {
            match &mut self.interval {
                Some((_, ticks)) => {
                    ticks.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(unix)]
        {
            let unix = &mut self.unix;
            tokio::select! {
                _ = delivered(&mut unix.interrupt) => Trigger::Stop,
                _ = delivered(&mut unix.terminate) => Trigger::Stop,
                _ = delivered(&mut unix.hangup) => Trigger::Checkpoint(Reason::Sighup),
                _ = tick => Trigger::Checkpoint(Reason::Interval),
            }
        }
        #[cfg(windows)]
        {
            let ctrl_c = async {
                match &mut self.ctrl_c {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let ctrl_break = async {
                match &mut self.ctrl_break {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = ctrl_c => Trigger::Stop,
                _ = ctrl_break => Trigger::Stop,
                _ = tick => Trigger::Checkpoint(Reason::Interval),
            }
        }
        #[cfg(not(any(unix, windows)))]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Trigger::Stop,
                _ = tick => Trigger::Checkpoint(Reason::Interval),
            }
        }
    }
}

/// One plugin's state that a checkpoint saved.
#[derive(Debug, Serialize)]
pub struct Saved {
    pub plugin: String,
    /// The state file's size; `None` when the plugin had nothing to save.
    pub bytes: Option<u64>,
}

/// One plugin's state that a checkpoint could not save.
#[derive(Debug, Serialize)]
pub struct NotSaved {
    pub plugin: String,
    pub error: String,
}

/// One checkpoint, as `run --json` lists it.
#[derive(Debug, Serialize)]
pub struct Checkpoint {
    /// 1 for the first checkpoint of this run.
    pub number: u64,
    pub reason: Reason,
    pub saved: Vec<Saved>,
    pub failed: Vec<NotSaved>,
}

/// Takes checkpoints and remembers them.
pub struct Checkpointer {
    manager: PluginManager,
    taken: Vec<Checkpoint>,
}

impl Checkpointer {
    pub fn new(manager: PluginManager) -> Self {
        Self {
            manager,
            taken: Vec::new(),
        }
    }

    /// Saves every active plugin's state now and prints one line on stderr:
    /// `plugin-host: checkpoint N (reason): NAME saved (B bytes), ...`.
    pub async fn checkpoint(&mut self, reason: Reason) {
        let results = self.manager.save_all_states().await;
        let mut checkpoint = Checkpoint {
            number: self.taken.len() as u64 + 1,
            reason,
            saved: Vec::new(),
            failed: Vec::new(),
        };
        for (plugin, result) in results {
            match result {
                Ok(SaveOutcome::Saved { bytes, .. }) => checkpoint.saved.push(Saved {
                    plugin,
                    bytes: Some(bytes),
                }),
                Ok(SaveOutcome::NothingToSave) => {
                    checkpoint.saved.push(Saved {
                        plugin,
                        bytes: None,
                    });
                }
                Err(e) => checkpoint.failed.push(NotSaved {
                    plugin,
                    error: e.to_string(),
                }),
            }
        }
        eprintln!("plugin-host: {}", checkpoint.line());
        self.taken.push(checkpoint);
    }

    /// Every checkpoint taken, in order.
    pub fn into_taken(self) -> Vec<Checkpoint> {
        self.taken
    }
}

impl Checkpoint {
    /// The checkpoint's one line (without the `plugin-host: ` prefix).
    fn line(&self) -> String {
        let reason = match self.reason {
            Reason::Interval => "interval",
            #[cfg(unix)]
            Reason::Sighup => "SIGHUP",
        };
        let mut parts: Vec<String> = self
            .saved
            .iter()
            .map(|s| match s.bytes {
                Some(bytes) => format!("{} saved ({bytes} bytes)", s.plugin),
                None => format!("{} had nothing to save", s.plugin),
            })
            .collect();
        parts.extend(
            self.failed
                .iter()
                .map(|f| format!("{} NOT saved: {}", f.plugin, f.error)),
        );
        if parts.is_empty() {
            parts.push("no active plugin".to_owned());
        }
        format!(
            "checkpoint {} ({reason}): {}",
            self.number,
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_humantime_durations_above_zero() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        let zero = parse_interval("0s").unwrap_err();
        assert!(zero.contains("`0s`") && zero.contains("zero"), "{zero}");
        for bad in ["", "30", "5 minutes please", "-5s", "1x"] {
            let e = parse_interval(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }

    #[test]
    fn a_checkpoint_line_names_every_plugin_and_each_failure() {
        let checkpoint = Checkpoint {
            number: 3,
            reason: Reason::Interval,
            saved: vec![
                Saved {
                    plugin: "counter".into(),
                    bytes: Some(120),
                },
                Saved {
                    plugin: "hello".into(),
                    bytes: None,
                },
            ],
            failed: vec![NotSaved {
                plugin: "broken".into(),
                error: "disk full".into(),
            }],
        };
        assert_eq!(
            checkpoint.line(),
            "checkpoint 3 (interval): counter saved (120 bytes), hello had nothing to save, \
             broken NOT saved: disk full"
        );
    }
}
