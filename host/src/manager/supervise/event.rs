//! What the supervisor tells the embedder ([`SupervisorEvent`]): a plugin went
//! down, its dependents were stopped, a restart is scheduled, done, failed,
//! cancelled or given up, its dependents were started again.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};

use crate::crash::CrashReport;
use crate::error::Error;

/// One step of the supervision of a crashed plugin, as published to the
/// receivers of [`crate::PluginManager::subscribe_supervisor`] and, on the
/// event bus, as `plugbay.supervisor.<kind>` with payload
/// `{"plugin": NAME, "message": TEXT}` (the message is this event's `Display`).
///
/// Lifecycle events ([`crate::LifecycleEvent`]) report the state changes
/// themselves (`active → failed`, `failed → initializing → active`); these say
/// why and what comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// The plugin died while Active; it is now `Failed(Crashed)`.
    Crashed {
        /// The plugin.
        plugin: String,
        /// Why it died.
        report: CrashReport,
    },
    /// The plugins holding it up were stopped (shut down, state saved),
    /// dependents first; they are started again once it is back up.
    DependentsStopped {
        /// The crashed plugin.
        plugin: String,
        /// The plugins stopped, sorted by name.
        dependents: Vec<String>,
    },
    /// A restart is scheduled.
    Restarting {
        /// The plugin.
        plugin: String,
        /// Which restart within the window this is (1 for the first).
        attempt: u32,
        /// The most restarts allowed within the window.
        limit: u32,
        /// The window.
        window: Duration,
        /// The wait before it.
        delay: Duration,
    },
    /// The restart succeeded: the plugin is Active again.
    Restarted {
        /// The plugin.
        plugin: String,
        /// Which restart within the window it was.
        attempt: u32,
    },
    /// The restart failed (its `initialize`, or restoring its state); another
    /// follows if the limit allows.
    RestartFailed {
        /// The plugin.
        plugin: String,
        /// Which restart within the window it was.
        attempt: u32,
        /// Why.
        error: Error,
    },
    /// The limit is reached: the plugin stays `Failed(RestartLimit)` and its
    /// stopped dependents stay stopped.
    GaveUp {
        /// The plugin.
        plugin: String,
        /// The restarts that happened within the window.
        restarts: u32,
        /// The window.
        window: Duration,
    },
    /// The pending restart was dropped: the plugin was unloaded, unregistered
    /// or loaded by hand meanwhile.
    RestartCancelled {
        /// The plugin.
        plugin: String,
    },
    /// After the restart, the dependents stopped because of the crash were
    /// started again.
    DependentsStarted {
        /// The restarted plugin.
        plugin: String,
        /// Those now Active, sorted by name.
        started: Vec<String>,
        /// Those that failed to start, with the cause.
        failed: Vec<(String, Error)>,
    },
}

impl SupervisorEvent {
    /// The plugin the event is about.
    pub fn plugin(&self) -> &str {
        match self {
            SupervisorEvent::Crashed { plugin, .. }
            | SupervisorEvent::DependentsStopped { plugin, .. }
            | SupervisorEvent::Restarting { plugin, .. }
            | SupervisorEvent::Restarted { plugin, .. }
            | SupervisorEvent::RestartFailed { plugin, .. }
            | SupervisorEvent::GaveUp { plugin, .. }
            | SupervisorEvent::RestartCancelled { plugin }
            | SupervisorEvent::DependentsStarted { plugin, .. } => plugin,
        }
    }

    /// The event's kind in lower case: the last part of its event-bus name
    /// (`plugbay.supervisor.restarting`).
    pub fn kind(&self) -> &'static str {
        match self {
            SupervisorEvent::Crashed { .. } => "crashed",
            SupervisorEvent::DependentsStopped { .. } => "dependents_stopped",
            SupervisorEvent::Restarting { .. } => "restarting",
            SupervisorEvent::Restarted { .. } => "restarted",
            SupervisorEvent::RestartFailed { .. } => "restart_failed",
            SupervisorEvent::GaveUp { .. } => "gave_up",
            SupervisorEvent::RestartCancelled { .. } => "restart_cancelled",
            SupervisorEvent::DependentsStarted { .. } => "dependents_started",
        }
    }

    /// The event-bus payload.
    pub(crate) fn payload(&self) -> Value {
        json!({ "plugin": self.plugin(), "message": self.to_string() })
    }
}

/// `400 ms`, `60 s`, `1.5 s`.
pub(crate) struct Human(pub(crate) Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d < Duration::from_secs(1) {
            write!(f, "{} ms", d.as_millis())
        } else if d.subsec_millis() == 0 {
            write!(f, "{} s", d.as_secs())
        } else {
            write!(f, "{:.1} s", d.as_secs_f64())
        }
    }
}

impl fmt::Display for SupervisorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorEvent::Crashed { plugin, report } => {
                write!(f, "plugin `{plugin}` crashed: {report}")
            }
            SupervisorEvent::DependentsStopped { plugin, dependents } => write!(
                f,
                "plugin `{plugin}` is down: stopped its dependents {}",
                dependents.join(", ")
            ),
            SupervisorEvent::Restarting {
                plugin,
                attempt,
                limit,
                window,
                delay,
            } => write!(
                f,
                "plugin `{plugin}` restarting (attempt {attempt} of {limit} in {}, in {})",
                Human(*window),
                Human(*delay)
            ),
            SupervisorEvent::Restarted { plugin, attempt } => {
                write!(f, "plugin `{plugin}` restarted (attempt {attempt})")
            }
            SupervisorEvent::RestartFailed {
                plugin,
                attempt,
                error,
            } => write!(f, "plugin `{plugin}` restart attempt {attempt} failed: {error}"),
            SupervisorEvent::GaveUp {
                plugin,
                restarts,
                window,
            } => write!(
                f,
                "plugin `{plugin}` restart limit reached ({restarts} restarts in {}): it stays failed",
                Human(*window)
            ),
            SupervisorEvent::RestartCancelled { plugin } => write!(
                f,
                "plugin `{plugin}` restart cancelled: it was unloaded or started meanwhile"
            ),
            SupervisorEvent::DependentsStarted {
                plugin,
                started,
                failed,
            } => {
                write!(
                    f,
                    "plugin `{plugin}` is back up: started its dependents {}",
                    started.join(", ")
                )?;
                for (name, error) in failed {
                    write!(f, "; `{name}` failed to start: {error}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_announces_its_attempt_window_and_delay() {
        let event = SupervisorEvent::Restarting {
            plugin: "a".into(),
            attempt: 2,
            limit: 5,
            window: Duration::from_secs(60),
            delay: Duration::from_millis(400),
        };
        assert_eq!(
            event.to_string(),
            "plugin `a` restarting (attempt 2 of 5 in 60 s, in 400 ms)"
        );
        assert_eq!(event.kind(), "restarting");
        assert_eq!(event.payload()["plugin"], "a");
        assert_eq!(Human(Duration::from_millis(1500)).to_string(), "1.5 s");
    }
}
