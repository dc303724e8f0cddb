//! Entry points for the fuzz targets in `fuzz/`: the relay protocol's wire decoding exactly as the
//! swarm's request-response behaviour runs it. Not part of the supported API.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use futures_util::io::Cursor;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec as _;
use libp2p::request_response::cbor::codec::Codec;

use crate::relay_protocol::{RELAY_PROTOCOL, RelayRequest, RelayResult};

/// Decodes `bytes` as one relay request with the codec of `/relaycast/relay/1`.
pub fn decode_relay_request(bytes: &[u8]) -> std::io::Result<RelayRequest> {
    let mut codec = Codec::<RelayRequest, RelayResult>::default();
    let mut io = Cursor::new(bytes);
    let proto = StreamProtocol::new(RELAY_PROTOCOL);
    ready(codec.read_request(&proto, &mut io))
}

/// Decodes `bytes` as one relay response with the codec of `/relaycast/relay/1`.
pub fn decode_relay_response(bytes: &[u8]) -> std::io::Result<RelayResult> {
    let mut codec = Codec::<RelayRequest, RelayResult>::default();
    let mut io = Cursor::new(bytes);
    let proto = StreamProtocol::new(RELAY_PROTOCOL);
    ready(codec.read_response(&proto, &mut io))
}

/// Runs a future over an in-memory reader, which never waits, to completion.
pub(crate) fn ready<T>(fut: impl Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(std::io::Error::other("decoder waited on an in-memory reader")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay_protocol::RelayResponse;

    fn encode(r: RelayResult) -> Vec<u8> {
        let mut codec = Codec::<RelayRequest, RelayResult>::default();
        let mut io = Cursor::new(Vec::new());
        let proto = StreamProtocol::new(RELAY_PROTOCOL);
        ready(codec.write_response(&proto, &mut io, r)).expect("encode");
        io.into_inner()
    }

    #[test]
    fn answers_with_and_without_an_ancestor_path_decode() {
        let path = vec![libp2p::PeerId::random(), libp2p::PeerId::random()];
        let with = Ok(RelayResponse { answer_sdp: "v=0".into(), depth: 1, path });
        assert_eq!(decode_relay_response(&encode(with.clone())).expect("decodes"), with);
        // Without a path the encoding is the one of nodes that predate the field.
        let old = Ok(RelayResponse { answer_sdp: "v=0".into(), depth: 0, path: vec![] });
        let bytes = encode(old.clone());
        assert!(!bytes.windows(4).any(|w| w == b"path"), "no path field on the wire");
        assert_eq!(decode_relay_response(&bytes).expect("decodes"), old);
        // A truncated answer is an error, not a panic.
        let full = encode(Ok(RelayResponse { answer_sdp: "v=0".into(), depth: 1, path: vec![libp2p::PeerId::random()] }));
        for cut in 0..full.len() {
            let _ = decode_relay_response(&full[..cut]);
        }
    }
}
