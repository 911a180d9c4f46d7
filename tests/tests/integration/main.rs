//! Integration tests against real built libraries: one binary, a module per concern.

mod authoring;
mod calls;
mod cli;
mod cli_call;
mod compat;
mod crash;
mod dag_props;
mod dependencies;
mod embed;
mod errors;
mod events;
mod failures;
mod loading;
mod manager_lifecycle;
mod manager_state;
mod reentrancy;
mod safety;
mod safety_cache;
mod safety_integrity;
mod safety_shadow;
mod state;
mod storm;

// The shared helpers live in the `integration_tests` library (tests/src/).
#[cfg(unix)]
use integration_tests::safety_support;
use integration_tests::{support, watch};
