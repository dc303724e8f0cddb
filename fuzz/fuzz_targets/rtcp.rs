//! Fuzz target `rtcp`: see [`relaycast_fuzz::rtcp`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::rtcp(data));
