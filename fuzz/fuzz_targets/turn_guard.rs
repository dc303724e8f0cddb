//! Fuzz target `turn_guard`: see [`relaycast_fuzz::turn_guard`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::turn_guard(data));
