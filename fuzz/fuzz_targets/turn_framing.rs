//! Fuzz target `turn_framing`: see [`relaycast_fuzz::turn::turn_framing`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::turn::turn_framing(data));
