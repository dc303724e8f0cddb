//! The node in the mesh: pulls streams it does not have from other nodes (relay-in), serves
//! other nodes' relay requests (relay-out), re-attaches when an upstream dies, announces its
//! streams and load, and answers placement questions.

pub mod api;
pub mod args;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use relaycast_cluster::{bounds, placement};
use relaycast_mesh::{
    Mesh, MeshEvent, NodeLoad, PeerId, RelayError, RelayRequest, RelayResponse, StreamAnnouncement, StreamPresence,
};
use relaycast_sfu::Sfu;
use relaycast_sfu::stream::SessionId;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How long to look for a stream in the mesh before a WHEP request gets 404.
const FIND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an upstream node may take to answer a relay request.
const RELAY_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a relayed stream with neither viewers nor relay children is kept.
const IDLE_RELAY: Duration = Duration::from_secs(30);
/// How long a node keeps trying to re-attach a stream whose upstream died.
const REATTACH_FOR: Duration = Duration::from_secs(20);
/// Pause between re-attach rounds.
const REATTACH_PAUSE: Duration = Duration::from_millis(250);
/// How often load and streams are refreshed into the mesh.
const REFRESH: Duration = Duration::from_millis(500);

/// A stream this node receives from an upstream node.
#[derive(Debug, Clone)]
struct RelayIn {
    upstream: PeerId,
    session: SessionId,
    /// This node's depth in the stream's tree (upstream's depth + 1).
    depth: u32,
    idle_since: Option<Instant>,
}

/// A downstream node this node relays a stream to.
#[derive(Debug, Clone)]
struct RelayOut {
    peer: PeerId,
}

struct State {
    relays_in: HashMap<String, RelayIn>,
    relays_out: HashMap<SessionId, RelayOut>,
    /// One attach at a time per stream (entries only while in use, bounded).
    attaching: bounds::AttachLocks<tokio::sync::Mutex<()>>,
    /// Names recently looked up and not found.
    absent: bounds::NegativeCache,
    /// Since when the node has known other nodes (its directory fills by gossip).
    meshed_since: Option<Instant>,
}

impl Default for State {
    fn default() -> Self {
        State {
            relays_in: HashMap::new(),
            relays_out: HashMap::new(),
            attaching: bounds::AttachLocks::new(bounds::MAX_ATTACH_LOCKS),
            absent: bounds::NegativeCache::default(),
            meshed_since: None,
        }
    }
}

/// Requests for streams this node answered as absent, or could not take, by reason.
#[derive(Debug, Default)]
struct Refusals {
    alone: AtomicU64,
    not_in_directory: AtomicU64,
    negative_cache: AtomicU64,
    too_many_lookups: AtomicU64,
    locks_full: AtomicU64,
    lookups: AtomicU64,
    taken: AtomicU64,
}

/// Holds a stream's attach lock; frees the lock's entry when the last holder is done.
struct AttachLease<'a> {
    cluster: &'a Cluster,
    stream: &'a str,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for AttachLease<'_> {
    fn drop(&mut self) {
        self.guard.take();
        self.cluster.state().attaching.release(self.stream);
    }
}

/// Counts a DHT lookup in flight.
struct LookupSlot<'a>(&'a AtomicUsize);

impl Drop for LookupSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The node's mesh role; shared by the HTTP handlers and the mesh event loop.
pub struct Cluster {
    sfu: Arc<Sfu>,
    mesh: Mesh,
    http_url: String,
    region: Option<String>,
    max_relay_children: u32,
    capacity: u32,
    state: Mutex<State>,
    lookups: AtomicUsize,
    refusals: Refusals,
    /// One log line per period for requests refused in bulk.
    refusal_log: Mutex<relaycast_mesh::trust::LogLimiter>,
    /// The TURN server's set of mesh peers' media addresses, kept current from the directory.
    turn_peers: Mutex<Option<relaycast_turn::MeshPeers>>,
}

impl Cluster {
    /// Wraps a started mesh; call [`Cluster::run`] to serve it.
    pub fn new(sfu: Arc<Sfu>, mesh: Mesh, http_url: String, region: Option<String>, max_relay_children: u32, capacity: u32) -> Arc<Self> {
        Arc::new(Cluster {
            sfu,
            mesh,
            http_url,
            region,
            max_relay_children,
            capacity,
            state: Mutex::default(),
            lookups: AtomicUsize::new(0),
            refusals: Refusals::default(),
            refusal_log: Mutex::new(relaycast_mesh::trust::LogLimiter::new(Duration::from_secs(5))),
            turn_peers: Mutex::new(None),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `peers` (the TURN server's relayable mesh peers) equal to the media addresses that
    /// the mesh's signed nodes announce (trusted ones only with `--trusted-peer`).
    pub fn feed_turn(&self, peers: relaycast_turn::MeshPeers) {
        *self.turn_peers.lock().unwrap_or_else(|e| e.into_inner()) = Some(peers);
    }

    fn update_turn_peers(&self) {
        let Some(peers) = self.turn_peers.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return };
        let dir = self.mesh.directory();
        let me = self.mesh.peer_id();
        let addrs = mesh_media_addrs(&dir, me, |p| self.mesh.is_trusted(p));
        if peers.set(addrs) {
            debug!(count = peers.snapshot().len(), "TURN relays to these mesh peers' media addresses");
        }
    }

    /// The mesh handle.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The node's HTTP base URL as announced.
    pub fn http_url(&self) -> &str {
        &self.http_url
    }

    /// Handles mesh events and refreshes announcements until the event channel closes.
    pub async fn run(self: Arc<Self>, mut events: mpsc::Receiver<MeshEvent>) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_event(ev);
                }
                _ = tick.tick() => self.refresh().await,
            }
        }
    }

    fn on_event(self: &Arc<Self>, ev: MeshEvent) {
        match ev {
            MeshEvent::RelayRequest { from, request, reply } => {
                let this = self.clone();
                tokio::spawn(async move {
                    let result = this.serve_relay(from, request).await;
                    let _ = reply.send(result);
                });
            }
            MeshEvent::PeerLost(peer) => self.on_peer_lost(peer),
            MeshEvent::PeerDiscovered(peer) => debug!(%peer, "mesh peer discovered"),
            MeshEvent::StreamTaken { stream, holder } => {
                self.refusals.taken.fetch_add(1, Ordering::Relaxed);
                warn!(stream = %stream, %holder, "another node holds this stream's name in the mesh; its local publish stays local");
            }
            // The origin archived a segment of a stream we relay: tell our viewers.
            MeshEvent::Segment(seg) => {
                if self.state().relays_in.contains_key(&seg.stream) {
                    let ev = relaycast_sfu::stream::SessionEvent::Segment {
                        seq: seg.seq,
                        cid: seg.cid,
                        duration_ms: (seg.duration * 1000.0).round() as u64,
                    };
                    self.sfu.broadcast(&seg.stream, &ev);
                }
            }
        }
    }

    /// An upstream or a downstream node went away: drop what we relay to it, and re-attach
    /// every stream we received from it.
    fn on_peer_lost(self: &Arc<Self>, peer: PeerId) {
        let (children, orphaned) = {
            let st = self.state();
            let children: Vec<SessionId> =
                st.relays_out.iter().filter(|(_, r)| r.peer == peer).map(|(id, _)| *id).collect();
            let orphaned: Vec<String> =
                st.relays_in.iter().filter(|(_, r)| r.upstream == peer).map(|(s, _)| s.clone()).collect();
            (children, orphaned)
        };
        for id in children {
            info!(%peer, session = id, "downstream node lost: ending its relay");
            let _ = self.sfu.close(id);
            self.state().relays_out.remove(&id);
        }
        for stream in orphaned {
            warn!(%peer, stream = %stream, "upstream node lost: re-attaching");
            let this = self.clone();
            tokio::spawn(async move { this.reattach(stream, Some(peer)).await });
        }
    }

    /// Re-attaches `stream` to another upstream; local viewers keep their connections.
    async fn reattach(self: Arc<Self>, stream: String, lost: Option<PeerId>) {
        let Some(_lease) = self.attach_lease(&stream).await else { return };
        let old = self.state().relays_in.remove(&stream);
        let Some(old) = old else { return };
        if lost.is_none_or(|p| p == old.upstream) {
            let _ = self.sfu.close_and_wait(old.session).await;
        }
        let started = Instant::now();
        let mut exclude: Vec<PeerId> = lost.into_iter().collect();
        while started.elapsed() < REATTACH_FOR {
            let ann = self.mesh.find_stream(&stream, FIND_TIMEOUT).await;
            if let Some(ann) = ann {
                if self.attach(&stream, &ann, &mut exclude).await {
                    info!(stream = %stream, after_ms = started.elapsed().as_millis() as u64, "stream re-attached");
                    return;
                }
            } else {
                debug!(stream = %stream, "stream not announced in the mesh any more");
            }
            // Everyone refused: try them all again after a pause (loads change).
            exclude.retain(|p| Some(*p) == lost);
            tokio::time::sleep(REATTACH_PAUSE).await;
        }
        warn!(stream = %stream, "could not re-attach the stream to any upstream node");
    }

    /// Waits for the stream's attach lock; `None` when too many streams are being attached.
    async fn attach_lease<'a>(&'a self, stream: &'a str) -> Option<AttachLease<'a>> {
        let lock = self.state().attaching.acquire(stream);
        let Some(lock) = lock else {
            self.refused(bounds::Absent::TooManyLookups, stream, true);
            return None;
        };
        let mut lease = AttachLease { cluster: self, stream, guard: None };
        lease.guard = Some(lock.lock_owned().await);
        Some(lease)
    }

    /// Counts (and logs, rate-limited) a stream request answered without a lookup.
    fn refused(&self, why: bounds::Absent, stream: &str, locks_full: bool) {
        let r = &self.refusals;
        let counter = if locks_full {
            &r.locks_full
        } else {
            match why {
                bounds::Absent::Alone => &r.alone,
                bounds::Absent::NotInDirectory => &r.not_in_directory,
                bounds::Absent::NegativeCache => &r.negative_cache,
                bounds::Absent::TooManyLookups => &r.too_many_lookups,
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let held = self.refusal_log.lock().unwrap_or_else(|e| e.into_inner()).check(Instant::now());
        if let Some(held) = held {
            debug!(stream, ?why, locks_full, suppressed = held, "stream not in the mesh; answered without a lookup");
        }
    }

    /// Makes `stream` available here by relaying it from the best upstream node (never from a
    /// node in `exclude`, such as the downstream node asking us for it).
    async fn ensure(&self, stream: &str, exclude: &[PeerId]) -> bool {
        // Answer from the directory first: an unknown name neither holds a lock entry nor
        // starts a lookup once the directory is complete.
        let me = self.mesh.peer_id();
        let ann = {
            let dir = self.mesh.directory();
            let known = dir.stream(stream).filter(|a| a.origin != me).cloned();
            let alone = dir.nodes.is_empty() && dir.streams.is_empty();
            let now = Instant::now();
            let st = self.state();
            let meshed_for = st.meshed_since.map(|t| now.saturating_duration_since(t));
            let negative = st.absent.contains(stream, now);
            drop(st);
            match bounds::plan(known.is_some(), alone, meshed_for, negative, self.lookups.load(Ordering::Relaxed)) {
                bounds::Plan::Attach => known,
                bounds::Plan::NotFound(why) => {
                    self.refused(why, stream, false);
                    return self.sfu.has_source(stream);
                }
                bounds::Plan::Lookup => None,
            }
        };
        let Some(_lease) = self.attach_lease(stream).await else { return false };
        if self.sfu.has_source(stream) {
            return true;
        }
        let ann = match ann {
            Some(a) => a,
            None => {
                if self.lookups.fetch_add(1, Ordering::Relaxed) >= bounds::MAX_LOOKUPS {
                    self.lookups.fetch_sub(1, Ordering::Relaxed);
                    self.refused(bounds::Absent::TooManyLookups, stream, false);
                    return false;
                }
                let _slot = LookupSlot(&self.lookups);
                self.refusals.lookups.fetch_add(1, Ordering::Relaxed);
                let Some(ann) = self.mesh.find_stream(stream, FIND_TIMEOUT).await else {
                    debug!(stream, "no node of the mesh announces the stream");
                    self.state().absent.insert(stream, Instant::now());
                    return false;
                };
                ann
            }
        };
        if ann.origin == self.mesh.peer_id() {
            return false;
        }
        let mut exclude = exclude.to_vec();
        self.attach(stream, &ann, &mut exclude).await
    }

    /// Tries upstream candidates in order until one relays the stream to us.
    async fn attach(&self, stream: &str, ann: &StreamAnnouncement, exclude: &mut Vec<PeerId>) -> bool {
        let simulcast = ann.layers.len() > 1;
        let mut candidates =
            placement::relay_candidates(&self.mesh.directory(), stream, ann.origin, self.mesh.peer_id(), exclude);
        // With --trusted-peer, pull only from trusted nodes.
        candidates.retain(|p| self.mesh.is_trusted(p));
        for peer in candidates {
            exclude.push(peer);
            let (id, offer) = match self.sfu.relay_offer(stream, simulcast).await {
                Ok(x) => x,
                Err(e) => {
                    warn!(stream, error = %e, "cannot create a relay offer");
                    return false;
                }
            };
            let req = RelayRequest { stream: stream.to_string(), offer_sdp: offer };
            match self.mesh.request_relay(peer, req, RELAY_REQUEST_TIMEOUT).await {
                Ok(resp) => match self.sfu.relay_answer(id, &resp.answer_sdp).await {
                    Ok(()) => {
                        let depth = resp.depth.saturating_add(1);
                        info!(stream, upstream = %peer, depth, "relaying stream from upstream node");
                        self.state().relays_in.insert(
                            stream.to_string(),
                            RelayIn { upstream: peer, session: id, depth, idle_since: None },
                        );
                        self.mesh.follow_segments(stream, true);
                        return true;
                    }
                    Err(e) => {
                        warn!(stream, upstream = %peer, error = %e, "upstream's relay answer rejected");
                        let _ = self.sfu.close_and_wait(id).await;
                    }
                },
                Err(e) => {
                    info!(stream, upstream = %peer, error = %e, "upstream refused or failed the relay request");
                    let _ = self.sfu.close_and_wait(id).await;
                }
            }
        }
        false
    }

    /// This node's depth for a stream it carries (0 = origin).
    fn depth_of(&self, stream: &str) -> u32 {
        self.state().relays_in.get(stream).map_or(0, |r| r.depth)
    }

    /// Answers a downstream node's relay request.
    async fn serve_relay(&self, from: PeerId, req: RelayRequest) -> Result<RelayResponse, RelayError> {
        if !relaycast_signaling::sessions::valid_stream_name(&req.stream) {
            return Err(RelayError::Bad("invalid stream name".into()));
        }
        if !self.sfu.has_source(&req.stream) && !self.ensure(&req.stream, &[from]).await {
            return Err(RelayError::NotFound);
        }
        if self.state().relays_in.get(&req.stream).is_some_and(|r| r.upstream == from) {
            return Err(RelayError::Bad("the requesting node is this node's upstream".into()));
        }
        if self.sfu.relay_children() >= self.max_relay_children as usize {
            info!(%from, stream = %req.stream, max = self.max_relay_children, "relay fan-out full");
            return Err(RelayError::Full);
        }
        let (id, answer) = self.sfu.relay_serve(&req.stream, &req.offer_sdp).await.map_err(|e| match e {
            relaycast_sfu::SfuError::BadSdp(m) => RelayError::Bad(m),
            relaycast_sfu::SfuError::StreamNotFound => RelayError::NotFound,
            relaycast_sfu::SfuError::Full => RelayError::Full,
            e => RelayError::Internal(e.to_string()),
        })?;
        self.state().relays_out.insert(id, RelayOut { peer: from });
        let depth = self.depth_of(&req.stream);
        info!(%from, stream = %req.stream, session = id, depth, "relaying stream to downstream node");
        Ok(RelayResponse { answer_sdp: answer, depth })
    }

    /// Periodic work: notice relay sessions that ended, drop idle relays, and announce.
    async fn refresh(self: &Arc<Self>) {
        let now = Instant::now();
        {
            let meshed = !self.mesh.directory().nodes.is_empty();
            let mut st = self.state();
            match (meshed, st.meshed_since) {
                (true, None) => st.meshed_since = Some(now),
                (false, Some(_)) => st.meshed_since = None,
                _ => {}
            }
        }
        let summaries = self.sfu.streams();
        let mut dead = Vec::new();
        let mut idle = Vec::new();
        {
            let mut st = self.state();
            let sfu = &self.sfu;
            st.relays_out.retain(|id, _| sfu.session_info(*id).is_some());
            for (name, r) in st.relays_in.iter_mut() {
                if sfu.session_info(r.session).is_none() {
                    dead.push(name.clone());
                    continue;
                }
                let s = summaries.iter().find(|s| &s.name == name);
                let used = s.is_some_and(|s| s.viewers > 0 || s.relay_children > 0);
                if used {
                    r.idle_since = None;
                } else if now.duration_since(*r.idle_since.get_or_insert(now)) > IDLE_RELAY {
                    idle.push((name.clone(), r.session));
                }
            }
            for (name, _) in &idle {
                st.relays_in.remove(name);
            }
        }
        for (name, session) in idle {
            info!(stream = %name, "no viewers left: ending the relay from upstream");
            self.mesh.follow_segments(&name, false);
            let _ = self.sfu.close(session);
        }
        for name in dead {
            let wanted = summaries.iter().any(|s| s.name == name && (s.viewers > 0 || s.relay_children > 0));
            if wanted {
                info!(stream = %name, "relay from upstream ended: re-attaching");
                let this = self.clone();
                tokio::spawn(async move { this.reattach(name, None).await });
            } else {
                self.state().relays_in.remove(&name);
            }
        }
        self.announce(&summaries);
        self.update_turn_peers();
    }

    /// Announces the streams this node originates and its load.
    fn announce(&self, summaries: &[relaycast_sfu::StreamSummary]) {
        let me = self.mesh.peer_id();
        let load = self.load_of(summaries);
        let origin = {
            let st = self.state();
            summaries
                .iter()
                .filter(|s| s.live && !st.relays_in.contains_key(&s.name))
                .map(|s| StreamAnnouncement {
                    origin: me,
                    stream: s.name.clone(),
                    codec: s.codec.unwrap_or("").to_string(),
                    layers: s.layers.iter().map(|l| l.rid.clone()).collect(),
                    http_url: self.http_url.clone(),
                    // The mesh task stamps the time the stream was first announced.
                    started_ms: 0,
                })
                .collect()
        };
        self.mesh.set_local_streams(origin);
        self.mesh.set_load(load);
    }

    /// This node's load from its streams' summaries: viewers, egress, fan-out, and per carried
    /// stream its depth, upstream and bitrate.
    fn load_of(&self, summaries: &[relaycast_sfu::StreamSummary]) -> NodeLoad {
        let st = self.state();
        let mut load = NodeLoad {
            http_url: self.http_url.clone(),
            region: self.region.clone(),
            capacity: self.capacity,
            max_relay_children: self.max_relay_children,
            media_addrs: self.sfu.media_addrs().iter().filter(|a| !a.ip().is_unspecified()).copied().collect(),
            ..NodeLoad::default()
        };
        for s in summaries {
            load.viewers += s.viewers as u32;
            load.relay_children += s.relay_children as u32;
            let relayed = st.relays_in.get(&s.name);
            if !s.live && relayed.is_none() {
                continue;
            }
            let ingress: u64 = s.layers.iter().map(|l| l.bitrate).sum::<u64>() + s.audio.bitrate;
            load.egress_bps += ingress.saturating_mul((s.viewers + s.relay_children) as u64);
            load.streams.push(StreamPresence {
                stream: s.name.clone(),
                depth: relayed.map_or(0, |r| r.depth),
                upstream: relayed.map(|r| r.upstream),
                viewers: s.viewers as u32,
                relay_children: s.relay_children as u32,
                ingress_bps: ingress,
            });
        }
        load
    }

    /// This node's own load, as it would announce it.
    pub fn local_load(&self) -> NodeLoad {
        self.load_of(&self.sfu.streams())
    }

    /// The best node for a new viewer of `stream` (possibly this one).
    pub fn placement(&self, stream: &str) -> Option<(PeerId, NodeLoad)> {
        let dir = self.placeable();
        placement::best_node_for_viewer(&dir, stream, self.mesh.peer_id(), &self.local_load(), self.region.as_deref())
    }

    /// The HTTP base URL of `stream`'s origin when it is another node that viewers may be sent
    /// to (for `/replay` redirects): its URL verified, and trusted when `--trusted-peer` is set.
    pub fn origin_url(&self, stream: &str) -> Option<String> {
        origin_url_in(&self.mesh.directory(), stream, self.mesh.peer_id(), |p| self.mesh.is_trusted(p))
    }

    /// The directory restricted to nodes viewers may be sent to: a verified HTTP URL, and
    /// trusted when `--trusted-peer` is set.
    fn placeable(&self) -> relaycast_mesh::Directory {
        let mut dir = self.mesh.directory();
        dir.nodes.retain(|p, e| !e.load.http_url.is_empty() && self.mesh.is_trusted(p));
        dir
    }

    /// Closes every relay (at shutdown).
    pub async fn shutdown(&self) {
        let sessions: Vec<SessionId> = {
            let st = self.state();
            st.relays_in.values().map(|r| r.session).chain(st.relays_out.keys().copied()).collect()
        };
        for id in sessions {
            let _ = self.sfu.close(id);
        }
        self.mesh.shutdown().await;
    }
}

/// The media addresses announced by the signed nodes of `dir` (other than `me`) that are
/// `trusted`; each node's list was already cut to the IPs it is seen at.
fn mesh_media_addrs(
    dir: &relaycast_mesh::Directory,
    me: PeerId,
    trusted: impl Fn(&PeerId) -> bool,
) -> Vec<std::net::SocketAddr> {
    dir.nodes
        .iter()
        .filter(|(p, _)| **p != me && trusted(p))
        .flat_map(|(_, e)| e.load.media_addrs.iter().copied())
        .collect()
}

/// The origin URL of `stream` in `dir` for redirects: another node's (not `me`), verified
/// (non-empty), and `trusted`. Origin claims of untrusted nodes stay in the directory (a name
/// live anywhere is taken everywhere) but never receive this node's viewers.
fn origin_url_in(
    dir: &relaycast_mesh::Directory,
    stream: &str,
    me: PeerId,
    trusted: impl Fn(&PeerId) -> bool,
) -> Option<String> {
    dir.stream(stream)
        .filter(|a| a.origin != me && !a.http_url.is_empty() && trusted(&a.origin))
        .map(|a| a.http_url.clone())
}

impl Cluster {
    /// The mesh's refusal counters in the OpenMetrics text format.
    fn metrics(&self) -> String {
        use std::fmt::Write as _;
        let d = self.mesh.directory();
        let r = &self.refusals;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (reason, v) in rows {
                let _ = writeln!(out, "{name}_total{{reason=\"{reason}\"}} {v}");
            }
        };
        family(
            "relaycast_mesh_refused",
            "Mesh inputs refused, by reason",
            &[
                ("invalid_gossip", d.rejected.saturating_sub(d.rejected_segments).saturating_sub(d.rejected_forged)),
                ("forged_origin", d.rejected_forged),
                ("competing_claim", d.rejected_claims),
                ("http_url", d.rejected_urls),
                ("segment_not_from_origin", d.rejected_segments),
                ("relay_request", d.refused_relay_requests),
                ("connection_limit", d.denied_connections),
                ("media_addr", d.rejected_media_addrs),
            ],
        );
        family(
            "relaycast_mesh_stream_not_found",
            "Requests for streams answered as absent without waiting, by reason",
            &[
                ("alone", l(&r.alone)),
                ("not_in_directory", l(&r.not_in_directory)),
                ("negative_cache", l(&r.negative_cache)),
                ("too_many_lookups", l(&r.too_many_lookups)),
                ("attach_locks_full", l(&r.locks_full)),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP relaycast_mesh_lookups DHT lookups started for streams\n# TYPE relaycast_mesh_lookups counter\nrelaycast_mesh_lookups_total {}",
            l(&r.lookups)
        );
        let _ = writeln!(
            out,
            "# HELP relaycast_mesh_streams_taken Local publishes whose name another node holds\n# TYPE relaycast_mesh_streams_taken counter\nrelaycast_mesh_streams_taken_total {}",
            l(&r.taken)
        );
        let _ = writeln!(
            out,
            "# HELP relaycast_mesh_withdrawals Origin claims freed by their origin's signed withdrawal\n# TYPE relaycast_mesh_withdrawals counter\nrelaycast_mesh_withdrawals_total {}",
            d.withdrawals
        );
        if let Some(b) = self.mesh.bitswap_stats() {
            out.push_str(&bitswap_metrics(&b));
        }
        out
    }
}

/// The Bitswap server's counters in the OpenMetrics text format: its refusals by reason (inbound
/// streams over the per-peer or total limit, malformed or oversized messages) and its traffic.
fn bitswap_metrics(b: &relaycast_mesh::bitswap::Stats) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP relaycast_mesh_bitswap_refused Bitswap inbound streams dropped, by reason\n# TYPE relaycast_mesh_bitswap_refused counter"
    );
    let _ = writeln!(out, "relaycast_mesh_bitswap_refused_total{{reason=\"streams_limit\"}} {}", b.streams_refused);
    let _ = writeln!(out, "relaycast_mesh_bitswap_refused_total{{reason=\"bad_message\"}} {}", b.bad_messages);
    for (name, help, v) in [
        ("relaycast_mesh_bitswap_messages_received", "Bitswap messages received", b.messages_received),
        ("relaycast_mesh_bitswap_blocks_sent", "Blocks sent over Bitswap", b.blocks_sent),
        ("relaycast_mesh_bitswap_block_bytes_sent", "Block bytes sent over Bitswap", b.bytes_sent),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {v}");
    }
    out
}

impl relaycast_signaling::Cluster for Cluster {
    fn live_elsewhere(&self, stream: &str) -> Option<String> {
        let (peer, url) = self.mesh.live_elsewhere(stream)?;
        let url = if url.is_empty() { "(URL not verified)".to_string() } else { url };
        Some(format!("stream {stream:?} is live on another node of the mesh: peer {peer} at {url}"))
    }

    fn metrics_text(&self) -> String {
        self.metrics()
    }

    fn ensure_stream<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(self.ensure(stream, &[]))
    }

    fn redirect<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let me = self.mesh.peer_id();
            // This node is full: place the viewer among the others.
            let mut full = self.local_load();
            full.viewers = full.capacity;
            let dir = self.placeable();
            let (peer, load) = placement::best_node_for_viewer(&dir, stream, me, &full, self.region.as_deref())?;
            // Only to nodes whose URL was verified, and with --trusted-peer only to trusted ones.
            (peer != me && !load.http_url.is_empty() && self.mesh.is_trusted(&peer))
                .then(|| format!("{}/whep/{stream}", load.http_url.trim_end_matches('/')))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_relays_to_trusted_mesh_peers_media_addresses() {
        let (me, a, b) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut dir = relaycast_mesh::Directory::default();
        let now = Instant::now();
        for (p, addr) in [(me, "192.0.2.1:1000"), (a, "198.51.100.2:2000"), (b, "203.0.113.3:3000")] {
            let load = NodeLoad { media_addrs: vec![addr.parse().unwrap()], ..Default::default() };
            dir.insert_load(p, load, now, true);
        }
        let mut all = mesh_media_addrs(&dir, me, |_| true);
        all.sort();
        assert_eq!(all, vec!["198.51.100.2:2000".parse().unwrap(), "203.0.113.3:3000".parse().unwrap()]);
        assert_eq!(mesh_media_addrs(&dir, me, |p| *p == a), vec!["198.51.100.2:2000".parse().unwrap()], "--trusted-peer");
        let peers = relaycast_turn::MeshPeers::default();
        peers.set(all);
        assert!(peers.contains("203.0.113.3:3000".parse().unwrap()));
    }

    #[test]
    fn bitswap_refusals_are_exported() {
        let stats = relaycast_mesh::bitswap::Stats { streams_refused: 7, bad_messages: 2, blocks_sent: 3, ..Default::default() };
        let text = relaycast_signaling::server::metrics::append_families("# EOF\n".into(), &bitswap_metrics(&stats));
        assert!(text.contains("relaycast_mesh_bitswap_refused_total{reason=\"streams_limit\"} 7\n"), "{text}");
        assert!(text.contains("relaycast_mesh_bitswap_refused_total{reason=\"bad_message\"} 2\n"));
        assert!(text.contains("# TYPE relaycast_mesh_bitswap_blocks_sent counter\nrelaycast_mesh_bitswap_blocks_sent_total 3\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn replay_redirects_only_to_verified_trusted_origins() {
        let (me, good, stranger, unverified) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
        let mut dir = relaycast_mesh::Directory::default();
        let now = Instant::now();
        for (origin, name, url) in [
            (me, "mine", "http://127.0.0.1:1"),
            (good, "good", "http://127.0.0.1:2"),
            (stranger, "theirs", "http://127.0.0.1:3"),
            (unverified, "blank", ""),
        ] {
            let ann = StreamAnnouncement {
                origin,
                stream: name.into(),
                codec: "VP8".into(),
                layers: vec![],
                http_url: url.into(),
                started_ms: 1,
            };
            dir.insert_stream(ann, now);
        }
        let trusted = |p: &PeerId| *p == good || *p == unverified;
        assert_eq!(origin_url_in(&dir, "good", me, trusted), Some("http://127.0.0.1:2".into()));
        assert_eq!(origin_url_in(&dir, "theirs", me, trusted), None, "untrusted origin: no redirect");
        assert_eq!(origin_url_in(&dir, "blank", me, trusted), None, "no verified URL: no redirect to ourselves");
        assert_eq!(origin_url_in(&dir, "mine", me, trusted), None, "this node's own stream");
        assert_eq!(origin_url_in(&dir, "none", me, trusted), None);
        // Without --trusted-peer every verified origin qualifies, and its claim stays visible.
        assert_eq!(origin_url_in(&dir, "theirs", me, |_| true), Some("http://127.0.0.1:3".into()));
        assert!(dir.stream("theirs").is_some());
    }
}
