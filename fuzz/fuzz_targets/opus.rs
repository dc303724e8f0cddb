//! Fuzz target `opus`: see [`relaycast_fuzz::archive::opus`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::archive::opus(data));
