//! HTTP responses through the HTTP probe.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbns_fuzz::http_probe(data));
