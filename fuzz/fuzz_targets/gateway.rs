//! Fuzz target `gateway`: see [`relaycast_fuzz::gateway`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::gateway(data));
