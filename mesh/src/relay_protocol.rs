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
