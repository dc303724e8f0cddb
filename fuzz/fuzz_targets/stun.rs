//! Fuzz target `stun`: see [`relaycast_fuzz::turn::stun`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaycast_fuzz::turn::stun(data));
