//! The node in the mesh: the tokio driver of the cluster core ([`relaycast_cluster::Core`]).
//! It feeds the core from mesh events, the media plane and timers, and carries out its outputs:
//! relay requests over the mesh, SFU relay sessions, announcements, and answers to WHEP
//! requests waiting for a stream.

pub mod api;
pub mod args;
mod metrics;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use relaycast_cluster::core::{AttemptId, LocalLayer, LocalStream, RequestId};
use relaycast_cluster::{Config, Core, Input, Output, PathPush};
use relaycast_mesh::relay_protocol::PushedPath;
use relaycast_mesh::{Mesh, MeshEvent, NodeLoad, PeerId, RelayError, RelayRequest, RelayResponse};
use relaycast_sfu::Sfu;
use relaycast_sfu::stream::SessionId;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, warn};

/// How long to look for a stream in the mesh before a WHEP request gets 404.
const FIND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an upstream node may take to answer a relay request.
const RELAY_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often load and streams are refreshed into the mesh.
const REFRESH: Duration = Duration::from_millis(500);
/// Longest a WHEP request waits for its stream to be attached (a re-attach in progress runs for
/// up to the core's re-attach time, each attempt bounded by the lookup and request timeouts).
const ENSURE_LIMIT: Duration = Duration::from_secs(30);
/// Most WHEP requests waiting for streams at once.
const MAX_WAITERS: usize = 4096;
/// Most paths waiting to be handed to the mesh; past it pushes are dropped (and counted): the
/// core re-sends every path each second.
const PUSH_QUEUE: usize = 256;

/// Counters of the paths pushed to relay children.
#[derive(Default)]
struct PushStats {
    /// Handed to the mesh.
    sent: AtomicU64,
    /// Dropped because the queue to the mesh was full.
    queue_full: AtomicU64,
    /// Not sent because the path is over the wire's bounds.
    out_of_bounds: AtomicU64,
}

/// An attempt's SFU side: the offer session, and the upstream's answer once it came.
struct Attempt {
    session: SessionId,
    answer: Option<String>,
}

/// An inbound relay request waiting for the core's decision.
struct Pending {
    stream: String,
    offer: String,
    standby: bool,
    reply: oneshot::Sender<Result<RelayResponse, RelayError>>,
}

/// The driver's own bookkeeping of outputs in progress.
#[derive(Default)]
struct Io {
    waiters: HashMap<String, Vec<oneshot::Sender<bool>>>,
    attempts: HashMap<AttemptId, Attempt>,
    requests: HashMap<RequestId, Pending>,
    next_request: RequestId,
}

/// The node's mesh role; shared by the HTTP handlers and the mesh event loop.
pub struct Cluster {
    sfu: Arc<Sfu>,
    mesh: Mesh,
    core: Mutex<Core>,
    io: Mutex<Io>,
    /// Woken when an input may have moved the core's next timeout.
    wake: Notify,
    this: Weak<Cluster>,
    /// One log line per period for requests refused in bulk.
    refusal_log: Mutex<relaycast_mesh::trust::LogLimiter>,
    /// The TURN server's set of mesh peers' media addresses, kept current from the directory.
    turn_peers: Mutex<Option<relaycast_turn::MeshPeers>>,
    /// Copies of the recordings of relayed streams (set once the archive is open).
    copies: std::sync::OnceLock<Arc<relaycast_recorder::copies::Copies>>,
    /// Which streams this node copies without relaying them (set with the copies).
    volunteers: Mutex<Option<Volunteering>>,
    /// Why each stream's segment topic is followed ([`FOLLOW_RELAY`], [`FOLLOW_VOLUNTEER`] bits).
    follows: Mutex<HashMap<String, u8>>,
    /// What the node learned about its public address and router (`/api/node`).
    nat: Mutex<relaycast_nat::NatReport>,
    /// Paths to push to relay children, handed to the mesh by a task of [`Cluster::run`].
    pushes: mpsc::Sender<(PeerId, PushedPath)>,
    /// The receiving end of `pushes`, until `run` takes it.
    push_queue: Mutex<Option<mpsc::Receiver<(PeerId, PushedPath)>>>,
    push_stats: Arc<PushStats>,
}

/// A stream's segment topic is followed because this node relays the stream.
const FOLLOW_RELAY: u8 = 1;
/// ...or because it watches the stream's copies as a possible volunteer.
const FOLLOW_VOLUNTEER: u8 = 2;
/// How often the volunteers look at the mesh's streams.
const VOLUNTEER_EVERY: Duration = Duration::from_secs(1);
/// How long the archive's size is trusted before it is read again.
const ROOM_EVERY: Duration = Duration::from_secs(10);

/// Whether the archive has room for more copies.
pub type Room = Arc<dyn Fn() -> bool + Send + Sync>;

/// The volunteers' state and what they need of the node.
struct Volunteering {
    core: relaycast_recorder::volunteer::Volunteers,
    room: Room,
    last_tick: Option<Instant>,
    /// The last answer of `room` and when it was asked.
    room_cache: Option<(Instant, bool)>,
    /// Live streams of the mesh the volunteers do not watch (over their bound) at the last look.
    unwatched: usize,
}

/// The media plane's streams as the core sees them.
fn local_streams(summaries: &[relaycast_sfu::StreamSummary]) -> Vec<LocalStream> {
    summaries
        .iter()
        .map(|s| LocalStream {
            name: s.name.clone(),
            live: s.live,
            codec: s.codec.map(str::to_string),
            viewers: u32::try_from(s.viewers).unwrap_or(u32::MAX),
            relay_children: u32::try_from(s.relay_children).unwrap_or(u32::MAX),
            standby_children: u32::try_from(s.standby_children).unwrap_or(u32::MAX),
            layers: s.layers.iter().map(|l| LocalLayer { rid: l.rid.clone(), bitrate_bps: l.bitrate }).collect(),
            audio_bps: s.audio.bitrate,
            packets: s.layers.iter().map(|l| l.packets).sum::<u64>().saturating_add(s.audio.packets),
            fed_by: s.fed_by,
            paused_relays: s.paused_relays.clone(),
        })
        .collect()
}

impl Cluster {
    /// Wraps a started mesh; call [`Cluster::run`] to serve it.
    pub fn new(sfu: Arc<Sfu>, mesh: Mesh, cfg: Config) -> Arc<Self> {
        let (pushes, push_queue) = mpsc::channel(PUSH_QUEUE);
        Arc::new_cyclic(|this| Cluster {
            sfu,
            mesh,
            core: Mutex::new(Core::new(cfg)),
            io: Mutex::default(),
            wake: Notify::new(),
            this: this.clone(),
            refusal_log: Mutex::new(relaycast_mesh::trust::LogLimiter::new(Duration::from_secs(5))),
            turn_peers: Mutex::new(None),
            copies: std::sync::OnceLock::new(),
            volunteers: Mutex::new(None),
            follows: Mutex::default(),
            nat: Mutex::default(),
            pushes,
            push_queue: Mutex::new(Some(push_queue)),
            push_stats: Arc::default(),
        })
    }

    /// Keeps what the node learned about its public address and router for `/api/node`.
    pub fn set_nat(&self, report: relaycast_nat::NatReport) {
        *self.nat.lock().unwrap_or_else(|e| e.into_inner()) = report;
    }

    /// What the node learned about its public address and router.
    pub fn nat(&self) -> relaycast_nat::NatReport {
        self.nat.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps copies of the recordings of the streams this node relays in `copies`, and of the
    /// streams it volunteers for (`volunteer`; `room` says whether the archive has room).
    pub fn set_copies(
        &self,
        copies: Arc<relaycast_recorder::copies::Copies>,
        volunteer: relaycast_recorder::volunteer::Config,
        room: Room,
    ) {
        let _ = self.copies.set(copies);
        let core = relaycast_recorder::volunteer::Volunteers::new(self.mesh.peer_id().to_string(), volunteer);
        *self.volunteers.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Volunteering { core, room, last_tick: None, room_cache: None, unwatched: 0 });
    }

    /// Follows (or stops following) a stream's segment topic for `why`; the mesh subscription
    /// changes only when the first reason comes or the last one goes.
    fn follow(&self, stream: &str, why: u8, on: bool) {
        let change = {
            let mut f = self.follows.lock().unwrap_or_else(|e| e.into_inner());
            let before = f.get(stream).copied().unwrap_or(0);
            let after = if on { before | why } else { before & !why };
            if after == 0 {
                f.remove(stream);
            } else {
                f.insert(stream.to_owned(), after);
            }
            (before == 0) != (after == 0)
        };
        if change {
            self.mesh.follow_segments(stream, on);
        }
    }

    /// Lets the volunteers look at the mesh's live streams and the holders of their latest
    /// segments; starts the copies they decide on.
    fn volunteer_tick(&self) {
        let Some(copies) = self.copies.get() else { return };
        let now = Instant::now();
        let dir = self.mesh.directory();
        let me = self.mesh.peer_id();
        let mut nodes: Vec<String> = dir.nodes.keys().map(ToString::to_string).collect();
        nodes.push(me.to_string());
        let live: Vec<(String, String)> =
            dir.streams.values().map(|e| (e.announcement.stream.clone(), e.announcement.origin.to_string())).collect();
        let relayed: std::collections::HashSet<String> = {
            let core = self.core();
            live.iter().filter(|(s, _)| core.relay_in(s).is_some()).map(|(s, _)| s.clone()).collect()
        };
        let (started, stopped, actions) = {
            let mut g = self.volunteers.lock().unwrap_or_else(|e| e.into_inner());
            let Some(v) = g.as_mut() else { return };
            if v.last_tick.is_some_and(|t| now.saturating_duration_since(t) < VOLUNTEER_EVERY) {
                return;
            }
            v.last_tick = Some(now);
            let room = match v.room_cache {
                Some((at, r)) if now.saturating_duration_since(at) < ROOM_EVERY => r,
                _ => {
                    let r = (v.room)();
                    v.room_cache = Some((now, r));
                    r
                }
            };
            let before: std::collections::HashSet<String> = v.core.watched().map(str::to_owned).collect();
            let unwatched = v.core.live_streams(&live);
            if unwatched > 0 && v.unwatched == 0 {
                warn!(unwatched, "the mesh has more live streams than the volunteers watch; the others get no volunteer copies from this node");
            }
            v.unwatched = unwatched;
            let after: std::collections::HashSet<String> = v.core.watched().map(str::to_owned).collect();
            let holders = |s: &str, seq: u64| copies.holders(s, seq);
            let carrying = |s: &str| relayed.contains(s);
            let view = relaycast_recorder::volunteer::View { nodes: &nodes, holders: &holders, carrying: &carrying, room };
            let actions = v.core.tick(now, &view);
            debug!(watched = after.len(), nodes = nodes.len(), room, actions = actions.len(), "volunteers looked at the mesh's streams");
            let started: Vec<String> = after.difference(&before).cloned().collect();
            let stopped: Vec<String> = before.difference(&after).cloned().collect();
            (started, stopped, actions)
        };
        for s in started {
            self.follow(&s, FOLLOW_VOLUNTEER, true);
        }
        for s in stopped {
            self.follow(&s, FOLLOW_VOLUNTEER, false);
        }
        for relaycast_recorder::volunteer::VolunteerAction::Copy { stream, origin } in actions {
            tracing::info!(stream = %stream, origin = %origin, "volunteering to keep a copy of the stream's recording");
        }
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io(&self) -> MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The core with the mesh's current directory.
    fn fresh_core(&self) -> MutexGuard<'_, Core> {
        let dir = self.mesh.directory();
        let mut core = self.core();
        core.handle_input(Input::Directory(dir), Instant::now());
        core
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
    pub fn http_url(&self) -> String {
        self.core().config().http_url.clone()
    }

    /// Handles mesh events, timers and refreshes until the event channel closes.
    pub async fn run(self: Arc<Self>, mut events: mpsc::Receiver<MeshEvent>) {
        let queue = self.push_queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(queue) = queue {
            tokio::spawn(forward_pushes(self.mesh.clone(), queue, self.push_stats.clone()));
        }
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = self.core().poll_timeout();
            let timer = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_event(ev);
                }
                _ = tick.tick() => self.refresh(),
                _ = timer => {
                    let out = {
                        let mut core = self.fresh_core();
                        core.handle_timeout(Instant::now());
                        drain(&mut core)
                    };
                    self.push(out.1);
                    self.execute(out.0);
                }
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Gives the core one input (with the current directory when `fresh`) and carries out what
    /// it asks.
    fn feed(&self, input: Input, fresh: bool) {
        let out = {
            let mut core = if fresh { self.fresh_core() } else { self.core() };
            core.handle_input(input, Instant::now());
            drain(&mut core)
        };
        self.wake.notify_one();
        self.push(out.1);
        self.execute(out.0);
    }

    /// Queues the core's path pushes for the mesh without waiting: a push over the wire's
    /// bounds or past a full queue is dropped and counted (the core re-sends each second).
    fn push(&self, pushes: Vec<PathPush>) {
        for p in pushes {
            let msg = PushedPath { stream: p.stream, depth: p.depth, path: p.path, frozen: p.frozen, shed: p.shed, left: p.left, room: p.room, move_to: p.move_to };
            if let Err(e) = msg.validate() {
                self.push_stats.out_of_bounds.fetch_add(1, Ordering::Relaxed);
                debug!(stream = %msg.stream, child = %p.peer, error = %e, "path not pushed");
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = self.pushes.try_send((p.peer, msg)) {
                self.push_stats.queue_full.fetch_add(1, Ordering::Relaxed);
                debug!(child = %p.peer, "path push dropped: the queue to the mesh is full");
            }
        }
    }

    fn on_event(&self, ev: MeshEvent) {
        match ev {
            MeshEvent::RelayRequest { from, request, reply } => {
                if !relaycast_signaling::sessions::valid_stream_name(&request.stream) {
                    let _ = reply.send(Err(RelayError::Bad("invalid stream name".into())));
                    return;
                }
                let has_source = self.sfu.has_source(&request.stream);
                let id = {
                    let mut io = self.io();
                    io.next_request += 1;
                    let id = io.next_request;
                    io.requests.insert(id, Pending {
                        stream: request.stream.clone(),
                        offer: request.offer_sdp,
                        standby: request.standby,
                        reply,
                    });
                    id
                };
                let standby = request.standby;
                self.feed(Input::RelayRequest { id, from, stream: request.stream, has_source, standby }, true);
            }
            // The mesh checked the push's bounds; `from` is the connection's remote peer.
            MeshEvent::PathPushed { from, push } => {
                let PushedPath { stream, depth, path, frozen, shed, left, room, move_to } = push;
                self.feed(Input::PathUpdate { from, stream, depth, path, frozen, shed, left, room, move_to }, false);
            }
            MeshEvent::PeerLost(peer) => self.feed(Input::PeerLost(peer), true),
            MeshEvent::PeerDiscovered(peer) => self.feed(Input::PeerSeen(peer), false),
            MeshEvent::StreamTaken { stream, holder } => self.feed(Input::StreamTaken { stream, holder }, false),
            // The origin archived a segment of a stream we relay: tell our viewers.
            MeshEvent::Segment(seg) => {
                let relayed = self.core().relay_in(&seg.stream).is_some();
                if relayed {
                    let ev = relaycast_sfu::stream::SessionEvent::Segment {
                        seq: seg.seq,
                        cid: seg.cid.clone(),
                        duration_ms: (seg.duration * 1000.0).round() as u64,
                    };
                    self.sfu.broadcast(&seg.stream, &ev);
                }
                debug!(stream = %seg.stream, seq = seg.seq, relayed, "segment announced");
                let volunteering = self.volunteers.lock().unwrap_or_else(|e| e.into_inner()).as_mut().is_some_and(|v| {
                    v.core.segment(&seg.stream, seg.seq, Instant::now());
                    v.core.volunteering(&seg.stream)
                });
                // ...and keep a copy of it (the gossip layer checked the origin signed it).
                if (relayed || volunteering)
                    && let (Some(copies), Some((origin, _))) = (self.copies.get(), self.mesh.live_elsewhere(&seg.stream))
                {
                    copies.announced(origin, seg);
                }
            }
            MeshEvent::SegmentHeld { holder, held } => {
                if let Some(copies) = self.copies.get() {
                    copies.held_by(holder, &held);
                }
            }
        }
    }

    /// Carries out the core's outputs in order on a task of their own (a relay in is closed
    /// before its replacement is asked for).
    fn execute(&self, out: Vec<Output>) {
        if out.is_empty() {
            return;
        }
        let Some(this) = self.this.upgrade() else { return };
        tokio::spawn(async move {
            for o in out {
                this.carry_out(o).await;
            }
        });
    }

    async fn carry_out(self: &Arc<Self>, o: Output) {
        match o {
            Output::Lookup { stream } => {
                let this = self.clone();
                tokio::spawn(async move {
                    let announcement = this.mesh.find_stream(&stream, FIND_TIMEOUT).await;
                    this.feed(Input::Found { stream, announcement }, true);
                });
            }
            Output::Attach { attempt, stream, peer, simulcast, standby, fed } => {
                let this = self.clone();
                tokio::spawn(async move { this.attach(attempt, stream, peer, simulcast, standby, fed).await });
            }
            Output::Connect { attempt } => {
                let Some(a) = self.io().attempts.remove(&attempt) else { return };
                let answer = a.answer.unwrap_or_default();
                match self.sfu.relay_answer(a.session, &answer).await {
                    Ok(()) => self.feed(Input::Connected { attempt, session: a.session }, false),
                    Err(e) => {
                        warn!(error = %e, "upstream's relay answer rejected");
                        let _ = self.sfu.close_and_wait(a.session).await;
                        self.feed(Input::AttachFailed { attempt, fatal: false }, false);
                    }
                }
            }
            Output::Abandon { attempt } => {
                let a = self.io().attempts.remove(&attempt);
                if let Some(a) = a {
                    let _ = self.sfu.close_and_wait(a.session).await;
                }
            }
            Output::Detach { stream, session, reason } => {
                debug!(stream = %stream, session, ?reason, "closing the relay from upstream");
                let _ = self.sfu.close_and_wait(session).await;
            }
            Output::Handover { stream, session } => {
                if let Err(e) = self.sfu.relay_handover(session) {
                    debug!(stream = %stream, session, error = %e, "the media plane did not take the move to the standby upstream");
                }
            }
            Output::Close { session } => {
                let _ = self.sfu.close(session);
            }
            Output::Follow { stream, on } => self.follow(&stream, FOLLOW_RELAY, on),
            Output::Ready { stream, ok } => {
                let waiters = self.io().waiters.remove(&stream).unwrap_or_default();
                for w in waiters {
                    let _ = w.send(ok);
                }
            }
            Output::Serve { id, depth, path, standby } => {
                let Some(p) = self.io().requests.remove(&id) else {
                    self.feed(Input::Served { id, session: None }, false);
                    return;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    match this.sfu.relay_serve(&p.stream, &p.offer, standby && p.standby).await {
                        Ok((session, answer_sdp)) => {
                            let _ = p.reply.send(Ok(RelayResponse { answer_sdp, depth, path }));
                            this.feed(Input::Served { id, session: Some(session) }, false);
                        }
                        Err(e) => {
                            let err = match e {
                                relaycast_sfu::SfuError::BadSdp(m) => RelayError::Bad(m),
                                relaycast_sfu::SfuError::StreamNotFound => RelayError::NotFound,
                                relaycast_sfu::SfuError::Full => RelayError::Full,
                                e => RelayError::Internal(e.to_string()),
                            };
                            let _ = p.reply.send(Err(err));
                            this.feed(Input::Served { id, session: None }, false);
                        }
                    }
                });
            }
            Output::Refuse { id, error } => {
                if let Some(p) = self.io().requests.remove(&id) {
                    let _ = p.reply.send(Err(error));
                }
            }
            Output::Announce { streams, load } => {
                self.mesh.set_local_streams(streams);
                self.mesh.set_load(load);
                self.update_turn_peers();
            }
        }
    }

    /// One attempt: a relay offer to `peer`, its answer to the core.
    /// Offers to receive `stream` from `peer` (beside the relay in as a standby with `standby`;
    /// asking `peer` for a paused edge unless `fed`) and reports the answer to the core.
    async fn attach(&self, attempt: AttemptId, stream: String, peer: PeerId, simulcast: bool, standby: bool, fed: bool) {
        let (session, offer) = match self.sfu.relay_offer(&stream, simulcast, standby).await {
            Ok(x) => x,
            Err(e) => {
                warn!(stream, error = %e, standby, "cannot create a relay offer");
                // A standby's offer may meet a stream that changed meanwhile: others may still fit.
                self.feed(Input::AttachFailed { attempt, fatal: !standby }, false);
                return;
            }
        };
        self.io().attempts.insert(attempt, Attempt { session, answer: None });
        let req = RelayRequest { stream: stream.clone(), offer_sdp: offer, standby: standby && !fed };
        match self.mesh.request_relay(peer, req, RELAY_REQUEST_TIMEOUT).await {
            Ok(resp) => {
                if let Some(a) = self.io().attempts.get_mut(&attempt) {
                    a.answer = Some(resp.answer_sdp);
                }
                self.feed(Input::Answered { attempt, depth: resp.depth, path: resp.path }, true);
            }
            Err(e) => {
                tracing::info!(stream, upstream = %peer, error = %e, "upstream refused or failed the relay request");
                self.io().attempts.remove(&attempt);
                let _ = self.sfu.close_and_wait(session).await;
                self.feed(Input::AttachFailed { attempt, fatal: false }, false);
            }
        }
    }

    /// Makes `stream` available here: waits for the core to attach it (or say it cannot).
    async fn ensure(&self, stream: &str) -> bool {
        let (tx, rx) = oneshot::channel();
        {
            let mut io = self.io();
            let total: usize = io.waiters.values().map(Vec::len).sum();
            if total >= MAX_WAITERS {
                io.waiters.retain(|_, w| {
                    w.retain(|s| !s.is_closed());
                    !w.is_empty()
                });
                if io.waiters.values().map(Vec::len).sum::<usize>() >= MAX_WAITERS {
                    drop(io);
                    self.log_refusal(stream, "too many requests waiting for streams");
                    return false;
                }
            }
            io.waiters.entry(stream.to_string()).or_default().push(tx);
        }
        let has_source = self.sfu.has_source(stream);
        // The carriers' current presences, for this attach and the next ones.
        self.mesh.want_stream(stream);
        self.feed(Input::Want { stream: stream.to_string(), has_source }, true);
        // An answer carried out late for an earlier want may say no although the stream is here.
        matches!(tokio::time::timeout(ENSURE_LIMIT, rx).await, Ok(Ok(true))) || self.sfu.has_source(stream)
    }

    fn log_refusal(&self, stream: &str, why: &str) {
        let held = self.refusal_log.lock().unwrap_or_else(|e| e.into_inner()).check(Instant::now());
        if let Some(held) = held {
            debug!(stream, why, suppressed = held, "stream request refused");
        }
    }

    /// Periodic work: report relay sessions that ended and the streams, and announce.
    fn refresh(&self) {
        let summaries = self.sfu.streams();
        let sessions = self.core().sessions();
        let ended: Vec<SessionId> = sessions.into_iter().filter(|id| self.sfu.session_info(*id).is_none()).collect();
        self.feed(Input::Tick { streams: local_streams(&summaries), ended }, true);
        self.volunteer_tick();
    }

    /// This node's own load, as it would announce it.
    pub fn local_load(&self) -> NodeLoad {
        let streams = local_streams(&self.sfu.streams());
        self.core().load_of(&streams)
    }

    /// The best node for a new viewer of `stream` (possibly this one).
    pub fn placement(&self, stream: &str) -> Option<(PeerId, NodeLoad)> {
        let own = self.local_load();
        self.fresh_core().placement(stream, &own)
    }

    /// The HTTP base URL of `stream`'s origin when it is another node that viewers may be sent
    /// to (for `/replay` redirects): its URL verified, and trusted when `--trusted-peer` is set.
    pub fn origin_url(&self, stream: &str) -> Option<String> {
        self.fresh_core().origin_url(stream)
    }

    /// Closes every relay (at shutdown).
    pub async fn shutdown(&self) {
        let sessions = self.core().sessions();
        for id in sessions {
            let _ = self.sfu.close(id);
        }
        self.mesh.shutdown().await;
    }
}

/// Takes every pending output and path push of the core.
fn drain(core: &mut Core) -> (Vec<Output>, Vec<PathPush>) {
    (std::iter::from_fn(|| core.poll_output()).collect(), std::iter::from_fn(|| core.poll_push()).collect())
}

/// Hands queued path pushes to the mesh one at a time until the queue or the mesh closes.
async fn forward_pushes(mesh: Mesh, mut queue: mpsc::Receiver<(PeerId, PushedPath)>, stats: Arc<PushStats>) {
    while let Some((peer, push)) = queue.recv().await {
        if mesh.push_path(peer, push).await.is_err() {
            break;
        }
        stats.sent.fetch_add(1, Ordering::Relaxed);
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
        Box::pin(self.ensure(stream))
    }

    fn redirect<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            // This node is full: place the viewer among the others (verified URLs, trusted).
            let own = self.local_load();
            self.fresh_core().redirect(stream, &own)
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
}
