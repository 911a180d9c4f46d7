//! Fuzz target: plugin metadata from the probe, the scan cache and the library itself
//! (`plugbay_host::fuzzing::metadata`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugbay_host::fuzzing::metadata(data));
