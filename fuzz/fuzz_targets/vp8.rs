//! Fuzz target `vp8`: see [`relaycast_fuzz::sfu::vp8`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::sfu::vp8(data));
