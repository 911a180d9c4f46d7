//! Integration tests against real built libraries: one binary, a module per concern.

mod cli;
mod crash;
mod loading;
mod state;
