//! Fuzz target `dagpb`: see [`relaycast_fuzz::ipfs::dagpb`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::ipfs::dagpb(data));
