//! Fuzz target `car`: see [`relaycast_fuzz::ipfs::car`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::ipfs::car(data));
