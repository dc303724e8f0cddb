//! Fuzz target `gateway`: see [`relaycast_fuzz::ipfs::gateway`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::ipfs::gateway(data));
