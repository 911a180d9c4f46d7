//! Integration tests against real built libraries: one binary, a module per concern.

mod cli;
mod crash;
mod loading;
mod safety;
mod safety_cache;
mod safety_integrity;
mod safety_shadow;
mod safety_support;
mod state;
