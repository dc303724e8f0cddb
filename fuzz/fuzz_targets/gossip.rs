//! Fuzz target `gossip`: see [`relaycast_fuzz::mesh::gossip`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::mesh::gossip(data));
