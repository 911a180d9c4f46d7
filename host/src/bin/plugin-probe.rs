//! `plugin-probe`: the dedicated preflight probe binary shipped with the host,
//! and the runner of isolated plugins.
//!
//! The host starts it to open libraries it has not seen before in a separate
//! process (see `plugbay_host::scan_dirs`), and, with the argument
//! `plugbay_host::RUNNER_ARG`, to run an isolated plugin (see
//! `plugbay_host::run_isolated_child`); it is not meant to be run by hand.

fn main() -> std::process::ExitCode {
    if std::env::args_os().nth(1).as_deref() == Some(plugbay_host::RUNNER_ARG.as_ref()) {
        return plugbay_host::run_isolated_child();
    }
    plugbay_host::run_probe_child()
}
