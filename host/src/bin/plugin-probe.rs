//! `plugin-probe`: the dedicated preflight probe binary shipped with the host.
//!
//! The host starts it to open libraries it has not seen before in a separate
//! process (see `plugbay_host::scan_dirs`); it is not meant to be run by hand.

fn main() -> std::process::ExitCode {
    plugbay_host::run_probe_child()
}
