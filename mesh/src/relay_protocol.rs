//! Request-response messages for relay SDP exchange on `/relaycast/relay/1`.

use serde::{Deserialize, Serialize};

/// Protocol name of the relay request-response exchange.
pub const RELAY_PROTOCOL: &str = "/relaycast/relay/1";

/// A downstream node asks an upstream node to relay a stream to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRequest {
    /// Name of the stream.
    pub stream: String,
    /// SDP offer of the downstream node's WebRTC relay subscriber.
    pub offer_sdp: String,
    /// The downstream node asks for a standby upstream: the upstream serves the edge paused (no
    /// media) until the downstream node switches to it and asks for a keyframe. Absent (false)
    /// from nodes that predate the field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
}

/// The upstream node's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayResponse {
    /// SDP answer.
    pub answer_sdp: String,
    /// The answering node's depth for the stream (0 = origin).
    pub depth: u32,
    /// The answering node's ancestor path for the stream: the origin first, the answering node
    /// last (its depth + 1 entries). The requester refuses an upstream whose path holds itself
    /// (a cycle) and keeps the path to announce it. Empty from nodes that predate the field;
    /// at most [`MAX_PATH`] entries are accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<libp2p::PeerId>,
}

/// Most entries accepted in an ancestor path (a relay answer's or a load report's); longer ones
/// are refused as malformed. Far above any depth cap a node may set.
pub const MAX_PATH: usize = 64;

/// Why a relay request was refused; sent back over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RelayError {
    /// The node does not carry the stream.
    #[error("stream not found")]
    NotFound,
    /// The node has no spare relay fan-out.
    #[error("no spare relay capacity")]
    Full,
    /// The requesting peer is not in the trusted set.
    #[error("peer not trusted")]
    NotTrusted,
    /// The requesting peer is over its rate of relay requests.
    #[error("too many relay requests")]
    RateLimited,
    /// The request was malformed.
    #[error("bad request: {0}")]
    Bad(String),
    /// The node failed while handling the request.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What goes back over the wire for a relay request.
pub type RelayResult = Result<RelayResponse, RelayError>;

/// Protocol name of the paths pushed down relay edges (one-way; answered with [`PathAck`]).
pub const PATH_PROTOCOL: &str = "/relaycast/path/1";

/// Largest encoded [`PushedPath`] read off the wire: a stream name and [`MAX_PATH`] peer ids fit
/// in well under it.
pub const MAX_PATH_PUSH_BYTES: u64 = 8 * 1024;

/// Largest encoded [`PathAck`] read off the wire.
pub const MAX_PATH_ACK_BYTES: u64 = 64;

/// An upstream node's path for a stream, pushed to a relay child whenever it changes and
/// re-sent every second. The receiver takes the sender from the connection, never the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedPath {
    /// Name of the stream.
    pub stream: String,
    /// The sender's depth for the stream (0 = origin; 0 when `frozen`).
    pub depth: u32,
    /// The sender's ancestor path with the sender last (empty when `frozen`); at most
    /// [`MAX_PATH`] entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<libp2p::PeerId>,
    /// The sender lost its upstream and is re-attaching: it has no path for now.
    #[serde(default)]
    pub frozen: bool,
    /// The sender relays to more nodes than its cap (a standby edge took over): the receiver
    /// should move to its standby upstream, make-before-break. Absent (false) from nodes that
    /// predate the field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shed: bool,
    /// Sent by a relay child to its upstream (the other way): the child closed its relay edge
    /// from the receiver, which closes its side at once instead of at its silence timeout
    /// (`depth` 0, `path` empty). Absent (false) from nodes that predate the field; a node that
    /// predates it ignores such a push (it comes from a node that is not its upstream).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left: bool,
    /// Sent on a standby edge: the sender keeps one of its spare fed slots for the receiver,
    /// which may move onto it (each spare slot is offered to one standby child at a time).
    /// Absent (false) from nodes that predate the field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room: bool,
    /// With `shed`: another relay child of the sender, with room, below which the receiver may
    /// move when its standby has no slot for it. Absent from nodes that predate the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_to: Option<libp2p::PeerId>,
}

/// The empty answer to a [`PushedPath`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathAck {}

/// Why a pushed path is not sent or not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathPushError {
    /// The stream name is empty, too long or has characters outside the allowed set.
    #[error("invalid stream name")]
    StreamName,
    /// The path has more than [`MAX_PATH`] entries.
    #[error("path of {0} entries (at most {MAX_PATH})")]
    TooLong(usize),
}

impl PushedPath {
    /// Checks the bounds a receiver enforces: a valid stream name and at most [`MAX_PATH`]
    /// path entries (peer ids were parsed when the message was decoded).
    pub fn validate(&self) -> Result<(), PathPushError> {
        if !crate::trust::valid_stream_name(&self.stream) {
            return Err(PathPushError::StreamName);
        }
        if self.path.len() > MAX_PATH {
            return Err(PathPushError::TooLong(self.path.len()));
        }
        Ok(())
    }
}

/// The codec of [`PATH_PROTOCOL`]: CBOR, bounded to [`MAX_PATH_PUSH_BYTES`] and
/// [`MAX_PATH_ACK_BYTES`].
pub fn path_codec() -> libp2p::request_response::cbor::codec::Codec<PushedPath, PathAck> {
    libp2p::request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_PATH_PUSH_BYTES)
        .set_response_size_maximum(MAX_PATH_ACK_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::io::Cursor;
    use libp2p::StreamProtocol;
    use libp2p::request_response::Codec as _;

    fn encode(msg: &PushedPath) -> Vec<u8> {
        let mut codec = path_codec();
        let mut out = Cursor::new(Vec::new());
        let proto = StreamProtocol::new(PATH_PROTOCOL);
        crate::fuzzing::ready(codec.write_request(&proto, &mut out, msg.clone())).expect("encode");
        out.into_inner()
    }

    fn decode(bytes: &[u8]) -> std::io::Result<PushedPath> {
        let mut codec = path_codec();
        let proto = StreamProtocol::new(PATH_PROTOCOL);
        crate::fuzzing::ready(codec.read_request(&proto, &mut Cursor::new(bytes)))
    }

    fn path(n: usize) -> Vec<libp2p::PeerId> {
        (0..n).map(|_| libp2p::PeerId::random()).collect()
    }

    #[test]
    fn pushed_paths_round_trip() {
        let full = PushedPath { stream: "cam-1".into(), depth: 2, path: path(3), frozen: false, shed: false, left: false, room: false, move_to: None };
        assert_eq!(decode(&encode(&full)).unwrap(), full);
        let frozen = PushedPath { stream: "cam-1".into(), depth: 0, path: vec![], frozen: true, shed: false, left: false, room: false, move_to: None };
        assert_eq!(decode(&encode(&frozen)).unwrap(), frozen);
        assert_eq!(full.validate(), Ok(()));
        assert_eq!(frozen.validate(), Ok(()));
        let shed = PushedPath { shed: true, move_to: Some(libp2p::PeerId::random()), ..full.clone() };
        assert_eq!(decode(&encode(&shed)).unwrap(), shed);
        // A push from a node that predates `shed` (the field absent) asks nothing of the child.
        assert!(encode(&full).len() < encode(&shed).len(), "shed: false is left out on the wire");
        assert!(!decode(&encode(&full)).unwrap().shed);
    }

    #[test]
    fn the_longest_path_fits_the_wire_bound() {
        let msg = PushedPath { stream: "s".repeat(crate::trust::MAX_STREAM_NAME), depth: 63, path: path(MAX_PATH), frozen: false, shed: false, left: false, room: false, move_to: None };
        let bytes = encode(&msg);
        assert!((bytes.len() as u64) < MAX_PATH_PUSH_BYTES, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes).unwrap(), msg);
        assert_eq!(msg.validate(), Ok(()));
    }

    #[test]
    fn out_of_bounds_pushes_are_refused() {
        let long = PushedPath { stream: "s".into(), depth: 64, path: path(MAX_PATH + 1), frozen: false, shed: false, left: false, room: false, move_to: None };
        assert_eq!(long.validate(), Err(PathPushError::TooLong(MAX_PATH + 1)));
        for bad in ["", ".x", "a/b", &"x".repeat(crate::trust::MAX_STREAM_NAME + 1)] {
            let msg = PushedPath { stream: bad.into(), depth: 0, path: vec![], frozen: true, shed: false, left: false, room: false, move_to: None };
            assert_eq!(msg.validate(), Err(PathPushError::StreamName), "{bad:?}");
        }
        // Over the size bound: the decoder refuses it.
        let huge = PushedPath { stream: "s".into(), depth: 1, path: path(400), frozen: false, shed: false, left: false, room: false, move_to: None };
        assert!(decode(&encode(&huge)).is_err());
    }

    #[test]
    fn malformed_peer_ids_and_garbage_do_not_decode() {
        let pid = libp2p::PeerId::random();
        let good = encode(&PushedPath { stream: "s".into(), depth: 0, path: vec![pid], frozen: false, shed: false, left: false, room: false, move_to: None });
        let id = pid.to_bytes();
        let at = good.windows(id.len()).position(|w| w == id.as_slice()).expect("the peer id's bytes are in the message");
        let mut bad = good.clone();
        // A multihash code that is neither identity nor SHA-256: not a peer id.
        bad[at] = 0x13;
        assert!(decode(&good).is_ok());
        assert!(decode(&bad).is_err(), "a malformed peer id decoded");
        assert!(decode(&[0xff, 0x00, 0x13]).is_err());
        assert!(decode(&[]).is_err());
    }
}
