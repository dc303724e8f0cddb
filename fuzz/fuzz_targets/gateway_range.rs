//! Fuzz target `gateway_range`: see [`relaycast_fuzz::gateway_range`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::gateway_range(data));
