//! Fuzz target `bitswap`: see [`relaycast_fuzz::mesh::bitswap`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::mesh::bitswap(data));
