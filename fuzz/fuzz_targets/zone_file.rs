//! Master-file text through the zone reader and checks; a zone that loads is queried.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbns_fuzz::zone_file(data));
