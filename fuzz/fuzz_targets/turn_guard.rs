//! Fuzz target `turn_guard`: see [`relaycast_fuzz::turn::turn_guard`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::turn::turn_guard(data));
