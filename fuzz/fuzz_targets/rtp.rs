//! Fuzz target `rtp`: see [`relaycast_fuzz::archive::rtp`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::archive::rtp(data));
