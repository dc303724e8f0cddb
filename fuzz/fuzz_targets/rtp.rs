//! Fuzz target `rtp`: see [`relaycast_fuzz::rtp`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::rtp(data));
