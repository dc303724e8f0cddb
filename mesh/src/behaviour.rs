//! The composed libp2p network behaviour.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::store::MemoryStore;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, autonat, dcutr, gossipsub, identify, kad, mdns, ping, relay};

use crate::MeshError;
use crate::relay_protocol::{RELAY_PROTOCOL, RelayRequest, RelayResult};

/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/relaycast/id/1.0.0";
/// Kademlia protocol name.
pub const KAD_PROTOCOL: &str = "/relaycast/kad/1.0.0";
/// Ping interval.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Ping timeout; a ping failing means the peer is lost.
pub const PING_TIMEOUT: Duration = Duration::from_millis(1500);
/// Relay request timeout.
pub const RELAY_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// All behaviours of a mesh node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Relayed-connection transport side.
    pub relay_client: relay::client::Behaviour,
    /// Circuit relay server for peers behind NAT.
    pub relay_server: relay::Behaviour,
    /// Hole punching over relayed connections.
    pub dcutr: dcutr::Behaviour,
    /// Reachability probing.
    pub autonat: autonat::Behaviour,
    /// Address and protocol exchange.
    pub identify: identify::Behaviour,
    /// RTT and liveness.
    pub ping: ping::Behaviour,
    /// Peer routing and stream providers.
    pub kad: kad::Behaviour<MemoryStore>,
    /// LAN discovery (disabled with `--no-mdns`).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Signed, validated announcements.
    pub gossipsub: gossipsub::Behaviour,
    /// Relay SDP exchange.
    pub relay_rr: request_response::cbor::Behaviour<RelayRequest, RelayResult>,
    /// Raw streams for the Bitswap server (enabled when the node serves blocks).
    pub bitswap: Toggle<crate::bitswap::streams::Behaviour>,
}

/// Builds the behaviour for `key`.
pub fn build(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    mdns_on: bool,
    bitswap: Option<crate::bitswap::streams::Behaviour>,
) -> Result<Behaviour, MeshError> {
    let peer_id = key.public().to_peer_id();

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
            .with_agent_version(format!("relaycast/{}", env!("CARGO_PKG_VERSION"))),
    );
    let ping = ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL).with_timeout(PING_TIMEOUT));

    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(Duration::from_secs(10));
    let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(kad::Mode::Server));

    let mdns = if mdns_on {
        let cfg = mdns::Config { query_interval: Duration::from_secs(5), ..Default::default() };
        Some(mdns::tokio::Behaviour::new(cfg, peer_id)?)
    } else {
        None
    };

    let gs_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs(1))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .build()
        .map_err(|e| MeshError::Config(format!("gossipsub: {e}")))?;
    let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gs_config)
        .map_err(|e| MeshError::Config(format!("gossipsub: {e}")))?;

    let relay_rr = request_response::cbor::Behaviour::new(
        [(StreamProtocol::new(RELAY_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(RELAY_REQUEST_TIMEOUT),
    );

    Ok(Behaviour {
        relay_client,
        relay_server: relay::Behaviour::new(peer_id, relay::Config::default()),
        dcutr: dcutr::Behaviour::new(peer_id),
        autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
        identify,
        ping,
        kad,
        mdns: Toggle::from(mdns),
        gossipsub,
        relay_rr,
        bitswap: Toggle::from(bitswap),
    })
}
