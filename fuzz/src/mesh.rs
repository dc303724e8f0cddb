//! The libp2p mesh: Bitswap messages, gossip payloads and the relay protocol.

use std::sync::OnceLock;

use crate::input::Input;

/// The targets of this module by name.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("bitswap", bitswap),
    ("gossip", gossip),
    ("relay_protocol", relay_protocol),
];

/// Bitswap: the frame splitter (with the 4 MiB limit), the message decoder and the server's
/// plan of lookups for every protocol version.
pub fn bitswap(data: &[u8]) {
    use relaycast_mesh::bitswap::{ledger, message};
    let _ = message::read_varint(data);
    let mut rest = data;
    while let Ok(Some((body, used))) = message::split_frame(rest, message::MAX_MESSAGE) {
        assert!(used > 0 && used <= rest.len());
        if let Ok(m) = message::Message::decode(body) {
            for v in [ledger::Version::V100, ledger::Version::V110, ledger::Version::V120] {
                let plan = ledger::plan(&m, v);
                assert!(plan.wants.len() <= ledger::MAX_ENTRIES_PER_MESSAGE);
            }
        }
        rest = &rest[used..];
    }
    let _ = message::Message::decode(data);
}

/// Gossip payloads on every topic, validated against a signer (as gossipsub delivers them) and
/// without one.
pub fn gossip(data: &[u8]) {
    use relaycast_mesh::gossip;
    static PEER: OnceLock<relaycast_mesh::PeerId> = OnceLock::new();
    let peer = *PEER.get_or_init(relaycast_mesh::PeerId::random);
    let mut input = Input(data);
    let which = input.byte();
    let payload = input.0;
    let topic = match which % 4 {
        0 => gossip::STREAMS_TOPIC.to_string(),
        1 => gossip::LOAD_TOPIC.to_string(),
        2 => gossip::segments_topic("room"),
        _ => String::from_utf8_lossy(payload.get(..8).unwrap_or_default()).into_owned(),
    };
    let _ = gossip::validate(&topic, payload, Some(peer));
    let _ = gossip::validate(&topic, payload, None);
}

/// The relay protocol's CBOR request and response decoding on `/relaycast/relay/1`.
pub fn relay_protocol(data: &[u8]) {
    let _ = relaycast_mesh::fuzzing::decode_relay_request(data);
    let _ = relaycast_mesh::fuzzing::decode_relay_response(data);
}
