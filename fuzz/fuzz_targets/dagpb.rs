//! Fuzz target `dagpb`: see [`relaycast_fuzz::dagpb`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::dagpb(data));
