//! Fuzz target `varint`: see [`relaycast_fuzz::ipfs::varint`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::ipfs::varint(data));
