//! Fuzz target `h264`: see [`relaycast_fuzz::sfu::h264`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::sfu::h264(data));
