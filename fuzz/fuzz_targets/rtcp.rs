//! Fuzz target `rtcp`: see [`relaycast_fuzz::sfu::rtcp`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::sfu::rtcp(data));
