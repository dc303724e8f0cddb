//! The cluster core: a state machine for the node's relays (inputs and time in, actions out).
//!
//! Feed it [`Input`]s with [`Core::handle_input`] and [`Core::handle_timeout`], then drain
//! [`Output`]s with [`Core::poll_output`] and carry them out (relay requests over the mesh, SFU
//! relay sessions, HTTP answers), and [`PathPush`]es with [`Core::poll_push`] and send each to
//! its relay child (which feeds it to its core as [`Input::PathUpdate`]); the results come back
//! as inputs. It owns the node's identity in the mesh (HTTP URL, region, capacity, fan-out and
//! depth caps), the streams it receives from an upstream node (relays in) and sends to
//! downstream nodes (relays out), the attaches in progress (`attach`), the paths pushed down the
//! tree (`push`), standby upstreams (`standby`), planned moves to them (`handover`) and the
//! failover of relays whose upstream is lost, stalls or moves into a cycle.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relaycast_mesh::{Directory, NodeLoad, PeerId, RelayError, StreamAnnouncement, StreamPresence};
use tracing::{debug, info, warn};

use crate::bounds::{NegativeCache, RecentlyLost};
use crate::path::{self, PathError};
use crate::placement;

mod attach;
mod handover;
mod io;
mod push;
mod standby;

pub use io::{Counters, DetachReason, Input, LocalLayer, LocalStream, Output, PathPush};

use attach::Attaching;

/// How long a relayed stream with neither viewers nor relay children is kept.
pub const IDLE_RELAY: Duration = Duration::from_secs(30);
/// How long a used relay in may go without a media packet, while its origin still announces the
/// stream, before it is re-attached elsewhere (the WebRTC timeouts take 8–10 s to notice an
/// upstream that stays connected but sends nothing).
pub const MEDIA_STALL: Duration = Duration::from_secs(2);
/// How long a node keeps trying to re-attach a stream whose upstream was lost.
pub const REATTACH_FOR: Duration = Duration::from_secs(20);
/// Pause between re-attach rounds (loads change; everyone refused a moment ago).
pub const REATTACH_PAUSE: Duration = Duration::from_millis(250);
/// Most streams being attached at once.
pub const MAX_ATTACHES: usize = 1024;
/// Most relay requests waiting for this node to attach the stream they ask for.
pub const MAX_PARKED: usize = 256;
/// Most releases ([`PathPush::left`]) queued for upstreams; more are dropped (the upstream then
/// closes the edge at its silence timeout).
pub const MAX_RELEASES: usize = 1024;
/// Candidates asked at once when attaching a stream: the first good answer is connected, the
/// others are abandoned once it is (one slow or dead candidate no longer holds up the attach).
/// Only nodes that carry the stream (or its origin) are asked beside another attempt; an
/// abandoned request holds a fan-out slot at its upstream until that node's connect timeout.
pub const PARALLEL_ATTEMPTS: usize = 2;
/// How long a relay in must have been used before a standby upstream is attached beside it.
pub const STANDBY_AFTER: Duration = Duration::from_secs(1);
/// Pause before trying again to attach a standby upstream after no candidate or a failure.
pub const STANDBY_RETRY: Duration = Duration::from_secs(5);
/// How long a planned move to the standby upstream may take (its edge resumed, its first
/// keyframe, the node's next tick) before it is given up and the standby closed.
pub const HANDOVER_FOR: Duration = Duration::from_secs(3);
/// How often a node tells its relay children their path again although it did not change (a
/// lost [`PathPush`] is corrected by the next one).
pub const PATH_REPUSH: Duration = Duration::from_secs(1);

/// Id of an SFU session (a relay in or out).
pub type SessionId = u64;
/// Id of one attempt to attach a stream to one upstream candidate.
pub type AttemptId = u64;
/// Id of one inbound relay request, chosen by the driver.
pub type RequestId = u64;
/// The ancestor path (origin first) and depth this node has below an upstream.
type Below = (Vec<PeerId>, u32);

/// The node's fixed settings; the core is their one owner.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's peer id.
    pub me: PeerId,
    /// Its public HTTP base URL.
    pub http_url: String,
    /// Its region tag.
    pub region: Option<String>,
    /// Its viewer capacity.
    pub capacity: u32,
    /// Most downstream nodes it relays to (`--max-relay-children`).
    pub max_relay_children: u32,
    /// Most hops from the origin it sits at or serves (`--max-depth`).
    pub max_depth: u32,
    /// Peers it pulls from and redirects to (empty: any peer).
    pub trusted: Vec<PeerId>,
    /// Its media (WebRTC) addresses, announced for other nodes' TURN servers.
    pub media_addrs: Vec<SocketAddr>,
}

/// A stream this node receives from an upstream node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayIn {
    /// The upstream.
    pub upstream: PeerId,
    /// The relay-in session.
    pub session: SessionId,
    /// This node's ancestor path, origin first, the upstream last.
    pub path: Vec<PeerId>,
    /// This node's depth (at least the path's length).
    pub depth: u32,
    /// A second upstream, connected and receiving, that takes over at once when this one is
    /// lost, stalls or moves into a cycle.
    pub standby: Option<Standby>,
    /// An ancestor is re-attaching: the path is not current, and relay requests for the stream
    /// wait until the upstream pushes one.
    pub frozen: bool,
    /// A planned move to the standby upstream runs since then ([`Output::Handover`]).
    pub moving: Option<Instant>,
    /// The upstream has pushed a path: pushes, not load reports, keep the path current.
    pushed: bool,
    /// No standby is attached before then.
    standby_after: Instant,
    idle_since: Option<Instant>,
    /// Packets counted at the last tick, and when that count last grew (or the relay started).
    packets: Option<u64>,
    media_at: Instant,
}

/// A standby upstream of a relayed stream: the SFU receives it beside the relay in that feeds the
/// stream and switches to it when that one closes or stalls.
///
/// It is chosen so that no loop can form when several nodes switch at once: it carries the
/// stream (or is its origin), sits strictly nearer the origin than this node, and its path does
/// not hold this node's upstream (the upstream's loss leaves it fed); and it reports spare
/// fan-out (a standby carries the stream's media like any relay edge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standby {
    /// The standby upstream.
    pub upstream: PeerId,
    /// Its relay-in session.
    pub session: SessionId,
    /// This node's path through it, origin first, the standby upstream last.
    pub path: Vec<PeerId>,
    /// This node's depth through it.
    pub depth: u32,
    /// The standby upstream has pushed a path: pushes, not load reports, keep it current.
    pushed: bool,
    /// Its latest push keeps a fed slot for this node ([`PathPush::room`]): a planned move may
    /// go there.
    room: bool,
    /// A fed edge from a sibling this node moves below ([`PathPush::move_to`]), held as the
    /// standby until it takes over: it hangs below the upstream by design.
    target: bool,
}

impl RelayIn {
    fn new(upstream: PeerId, session: SessionId, path: Vec<PeerId>, depth: u32, now: Instant) -> Self {
        RelayIn {
            upstream,
            session,
            path,
            depth,
            standby: None,
            frozen: false,
            moving: None,
            pushed: false,
            standby_after: now + STANDBY_AFTER,
            idle_since: None,
            packets: None,
            media_at: now,
        }
    }
}

/// A downstream node this node relays a stream to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RelayOut {
    peer: PeerId,
    stream: String,
    /// Served as a standby edge and not yet switched to (paused: it takes no fan-out slot).
    standby: bool,
    /// Order in which edges became fed (the newest are asked to move first when over the cap).
    fed_seq: u64,
    /// Asked to move: this node is over its fan-out ([`PathPush::shed`]).
    shed: bool,
    /// A standby edge whose node is offered a spare fed slot ([`PathPush::room`]).
    granted: bool,
    /// With `shed`: the sibling it is told it may move below ([`PathPush::move_to`]).
    move_to: Option<PeerId>,
}

/// A relay request being served (its relay-out session is being created).
#[derive(Debug)]
struct Serving {
    from: PeerId,
    stream: String,
    standby: bool,
}

/// A relay request waiting for this node to attach its stream.
#[derive(Debug)]
struct Parked {
    id: RequestId,
    from: PeerId,
    stream: String,
}

/// The cluster state machine.
#[derive(Debug)]
pub struct Core {
    cfg: Config,
    dir: Directory,
    relays_in: HashMap<String, RelayIn>,
    relays_out: HashMap<SessionId, RelayOut>,
    /// Serves decided but not yet reported (they count against the fan-out).
    serving: HashMap<RequestId, Serving>,
    attaching: HashMap<String, Attaching>,
    parked: Vec<Parked>,
    absent: NegativeCache,
    /// Peers lost moments ago: paths that name them are stale.
    lost: RecentlyLost,
    lookups: usize,
    meshed_since: Option<Instant>,
    next_attempt: AttemptId,
    counters: Counters,
    /// Streams published here (this node is their origin), from the last tick.
    live: Vec<String>,
    /// When the paths were last pushed to every relay child.
    repushed_at: Option<Instant>,
    /// Paths to push, the latest per relay child and stream (see [`Core::poll_push`]).
    pushes: BTreeMap<(PeerId, String), PathPush>,
    /// Upstreams to tell that this node closed its edge from them ([`PathPush::left`]).
    releases: BTreeMap<(PeerId, String), PathPush>,
    /// The next [`RelayOut::fed_seq`].
    next_fed: u64,
    out: VecDeque<Output>,
}

impl Core {
    /// A core for a node with these settings, knowing no other node yet.
    pub fn new(cfg: Config) -> Self {
        Core {
            cfg,
            dir: Directory::default(),
            relays_in: HashMap::new(),
            relays_out: HashMap::new(),
            serving: HashMap::new(),
            attaching: HashMap::new(),
            parked: Vec::new(),
            absent: NegativeCache::default(),
            lost: RecentlyLost::default(),
            lookups: 0,
            meshed_since: None,
            next_attempt: 0,
            counters: Counters::default(),
            live: Vec::new(),
            repushed_at: None,
            pushes: BTreeMap::new(),
            releases: BTreeMap::new(),
            next_fed: 0,
            out: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The next action to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next path to send to a relay child (or release to send to an upstream,
    /// [`PathPush::left`]). Drained like [`Core::poll_output`], after every input; only the
    /// latest path per child and stream is kept, and paths for nodes that are no longer relay
    /// children are dropped at each tick, so an undrained queue stays bounded.
    pub fn poll_push(&mut self) -> Option<PathPush> {
        self.pushes.pop_first().or_else(|| self.releases.pop_first()).map(|(_, p)| p)
    }

    /// When [`Core::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.attaching.values().filter_map(|a| a.retry_at).min()
    }

    /// Counters for the metrics.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The relay in of `stream`, if this node receives it from an upstream.
    pub fn relay_in(&self, stream: &str) -> Option<&RelayIn> {
        self.relays_in.get(stream)
    }

    /// Every relay session (in and out), to check which still exist.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.relays_in
            .values()
            .flat_map(|r| std::iter::once(r.session).chain(r.standby.as_ref().map(|s| s.session)))
            .chain(self.relays_out.keys().copied())
            .collect()
    }

    /// The directory snapshot last given.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// Handles one input at `now`.
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Directory(dir) => self.on_directory(dir, now),
            Input::PeerSeen(peer) => {
                debug!(%peer, "mesh peer discovered");
                self.lost.remove(&peer);
            }
            Input::PeerLost(peer) => self.on_peer_lost(peer, now),
            Input::Want { stream, has_source } => self.want(&stream, has_source, None, now),
            Input::Found { stream, announcement } => self.on_found(&stream, announcement, now),
            Input::Answered { attempt, depth, path } => self.on_answered(attempt, depth, &path, now),
            Input::AttachFailed { attempt, fatal } => self.on_attach_failed(attempt, fatal, now),
            Input::Connected { attempt, session } => self.on_connected(attempt, session, now),
            Input::RelayRequest { id, from, stream, has_source, standby } => {
                self.on_request(id, from, stream, has_source, standby, now)
            }
            Input::Served { id, session } => {
                if let Some(Serving { from, stream, standby }) = self.serving.remove(&id)
                    && let Some(session) = session
                {
                    self.next_fed += 1;
                    let fed_seq = self.next_fed;
                    self.relays_out.insert(session, RelayOut { peer: from, stream, standby, fed_seq, shed: false, granted: false, move_to: None });
                }
            }
            Input::MediaStall { stream } => {
                if let Some(r) = self.relays_in.get(&stream) {
                    let upstream = r.upstream;
                    warn!(stream = %stream, %upstream, "no media from the upstream: re-attaching");
                    self.reattach(&stream, Some(upstream), DetachReason::Stalled, &[], now);
                }
            }
            Input::Tick { streams, ended } => self.on_tick(streams, ended, now),
            Input::PathUpdate { left: true, from, stream, .. } => self.child_left(from, &stream),
            Input::PathUpdate { from, stream, depth, path, frozen, shed, left: false, room, move_to } => {
                self.on_path_update(from, &stream, depth, path, frozen, room, now);
                if shed && !frozen {
                    self.asked_to_move(from, &stream, move_to, now);
                }
            }
            Input::StreamTaken { stream, holder } => {
                self.counters.taken += 1;
                warn!(stream = %stream, %holder, "another node holds this stream's name in the mesh; its local publish stays local");
            }
        }
    }

    /// Carries out what is due at `now` (re-attach rounds after their pause).
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> =
            self.attaching.iter().filter(|(_, a)| a.retry_at.is_some_and(|t| t <= now)).map(|(s, _)| s.clone()).collect();
        for stream in due {
            if let Some(a) = self.attaching.get_mut(&stream) {
                a.retry_at = None;
            }
            self.round(&stream, now);
        }
    }

    /// The best node for a new viewer of `stream` (possibly this one), given this node's load.
    pub fn placement(&self, stream: &str, own: &NodeLoad) -> Option<(PeerId, NodeLoad)> {
        placement::best_node_for_viewer(&self.placeable(), stream, self.cfg.me, own, self.cfg.region.as_deref())
    }

    /// The WHEP URL of another node with room for a viewer of `stream`, this node being full.
    pub fn redirect(&self, stream: &str, own: &NodeLoad) -> Option<String> {
        let mut full = own.clone();
        full.viewers = full.capacity;
        let (peer, load) = self.placement(stream, &full)?;
        (peer != self.cfg.me && !load.http_url.is_empty() && self.trusted(&peer))
            .then(|| format!("{}/whep/{stream}", load.http_url.trim_end_matches('/')))
    }

    /// The HTTP base URL of `stream`'s origin when it is another node viewers may be sent to
    /// (verified URL, trusted).
    pub fn origin_url(&self, stream: &str) -> Option<String> {
        self.dir
            .stream(stream)
            .filter(|a| a.origin != self.cfg.me && !a.http_url.is_empty() && self.trusted(&a.origin))
            .map(|a| a.http_url.clone())
    }

    /// This node's load from its streams: viewers, egress, fan-out, and per carried stream its
    /// depth, upstream, path and bitrate.
    pub fn load_of(&self, streams: &[LocalStream]) -> NodeLoad {
        let mut load = NodeLoad {
            http_url: self.cfg.http_url.clone(),
            region: self.cfg.region.clone(),
            capacity: self.cfg.capacity,
            max_relay_children: self.cfg.max_relay_children,
            media_addrs: self.cfg.media_addrs.iter().filter(|a| !a.ip().is_unspecified()).copied().collect(),
            ..NodeLoad::default()
        };
        for s in streams {
            load.viewers = load.viewers.saturating_add(s.viewers);
            load.relay_children = load.relay_children.saturating_add(s.relay_children);
            let relayed = self.relays_in.get(&s.name);
            // A frozen stream has no current path: nobody may take this node as its upstream.
            if !s.live && relayed.is_none_or(|r| r.frozen) {
                continue;
            }
            let ingress: u64 = s.layers.iter().map(|l| l.bitrate_bps).fold(s.audio_bps, u64::saturating_add);
            load.egress_bps =
                load.egress_bps.saturating_add(ingress.saturating_mul(u64::from(s.viewers.saturating_add(s.relay_children))));
            load.streams.push(StreamPresence {
                stream: s.name.clone(),
                depth: relayed.map_or(0, |r| r.depth),
                upstream: relayed.map(|r| r.upstream),
                viewers: s.viewers,
                relay_children: s.relay_children,
                ingress_bps: ingress,
                path: relayed.map(|r| r.path.clone()).unwrap_or_default(),
                standby: relayed.and_then(|r| r.standby.as_ref()).map(|s| s.upstream),
                // Simulcast layers arriving now (a single-layer stream names none).
                layers: s.layers.iter().filter(|l| l.bitrate_bps > 0 && !l.rid.is_empty()).map(|l| l.rid.clone()).collect(),
                // The mesh adds the node's figures when it publishes the presence on its topic.
                node: None,
            });
        }
        load
    }

    fn trusted(&self, peer: &PeerId) -> bool {
        self.cfg.trusted.is_empty() || self.cfg.trusted.contains(peer)
    }

    /// The directory restricted to nodes viewers may be sent to.
    fn placeable(&self) -> Directory {
        let mut dir = self.dir.clone();
        dir.nodes.retain(|p, e| !e.load.http_url.is_empty() && (self.cfg.trusted.is_empty() || self.cfg.trusted.contains(p)));
        dir
    }

    fn push(&mut self, o: Output) {
        self.out.push_back(o);
    }

    /// This node's path for `stream`: empty at the origin (or when it does not carry it).
    fn own_path(&self, stream: &str) -> &[PeerId] {
        self.relays_in.get(stream).map_or(&[], |r| r.path.as_slice())
    }

    fn on_directory(&mut self, dir: Directory, now: Instant) {
        let meshed = !dir.nodes.is_empty();
        match (meshed, self.meshed_since) {
            (true, None) => self.meshed_since = Some(now),
            (false, Some(_)) => self.meshed_since = None,
            _ => {}
        }
        self.dir = dir;
        // Keep paths current: each relay in takes its upstream's announced path plus the
        // upstream. A path that now holds this node (an ancestor moved below it) or is over the
        // cap sends the stream elsewhere.
        let mut broken = Vec::new();
        let mut moved = Vec::new();
        for (stream, r) in &self.relays_in {
            if r.pushed {
                // The upstream pushes its path when it changes: fresher than its load report.
                continue;
            }
            match self.path_through(r.upstream, stream) {
                Some((Ok((path, depth)), _)) if path != r.path || depth != r.depth => moved.push((stream.clone(), path, depth)),
                Some((Err(e), _)) => broken.push((stream.clone(), r.upstream, e)),
                _ => {}
            }
        }
        for (stream, path, depth) in moved {
            debug!(stream = %stream, depth, "an ancestor moved: path updated");
            if let Some(r) = self.relays_in.get_mut(&stream) {
                r.path = path;
                r.depth = depth;
            }
            self.push_path(&stream);
        }
        self.check_standbys(now);
        for (stream, upstream, e) in broken {
            warn!(stream = %stream, %upstream, error = %e, "the upstream's path is no longer valid: re-attaching");
            self.count_path_error(&e);
            self.reattach(&stream, Some(upstream), DetachReason::PathInvalid, &[], now);
        }
    }

    /// `peer`'s latest report of `stream`, if it carries it.
    fn presence(&self, peer: &PeerId, stream: &str) -> Option<&StreamPresence> {
        self.dir.node(peer).and_then(|l| l.streams.iter().find(|s| s.stream == stream))
    }

    /// This node's path and depth through `upstream` for `stream` by `upstream`'s latest report,
    /// with that report; `None` when it has no authoritative one (only reports that state a path,
    /// or the origin's empty one, are).
    fn path_through(&self, upstream: PeerId, stream: &str) -> Option<(Result<Below, PathError>, &StreamPresence)> {
        let p = self.presence(&upstream, stream)?;
        if p.path.is_empty() && (p.depth != 0 || p.upstream.is_some()) {
            return None;
        }
        let mut answered = p.path.clone();
        answered.push(upstream);
        Some((path::path_below(self.cfg.me, upstream, &answered, p.depth, self.cfg.max_depth), p))
    }

    fn count_path_error(&mut self, e: &PathError) {
        match e {
            PathError::Cycle => self.counters.cycles += 1,
            PathError::TooDeep { .. } => self.counters.too_deep += 1,
            PathError::Malformed(_) => self.counters.bad_paths += 1,
            PathError::Stale => self.counters.stale_paths += 1,
        }
    }

    fn on_peer_lost(&mut self, peer: PeerId, now: Instant) {
        self.lost.insert(peer, now);
        let children: Vec<SessionId> = self.relays_out.iter().filter(|(_, r)| r.peer == peer).map(|(id, _)| *id).collect();
        for session in children {
            info!(%peer, session, "downstream node lost: ending its relay");
            self.relays_out.remove(&session);
            self.push(Output::Close { session });
        }
        let orphaned: Vec<String> =
            self.relays_in.iter().filter(|(_, r)| r.upstream == peer).map(|(s, _)| s.clone()).collect();
        for stream in orphaned {
            warn!(%peer, stream = %stream, "upstream node lost: re-attaching");
            self.reattach(&stream, Some(peer), DetachReason::UpstreamLost, &[], now);
        }
        let mut lost_standbys = Vec::new();
        for (stream, r) in self.relays_in.iter_mut() {
            if let Some(sb) = r.standby.take_if(|sb| sb.upstream == peer) {
                r.standby_after = now;
                lost_standbys.push((stream.clone(), sb.session));
            }
        }
        for (stream, session) in lost_standbys {
            info!(%peer, stream = %stream, "standby upstream lost");
            self.push(Output::Detach { stream, session, reason: DetachReason::UpstreamLost });
        }
    }

    /// Closes the relay in of `stream` and attaches it again elsewhere (never to `lost` nor to a
    /// node of `avoid`, nodes a pushed path placed below this one), in rounds until
    /// [`REATTACH_FOR`] has passed; local viewers keep their connections and relay children
    /// their edges, frozen until this node has a path again. With a standby upstream that the
    /// loss leaves fed, that one takes over at once instead (and the children get its path).
    fn reattach(&mut self, stream: &str, lost: Option<PeerId>, reason: DetachReason, avoid: &[PeerId], now: Instant) {
        if let Some(old) = self.relays_in.remove(stream) {
            // A node lost moments ago is not told that this node left it.
            let (up, sb_up) = (old.upstream, old.standby.as_ref().map(|s| s.upstream));
            let up = (!self.lost.contains(&up, now)).then_some(up);
            let sb_up = sb_up.filter(|p| !self.lost.contains(p, now));
            self.detach(stream, old.session, up, reason);
            match old.standby {
                Some(sb) if !avoid.contains(&sb.upstream) && self.standby_usable(stream, &sb, old.depth, lost) => {
                    // The SFU switches to the standby as soon as the old relay in is closed.
                    info!(stream, from = %old.upstream, to = %sb.upstream, depth = sb.depth, ?reason, "switched to the standby upstream");
                    self.counters.reattaches += 1;
                    self.counters.standby_switches += 1;
                    let mut r = RelayIn::new(sb.upstream, sb.session, sb.path, sb.depth, now);
                    r.pushed = sb.pushed;
                    r.standby_after = now;
                    r.idle_since = old.idle_since;
                    self.relays_in.insert(stream.to_string(), r);
                    self.push_path(stream);
                    return;
                }
                Some(sb) => self.detach(stream, sb.session, sb_up, reason),
                None => {}
            }
        }
        self.counters.reattaches += 1;
        // Until it has a path again, nobody below may serve the stream as if it had one.
        self.push_path(stream);
        let barred = lost.into_iter().chain(avoid.iter().copied());
        if let Some(a) = self.attaching.get_mut(stream) {
            // An attach is already running (a standby's, or a first one): make it a re-attach
            // that avoids the lost node.
            a.standby = false;
            a.barred.extend(barred);
            a.deadline.get_or_insert(now + REATTACH_FOR);
            return;
        }
        let a = Attaching::new(self.dir.stream(stream), barred.collect(), Some(now + REATTACH_FOR), false, now);
        self.attaching.insert(stream.to_string(), a);
        self.round(stream, now);
    }

    fn on_request(&mut self, id: RequestId, from: PeerId, stream: String, has_source: bool, standby: bool, now: Instant) {
        let frozen = self.frozen(&stream);
        if !frozen && (has_source || self.relays_in.contains_key(&stream)) {
            self.decide(id, from, &stream, standby);
            return;
        }
        if standby {
            // A standby is optional: only a node that carries the stream with a path stands by.
            debug!(%from, stream = %stream, frozen, "standby request refused: the stream is not carried here");
            self.push(Output::Refuse { id, error: RelayError::NotFound });
            return;
        }
        if self.parked.len() >= MAX_PARKED {
            self.push(Output::Refuse { id, error: RelayError::Internal("too many relay requests waiting".into()) });
            return;
        }
        self.parked.push(Parked { id, from, stream: stream.clone() });
        if frozen {
            // Answered when this node (or its ancestor) has a path again.
            debug!(%from, stream = %stream, "relay request parked: the stream is frozen here");
            self.counters.frozen_requests += 1;
            if let Some(a) = self.attaching.get_mut(&stream) {
                a.barred.push(from);
                a.candidates.retain(|p| *p != from);
            }
            return;
        }
        self.want(&stream, false, Some(from), now);
    }

    /// Serves or refuses a relay request for a stream this node carries. Edges fed and standby
    /// edges (paused until their node switches to them) are each capped at
    /// `max_relay_children`: a standby that takes over may bring the fed edges above it, until
    /// children leave (new requests are refused meanwhile); a failover never waits for a slot.
    fn decide(&mut self, id: RequestId, from: PeerId, stream: &str, standby: bool) {
        let own = self.own_path(stream).to_vec();
        if let Err(e) = path::check_request(&own, from, self.cfg.max_depth) {
            info!(%from, stream, error = %e, "relay request refused");
            self.count_path_error(&e);
            self.push(Output::Refuse { id, error: RelayError::Bad(e.to_string()) });
            return;
        }
        let fan_out = self.fan_out(standby);
        if fan_out >= self.cfg.max_relay_children as usize {
            info!(%from, stream, max = self.cfg.max_relay_children, standby, "relay fan-out full");
            if standby {
                self.counters.standby_full_refusals += 1;
            } else {
                self.counters.full_refusals += 1;
            }
            self.push(Output::Refuse { id, error: RelayError::Full });
            return;
        }
        let depth = self.relays_in.get(stream).map_or(0, |r| r.depth);
        let mut path = own;
        path.push(self.cfg.me);
        self.serving.insert(id, Serving { from, stream: stream.to_string(), standby });
        info!(%from, stream, depth, standby, "relaying stream to downstream node");
        self.push(Output::Serve { id, depth, path, standby });
    }

    /// Edges out (served or being served) that are fed (`standby` false) or paused standbys.
    fn fan_out(&self, standby: bool) -> usize {
        let out = self.relays_out.values().filter(|r| r.standby == standby).count();
        out.saturating_add(self.serving.values().filter(|s| s.standby == standby).count())
    }

    /// Marks standby edges out that the media plane reports fed as fed (their node switched to
    /// them): those no longer among the stream's paused sessions; from a media plane that gives
    /// only the count, as many as its paused count falls short of those marked standby (the
    /// oldest sessions first).
    fn note_resumed(&mut self, streams: &[LocalStream]) {
        for s in streams {
            let paused = s.standby_children as usize;
            let mut marked: Vec<SessionId> =
                self.relays_out.iter().filter(|(_, r)| r.standby && r.stream == s.name).map(|(id, _)| *id).collect();
            marked.sort_unstable();
            if s.paused_relays.len() == paused {
                marked.retain(|id| !s.paused_relays.contains(id));
            } else {
                let resumed = marked.len().saturating_sub(paused);
                marked.truncate(resumed);
            }
            for id in &marked {
                if let Some(r) = self.relays_out.get_mut(id) {
                    r.standby = false;
                    self.next_fed += 1;
                    r.fed_seq = self.next_fed;
                }
            }
        }
    }

    fn on_tick(&mut self, streams: Vec<LocalStream>, ended: Vec<SessionId>, now: Instant) {
        self.relays_out.retain(|id, _| !ended.contains(id));
        self.note_resumed(&streams);
        self.shed_over_cap();
        self.check_moves(&streams, now);
        self.live = streams.iter().filter(|s| s.live).map(|s| s.name.clone()).collect();
        let used = |name: &str| streams.iter().any(|s| s.name == name && s.used());
        let dead: Vec<String> =
            self.relays_in.iter().filter(|(_, r)| ended.contains(&r.session)).map(|(s, _)| s.clone()).collect();
        for r in self.relays_in.values_mut() {
            if r.standby.take_if(|sb| ended.contains(&sb.session)).is_some() {
                r.standby_after = now + STANDBY_RETRY;
            }
        }
        for name in dead {
            if used(&name) {
                info!(stream = %name, "relay from upstream ended: re-attaching");
                self.reattach(&name, None, DetachReason::UpstreamLost, &[], now);
            } else if let Some(sb) = self.relays_in.remove(&name).and_then(|r| r.standby) {
                self.detach(&name, sb.session, Some(sb.upstream), DetachReason::Idle);
            }
        }
        let mut idle = Vec::new();
        let mut stalled = Vec::new();
        for (name, r) in self.relays_in.iter_mut() {
            if used(name) {
                r.idle_since = None;
            } else if now.saturating_duration_since(*r.idle_since.get_or_insert(now)) > IDLE_RELAY {
                idle.push(name.clone());
            }
            // The watchdog: an upstream that stays connected but sends nothing.
            let packets = streams.iter().find(|s| s.name == *name).map(|s| s.packets);
            if packets.is_some_and(|p| r.packets != Some(p)) {
                r.packets = packets;
                r.media_at = now;
            } else if used(name) && now.saturating_duration_since(r.media_at) >= MEDIA_STALL && self.dir.stream(name).is_some() {
                stalled.push(name.clone());
            }
        }
        for name in stalled {
            if let Some(upstream) = self.relays_in.get(&name).map(|r| r.upstream) {
                warn!(stream = %name, %upstream, stall_ms = MEDIA_STALL.as_millis() as u64, "no media from the upstream although it is connected: re-attaching");
                self.counters.stalls += 1;
                // Another upstream when there is one; else a fresh edge to the same one.
                let others = self
                    .dir
                    .stream(&name)
                    .map(|a| placement::relay_candidates(&self.dir, &name, a.origin, self.cfg.me, &[upstream]))
                    .unwrap_or_default();
                let bar = (!others.is_empty()).then_some(upstream);
                self.reattach(&name, bar, DetachReason::Stalled, &[], now);
            }
        }
        for name in idle {
            if let Some(r) = self.relays_in.remove(&name) {
                info!(stream = %name, "no viewers left: ending the relay from upstream");
                if let Some(sb) = r.standby {
                    self.detach(&name, sb.session, Some(sb.upstream), DetachReason::Idle);
                }
                self.push(Output::Follow { stream: name.clone(), on: false });
                self.detach(&name, r.session, Some(r.upstream), DetachReason::Idle);
            }
        }
        // Used relays in get a standby upstream once they have run for a while.
        let want_standby: Vec<String> = self
            .relays_in
            .iter()
            .filter(|(name, r)| r.standby.is_none() && now >= r.standby_after && used(name) && !self.attaching.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in want_standby {
            self.attach_standby(&name, now);
        }
        let me = self.cfg.me;
        let origin: Vec<StreamAnnouncement> = streams
            .iter()
            .filter(|s| s.live && !self.relays_in.contains_key(&s.name))
            .map(|s| StreamAnnouncement {
                origin: me,
                stream: s.name.clone(),
                codec: s.codec.clone().unwrap_or_default(),
                layers: s.layers.iter().map(|l| l.rid.clone()).collect(),
                http_url: self.cfg.http_url.clone(),
                // The mesh task stamps the time the stream was first announced.
                started_ms: 0,
            })
            .collect();
        self.repush_due(now);
        let load = self.load_of(&streams);
        self.push(Output::Announce { streams: origin, load });
    }
}
