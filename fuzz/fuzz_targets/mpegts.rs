//! Fuzz target `mpegts`: see [`relaycast_fuzz::ingest::mpegts`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::ingest::mpegts(data));
