//! Fuzz target `vp8`: see [`relaycast_fuzz::codec::vp8`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::codec::vp8(data));
