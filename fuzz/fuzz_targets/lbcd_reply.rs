//! Datagrams through the lbcd reply decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbns_fuzz::lbcd_reply(data));
