//! The TURN server: stream framing, the guard in front of the `turn` crate, and STUN decoding.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use crate::input::Input;

/// The targets of this module by name.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("turn_framing", turn_framing),
    ("turn_guard", turn_guard),
    ("stun", stun),
];

/// TURN over TCP/TLS: the stream decoder fed the input in reads whose sizes the input picks.
pub fn turn_framing(data: &[u8]) {
    let mut input = Input(data);
    let max = 1 + usize::from(input.u16());
    let mut d = relaycast_turn::framing::StreamDecoder::new(max);
    'stream: while !input.is_empty() {
        let n = 1 + usize::from(input.byte());
        d.push(input.take(n));
        loop {
            match d.next_frame() {
                Ok(Some(frame)) => assert!(frame.len() <= max, "frame over the limit"),
                Ok(None) => break,
                Err(_) => break 'stream,
            }
        }
    }
    assert!(d.buffered() <= data.len());
}

/// The TURN guard's inspection of one datagram (ChannelData, STUN requests, signed requests,
/// XOR-PEER-ADDRESS policy checks, quotas), from an IPv4 or IPv6 source.
pub fn turn_guard(data: &[u8]) {
    static GUARD: OnceLock<relaycast_turn::fuzzing::Guard> = OnceLock::new();
    let guard = GUARD.get_or_init(Default::default);
    let v4 = SocketAddr::from(([203, 0, 113, 7], 40000));
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)), 40000);
    let src = if data.len() % 2 == 0 { v4 } else { v6 };
    if let Some(reply) = guard.inspect(data, src) {
        assert!(reply.len() >= 20, "the guard replies with a STUN message");
    }
}

/// STUN messages through the `stun` crate's decoder and every attribute getter the guard and
/// the `turn` server use, plus the `turn` crate's ChannelData decoder.
pub fn stun(data: &[u8]) {
    relaycast_turn::fuzzing::stun_decode(data);
    relaycast_turn::fuzzing::channel_data_decode(data);
}
