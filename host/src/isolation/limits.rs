//! Resource limits of an isolated plugin's runner, and reading a death as
//! going over one.
//!
//! The runner sets them on itself (`setrlimit`, soft = hard) after the
//! handshake and before it opens the library, so they bind the plugin from its
//! first constructor on:
//!
//! | Limit | Unix mechanism | Going over it |
//! |---|---|---|
//! | memory | `RLIMIT_AS` (address space, which includes mapped code and thread stacks) | allocations fail; Rust aborts with "memory allocation of N bytes failed" → reported as `memory limit N MiB` |
//! | CPU time | `RLIMIT_CPU` | `SIGXCPU` → reported as `CPU time N s` |
//! | open files | `RLIMIT_NOFILE` | `open` fails with `EMFILE` inside the plugin (an error, not a death) |
//!
//! The environment is cleared for the runner except the variables named in
//! [`crate::ManagerConfigBuilder::isolation_keep_env`]. Other systems: not
//! supported (isolation itself is Unix only for now).

use crate::crash::CrashReason;
use crate::platform::ExitReason;

use super::wire::WireLimits;

/// Resource limits for isolated plugins' runner processes (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Address-space limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU time limit in seconds.
    pub cpu_seconds: Option<u64>,
    /// Open file descriptor limit.
    pub open_files: Option<u64>,
}

impl Limits {
    /// The limits as the runner's hello carries them (runners exist on Unix only).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn to_wire(self) -> WireLimits {
        WireLimits {
            memory_bytes: self.memory_bytes,
            cpu_seconds: self.cpu_seconds,
            open_files: self.open_files,
        }
    }

    /// The memory limit in words (`memory limit 256 MiB`).
    pub(crate) fn memory_words(bytes: u64) -> String {
        if bytes % (1024 * 1024) == 0 {
            format!("memory limit {} MiB", bytes / (1024 * 1024))
        } else {
            format!("memory limit {bytes} bytes")
        }
    }
}

/// Why a runner ended by itself, in the crash report's terms: a signal or exit
/// code, or a limit when the death is what going over it looks like.
pub(crate) fn classify(reason: ExitReason, limits: &Limits, last_stderr: &[String]) -> CrashReason {
    let allocation_failed = last_stderr
        .iter()
        .any(|l| l.contains("memory allocation of") && l.contains("failed"));
    match reason {
        ExitReason::Signal { number, name } => {
            #[cfg(unix)]
            if let Some(secs) = limits.cpu_seconds {
                if number == crate::platform::CPU_LIMIT_SIGNAL {
                    return CrashReason::Limit {
                        limit: format!("CPU time {secs} s"),
                    };
                }
            }
            if let (Some(bytes), true) = (limits.memory_bytes, allocation_failed) {
                return CrashReason::Limit {
                    limit: Limits::memory_words(bytes),
                };
            }
            CrashReason::Signal {
                number,
                name: name
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("signal {number}")),
            }
        }
        ExitReason::Code(code) => CrashReason::Exited { code },
        ExitReason::Exception(code) => CrashReason::Signal {
            number: code as i32,
            name: crate::platform::exception_name(code)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("exception 0x{code:08X}")),
        },
        ExitReason::Unknown => CrashReason::Protocol {
            reason: "the runner ended and its status is unknown".to_owned(),
        },
    }
}

/// In the runner: sets `limits` on this process. Errors name the limit.
#[cfg(unix)]
pub(crate) fn apply(limits: &WireLimits) -> Result<(), String> {
    use crate::platform::{set_resource_limit, ResourceLimit};
    let wanted = [
        limits.memory_bytes.map(ResourceLimit::AddressSpace),
        limits.cpu_seconds.map(ResourceLimit::CpuSeconds),
        limits.open_files.map(ResourceLimit::OpenFiles),
    ];
    for limit in wanted.into_iter().flatten() {
        set_resource_limit(limit).map_err(|e| format!("cannot set {limit:?}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deaths_read_as_limits_only_when_that_limit_is_set() {
        let abort = ExitReason::Signal {
            number: 6,
            name: Some("SIGABRT"),
        };
        let oom = vec!["memory allocation of 1048576 bytes failed".to_owned()];
        let limited = Limits {
            memory_bytes: Some(256 << 20),
            ..Limits::default()
        };
        assert_eq!(
            classify(abort, &limited, &oom),
            CrashReason::Limit {
                limit: "memory limit 256 MiB".into()
            }
        );
        assert_eq!(
            classify(abort, &Limits::default(), &oom),
            CrashReason::Signal {
                number: 6,
                name: "SIGABRT".into()
            }
        );
        assert_eq!(
            classify(ExitReason::Code(0), &limited, &[]),
            CrashReason::Exited { code: 0 }
        );
        assert_eq!(
            classify(
                ExitReason::Signal {
                    number: 42,
                    name: None
                },
                &limited,
                &[]
            ),
            CrashReason::Signal {
                number: 42,
                name: "signal 42".into()
            }
        );
    }

    #[cfg(unix)]
    #[test]
    fn cpu_signal_is_the_cpu_limit() {
        let limits = Limits {
            cpu_seconds: Some(2),
            ..Limits::default()
        };
        let xcpu = ExitReason::Signal {
            number: crate::platform::CPU_LIMIT_SIGNAL,
            name: Some("SIGXCPU"),
        };
        assert_eq!(
            classify(xcpu, &limits, &[]),
            CrashReason::Limit {
                limit: "CPU time 2 s".into()
            }
        );
    }
}
