//! Integration tests against real built libraries: one binary, a module per concern.
//! Modules that use Unix permissions, symlinks or signals run on Unix only.

#[cfg(unix)]
mod authoring;
mod calls;
#[cfg(unix)]
mod cli;
#[cfg(unix)]
mod cli_call;
#[cfg(unix)]
mod cli_explain;
#[cfg(unix)]
mod cli_inspect;
#[cfg(unix)]
mod cli_output;
#[cfg(unix)]
mod cli_run;
#[cfg(unix)]
mod cli_watch;
#[cfg(unix)]
mod compat;
#[cfg(unix)]
mod crash;
mod dag_props;
mod dependencies;
mod embed;
mod errors;
mod events;
mod failures;
#[cfg(unix)]
mod isolation;
mod loading;
mod manager_lifecycle;
mod manager_state;
mod reentrancy;
mod reload;
mod reload_rollback;
#[cfg(unix)]
mod safety;
#[cfg(unix)]
mod safety_cache;
#[cfg(unix)]
mod safety_integrity;
#[cfg(unix)]
mod safety_shadow;
#[cfg(unix)]
mod state;
mod storm;
mod supervision;

// The shared helpers live in the `integration_tests` library (tests/src/).
#[cfg(unix)]
use integration_tests::safety_support;
use integration_tests::{support, watch};
