//! Fuzz target `h264`: see [`relaycast_fuzz::codec::h264`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::codec::h264(data));
