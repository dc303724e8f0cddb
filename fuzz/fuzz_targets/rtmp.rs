//! Fuzz target `rtmp`: see [`relaycast_fuzz::ingest::rtmp`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::ingest::rtmp(data));
