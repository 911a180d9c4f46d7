//! How a plugin that dies on its own tells the manager: a plugin whose code runs
//! somewhere that can fail independently of the host (another process) exposes a
//! [`CrashSignal`] through [`crate::Plugin::crash_signal`]; it holds `None` while
//! the plugin is alive and a [`CrashReport`] once it has died. The manager watches
//! it while the plugin is Active and turns a report into
//! `Failed(`[`crate::Error::Crashed`]`)`.

use std::fmt;
use std::time::Duration;

/// The receiving side of a plugin's crash report: `None` while the plugin's
/// current incarnation is alive, `Some` once it has died. A plugin that starts a
/// new incarnation (e.g. a new process on `initialize` after a crash) resets it
/// to `None` before `initialize` returns.
pub type CrashSignal = tokio::sync::watch::Receiver<Option<CrashReport>>;

/// Why a plugin died.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrashReason {
    /// Its process was killed by a signal.
    Signal {
        /// The signal number.
        number: i32,
        /// The signal's name (`SIGSEGV`, `SIGABRT`, ...), or `signal N` when unknown.
        name: String,
    },
    /// Its process exited by itself (e.g. `std::process::exit`).
    Exited {
        /// The exit code.
        code: i32,
    },
    /// An operation overstayed its deadline, so the host killed its process.
    Deadline {
        /// What was running (`call(method)`, `initialize`, ...).
        operation: String,
        /// The deadline.
        after: Duration,
    },
    /// Its process went over a resource limit and was killed.
    Limit {
        /// The limit, e.g. `memory limit 256 MiB` or `CPU time 10 s`.
        limit: String,
    },
    /// Its process sent something that is not the protocol (or closed it
    /// mid-message), so the host stopped trusting it.
    Protocol {
        /// What was wrong.
        reason: String,
    },
}

impl fmt::Display for CrashReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashReason::Signal { number, name } => write!(f, "killed by signal {number} ({name})"),
            CrashReason::Exited { code } => write!(f, "exited with code {code}"),
            CrashReason::Deadline { operation, after } => {
                write!(f, "killed: {operation} did not finish within {after:?}")
            }
            CrashReason::Limit { limit } => write!(f, "killed: {limit}"),
            CrashReason::Protocol { reason } => write!(f, "protocol violation: {reason}"),
        }
    }
}

/// A plugin's death: why, and the last lines its process wrote to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashReport {
    /// Why it died.
    pub reason: CrashReason,
    /// The last lines it wrote to stderr (oldest first; empty when none).
    pub last_stderr: Vec<String>,
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(last) = self.last_stderr.last() {
            write!(f, "; last stderr line: {last}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_name_the_cause_and_the_last_stderr_line() {
        let report = CrashReport {
            reason: CrashReason::Signal {
                number: 11,
                name: "SIGSEGV".into(),
            },
            last_stderr: vec!["first".into(), "about to crash".into()],
        };
        assert_eq!(
            report.to_string(),
            "killed by signal 11 (SIGSEGV); last stderr line: about to crash"
        );
        let quiet = CrashReport {
            reason: CrashReason::Exited { code: 0 },
            last_stderr: vec![],
        };
        assert_eq!(quiet.to_string(), "exited with code 0");
    }
}
