//! Fuzz target `opus`: see [`relaycast_fuzz::opus`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::opus(data));
