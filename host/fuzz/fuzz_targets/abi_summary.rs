//! Fuzz target: abi_stable's layout report, summarized
//! (`plugbay_host::fuzzing::abi_summary`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plugbay_host::fuzzing::abi_summary(data));
