//! The composed libp2p network behaviour.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::memory_connection_limits;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, autonat, dcutr, gossipsub, identify, kad, mdns, ping, relay};

use crate::MeshError;
use crate::relay_protocol::{PATH_PROTOCOL, PathAck, PushedPath, RELAY_PROTOCOL, RelayRequest, RelayResult};

/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/relaycast/id/1.0.0";
/// Kademlia protocol name.
pub const KAD_PROTOCOL: &str = "/relaycast/kad/1.0.0";
/// The public IPFS DHT's Kademlia protocol name (`--ipfs-dht`).
pub const IPFS_KAD_PROTOCOL: &str = "/ipfs/kad/1.0.0";
/// Archived CIDs this node keeps provider records for on each DHT; past it the oldest is
/// dropped (stop providing) for each new one.
pub const MAX_PROVIDED_CIDS: usize = 16_384;
/// Ping interval.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Ping timeout; a ping failing means the peer is lost.
pub const PING_TIMEOUT: Duration = Duration::from_millis(1500);
/// Relay request timeout.
pub const RELAY_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pushed path may wait for its acknowledgement (a lost one is re-sent in a second).
pub const PATH_PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Most established connections in total.
pub const MAX_CONNECTIONS: u32 = 512;
/// Most established connections per peer.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Most incoming connections still handshaking.
pub const MAX_PENDING_INCOMING: u32 = 64;
/// Most outgoing connections still being dialled.
pub const MAX_PENDING_OUTGOING: u32 = 128;
/// New connections are denied while the process uses more than this share of system memory.
pub const MAX_MEMORY_SHARE: f64 = 0.9;
/// Largest gossip message.
pub const MAX_GOSSIP_MESSAGE: usize = 256 * 1024;
/// Kademlia records and provider keys held (each bounded; the store refuses more).
pub const KAD_MAX_RECORDS: usize = 4096;
/// Score weight of one invalid message on a topic (squared per count; the default graylist
/// threshold, -80, is reached after two rejected messages within the decay period).
pub const INVALID_MESSAGE_WEIGHT: f64 = -20.0;

/// All behaviours of a mesh node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection count limits (denies connections over them).
    pub limits: connection_limits::Behaviour,
    /// Denies new connections while memory use is high.
    pub memory: memory_connection_limits::Behaviour,
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
    /// Peer routing, stream providers and archived CIDs' providers.
    pub kad: kad::Behaviour<MemoryStore>,
    /// The public IPFS DHT (`/ipfs/kad/1.0.0`) with `--ipfs-dht`: provider records for archived
    /// CIDs, findable by any IPFS node.
    pub ipfs_kad: Toggle<kad::Behaviour<MemoryStore>>,
    /// LAN discovery (disabled with `--no-mdns`).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Signed, validated announcements.
    pub gossipsub: gossipsub::Behaviour,
    /// Relay SDP exchange.
    pub relay_rr: request_response::cbor::Behaviour<RelayRequest, RelayResult>,
    /// Paths pushed down relay edges (one-way, acknowledged empty).
    pub path_rr: request_response::cbor::Behaviour<PushedPath, PathAck>,
    /// Raw streams for the Bitswap server (enabled when the node serves blocks).
    pub bitswap: Toggle<crate::bitswap::streams::Behaviour>,
}

/// Builds the behaviour for `key`.
pub fn build(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    mdns_on: bool,
    bitswap: Option<crate::bitswap::streams::Behaviour>,
    ipfs_dht: bool,
    metrics: &mut prometheus_client::registry::Registry,
) -> Result<Behaviour, MeshError> {
    let peer_id = key.public().to_peer_id();

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
            .with_agent_version(format!("relaycast/{}", env!("CARGO_PKG_VERSION"))),
    );
    let ping = ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL).with_timeout(PING_TIMEOUT));

    let kad = dht(peer_id, KAD_PROTOCOL);
    let ipfs_kad = ipfs_dht.then(|| dht(peer_id, IPFS_KAD_PROTOCOL));

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
        .max_transmit_size(MAX_GOSSIP_MESSAGE)
        .build()
        .map_err(|e| MeshError::Config(format!("gossipsub: {e}")))?;
    let metrics_config = libp2p_gossipsub::MetricsConfig {
        max_topics: crate::traffic::MAX_TOPICS_COUNTED,
        max_never_subscribed_topics: crate::traffic::MAX_TOPICS_COUNTED,
        ..Default::default()
    };
    let mut gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gs_config)
        .map_err(|e| MeshError::Config(format!("gossipsub: {e}")))?
        .with_metrics(metrics, metrics_config);
    let (params, thresholds) = score_params();
    gossipsub.with_peer_score(params, thresholds).map_err(|e| MeshError::Config(format!("gossipsub score: {e}")))?;

    let limits = connection_limits::Behaviour::new(
        ConnectionLimits::default()
            .with_max_established(Some(MAX_CONNECTIONS))
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_pending_outgoing(Some(MAX_PENDING_OUTGOING)),
    );
    let memory = memory_connection_limits::Behaviour::with_max_percentage(MAX_MEMORY_SHARE);

    let relay_rr = request_response::cbor::Behaviour::new(
        [(StreamProtocol::new(RELAY_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(RELAY_REQUEST_TIMEOUT),
    );

    let path_rr = request_response::Behaviour::with_codec(
        crate::relay_protocol::path_codec(),
        [(StreamProtocol::new(PATH_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(PATH_PUSH_TIMEOUT),
    );

    Ok(Behaviour {
        limits,
        memory,
        relay_client,
        relay_server: relay::Behaviour::new(peer_id, relay::Config::default()),
        dcutr: dcutr::Behaviour::new(peer_id),
        autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
        identify,
        ping,
        kad,
        ipfs_kad: Toggle::from(ipfs_kad),
        mdns: Toggle::from(mdns),
        gossipsub,
        relay_rr,
        path_rr,
        bitswap: Toggle::from(bitswap),
    })
}

/// A Kademlia behaviour in server mode speaking `protocol`, with a bounded store.
fn dht(peer_id: libp2p::PeerId, protocol: &'static str) -> kad::Behaviour<MemoryStore> {
    let mut kad_config = kad::Config::new(StreamProtocol::new(protocol));
    kad_config.set_query_timeout(Duration::from_secs(10));
    kad_config.set_max_packet_size(64 * 1024);
    let store_config = MemoryStoreConfig {
        max_records: KAD_MAX_RECORDS,
        max_provided_keys: KAD_MAX_RECORDS + MAX_PROVIDED_CIDS,
        ..Default::default()
    };
    let store = MemoryStore::with_config(peer_id, store_config);
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

/// Gossipsub peer scoring: peers whose messages fail validation on the streams, load or
/// withdrawals topic, or on a followed presence topic (forged origins, competing claims after the
/// settle window, malformed payloads) lose score and are graylisted; delivery counts are not scored (announcements are sparse by design).
pub fn score_params() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let mut params = gossipsub::PeerScoreParams::default();
    for topic in [crate::gossip::STREAMS_TOPIC, crate::gossip::LOAD_TOPIC, crate::gossip::WITHDRAWALS_TOPIC] {
        params.topics.insert(gossipsub::IdentTopic::new(topic).hash(), topic_score_params());
    }
    (params, gossipsub::PeerScoreThresholds::default())
}

/// The score parameters of one topic: invalid messages count against their sender (also set on
/// each per-stream presence topic when the node follows it).
pub fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 10.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    }
}
