//! The lifecycle state machine: states, the transitions allowed between them,
//! the events published when a plugin changes state, and
//! [`Inner::transition`], the one function that changes a plugin's state.

use std::fmt;

use uuid::Uuid;

use super::registry::Slot;
use super::reload::ReloadEvent;
use super::Inner;
use crate::error::{Error, Result};

/// Where a plugin is in its life.
///
/// ```text
/// Registered ──► Initializing ──► Active ──► ShuttingDown ──► Unloaded
///     ▲               │             │              │             │
///     │               ▼             ▼ (crash)      ▼             │
///     │            Failed ◄─────────┴──────────────┘             │
///     │               │  (retry: load again)                     │
///     └─ Initializing ◄──────────────────────────────────────────┘
/// ```
///
/// `Failed` is also entered directly from `Registered`, `Unloaded` or `Failed`
/// when a plugin cannot start because a dependency failed; no plugin code runs
/// on that transition. And from `Active`, only with [`Error::Crashed`]: a plugin
/// that can die on its own (another process) died while running; the
/// supervisor writes it (see [`crate::RestartPolicy`]); or with
/// [`Error::ReloadRollbackFailed`]: a reload failed and restoring the old
/// version failed too (a reload otherwise keeps the plugin `Active`).
/// `Failed → Failed` also records a supervisor giving up ([`Error::RestartLimit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginState {
    /// Known to the manager; none of its lifecycle code has run.
    Registered,
    /// `initialize` is running.
    Initializing,
    /// Initialized and accepting calls.
    Active,
    /// `shutdown` is running (or waiting for in-flight calls to finish).
    ShuttingDown,
    /// Shut down cleanly; may be loaded again.
    Unloaded,
    /// Initialize or shutdown failed (or a dependency did, or a reload and its
    /// rollback did); the cause is kept.
    /// A failed plugin may be loaded again once the cause is gone.
    Failed(Box<Error>),
}

impl PluginState {
    /// The state's name in lower case (`"active"`, `"shutting_down"`, `"failed"`, ...),
    /// without the failure cause. This is what plugins see through the host context.
    pub fn name(&self) -> &'static str {
        match self {
            PluginState::Registered => "registered",
            PluginState::Initializing => "initializing",
            PluginState::Active => "active",
            PluginState::ShuttingDown => "shutting_down",
            PluginState::Unloaded => "unloaded",
            PluginState::Failed(_) => "failed",
        }
    }

    /// Whether the plugin accepts calls.
    pub fn is_active(&self) -> bool {
        matches!(self, PluginState::Active)
    }

    /// Whether the plugin is in the middle of a lifecycle operation.
    pub fn is_transitional(&self) -> bool {
        matches!(self, PluginState::Initializing | PluginState::ShuttingDown)
    }

    /// Whether no plugin code is running or live for this plugin: it may be
    /// initialized (again) or removed.
    pub fn is_idle(&self) -> bool {
        matches!(
            self,
            PluginState::Registered | PluginState::Unloaded | PluginState::Failed(_)
        )
    }

    /// The cause of a failure, for a `Failed` state.
    pub fn failure(&self) -> Option<&Error> {
        match self {
            PluginState::Failed(cause) => Some(cause),
            _ => None,
        }
    }

    /// The crash a `Failed` state records ([`Error::Crashed`], or
    /// [`Error::RestartLimit`] once restarts are used up): calls are refused
    /// with it.
    pub fn crash(&self) -> Option<&Error> {
        self.failure()
            .filter(|e| matches!(e, Error::Crashed { .. } | Error::RestartLimit { .. }))
    }

    /// Whether the state machine allows going from `self` to `to`.
    pub fn can_become(&self, to: &PluginState) -> bool {
        use PluginState::*;
        match (self, to) {
            (Registered | Unloaded | Failed(_), Initializing) => true,
            (Initializing, Active | Failed(_)) => true,
            (Active, ShuttingDown) => true,
            // Died on its own while running (the supervisor writes it), or a
            // reload whose rollback failed: neither version runs.
            (Active, Failed(cause)) => matches!(
                **cause,
                Error::Crashed { .. } | Error::ReloadRollbackFailed { .. }
            ),
            (ShuttingDown, Unloaded | Failed(_)) => true,
            // Blocked by a failed dependency: no plugin code runs.
            (Registered | Unloaded | Failed(_), Failed(_)) => true,
            _ => false,
        }
    }
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginState::Failed(cause) => write!(f, "failed ({cause})"),
            other => f.write_str(other.name()),
        }
    }
}

/// One state change of one plugin, as published to the receivers of
/// [`super::PluginManager::subscribe`].
///
/// Events of one plugin arrive in the order the transitions happened (they are
/// sent while that plugin's lifecycle lock is held); events of different plugins
/// interleave freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// The plugin's id.
    pub id: Uuid,
    /// The plugin's name.
    pub name: String,
    /// The state before.
    pub from: PluginState,
    /// The state after.
    pub to: PluginState,
    /// For a reload's events (started, succeeded, rolled back): what happened.
    /// `from` and `to` are then both the plugin's current state (a reload
    /// keeps it `Active`). `None` for a state change.
    pub reload: Option<ReloadEvent>,
}

impl Inner {
    /// Moves `slot` to `to` and publishes the event; returns the previous state.
    ///
    /// The only way a plugin's state changes. The rules (the state machine, and
    /// "a plugin held up by dependents cannot leave `Active`") are checked and
    /// the state written in one critical section of the slot's gate
    /// ([`super::gate::Gate::write_transition`]); the event follows. Only the
    /// holder of the slot's lifecycle lock calls this, so events of one plugin
    /// are published in the order its transitions happened.
    pub(super) fn transition(&self, slot: &Slot, to: PluginState) -> Result<PluginState> {
        let from = slot.gate.write_transition(&slot.name, to.clone())?;
        tracing::debug!(plugin = %slot.name, from = from.name(), to = to.name(), "lifecycle");
        // Starts or ends the crash watch (no lock held, runs no plugin code
        // except the plugin's `crash_signal` getter).
        self.supervisor.on_transition(slot, &from, &to);
        // The event bus only queues (never waits, runs no plugin code).
        self.bus.lifecycle(&slot.name, from.name(), to.name());
        // Nobody listening: no event to build (a receiver subscribing meanwhile
        // gets the transitions after this one).
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(LifecycleEvent {
                id: slot.id,
                name: slot.name.clone(),
                from: from.clone(),
                to,
                reload: None,
            });
        }
        Ok(from)
    }
}

#[cfg(test)]
mod tests {
    use super::PluginState::*;
    use super::*;

    fn failed() -> PluginState {
        Failed(Box::new(Error::Config("x".into())))
    }

    fn crashed() -> PluginState {
        Failed(Box::new(Error::Crashed {
            plugin: "p".into(),
            report: crate::crash::CrashReport {
                reason: crate::crash::CrashReason::Exited { code: 3 },
                last_stderr: Vec::new(),
            },
        }))
    }

    #[test]
    fn allowed_transitions() {
        let all = [
            Registered,
            Initializing,
            Active,
            ShuttingDown,
            Unloaded,
            failed(),
        ];
        let allowed: Vec<(&str, &str)> = all
            .iter()
            .flat_map(|from| {
                all.iter()
                    .filter(|to| from.can_become(to))
                    .map(move |to| (from.name(), to.name()))
            })
            .collect();
        assert_eq!(
            allowed,
            [
                ("registered", "initializing"),
                ("registered", "failed"),
                ("initializing", "active"),
                ("initializing", "failed"),
                ("active", "shutting_down"),
                ("shutting_down", "unloaded"),
                ("shutting_down", "failed"),
                ("unloaded", "initializing"),
                ("unloaded", "failed"),
                ("failed", "initializing"),
                ("failed", "failed"),
            ]
        );
    }

    #[test]
    fn only_a_crash_or_a_failed_reload_fails_an_active_plugin() {
        assert!(Active.can_become(&crashed()));
        assert!(
            !Active.can_become(&failed()),
            "a failure other than a crash"
        );
        let rollback_failed = Failed(Box::new(Error::ReloadRollbackFailed {
            plugin: "p".into(),
            step: crate::manager::ReloadStep::Initialize,
            cause: Box::new(Error::Config("x".into())),
            version: "1.0.0".into(),
            rollback: Box::new(Error::Config("y".into())),
        }));
        assert!(
            Active.can_become(&rollback_failed),
            "a reload whose rollback failed"
        );
        for from in [Registered, Initializing, ShuttingDown, Unloaded] {
            let allowed = from.can_become(&crashed());
            assert_eq!(
                allowed,
                from.can_become(&failed()),
                "{from}: same as any failure"
            );
        }
        assert_eq!(
            crashed().crash().map(ToString::to_string).as_deref(),
            Some("plugin `p` crashed: exited with code 3")
        );
        assert_eq!(failed().crash(), None);
    }

    #[test]
    fn display_keeps_the_cause() {
        assert_eq!(Active.to_string(), "active");
        assert_eq!(failed().to_string(), "failed (invalid configuration: x)");
        assert_eq!(failed().failure(), Some(&Error::Config("x".into())));
    }
}
