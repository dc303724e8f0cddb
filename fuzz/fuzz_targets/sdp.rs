//! Fuzz target `sdp`: see [`relaycast_fuzz::sfu::sdp`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::sfu::sdp(data));
