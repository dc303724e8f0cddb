//! Fuzz target `bitswap`: see [`relaycast_fuzz::bitswap`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::bitswap(data));
