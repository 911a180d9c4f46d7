//! `plugin-probe`: the dedicated preflight probe binary shipped with the host.
//!
//! The host starts it to open libraries it has not seen before in a separate
//! process (see `plugbay_host::safety`); it is not meant to be run by hand.

fn main() -> std::process::ExitCode {
    plugbay_host::safety::probe_child::run_probe_child()
}
