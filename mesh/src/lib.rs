//! Relaycast mesh: libp2p discovery, signed gossip and relay SDP exchange.
//!
//! [`Mesh::start`] runs a libp2p swarm on a tokio task (TCP + QUIC, or TCP only inside a
//! pre-shared-key private network) composing identify, Kademlia, mDNS, ping, gossipsub,
//! request-response, autonat, circuit relay and DCUtR. Nodes announce the streams they
//! originate and their load on gossipsub; receivers validate every message (a stream
//! announcement must be signed by its origin) before it enters their [`Directory`].
//! Relay SDP offers travel over `/relaycast/relay/1` and reach the node as [`MeshEvent`]s.
//! With [`MeshConfig::blocks`] set, a [`bitswap`] server lets IPFS peers fetch blocks by CID.

pub mod behaviour;
pub mod bitswap;
pub mod config;
pub mod directory;
#[doc(hidden)]
pub mod fuzzing;
pub mod gossip;
pub mod identity;
pub mod liveness;
pub mod node;
pub mod peers;
pub mod pnet;
pub mod relay_protocol;
mod path_push;
pub mod presence_rate;
mod provided;
mod swarm_task;
pub mod traffic;
pub mod trust;

pub use bitswap::BlockProvider;
pub use cid::Cid;
pub use config::MeshConfig;
pub use directory::{ClaimVerdict, Directory, NodeEntry, StreamEntry};
pub use gossip::{CarrierSummary, NodeLoad, SegmentAnnouncement, SegmentHeld, StreamAnnouncement, StreamPresence};
pub use libp2p::{Multiaddr, PeerId};
/// Parts of a multiaddr (to find the `/p2p/<peer id>` of an address).
pub use libp2p::multiaddr::Protocol as multiaddr_protocol;
pub use node::{KnownPeer, Mesh, MeshEvent, NodeInfo};
pub use relay_protocol::{RelayError, RelayRequest, RelayResponse};

/// Errors of the mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// File or socket I/O failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The identity file could not be read or written.
    #[error("identity: {0}")]
    Identity(String),
    /// The mesh key file is unreadable or malformed.
    #[error("mesh key: {0}")]
    MeshKey(String),
    /// A configuration value is invalid.
    #[error("config: {0}")]
    Config(String),
    /// Building the transport or listening failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The remote node refused the relay request.
    #[error("relay refused: {0}")]
    Relay(RelayError),
    /// The request could not be delivered or answered.
    #[error("request failed: {0}")]
    Request(String),
    /// No answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The mesh task has stopped.
    #[error("mesh stopped")]
    Stopped,
}
