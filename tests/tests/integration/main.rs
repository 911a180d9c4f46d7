//! Integration tests against real built libraries: one binary, a module per concern.

mod failures;
mod loading;
mod manager_lifecycle;
mod reentrancy;
mod storm;
mod support;
mod watch;
