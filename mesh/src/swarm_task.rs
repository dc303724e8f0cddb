//! The tokio task driving the libp2p swarm: connections, discovery, gossip validation into the
//! directory, relay request-response, liveness, and the commands of the [`crate::Mesh`] handle.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use libp2p::core::transport::ListenerId;
use libp2p::core::{Transport, upgrade};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad, mdns, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, oneshot, watch};

use crate::behaviour::{self, Behaviour, BehaviourEvent, RELAY_REQUEST_TIMEOUT};
use crate::directory::Directory;
use crate::gossip::{self, GossipError, GossipMessage, NodeLoad, StreamAnnouncement, StreamWithdrawal};
use crate::relay_protocol::{RelayError, RelayRequest, RelayResponse, RelayResult};
use crate::MeshError;
use crate::node::{Command, KnownPeer, MeshEvent, NodeInfo, peer_of};
use crate::directory::ClaimVerdict;
use crate::liveness::{self, Liveness};
use crate::peers::{self, DialReason};
use crate::trust::{self, LogLimiter, RateLimiter};

mod announce;
mod gossip_in;

/// Idle connection timeout (ping keeps connections busy well within it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a lost peer stays listed in [`NodeInfo`].
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// How long a lost peer keeps being re-dialled.
const REDIAL_LOST_FOR: Duration = Duration::from_secs(60);
/// How long a peer of a relay request (sent or received) is kept connected however many peers
/// this node has: until the relay edge shows in the peers' load reports.
const RELAY_PEER_PROTECTED_FOR: Duration = Duration::from_secs(30);
/// How long a node follows the presence topic of a stream it wants (until it carries it, when it
/// follows it for that).
const WANT_PRESENCE_FOR: Duration = Duration::from_secs(30);
/// Most streams whose presence topic a node follows for wanting them.
const MAX_WANTED: usize = 1024;
/// How often unconnected bootstrap peers (and recently lost ones) are re-dialled, and a node over
/// its target of connections closes the excess.
const REDIAL_INTERVAL: Duration = Duration::from_secs(3);
/// Most circuit relays a node behind NAT reserves a slot on.
const MAX_RELAYS: usize = 2;
/// How long start waits for listeners to report addresses.
const LISTEN_WAIT: Duration = Duration::from_secs(3);
/// Relay requests a peer may make at once.
pub(crate) const RELAY_BURST: u32 = 16;
/// Relay requests a peer may make per second, sustained.
pub(crate) const RELAY_PER_SEC: f64 = 4.0;
/// Peers whose relay request rate is tracked (the least recently active is forgotten).
pub(crate) const RELAY_RATE_PEERS: usize = 4096;
/// Relay requests waiting for the node's answer, from all peers together.
const MAX_PENDING_INBOUND: usize = 256;
/// Connection addresses remembered per peer for the `http_url` check.
const SEEN_IPS_PER_PEER: usize = 8;
/// At most one log line per kind of refusal in this period.
const LOG_EVERY: Duration = Duration::from_secs(5);

type BoxError = Box<dyn StdError + Send + Sync>;

/// Streams yamux allows per connection. With yamux's 1 GiB connection receive window this leaves
/// 256 KiB beyond each stream's initial 256 KiB for window auto-tuning, so no stream's receive
/// window passes 512 KiB. rust-yamux reads no frame body over 1 MiB, while js-libp2p's yamux (Helia)
/// sends a frame as large as the window it is granted: with auto-tuned windows over 1 MiB, a Helia
/// peer sending a 1 MiB block had its connection torn down (`FrameTooLarge`).
const YAMUX_MAX_STREAMS: usize = 4095;

/// The yamux configuration of every connection (see [`YAMUX_MAX_STREAMS`]).
fn yamux_config() -> yamux::Config {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(YAMUX_MAX_STREAMS);
    c
}

/// Builds the swarm: TCP (pnet-wrapped with a mesh key) and QUIC (without one), noise, yamux,
/// the relay client, and the node's behaviours.
pub(crate) fn build_swarm(
    key: &Keypair,
    psk: Option<libp2p::pnet::PreSharedKey>,
    mdns_on: bool,
    bitswap: Option<crate::bitswap::streams::Behaviour>,
    ipfs_dht: bool,
    metrics: &mut prometheus_client::registry::Registry,
) -> Result<Swarm<Behaviour>, MeshError> {
    let transport_err = |e: &dyn std::fmt::Display| MeshError::Transport(e.to_string());
    let make_behaviour = move |key: &Keypair, relay_client| -> Result<Behaviour, BoxError> {
        behaviour::build(key, relay_client, mdns_on, bitswap, ipfs_dht, metrics).map_err(|e| Box::new(e) as BoxError)
    };
    let swarm_config = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_TIMEOUT);
    let swarm = match psk {
        None => libp2p::SwarmBuilder::with_existing_identity(key.clone())
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux_config)
            .map_err(|e| transport_err(&e))?
            .with_quic()
            .with_relay_client(noise::Config::new, yamux_config)
            .map_err(|e| transport_err(&e))?
            .with_behaviour(make_behaviour)
            .map_err(|e| transport_err(&e))?
            .with_swarm_config(swarm_config)
            .build(),
        Some(psk) => libp2p::SwarmBuilder::with_existing_identity(key.clone())
            .with_tokio()
            .with_other_transport(|key| -> Result<_, BoxError> {
                let noise = noise::Config::new(key)?;
                Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                    .and_then(move |socket, _| libp2p::pnet::PnetConfig::new(psk).handshake(socket))
                    .upgrade(upgrade::Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux_config()))
            })
            .map_err(|e| transport_err(&e))?
            .with_relay_client(noise::Config::new, yamux_config)
            .map_err(|e| transport_err(&e))?
            .with_behaviour(make_behaviour)
            .map_err(|e| transport_err(&e))?
            .with_swarm_config(swarm_config)
            .build(),
    };
    Ok(swarm)
}

#[derive(Default)]
pub(crate) struct PeerState {
    addrs: Vec<Multiaddr>,
    connected: bool,
    lost_reported: bool,
    lost_at: Option<Instant>,
    rtt: Option<Duration>,
    /// IP addresses the peer's connections came from or went to (not circuit relays).
    seen_ips: Vec<std::net::IpAddr>,
    /// When the current connection to the peer was established.
    connected_since: Option<Instant>,
    /// Its redial backoff ([`peers::next_backoff`]) and until when it holds.
    backoff: Duration,
    backoff_until: Option<Instant>,
}

/// Rate-limited log lines, one limiter per kind of refusal.
pub(crate) struct Logs {
    pub(crate) claim: LogLimiter,
    pub(crate) url: LogLimiter,
    pub(crate) gossip: LogLimiter,
    pub(crate) segment: LogLimiter,
    pub(crate) relay: LogLimiter,
    pub(crate) conn: LogLimiter,
}

impl Default for Logs {
    fn default() -> Self {
        let l = LogLimiter::new(LOG_EVERY);
        Logs { claim: l.clone(), url: l.clone(), gossip: l.clone(), segment: l.clone(), relay: l.clone(), conn: l }
    }
}

pub(crate) type InboundDone = (u64, Result<RelayResult, ()>);

/// The state of the swarm task.
pub(crate) struct Task {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) events: mpsc::Sender<MeshEvent>,
    pub(crate) dir: Arc<Mutex<Directory>>,
    pub(crate) dir_tx: watch::Sender<u64>,
    pub(crate) trusted: HashSet<PeerId>,
    pub(crate) ttl: Duration,
    pub(crate) http_url: String,
    pub(crate) region: Option<String>,
    pub(crate) local_streams: Vec<StreamAnnouncement>,
    pub(crate) load: Option<NodeLoad>,
    pub(crate) peers: HashMap<PeerId, PeerState>,
    pub(crate) pending_out: HashMap<OutboundRequestId, oneshot::Sender<Result<RelayResponse, MeshError>>>,
    pub(crate) pending_in: FuturesUnordered<BoxFuture<'static, InboundDone>>,
    pub(crate) inbound_channels: HashMap<u64, ResponseChannel<RelayResult>>,
    pub(crate) next_inbound: u64,
    pub(crate) bootstrap: Vec<(PeerId, Multiaddr)>,
    pub(crate) relays: HashSet<PeerId>,
    pub(crate) streams_topic: gossipsub::IdentTopic,
    pub(crate) load_topic: gossipsub::IdentTopic,
    pub(crate) withdrawals_topic: gossipsub::IdentTopic,
    /// Hosts accepted in peers' `http_url` besides the addresses they are seen at.
    pub(crate) trusted_url_hosts: Vec<String>,
    /// How long after a pin a competing claim counts as made at the same time.
    pub(crate) settle: Duration,
    pub(crate) relay_rate: RateLimiter<PeerId>,
    pub(crate) logs: Logs,
    /// Local streams whose name another origin holds (reported once until pinned here again).
    pub(crate) taken: HashSet<String>,
    /// Ping liveness of connected peers.
    pub(crate) liveness: Liveness,
    /// Rate-limits the log line about this node's own stalls.
    pub(crate) stall_log: LogLimiter,
    /// Archived CIDs (as DHT keys: their multihashes) this node provides, oldest first (bounded
    /// by [`behaviour::MAX_PROVIDED_CIDS`]).
    pub(crate) provided: crate::provided::ProvidedKeys,
    /// Peers with an open connection (read by [`crate::Mesh::connected_peers`]).
    pub(crate) connected: Arc<std::sync::atomic::AtomicUsize>,
    /// Target number of connections ([`crate::peers`]; 0: none).
    pub(crate) max_peers: usize,
    /// Peers this node last sent a relay request to or received one from, and when.
    pub(crate) relay_peers: HashMap<PeerId, Instant>,
    /// Announce ticks so far (the load topic gets this node's load every
    /// [`gossip::SUMMARY_EVERY`]th).
    pub(crate) announce_ticks: u32,
    /// Streams whose presence topic this node follows.
    pub(crate) presence_subs: HashSet<String>,
    /// How often this node publishes its presence of each stream it carries (a sample of a
    /// large stream's carriers).
    pub(crate) presence_rate: crate::presence_rate::PresenceRate,
    /// Streams this node wants (a viewer asked), and when it last asked.
    pub(crate) wanted: HashMap<String, Instant>,
}

fn stream_key(stream: &str) -> kad::RecordKey {
    kad::RecordKey::new(&format!("/relaycast/stream/{stream}"))
}

impl Task {
    fn with_dir<R>(&self, f: impl FnOnce(&mut Directory) -> R) -> R {
        let r = match self.dir.lock() {
            Ok(mut d) => f(&mut d),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        };
        self.dir_tx.send_modify(|v| *v = v.wrapping_add(1));
        r
    }

    fn emit(&self, ev: MeshEvent) {
        if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(ev) {
            tracing::warn!(?ev, "mesh event channel full; event dropped");
        }
    }

    pub(crate) async fn wait_listening(&mut self, mut listeners: HashSet<ListenerId>) {
        let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
        while !listeners.is_empty() {
            let ev = match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(ev) => ev,
                Err(_) => {
                    tracing::warn!("listeners did not report addresses in time");
                    return;
                }
            };
            match &ev {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    listeners.remove(listener_id);
                }
                SwarmEvent::ListenerClosed { listener_id, .. } | SwarmEvent::ListenerError { listener_id, .. } => {
                    listeners.remove(listener_id);
                }
                _ => {}
            }
            self.handle_swarm_event(ev);
        }
    }

    pub(crate) async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Command>, interval: Duration) {
        let mut announce = tokio::time::interval(interval);
        announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut liveness = tokio::time::interval(liveness::CHECK_EVERY);
        let mut last_announce: Option<Instant> = None;
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done: Option<oneshot::Sender<()>> = loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.handle_swarm_event(ev),
                cmd = cmds.recv() => match cmd {
                    Some(Command::Shutdown(tx)) => break Some(tx),
                    Some(cmd) => self.handle_command(cmd),
                    None => break None,
                },
                Some((id, result)) = self.pending_in.next(), if !self.pending_in.is_empty() => {
                    self.answer_inbound(id, result);
                }
                _ = announce.tick() => {
                    self.announce_all();
                    let now = Instant::now();
                    let ttl = self.ttl;
                    // After a stall of this node, fresh announcements may be queued unread: expire
                    // only on a tick that came on time (a later one will).
                    let late = last_announce.is_some_and(|t: Instant| now.saturating_duration_since(t) > interval + interval / 2);
                    last_announce = Some(now);
                    if !late {
                        self.with_dir(|d| d.expire(now, ttl));
                    }
                }
                _ = redial.tick() => self.redial(),
                _ = liveness.tick() => self.check_liveness(),
            }
        };
        self.close_all().await;
        if let Some(tx) = done {
            let _ = tx.send(());
        }
        tracing::info!("mesh stopped");
    }

    async fn close_all(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while self.swarm.connected_peers().next().is_some() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::NodeInfo(tx) => {
                let _ = tx.send(self.node_info());
            }
            Command::SetStreams(streams) => {
                let me = *self.swarm.local_peer_id();
                let now_ms = unix_ms();
                let streams: Vec<StreamAnnouncement> = streams
                    .into_iter()
                    .map(|mut s| {
                        s.origin = me;
                        if s.http_url.is_empty() {
                            s.http_url = self.http_url.clone();
                        }
                        // The signed start time is that of the first announcement of the stream.
                        s.started_ms = self
                            .local_streams
                            .iter()
                            .find(|o| o.stream == s.stream)
                            .map_or(now_ms, |o| o.started_ms);
                        s
                    })
                    .collect();
                for old in &self.local_streams {
                    if !streams.iter().any(|s| s.stream == old.stream) {
                        self.swarm.behaviour_mut().kad.stop_providing(&stream_key(&old.stream));
                        let name = old.stream.clone();
                        self.with_dir(|d| d.withdraw(&name, &me));
                        // Tell the mesh at once: the name is free now, not once the claim is stale.
                        if !self.taken.remove(&name) {
                            let w = StreamWithdrawal { origin: me, stream: name, started_ms: old.started_ms };
                            let topic = self.withdrawals_topic.clone();
                            if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, gossip::encode(&w)) {
                                tracing::debug!(stream = %w.stream, "withdrawal not published: {e}");
                            }
                        }
                    }
                }
                for s in &streams {
                    if !self.local_streams.iter().any(|o| o.stream == s.stream)
                        && let Err(e) = self.swarm.behaviour_mut().kad.start_providing(stream_key(&s.stream))
                    {
                        tracing::warn!(stream = %s.stream, "kademlia start_providing: {e}");
                    }
                }
                let changed = streams != self.local_streams;
                self.local_streams = streams;
                if changed {
                    self.announce_streams();
                }
            }
            Command::SetLoad(load) => {
                self.load = Some(load);
                self.update_presence_subs(Instant::now());
            }
            Command::WantPresence(stream) => {
                let now = Instant::now();
                // Only a stream some origin announces has carriers to hear from. Requests for
                // other names (a stranger can make up any number) follow nothing: each topic
                // followed costs a subscription message to every peer and gossipsub state.
                let announced = match self.dir.lock() {
                    Ok(d) => d.stream(&stream).is_some(),
                    Err(poisoned) => poisoned.into_inner().stream(&stream).is_some(),
                };
                if !announced {
                    tracing::trace!(%stream, "presence of an unannounced stream not followed");
                } else if self.wanted.len() < MAX_WANTED || self.wanted.contains_key(&stream) {
                    self.wanted.insert(stream, now);
                }
                self.update_presence_subs(now);
            }
            Command::Provide(key) => {
                let (new, evicted) = self.provided.add(key.clone(), behaviour::MAX_PROVIDED_CIDS);
                let b = self.swarm.behaviour_mut();
                if let Some(old) = &evicted {
                    b.kad.stop_providing(old);
                    if let Some(k) = b.ipfs_kad.as_mut() {
                        k.stop_providing(old);
                    }
                }
                if new {
                    if let Err(e) = b.kad.start_providing(key.clone()) {
                        tracing::debug!("kademlia start_providing (archived CID): {e}");
                    }
                    if let Some(k) = b.ipfs_kad.as_mut()
                        && let Err(e) = k.start_providing(key)
                    {
                        tracing::debug!("IPFS DHT start_providing: {e}");
                    }
                }
                if evicted.is_some() {
                    let total = self.with_dir(|d| {
                        d.provided_evicted += 1;
                        d.provided_evicted
                    });
                    // Once, then every thousandth: a long-running archive node evicts steadily.
                    if total == 1 || total.is_multiple_of(1000) {
                        tracing::info!(
                            limit = behaviour::MAX_PROVIDED_CIDS,
                            evicted = total,
                            "providing the newest archived CIDs only: the oldest are no longer announced on the DHTs (still served over Bitswap)"
                        );
                    }
                }
            }
            Command::FindProviders(stream) => {
                self.swarm.behaviour_mut().kad.get_providers(stream_key(&stream));
            }
            Command::Request { peer, request, reply } => {
                // Any peer may be asked, however many connections this node has.
                self.relay_peers.insert(peer, Instant::now());
                self.dial(peer, None, DialReason::Needed);
                let id = self.swarm.behaviour_mut().relay_rr.send_request(&peer, request);
                self.pending_out.insert(id, reply);
            }
            Command::PushPath { peer, push, sent } => self.push_path(peer, push, sent),
            Command::Subscribe(topic) => {
                let topic = gossipsub::IdentTopic::new(topic);
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                    tracing::debug!("subscribe {topic}: {e}");
                }
            }
            Command::Unsubscribe(topic) => {
                let topic = gossipsub::IdentTopic::new(topic);
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic);
            }
            Command::PublishRaw { topic, data } => {
                let topic = gossipsub::IdentTopic::new(topic);
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                    tracing::debug!("raw publish: {e}");
                }
            }
            Command::Dial(addr) => match peer_of(&addr) {
                Some(peer) => {
                    self.remember_addr(peer, addr.clone());
                    self.dial(peer, Some(addr), DialReason::Needed);
                }
                None => {
                    if let Err(e) = self.swarm.dial(addr.clone()) {
                        tracing::debug!(%addr, "dial: {e}");
                    }
                }
            },
            Command::Shutdown(_) => {}
        }
    }

    fn node_info(&self) -> NodeInfo {
        let dir = match self.dir.lock() {
            Ok(d) => d.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let mut known_peers: Vec<KnownPeer> = self
            .peers
            .iter()
            .map(|(peer, st)| {
                let load = dir.node(peer);
                KnownPeer {
                    peer_id: *peer,
                    addrs: st.addrs.iter().map(|a| a.to_string()).collect(),
                    connected: self.swarm.is_connected(peer),
                    rtt_ms: st.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    http_url: load.map(|l| l.http_url.clone()),
                    region: load.and_then(|l| l.region.clone()),
                }
            })
            .collect();
        known_peers.sort_by_key(|k| k.peer_id);
        NodeInfo {
            peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            known_peers,
        }
    }

    pub(crate) fn remember_addr(&mut self, peer: PeerId, addr: Multiaddr) {
        let addr = strip_p2p(addr);
        let st = self.peers.entry(peer).or_default();
        if !st.addrs.contains(&addr) {
            st.addrs.push(addr);
            if st.addrs.len() > 16 {
                st.addrs.remove(0);
            }
        }
    }

    /// Dials `peer` (at `addr`, else at the addresses remembered for it and those Kademlia
    /// knows) unless connected, or unless `reason` does not justify a dial at this node's number
    /// of connections ([`peers::should_dial`]).
    pub(crate) fn dial(&mut self, peer: PeerId, addr: Option<Multiaddr>, reason: DialReason) {
        if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        let connected = self.swarm.connected_peers().count();
        if !peers::should_dial(reason, connected, self.max_peers) {
            tracing::trace!(%peer, ?reason, connected, "not dialling: at the target number of connections");
            return;
        }
        let until = self.peers.get(&peer).and_then(|st| st.backoff_until);
        if peers::backed_off(reason, connected, until, Instant::now()) {
            tracing::trace!(%peer, ?reason, "not dialling: its last connections closed early");
            return;
        }
        let opts = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing);
        let addrs = match addr {
            Some(addr) => vec![strip_p2p(addr)],
            None => self.peers.get(&peer).map(|st| st.addrs.clone()).unwrap_or_default(),
        };
        let opts = if addrs.is_empty() {
            opts.build()
        } else {
            opts.addresses(addrs).extend_addresses_through_behaviour().build()
        };
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, "dial: {e}");
        }
    }

    /// Behind a NAT: listen through circuit relays on connected bootstrap peers so others keep a
    /// control path to this node (DCUtR then tries to upgrade to a direct connection).
    fn reserve_relays(&mut self) {
        for (peer, addr) in self.bootstrap.clone() {
            if self.relays.len() >= MAX_RELAYS || self.relays.contains(&peer) || !self.swarm.is_connected(&peer) {
                continue;
            }
            let circuit = strip_p2p(addr).with(Protocol::P2p(peer)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(_) => {
                    tracing::info!(%circuit, "listening through relay");
                    self.relays.insert(peer);
                }
                Err(e) => tracing::debug!(%circuit, "relay listen: {e}"),
            }
        }
    }

    /// Declares a connected peer lost and disconnects it.
    fn drop_unresponsive(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            self.peer_lost(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Judges liveness from the time since each peer's last pong, not counting this node's own
    /// stalls (the ping protocol reports only the second consecutive failure, and a stuck stream
    /// negotiation only after 10 s).
    fn check_liveness(&mut self) {
        let now = Instant::now();
        let check = self.liveness.check(now);
        if let Some(stalled) = check.stalled
            && stalled >= Duration::from_millis(500)
            && let Some(held) = self.stall_log.check(now)
        {
            tracing::info!(?stalled, suppressed = held, "mesh task ran late; peers' silence meanwhile not counted");
        }
        for peer in check.lost {
            tracing::info!(%peer, "no ping answer for {:?}; peer lost", liveness::LOST_AFTER);
            self.drop_unresponsive(peer);
        }
    }

    /// Re-dials bootstrap peers, and peers lost recently (for example after a missed ping), and
    /// closes the connections over the target.
    fn redial(&mut self) {
        for (peer, addr) in self.bootstrap.clone() {
            if !self.swarm.is_connected(&peer) {
                self.dial(peer, Some(addr), DialReason::Bootstrap);
            }
        }
        let now = Instant::now();
        let recent: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, st)| st.lost_at.is_some_and(|t| now.saturating_duration_since(t) < REDIAL_LOST_FOR))
            .map(|(p, _)| *p)
            .collect();
        let protected = self.protected_peers(now);
        for peer in recent {
            let reason = if protected.contains(&peer) { DialReason::Needed } else { DialReason::Redial };
            self.dial(peer, None, reason);
        }
        self.trim(now, &protected);
        self.update_presence_subs(now);
        // Forget peers gone for long (bootstrap peers stay listed).
        let bootstrap: HashSet<PeerId> = self.bootstrap.iter().map(|(p, _)| *p).collect();
        self.peers.retain(|p, st| {
            bootstrap.contains(p) || st.lost_at.is_none_or(|t| now.saturating_duration_since(t) < FORGET_AFTER)
        });
    }

    /// Peers whose connection this node keeps however many it has: its relay tree neighbours
    /// (its upstreams and standbys in its own load; the nodes whose load names it as their
    /// upstream or standby), the peers of recent relay requests, and connections younger than
    /// [`peers::TRIM_GRACE`].
    fn protected_peers(&self, now: Instant) -> HashSet<PeerId> {
        let me = *self.swarm.local_peer_id();
        let mut out: HashSet<PeerId> = self
            .relay_peers
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) < RELAY_PEER_PROTECTED_FOR)
            .map(|(p, _)| *p)
            .collect();
        if let Some(load) = &self.load {
            out.extend(load.streams.iter().flat_map(|s| s.upstream.into_iter().chain(s.standby)));
        }
        if let Ok(d) = self.dir.lock() {
            let names_me = |s: &crate::gossip::StreamPresence| s.upstream == Some(me) || s.standby == Some(me);
            out.extend(d.nodes.iter().filter(|(_, e)| e.load.streams.iter().any(names_me)).map(|(p, _)| *p));
            // Presences heard since the nodes' last load reports (children attached meanwhile).
            out.extend(d.presences.iter().filter(|(_, m)| m.values().any(|(s, _)| names_me(s))).map(|(p, _)| *p));
        }
        out.extend(
            self.peers
                .iter()
                .filter(|(_, st)| st.connected_since.is_some_and(|t| now.saturating_duration_since(t) < peers::TRIM_GRACE))
                .map(|(p, _)| *p),
        );
        out
    }

    /// Over the target number of connections: closes the excess, keeping `protected` peers and a
    /// random sample of the others ([`peers::excess`]).
    fn trim(&mut self, now: Instant, protected: &HashSet<PeerId>) {
        self.relay_peers.retain(|_, t| now.saturating_duration_since(*t) < RELAY_PEER_PROTECTED_FOR);
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let close = peers::excess(&connected, protected, self.max_peers, &mut rand::rng());
        if !close.is_empty() {
            tracing::debug!(connected = connected.len(), target = self.max_peers, closing = close.len(), "over the target number of connections");
        }
        for peer in close {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn peer_lost(&mut self, peer: PeerId) {
        let st = self.peers.entry(peer).or_default();
        st.connected = false;
        if let Some(since) = st.connected_since.take() {
            let now = Instant::now();
            st.backoff = peers::next_backoff(st.backoff, now.saturating_duration_since(since));
            st.backoff_until = (!st.backoff.is_zero()).then(|| now + st.backoff);
            if !st.backoff.is_zero() {
                tracing::debug!(%peer, backoff = ?st.backoff, "connection closed early: not redialled meanwhile unless needed");
            }
        }
        let first = !st.lost_reported;
        st.lost_reported = true;
        if first {
            st.lost_at = Some(Instant::now());
        }
        self.with_dir(|d| d.remove_peer(&peer));
        if first {
            tracing::info!(%peer, "peer lost");
            self.emit(MeshEvent::PeerLost(peer));
        }
    }

    fn answer_inbound(&mut self, id: u64, result: Result<RelayResult, ()>) {
        let Some(channel) = self.inbound_channels.remove(&id) else { return };
        let response = result.unwrap_or_else(|()| Err(RelayError::Internal("no answer from node".into())));
        if self.swarm.behaviour_mut().relay_rr.send_response(channel, response).is_err() {
            tracing::debug!("relay response could not be sent (connection closed)");
        }
    }

    /// Publishes the number of connected peers for [`crate::Mesh::connected_peers`].
    fn count_connected(&self) {
        let n = self.swarm.connected_peers().count();
        self.connected.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn handle_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(ev) => self.handle_behaviour_event(ev),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, peer = %self.swarm.local_peer_id(), "mesh listening");
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                let addr = endpoint.get_remote_address().clone();
                let ip = trust::ip_of(&addr);
                if endpoint.is_dialer() {
                    self.remember_addr(peer_id, addr);
                }
                let st = self.peers.entry(peer_id).or_default();
                if let Some(ip) = ip
                    && !st.seen_ips.contains(&ip)
                {
                    if st.seen_ips.len() >= SEEN_IPS_PER_PEER {
                        st.seen_ips.remove(0);
                    }
                    st.seen_ips.push(ip);
                }
                st.connected = true;
                st.lost_reported = false;
                st.lost_at = None;
                st.connected_since.get_or_insert_with(Instant::now);
                self.liveness.connected(peer_id, Instant::now());
                self.with_dir(|d| d.set_connected(peer_id));
                self.count_connected();
                if num_established.get() == 1 {
                    tracing::debug!(%peer_id, "peer connected");
                    self.emit(MeshEvent::PeerDiscovered(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, cause, .. } => {
                tracing::debug!(%peer_id, ?cause, "last connection closed");
                self.relay_rate.forget(&peer_id);
                self.liveness.disconnected(&peer_id);
                self.peer_lost(peer_id);
                self.count_connected();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, "outgoing connection failed: {error}");
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                if matches!(error, libp2p::swarm::ListenError::Denied { .. }) {
                    self.with_dir(|d| d.denied_connections += 1);
                    if let Some(held) = self.logs.conn.check(Instant::now()) {
                        tracing::warn!(%send_back_addr, suppressed = held, "incoming connection denied: {error}");
                    }
                } else {
                    tracing::debug!(%send_back_addr, "incoming connection failed: {error}");
                }
            }
            _ => {}
        }
    }

    fn handle_behaviour_event(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Gossipsub(ev) => self.handle_gossip(ev),
            BehaviourEvent::RelayRr(ev) => self.handle_rr(ev),
            BehaviourEvent::PathRr(ev) => self.handle_path(ev),
            BehaviourEvent::Ping(ping::Event { peer, result, .. }) => match result {
                Ok(rtt) => {
                    let st = self.peers.entry(peer).or_default();
                    st.rtt = Some(rtt);
                    self.liveness.pong(peer, Instant::now());
                    if let Ok(mut d) = self.dir.lock() {
                        d.set_rtt(peer, rtt);
                    }
                }
                Err(ping::Failure::Unsupported) => self.liveness.unsupported(peer),
                // One connection's failed ping is not the peer's loss (another connection may
                // be answering): the time since the last pong decides, in `check_liveness`.
                Err(e) => tracing::debug!(%peer, "ping failed: {e}"),
            },
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocol_version != behaviour::IDENTIFY_PROTOCOL {
                    tracing::debug!(%peer_id, version = %info.protocol_version, "peer speaks another protocol version");
                }
                let ipfs_kad = info.protocols.iter().any(|p| p.as_ref() == behaviour::IPFS_KAD_PROTOCOL);
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                    if ipfs_kad && let Some(k) = self.swarm.behaviour_mut().ipfs_kad.as_mut() {
                        k.add_address(&peer_id, addr.clone());
                    }
                    self.remember_addr(peer_id, addr);
                }
            }
            BehaviourEvent::Identify(_) => {}
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    tracing::debug!(%peer, %addr, "mdns discovered");
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    self.remember_addr(peer, addr.clone());
                    self.dial(peer, Some(addr), DialReason::Heard);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
            BehaviourEvent::Kad(ev) => self.handle_kad(ev),
            BehaviourEvent::IpfsKad(ev) => tracing::trace!(?ev, "IPFS DHT"),
            BehaviourEvent::Autonat(libp2p::autonat::Event::StatusChanged { old, new }) => {
                tracing::info!(?old, ?new, "reachability changed");
                if matches!(new, libp2p::autonat::NatStatus::Private) {
                    self.reserve_relays();
                }
            }
            BehaviourEvent::RelayClient(ev) => tracing::debug!(?ev, "relay client"),
            BehaviourEvent::Dcutr(ev) => tracing::debug!(?ev, "hole punching"),
            BehaviourEvent::RelayServer(_) | BehaviourEvent::Autonat(_) => {}
            BehaviourEvent::Bitswap(never) => match never {},
            BehaviourEvent::Limits(never) | BehaviourEvent::Memory(never) => match never {},
        }
    }

    fn handle_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::RoutingUpdated { peer, addresses, .. } => {
                for a in addresses.iter() {
                    self.remember_addr(peer, a.clone());
                }
                self.dial(peer, None, DialReason::Heard);
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders { providers, .. })),
                ..
            } => {
                for p in providers {
                    tracing::debug!(provider = %p, "stream provider found");
                    self.dial(p, None, DialReason::Needed);
                }
            }
            _ => {}
        }
    }

    fn handle_rr(&mut self, ev: request_response::Event<RelayRequest, RelayResult>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let now = Instant::now();
                    self.relay_peers.insert(peer, now);
                    let refusal = if !self.trusted.is_empty() && !self.trusted.contains(&peer) {
                        Some(RelayError::NotTrusted)
                    } else if !trust::valid_stream_name(&request.stream) {
                        Some(RelayError::Bad("invalid stream name".into()))
                    } else if !self.relay_rate.allow(&peer, now) {
                        Some(RelayError::RateLimited)
                    } else if self.inbound_channels.len() >= MAX_PENDING_INBOUND {
                        Some(RelayError::Internal("too many relay requests in progress".into()))
                    } else {
                        None
                    };
                    if let Some(err) = refusal {
                        self.with_dir(|d| d.refused_relay_requests += 1);
                        if let Some(held) = self.logs.relay.check(now) {
                            tracing::info!(%peer, suppressed = held, "relay request refused: {err}");
                        }
                        let _ = self.swarm.behaviour_mut().relay_rr.send_response(channel, Err(err));
                        return;
                    }
                    let (tx, rx) = oneshot::channel();
                    let ev = MeshEvent::RelayRequest { from: peer, request, reply: tx };
                    if self.events.try_send(ev).is_err() {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .relay_rr
                            .send_response(channel, Err(RelayError::Internal("node not accepting requests".into())));
                        return;
                    }
                    let id = self.next_inbound;
                    self.next_inbound += 1;
                    self.inbound_channels.insert(id, channel);
                    self.pending_in.push(Box::pin(async move {
                        match tokio::time::timeout(RELAY_REQUEST_TIMEOUT, rx).await {
                            Ok(Ok(r)) => (id, Ok(r)),
                            _ => (id, Err(())),
                        }
                    }));
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(tx) = self.pending_out.remove(&request_id) {
                        let _ = tx.send(response.map_err(MeshError::Relay));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                tracing::debug!(%peer, "relay request failed: {error}");
                if let Some(tx) = self.pending_out.remove(&request_id) {
                    let _ = tx.send(Err(MeshError::Request(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound relay request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn strip_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

