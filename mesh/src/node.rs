//! The [`Mesh`] handle: what the node asks of the swarm task ([`crate::swarm_task`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, gossipsub};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::bitswap::{Server, Stats as BitswapStats};
use crate::directory::Directory;
use crate::gossip::{LOAD_TOPIC, NodeLoad, STREAMS_TOPIC, StreamAnnouncement, WITHDRAWALS_TOPIC};
use crate::relay_protocol::{PushedPath, RelayError, RelayRequest, RelayResponse};
use crate::swarm_task::{Task, build_swarm};
use crate::{MeshConfig, MeshError, identity};

/// Capacity of the event channel handed to the node.
const EVENT_CHANNEL: usize = 1024;

/// Something the node must act on.
#[derive(Debug)]
pub enum MeshEvent {
    /// A peer asks this node to relay a stream; answer through `reply`.
    RelayRequest {
        /// The requesting peer.
        from: PeerId,
        /// The request.
        request: RelayRequest,
        /// Where the answer goes (dropping it answers `RelayError::Internal`).
        reply: oneshot::Sender<Result<RelayResponse, RelayError>>,
    },
    /// A peer pushed its path for a stream (checked against [`PushedPath::validate`]).
    PathPushed {
        /// The pushing peer: the remote end of the connection it came over.
        from: PeerId,
        /// The push.
        push: PushedPath,
    },
    /// The last connection to the peer closed or a ping to it failed.
    PeerLost(PeerId),
    /// A first connection to the peer was established.
    PeerDiscovered(PeerId),
    /// An archived segment of a followed stream, signed by the stream's origin.
    Segment(crate::gossip::SegmentAnnouncement),
    /// A known mesh node holds an archived segment of a followed stream.
    SegmentHeld {
        /// The node holding it (signer of the message).
        holder: PeerId,
        /// The segment.
        held: crate::gossip::SegmentHeld,
    },
    /// Another node holds the name of a stream this node originates (it was first, or won a
    /// simultaneous claim); this node no longer announces it.
    StreamTaken {
        /// Stream name.
        stream: String,
        /// The origin that holds the name.
        holder: PeerId,
    },
}

/// What `GET /api/node` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Addresses the swarm listens on.
    pub listen_addrs: Vec<String>,
    /// Peers this node knows of.
    pub known_peers: Vec<KnownPeer>,
}

/// One peer in [`NodeInfo`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnownPeer {
    /// The peer's id.
    pub peer_id: PeerId,
    /// Addresses known for it.
    pub addrs: Vec<String>,
    /// Whether a connection is open.
    pub connected: bool,
    /// Latest ping RTT in milliseconds.
    pub rtt_ms: Option<f64>,
    /// HTTP base URL from its load report.
    pub http_url: Option<String>,
    /// Region from its load report.
    pub region: Option<String>,
}

pub(crate) enum Command {
    NodeInfo(oneshot::Sender<NodeInfo>),
    SetStreams(Vec<StreamAnnouncement>),
    SetLoad(NodeLoad),
    FindProviders(String),
    /// Put provider records for an archived CID (its multihash) on the DHTs.
    Provide(libp2p::kad::RecordKey),
    Request {
        peer: PeerId,
        request: RelayRequest,
        reply: oneshot::Sender<Result<RelayResponse, MeshError>>,
    },
    /// Push a path to a relay child; `sent` is answered once it is handed to the swarm.
    PushPath { peer: PeerId, push: PushedPath, sent: oneshot::Sender<()> },
    PublishRaw { topic: String, data: Vec<u8> },
    Subscribe(String),
    Unsubscribe(String),
    /// Follow a stream's presence topic for a while: a viewer wants it here.
    WantPresence(String),
    Dial(Multiaddr),
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct Shared {
    peer_id: PeerId,
    cmd: mpsc::UnboundedSender<Command>,
    dir: Arc<Mutex<Directory>>,
    dir_changed: watch::Receiver<u64>,
    ttl: Duration,
    bitswap: Option<Server>,
    trusted: HashSet<PeerId>,
    /// This node's identity key (signs its segment announcements).
    key: libp2p::identity::Keypair,
    /// The gossipsub behaviour's counters (per-topic traffic).
    gossip_metrics: Arc<prometheus_client::registry::Registry>,
    /// Peers with an open connection, kept by the swarm task.
    connected: Arc<std::sync::atomic::AtomicUsize>,
}

/// Cheap, cloneable handle to the mesh task.
#[derive(Clone)]
pub struct Mesh {
    shared: Arc<Shared>,
}

impl Mesh {
    /// Starts the swarm task; returns once the listeners have addresses.
    pub async fn start(config: MeshConfig) -> Result<(Mesh, mpsc::Receiver<MeshEvent>), MeshError> {
        let key = identity::load_or_create(&config.data_dir)?;
        let psk = match &config.mesh_key {
            Some(path) => Some(crate::pnet::load_key(path)?),
            None => None,
        };
        let mut bootstrap = Vec::new();
        for addr in &config.bootstrap {
            let peer = peer_of(addr)
                .ok_or_else(|| MeshError::Config(format!("bootstrap address {addr} lacks /p2p/<peer id>")))?;
            bootstrap.push((peer, addr.clone()));
        }
        let dir = Arc::new(Mutex::new(Directory::default()));
        let interval = config.announce_interval.max(Duration::from_millis(50));
        let ttl = interval * 3;
        let (bitswap_behaviour, bitswap) = match &config.blocks {
            Some(provider) => {
                let (behaviour, control, inbound) = Server::behaviour();
                // Load reports come every SUMMARY_EVERY intervals.
                let node_ttl = ttl * crate::gossip::SUMMARY_EVERY;
                let gate = config.bitswap_mesh_only.then(|| mesh_peer_gate(dir.clone(), node_ttl, &config.trusted_peers));
                (Some(behaviour), Some(Server::spawn(control, inbound, provider.clone(), gate)))
            }
            None => (None, None),
        };
        let mut registry = prometheus_client::registry::Registry::default();
        let mut swarm = build_swarm(&key, psk, config.mdns, bitswap_behaviour, config.ipfs_dht, &mut registry)?;
        let gossip_metrics = Arc::new(registry);
        let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peer_id = *swarm.local_peer_id();
        if let Some(psk) = psk {
            tracing::info!(fingerprint = %psk.fingerprint(), "private mesh (pre-shared key), TCP only");
        }

        let mut listeners = HashSet::new();
        for addr in &config.listen {
            if psk.is_some() && addr.iter().any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic | Protocol::Udp(_))) {
                tracing::warn!(%addr, "QUIC cannot carry a pre-shared-key network; not listening there");
                continue;
            }
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| MeshError::Transport(format!("listen on {addr}: {e}")))?;
            listeners.insert(id);
        }

        // The public IPFS DHT is joined through its own bootstrap peers; Kademlia's automatic
        // bootstrap then fills the routing table.
        for addr in &config.ipfs_bootstrap {
            let Some(peer) = peer_of(addr) else {
                tracing::warn!(%addr, "IPFS DHT bootstrap address without /p2p/<peer id>; ignored");
                continue;
            };
            if let Some(k) = swarm.behaviour_mut().ipfs_kad.as_mut() {
                k.add_address(&peer, addr.clone());
            }
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, "dialling an IPFS DHT bootstrap peer: {e}");
            }
        }

        let streams_topic = gossipsub::IdentTopic::new(STREAMS_TOPIC);
        let load_topic = gossipsub::IdentTopic::new(LOAD_TOPIC);
        let withdrawals_topic = gossipsub::IdentTopic::new(WITHDRAWALS_TOPIC);
        for t in [&streams_topic, &load_topic, &withdrawals_topic] {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(t)
                .map_err(|e| MeshError::Config(format!("subscribe: {e}")))?;
        }

        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_CHANNEL);
        let (dir_tx, dir_rx) = watch::channel(0u64);

        let mut task = Task {
            swarm,
            events: ev_tx,
            dir: dir.clone(),
            dir_tx,
            trusted: config.trusted_peers.iter().copied().collect(),
            ttl,
            http_url: config.http_url.clone(),
            region: config.region.clone(),
            local_streams: Vec::new(),
            load: None,
            peers: HashMap::new(),
            pending_out: HashMap::new(),
            pending_in: FuturesUnordered::new(),
            inbound_channels: HashMap::new(),
            next_inbound: 0,
            bootstrap,
            relays: HashSet::new(),
            streams_topic,
            load_topic,
            withdrawals_topic,
            trusted_url_hosts: config.trusted_url_hosts.clone(),
            settle: interval * 2,
            relay_rate: crate::trust::RateLimiter::new(
                crate::swarm_task::RELAY_BURST,
                crate::swarm_task::RELAY_PER_SEC,
                crate::swarm_task::RELAY_RATE_PEERS,
            ),
            logs: crate::swarm_task::Logs::default(),
            taken: HashSet::new(),
            provided: Default::default(),
            liveness: crate::liveness::Liveness::default(),
            stall_log: crate::trust::LogLimiter::new(Duration::from_secs(5)),
            connected: connected.clone(),
            max_peers: config.max_peers,
            relay_peers: HashMap::new(),
            announce_ticks: 0,
            presence_subs: HashSet::new(),
            presence_rate: Default::default(),
            wanted: HashMap::new(),
        };
        task.wait_listening(listeners).await;
        for (peer, addr) in task.bootstrap.clone() {
            task.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            task.remember_addr(peer, addr.clone());
            task.dial(peer, Some(addr), crate::peers::DialReason::Bootstrap);
        }
        let _ = task.swarm.behaviour_mut().kad.bootstrap();
        tokio::spawn(task.run(cmd_rx, interval));

        let mesh = Mesh {
            shared: Arc::new(Shared {
                key: key.clone(),
                peer_id,
                cmd: cmd_tx,
                dir,
                dir_changed: dir_rx,
                ttl,
                bitswap,
                trusted: config.trusted_peers.iter().copied().collect(),
                gossip_metrics,
                connected,
            }),
        };
        Ok((mesh, ev_rx))
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// Whether this node may pull from `peer` and send viewers to it: true for every peer
    /// unless `--trusted-peer` lists some, then only for those.
    pub fn is_trusted(&self, peer: &PeerId) -> bool {
        self.shared.trusted.is_empty() || self.shared.trusted.contains(peer)
    }

    /// The pinned origin of a live stream when it is another node: `(peer, http_url)` (the URL
    /// empty when it was not verified).
    pub fn live_elsewhere(&self, stream: &str) -> Option<(PeerId, String)> {
        let d = self.directory();
        d.stream(stream).filter(|a| a.origin != self.shared.peer_id).map(|a| (a.origin, a.http_url.clone()))
    }

    /// Gossip messages and bytes sent and received since start, by topic (per-stream topics
    /// summed by family) and direction.
    pub fn gossip_traffic(&self) -> crate::traffic::GossipTraffic {
        crate::traffic::read(&self.shared.gossip_metrics)
    }

    /// Peers this node has an open connection to.
    pub fn connected_peers(&self) -> usize {
        self.shared.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bitswap server counters (`None` when the node serves no blocks).
    pub fn bitswap_stats(&self) -> Option<BitswapStats> {
        self.shared.bitswap.as_ref().map(Server::stats)
    }

    /// Fetches the block `cid` over Bitswap from `providers` (connected peers, in order of
    /// preference) within `timeout`, verified against the CID. Needs the Bitswap server on
    /// (`MeshConfig::blocks`).
    pub async fn fetch_block(
        &self,
        cid: cid::Cid,
        providers: Vec<PeerId>,
        timeout: Duration,
    ) -> Result<Vec<u8>, crate::bitswap::fetch::FetchError> {
        match &self.shared.bitswap {
            Some(server) => server.fetch(cid, providers, timeout).await,
            None => Err(crate::bitswap::fetch::FetchError::Disabled),
        }
    }

    /// Listen addresses and known peers (empty listing once the mesh stopped).
    pub async fn node_info(&self) -> NodeInfo {
        let (tx, rx) = oneshot::channel();
        if self.shared.cmd.send(Command::NodeInfo(tx)).is_ok()
            && let Ok(info) = rx.await
        {
            return info;
        }
        NodeInfo { peer_id: self.shared.peer_id, listen_addrs: Vec::new(), known_peers: Vec::new() }
    }

    /// Listen addresses as multiaddrs ending in `/p2p/<peer id>` (usable as bootstrap addresses).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let me = self.shared.peer_id;
        self.node_info()
            .await
            .listen_addrs
            .iter()
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .map(|a| a.with(Protocol::P2p(me)))
            .collect()
    }

    /// Sets the streams this node originates; they are re-announced every interval.
    pub fn set_local_streams(&self, streams: Vec<StreamAnnouncement>) {
        let _ = self.shared.cmd.send(Command::SetStreams(streams));
    }

    /// Sets this node's load; it is re-announced every interval.
    pub fn set_load(&self, load: NodeLoad) {
        let _ = self.shared.cmd.send(Command::SetLoad(load));
    }

    /// Dials an address (for example one learned out of band).
    pub fn dial(&self, addr: Multiaddr) {
        let _ = self.shared.cmd.send(Command::Dial(addr));
    }

    /// A snapshot of what this node knows, without expired entries, the presences heard on the
    /// followed presence topics merged into the nodes' loads.
    pub fn directory(&self) -> Directory {
        let mut d = match self.shared.dir.lock() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        d.expire(Instant::now(), self.shared.ttl);
        d.merge_presences();
        d
    }

    /// Follows `stream`'s presence topic for a while (30 s from the last call): a viewer wants the
    /// stream here, so the nodes carrying it matter with their current depth and room (a node
    /// follows the streams it carries by itself). Only streams the directory has an
    /// announcement of are followed.
    pub fn want_stream(&self, stream: &str) {
        let _ = self.shared.cmd.send(Command::WantPresence(stream.to_string()));
    }

    /// Finds a stream's announcement: from the directory, else via a Kademlia providers lookup.
    pub async fn find_stream(&self, stream: &str, timeout: Duration) -> Option<StreamAnnouncement> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.shared.dir_changed.clone();
        changed.mark_unchanged();
        if let Some(a) = self.directory().stream(stream) {
            return Some(a.clone());
        }
        let _ = self.shared.cmd.send(Command::FindProviders(stream.to_string()));
        loop {
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {
                    if let Some(a) = self.directory().stream(stream) {
                        return Some(a.clone());
                    }
                }
                _ => return None,
            }
        }
    }

    /// Asks `peer` to relay a stream (dialling it if needed).
    pub async fn request_relay(
        &self,
        peer: PeerId,
        req: RelayRequest,
        timeout: Duration,
    ) -> Result<RelayResponse, MeshError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .cmd
            .send(Command::Request { peer, request: req, reply: tx })
            .map_err(|_| MeshError::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(MeshError::Stopped),
            Err(_) => Err(MeshError::Timeout),
        }
    }

    /// Pushes `push` to `peer` (one-way); returns once the swarm task took it, so a caller that
    /// awaits each push in turn never queues more than one.
    pub async fn push_path(&self, peer: PeerId, push: PushedPath) -> Result<(), MeshError> {
        let (sent, rx) = oneshot::channel();
        self.shared.cmd.send(Command::PushPath { peer, push, sent }).map_err(|_| MeshError::Stopped)?;
        rx.await.map_err(|_| MeshError::Stopped)
    }

    /// Announces an archived segment of a stream this node originates, on the stream's segment
    /// topic (nodes relaying the stream pass it to their viewers), signed with this node's key
    /// ([`Mesh::sign_segment`]) unless it already carries a signature.
    pub fn announce_segment(&self, seg: &crate::gossip::SegmentAnnouncement) {
        let mut seg = seg.clone();
        if seg.sig.is_empty() {
            self.sign_segment(&mut seg);
        }
        let topic = crate::gossip::segments_topic(&seg.stream);
        let _ = self.shared.cmd.send(Command::PublishRaw { topic, data: crate::gossip::encode(&seg) });
    }

    /// Sets `seg.sig` to this node's signature of the segment
    /// ([`crate::gossip::segment_signing_bytes`]), which any node can check against this node's
    /// peer id ([`crate::gossip::verify_segment`]) wherever the announcement travels.
    pub fn sign_segment(&self, seg: &mut crate::gossip::SegmentAnnouncement) {
        match self.shared.key.sign(&crate::gossip::segment_signing_bytes(seg)) {
            Ok(sig) => seg.sig = crate::gossip::hex(&sig),
            Err(e) => tracing::warn!(error = %e, "cannot sign a segment announcement"),
        }
    }

    /// Puts provider records for an archived CID (a segment, init segment or VOD root this node
    /// stores) on the mesh's DHT and, with `--ipfs-dht`, on the public IPFS DHT, keyed by its
    /// multihash as IPFS nodes look it up. Kademlia republishes them; past
    /// [`crate::behaviour::MAX_PROVIDED_CIDS`] the oldest are dropped. A CID that does not parse
    /// is ignored.
    pub fn provide(&self, cid: &str) {
        match cid.parse::<cid::Cid>() {
            Ok(c) => {
                let key = libp2p::kad::RecordKey::new(&c.hash().to_bytes());
                let _ = self.shared.cmd.send(Command::Provide(key));
            }
            Err(e) => tracing::debug!(%cid, "not providing an unparsable CID: {e}"),
        }
    }

    /// Tells the followers of `held.stream` that this node holds a copy of a segment.
    pub fn announce_held(&self, held: &crate::gossip::SegmentHeld) {
        let topic = crate::gossip::segments_topic(&held.stream);
        let _ = self.shared.cmd.send(Command::PublishRaw { topic, data: crate::gossip::encode_held(held) });
    }

    /// Starts (`true`) or stops receiving a stream's segment announcements as
    /// [`MeshEvent::Segment`].
    pub fn follow_segments(&self, stream: &str, follow: bool) {
        let topic = crate::gossip::segments_topic(stream);
        let cmd = if follow { Command::Subscribe(topic) } else { Command::Unsubscribe(topic) };
        let _ = self.shared.cmd.send(cmd);
    }

    /// Publishes raw bytes on a gossip topic, bypassing the typed API (for testing validation).
    #[doc(hidden)]
    pub fn publish_raw(&self, topic: &str, data: Vec<u8>) {
        let _ = self.shared.cmd.send(Command::PublishRaw { topic: topic.to_string(), data });
    }

    /// Closes all connections and stops the task.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.cmd.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

pub(crate) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}


/// The Bitswap gate of a node serving mesh nodes only: a peer whose signed load report is in the
/// directory and younger than `ttl`, and one of `trusted` when that is not empty.
pub(crate) fn mesh_peer_gate(dir: Arc<Mutex<Directory>>, ttl: Duration, trusted: &[PeerId]) -> crate::bitswap::PeerGate {
    let trusted: HashSet<PeerId> = trusted.iter().copied().collect();
    Arc::new(move |peer: &PeerId| {
        if !trusted.is_empty() && !trusted.contains(peer) {
            return false;
        }
        let d = dir.lock().unwrap_or_else(|p| p.into_inner());
        d.nodes.get(peer).is_some_and(|e| e.last_seen.elapsed() <= ttl)
    })
}

#[cfg(test)]
mod gate_tests {
    use super::*;
    use crate::directory::NodeEntry;

    fn entry(last_seen: Instant) -> NodeEntry {
        NodeEntry { load: NodeLoad::default(), last_seen, rtt: None, connected: true }
    }

    #[test]
    fn bitswap_serves_only_current_mesh_nodes_and_with_trusted_peers_only_those() {
        let (a, b, stranger) = (PeerId::random(), PeerId::random(), PeerId::random());
        let dir = Arc::new(Mutex::new(Directory::default()));
        let ttl = Duration::from_secs(3);
        {
            let mut d = dir.lock().unwrap();
            d.nodes.insert(a, entry(Instant::now()));
            d.nodes.insert(b, entry(Instant::now() - Duration::from_secs(10)));
        }
        let gate = mesh_peer_gate(dir.clone(), ttl, &[]);
        assert!(gate(&a), "a node with a current load report");
        assert!(!gate(&b), "a node whose report expired");
        assert!(!gate(&stranger), "an IPFS peer that is not a mesh node");
        let only_b = mesh_peer_gate(dir.clone(), ttl, &[b]);
        assert!(!only_b(&a), "a mesh node outside --trusted-peer");
        dir.lock().unwrap().nodes.insert(b, entry(Instant::now()));
        assert!(only_b(&b));
    }
}
