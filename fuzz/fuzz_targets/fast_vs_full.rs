//! The fast path against the full handler: the same answer, or the fast path declines.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbns_fuzz::fast_vs_full(data));
