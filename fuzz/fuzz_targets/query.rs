//! Query bytes through the full handler over UDP (with cookies), TCP and truncated UDP.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbns_fuzz::query(data));
