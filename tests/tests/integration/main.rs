//! Integration tests against real built libraries: one binary, a module per concern.

mod authoring;
mod cli;
mod cli_call;
mod crash;
mod dag_props;
mod dependencies;
mod embed;
mod errors;
mod failures;
mod loading;
mod manager_lifecycle;
mod manager_state;
mod reentrancy;
mod safety;
mod safety_cache;
mod safety_integrity;
mod safety_shadow;
mod safety_support;
mod state;
mod storm;
mod support;
mod watch;
