//! Fuzz target `car`: see [`relaycast_fuzz::car`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::car(data));
