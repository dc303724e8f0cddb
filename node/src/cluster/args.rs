//! Mesh flags of the node.

use std::path::PathBuf;

use clap::Args;
use relaycast_mesh::{Multiaddr, PeerId};

/// Mesh settings: libp2p listen addresses, discovery, who may relay, and fan-out.
#[derive(Debug, Clone, Args)]
pub struct MeshArgs {
    /// libp2p listen address (repeatable), e.g. /ip4/0.0.0.0/tcp/7001 and /ip4/0.0.0.0/udp/7001/quic-v1.
    /// Default: TCP and QUIC on ephemeral ports, on loopback when --http is loopback.
    #[arg(long = "p2p", env = "RELAYCAST_P2P", value_delimiter = ',')]
    pub p2p: Vec<Multiaddr>,

    /// Peer to join the mesh through (repeatable); a multiaddr ending in /p2p/<peer id>.
    #[arg(long, env = "RELAYCAST_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<Multiaddr>,

    /// Turn off mDNS discovery of nodes on the local network.
    #[arg(long, env = "RELAYCAST_NO_MDNS")]
    pub no_mdns: bool,

    /// Nodes (the origin counted) that should hold every archived segment: when the relays that
    /// carry a stream hold fewer copies, nodes with room in their archive volunteer (1 = no
    /// volunteering).
    #[arg(long, env = "RELAYCAST_REPLICAS", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub replicas: u16,

    /// Copy every live stream of the mesh into this node's archive (within --archive-max-bytes),
    /// whether or not it relays it: a node that exists to keep recordings.
    #[arg(long, env = "RELAYCAST_ARCHIVE_NODE")]
    pub archive_node: bool,

    /// Also speak the public IPFS DHT protocol (/ipfs/kad/1.0.0) and put provider records for
    /// every archived segment, init segment and VOD root on it (as on the mesh's own DHT), so
    /// that any IPFS node (Helia, kubo) that knows only a CID finds this node.
    #[arg(long, env = "RELAYCAST_IPFS_DHT")]
    pub ipfs_dht: bool,

    /// A public IPFS DHT peer to join that DHT through (MULTIADDR ending in /p2p/PEER_ID, e.g.
    /// an IPFS bootstrap node); repeatable; needs --ipfs-dht.
    #[arg(long = "ipfs-bootstrap", value_name = "MULTIADDR", env = "RELAYCAST_IPFS_BOOTSTRAP", value_delimiter = ',', requires = "ipfs_dht")]
    pub ipfs_bootstrap: Vec<Multiaddr>,

    /// Most mesh connections: the node dials peers it hears of (and bootstrap and lost peers)
    /// only under half of it, and closes the excess over it, keeping its relay tree neighbours
    /// and a random sample; relay request targets are always dialled (0 = no limit).
    #[arg(long, env = "RELAYCAST_MAX_PEERS", default_value_t = relaycast_mesh::peers::DEFAULT_MAX_PEERS)]
    pub max_peers: usize,
    /// Most downstream nodes this node relays streams to (its fan-out in the relay tree); as many
    /// paused standby edges may be kept beside them.
    #[arg(long, env = "RELAYCAST_MAX_RELAY_CHILDREN", default_value_t = 8)]
    pub max_relay_children: u32,

    /// Most hops from a stream's origin in its relay tree: a node never sits deeper, and refuses
    /// relay requests that would put the requester deeper.
    #[arg(long, env = "RELAYCAST_MAX_DEPTH", default_value_t = relaycast_cluster::path::DEFAULT_MAX_DEPTH, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_depth: u32,

    /// Private mesh: a libp2p pre-shared key file (swarm.key format); nodes without it cannot connect.
    #[arg(long, env = "RELAYCAST_MESH_KEY")]
    pub mesh_key: Option<PathBuf>,

    /// Peer id this node trusts (repeatable): only these may pull relays from it, and it pulls
    /// from and redirects viewers to only these; default: any peer.
    #[arg(long = "trusted-peer", env = "RELAYCAST_TRUSTED_PEER", value_delimiter = ',')]
    pub trusted_peers: Vec<PeerId>,

    /// Host accepted in a peer's announced HTTP URL besides the addresses the peer's connections
    /// are seen at (repeatable), e.g. a DNS name in front of a node.
    #[arg(long = "trusted-url-host", env = "RELAYCAST_TRUSTED_URL_HOST", value_delimiter = ',')]
    pub trusted_url_hosts: Vec<String>,

    /// Region tag announced to the mesh; placement prefers nodes of the viewer's region.
    #[arg(long, env = "RELAYCAST_REGION")]
    pub region: Option<String>,
}
