//! Running plugin code safely: deadlines, caught panics, and turning plugin
//! errors into the host's [`Error`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use plugbay_api::{panic_message, ErrorKind, PluginError};

use crate::error::Error;

/// A lifecycle phase with a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `initialize`.
    Initialize,
    /// `shutdown` (including waiting for in-flight calls).
    Shutdown,
}

impl Phase {
    fn operation(self) -> &'static str {
        match self {
            Phase::Initialize => "initialize",
            Phase::Shutdown => "shutdown",
        }
    }
}

/// Runs one lifecycle phase of `plugin` with a deadline, catching panics.
///
/// Past the deadline the future is dropped and the phase fails with
/// [`Error::InitTimeout`] / [`Error::ShutdownTimeout`]. Dropping stops an
/// in-process plugin at its next `.await`; a native plugin's code runs on a
/// blocking-pool thread that cannot be stopped and may stay stuck (the manager
/// no longer waits for it).
pub(crate) async fn run_phase(
    plugin: &str,
    phase: Phase,
    deadline: Duration,
    work: impl Future<Output = Result<(), PluginError>>,
) -> Result<(), Error> {
    let guarded = AssertUnwindSafe(work).catch_unwind();
    match tokio::time::timeout(deadline, guarded).await {
        Err(_elapsed) => Err(match phase {
            Phase::Initialize => Error::InitTimeout {
                plugin: plugin.to_owned(),
                after: deadline,
            },
            Phase::Shutdown => Error::ShutdownTimeout {
                plugin: plugin.to_owned(),
                after: deadline,
            },
        }),
        Ok(Err(payload)) => Err(Error::PluginPanicked {
            plugin: plugin.to_owned(),
            operation: phase.operation().to_owned(),
            message: panic_message(&*payload),
        }),
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(match (phase, e.kind) {
            (_, ErrorKind::Panicked) => Error::PluginPanicked {
                plugin: plugin.to_owned(),
                operation: phase.operation().to_owned(),
                message: e.message().to_owned(),
            },
            (Phase::Initialize, _) => Error::InitFailed {
                plugin: plugin.to_owned(),
                reason: e.message().to_owned(),
            },
            (Phase::Shutdown, _) => Error::PluginFailed {
                plugin: plugin.to_owned(),
                operation: "shutdown".to_owned(),
                kind: e.kind,
                reason: e.message().to_owned(),
            },
        }),
    }
}

/// Runs one `call` of `plugin`, catching panics (no deadline: calls have none).
pub(crate) async fn run_call<T>(
    plugin: &str,
    method: &str,
    work: impl Future<Output = Result<T, PluginError>>,
) -> Result<T, Error> {
    let operation = || format!("call({method})");
    match AssertUnwindSafe(work).catch_unwind().await {
        Err(payload) => Err(Error::PluginPanicked {
            plugin: plugin.to_owned(),
            operation: operation(),
            message: panic_message(&*payload),
        }),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if e.kind == ErrorKind::Panicked => Err(Error::PluginPanicked {
            plugin: plugin.to_owned(),
            operation: operation(),
            message: e.message().to_owned(),
        }),
        Ok(Err(e)) => Err(Error::PluginFailed {
            plugin: plugin.to_owned(),
            operation: operation(),
            kind: e.kind,
            reason: e.message().to_owned(),
        }),
    }
}

/// `error` from an operation on `plugin`, or [`Error::Crashed`] when the
/// plugin reports it died ([`crate::Plugin::crash_signal`]) and the error is
/// the host-side kind a dead plugin's operations fail with.
pub(crate) fn crashed_or(plugin: &dyn crate::plugin::Plugin, error: Error) -> Error {
    let host_kind = matches!(
        &error,
        Error::PluginFailed {
            kind: ErrorKind::Host,
            ..
        } | Error::InitFailed { .. }
    );
    if !host_kind {
        return error;
    }
    let report = plugin
        .crash_signal()
        .and_then(|signal| signal.borrow().clone());
    match report {
        Some(report) => Error::Crashed {
            plugin: plugin.info().name.clone(),
            report,
        },
        None => error,
    }
}

/// The crash signal of `plugin`, marked seen, so [`crashed_during`] can tell a
/// crash that happened after this point from an earlier one.
pub(crate) fn crash_mark(plugin: &dyn crate::plugin::Plugin) -> Option<crate::crash::CrashSignal> {
    let mut signal = plugin.crash_signal()?;
    signal.borrow_and_update();
    Some(signal)
}

/// `error` from a phase of `plugin`, or [`Error::Crashed`] when the plugin
/// died during it: its signal (marked by [`crash_mark`] before the phase)
/// changed since and now holds a report.
pub(crate) fn crashed_during(
    plugin: &dyn crate::plugin::Plugin,
    mark: Option<crate::crash::CrashSignal>,
    error: Error,
) -> Error {
    match mark {
        Some(signal) if signal.has_changed().unwrap_or(false) => crashed_or(plugin, error),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn maps_every_outcome() {
        let d = Duration::from_secs(5);
        assert_eq!(
            run_phase("p", Phase::Initialize, d, async { Ok(()) }).await,
            Ok(())
        );
        let err = run_phase("p", Phase::Initialize, d, async {
            Err(PluginError::failed("no disk"))
        })
        .await
        .unwrap_err();
        assert_eq!(
            err,
            Error::InitFailed {
                plugin: "p".into(),
                reason: "no disk".into()
            }
        );
        let err = run_phase("p", Phase::Shutdown, d, async {
            Err(PluginError::new(ErrorKind::Panicked, "ffi boom"))
        })
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Error::PluginPanicked { operation, message, .. }
                if operation == "shutdown" && message == "ffi boom"),
            "{err:?}"
        );
        let err = run_phase("p", Phase::Initialize, d, async {
            if d.as_secs() == 5 {
                panic!("in-process boom");
            }
            Ok(())
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("in-process boom"), "{err}");
        let err = run_phase(
            "p",
            Phase::Shutdown,
            Duration::from_millis(10),
            std::future::pending(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::ShutdownTimeout { .. }), "{err:?}");
    }
}
