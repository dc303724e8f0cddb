//! Fuzz target `stun`: see [`relaycast_fuzz::stun`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::stun(data));
