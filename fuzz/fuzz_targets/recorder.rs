//! Fuzz target `recorder`: see [`relaycast_fuzz::archive::recorder`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::archive::recorder(data));
