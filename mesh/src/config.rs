//! Configuration of a mesh node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::bitswap::BlockProvider;

/// Everything a mesh node needs to start.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Directory holding `p2p-identity.key` (created on first start).
    pub data_dir: PathBuf,
    /// Addresses to listen on (TCP and QUIC; QUIC is dropped when a mesh key is set).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start; each address must end in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Whether mDNS discovery on the local network is enabled.
    pub mdns: bool,
    /// Pre-shared key file (go-ipfs `swarm.key` format) making this a private network.
    pub mesh_key: Option<PathBuf>,
    /// When non-empty, only these peers may pull relays from this node, and this node pulls
    /// from and redirects viewers to only these peers.
    pub trusted_peers: Vec<PeerId>,
    /// Host names (or addresses) accepted in peers' announced `http_url` besides the addresses
    /// their connections are seen at.
    pub trusted_url_hosts: Vec<String>,
    /// Region tag carried in load announcements.
    pub region: Option<String>,
    /// This node's public HTTP base URL, carried in announcements.
    pub http_url: String,
    /// How often streams and load are re-announced.
    pub announce_interval: Duration,
    /// Blocks served to IPFS peers over Bitswap; `None` turns the Bitswap server off.
    pub blocks: Option<Arc<dyn BlockProvider>>,
    /// Serve Bitswap only to mesh nodes: peers with a current signed load report in the
    /// directory (and listed in `trusted_peers` when that is set), not to any IPFS peer.
    pub bitswap_mesh_only: bool,
    /// Also run the public IPFS DHT protocol (`/ipfs/kad/1.0.0`, server mode) and put provider
    /// records for archived CIDs on it, so that ordinary IPFS nodes find this node by CID.
    pub ipfs_dht: bool,
    /// Peers of the public IPFS DHT to join it through (with `ipfs_dht`; e.g. the IPFS bootstrap
    /// nodes). Each address must end in `/p2p/<peer id>`; they are not mesh peers.
    pub ipfs_bootstrap: Vec<Multiaddr>,
    /// Most connections ([`crate::peers`]): the node dials peers it hears of (and bootstrap and
    /// lost peers) only under half of it, and closes the excess over it (keeping relay tree
    /// neighbours and a random sample); 0 = no limit.
    pub max_peers: usize,
}

impl MeshConfig {
    /// A configuration with node defaults for the given data directory and HTTP URL.
    pub fn new(data_dir: impl Into<PathBuf>, http_url: impl Into<String>) -> Self {
        MeshConfig {
            data_dir: data_dir.into(),
            listen: default_listen(),
            bootstrap: Vec::new(),
            mdns: true,
            mesh_key: None,
            trusted_peers: Vec::new(),
            trusted_url_hosts: Vec::new(),
            region: None,
            http_url: http_url.into(),
            announce_interval: Duration::from_secs(1),
            blocks: None,
            bitswap_mesh_only: false,
            ipfs_dht: false,
            ipfs_bootstrap: Vec::new(),
            max_peers: crate::peers::DEFAULT_MAX_PEERS,
        }
    }
}

/// The node's default listen addresses: TCP and QUIC on all IPv4 interfaces, ephemeral ports.
pub fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}
