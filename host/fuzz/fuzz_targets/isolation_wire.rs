//! Fuzz target: an isolated plugin's channel, read by the host or the runner
//! (`plugbay_host::fuzzing::isolation_wire`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugbay_host::fuzzing::isolation_wire(data));
