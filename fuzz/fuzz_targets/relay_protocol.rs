//! Fuzz target `relay_protocol`: see [`relaycast_fuzz::mesh::relay_protocol`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::mesh::relay_protocol(data));
