//! Fuzz target: a state file's bytes, decoded and stored again
//! (`plugbay_host::fuzzing::state_envelope`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugbay_host::fuzzing::state_envelope(data));
