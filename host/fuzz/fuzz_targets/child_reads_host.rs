//! Fuzz target: the probe child reading the host's channel (its whole session loop)
//! (`plugbay_host::fuzzing::child_reads_host`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugbay_host::fuzzing::child_reads_host(data));
