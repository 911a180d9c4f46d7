//! Fuzz target: the host reading a probe child's channel
//! (`plugbay_host::fuzzing::host_reads_child`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugbay_host::fuzzing::host_reads_child(data));
