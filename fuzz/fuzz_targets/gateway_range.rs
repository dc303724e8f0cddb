//! Fuzz target `gateway_range`: see [`relaycast_fuzz::ipfs::gateway_range`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::ipfs::gateway_range(data));
