//! TOML text through the config reader and the model.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbns_fuzz::config(data));
