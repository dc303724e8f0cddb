//! The engine: one real [`Core`] per node, a virtual clock, an event queue ordered by time, and
//! the network model that carries the cores' outputs to each other.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use relaycast_cluster::core::{LocalLayer, LocalStream, PathPush};
use relaycast_cluster::{Config, Core, Input, Output};
use relaycast_mesh::{Directory, PeerId, StreamAnnouncement};

use crate::params::{Params, Policy, SimError};
use crate::report::{Control, CoreCounters, Heal, Report, Summary, Viewers};
use crate::view::{self, LoadRec, ViewCost};

/// The one stream the origin publishes.
pub const STREAM: &str = "live";
/// Simulated time, microseconds from the start.
type T = u64;

const MS: T = 1000;
const SEC: T = 1_000_000;
/// The node driver's refresh (`Input::Tick`) period.
const TICK: T = 500 * MS;
/// The node driver's relay request timeout.
const REQUEST_TIMEOUT: T = 5 * SEC;
/// The SFU's connect timeout: a served offer nobody connects holds its fan-out slot this long.
const CONNECT_TIMEOUT: T = 20 * SEC;
/// The SFU's disconnect timeout: sessions with a dead peer end this long after it dies.
const DISCONNECT_TIMEOUT: T = 8 * SEC;
/// A load report older than this is gone from views (announced every second, three missed).
pub(crate) const LOAD_TTL: T = 3 * SEC;
/// How often the nodes hit by a failure are checked for media.
const HEAL_CHECK: T = 10 * MS;
/// How often every node's ancestors are walked (besides the walk after every event).
const SWEEP: T = SEC;
/// Media packets a receiving node counts per tick.
const PACKETS_PER_TICK: u64 = 60;
/// The stream's video and audio bitrates.
const VIDEO_BPS: u64 = 1_500_000;
const AUDIO_BPS: u64 = 64_000;
/// How long a lost peer stays out of a node's view.
const LOST_FOR: T = 30 * SEC;
/// Seconds over which the viewers of a killed node join again, after a one second pause.
const REJOIN_OVER: T = 2 * SEC;
/// Control bytes of a path push besides its path (stream name, depth, framing).
const PUSH_BYTES: u64 = 48;
/// Control bytes of one peer id in a pushed path (base58 text and quotes).
const PEER_ID_BYTES: u64 = 55;

/// What happens at a point of simulated time.
#[derive(Debug)]
enum Ev {
    Tick(usize),
    Refresh(usize),
    Timer(usize),
    Arrive(usize),
    Viewer { node: usize, hops: u32 },
    Retry(usize),
    Request { to: usize, id: u64 },
    RequestTimeout(u64),
    Answer { to: usize, attempt: u64, depth: u32, path: Vec<PeerId> },
    Failed { to: usize, attempt: u64 },
    Connect { node: usize, attempt: u64 },
    PathPush { to: usize, from: usize, depth: u32, path: Vec<PeerId>, frozen: bool, shed: bool, left: bool, room: bool, move_to: Option<PeerId> },
    Found { node: usize },
    Lost { node: usize, peer: usize },
    ConnectTimeout(u64),
    CloseDead(usize),
    Kill,
    Churn,
    HealCheck,
    Sweep,
}

struct Queued {
    at: T,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    /// Reversed: the heap's top is the earliest event (ties in scheduling order).
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A relay session of the media plane: an offer served by `owner` (`out`) or its connected
/// counterpart at the requester.
#[derive(Debug)]
struct Session {
    peer: usize,
    open: bool,
    pair: Option<u64>,
    /// A relay-out served as a standby edge that its node has not switched to yet.
    paused: bool,
}

/// An attempt of a node to attach to `up`, and the upstream's session once served.
#[derive(Debug)]
struct AttemptSt {
    up: usize,
    out: Option<u64>,
    /// The attempt attaches a standby upstream.
    standby: bool,
}

/// Viewers arriving one after another at random nodes.
#[derive(Debug)]
struct Arrivals {
    remaining: u64,
    every: T,
}

/// Nodes hit by failures, waiting for media again.
#[derive(Debug, Default)]
struct Tracker {
    killed: usize,
    orphans: usize,
    affected: usize,
    pending_orphans: Vec<(usize, T)>,
    pending_affected: Vec<(usize, T)>,
    /// Every orphan of the failures so far (healed or not): where media resumes from a keyframe.
    orphan_nodes: HashSet<usize>,
    orphan_ms: Vec<f64>,
    affected_ms: Vec<f64>,
}

impl Tracker {
    fn heal(&self) -> Heal {
        Heal {
            killed: self.killed,
            orphans: self.orphans,
            orphans_healed: self.orphan_ms.len(),
            orphan_ms: Summary::of(&self.orphan_ms),
            affected: self.affected,
            affected_healed: self.affected_ms.len(),
            affected_ms: Summary::of(&self.affected_ms),
        }
    }
}

/// One simulated node.
pub(crate) struct Node {
    pub(crate) peer: PeerId,
    pub(crate) core: Core,
    pub(crate) alive: bool,
    born: T,
    pub(crate) viewers: u32,
    pub(crate) pending: u32,
    want_out: bool,
    /// When the node's waiting viewers first asked for the stream.
    want_since: Option<T>,
    retries: u32,
    packets: u64,
    /// Relay-out sessions (closed ones are pruned at ticks).
    pub(crate) outs: Vec<u64>,
    /// The bounded policy's sample (the onehop policy's connections besides the tree's), and
    /// when it was last drawn.
    pub(crate) sample: Vec<usize>,
    pub(crate) sample_at: Option<T>,
    /// Peers this node lost, and when (out of its view for [`LOST_FOR`]).
    pub(crate) lost: Vec<(usize, T)>,
    timer_at: Option<T>,
    /// Control bytes received and sent.
    pub(crate) recv: u64,
    pub(crate) sent: u64,
    requests: u64,
    refusals: u64,
    /// A standby relay in that took the stream over in a planned move ([`Output::Handover`]),
    /// reported as feeding it until the core has made it the relay in.
    handover: Option<u64>,
}

/// A running simulation.
pub struct Sim {
    pub(crate) p: Params,
    base: Instant,
    now: T,
    seq: u64,
    queue: BinaryHeap<Queued>,
    rng: StdRng,
    pub(crate) nodes: Vec<Node>,
    pub(crate) idx: HashMap<PeerId, usize>,
    pub(crate) origin: usize,
    pub(crate) announcement: Option<StreamAnnouncement>,
    /// Its size as JSON.
    pub(crate) announcement_bytes: u64,
    /// Each node's last announced load.
    pub(crate) loads: Vec<Option<LoadRec>>,
    /// Nodes whose last report carries the stream with spare fan-out, and each one's position.
    pub(crate) room: Vec<usize>,
    room_pos: Vec<Option<usize>>,
    sessions: Vec<Session>,
    attempts: HashMap<(usize, u64), AttemptSt>,
    /// Relay requests in flight: requester, attempt, and whether the requester gave up on it.
    requests: HashMap<u64, (usize, u64, bool)>,
    next_request: u64,
    arrivals: Vec<Arrivals>,
    kill_tracker: Tracker,
    churn_tracker: Tracker,
    healing: bool,
    end: T,
    viewers: Viewers,
    unknown_outputs: u64,
    requests_timed_out: u64,
    /// The node each relay request went to.
    asked: HashMap<u64, usize>,
    parked_timeouts: u64,
    /// Milliseconds from a node's first want to the stream being there.
    stream_wait_ms: Vec<f64>,
    depth_before_kill: std::collections::BTreeMap<u32, usize>,
    loop_checks: u64,
    loops_found: u64,
    first_loop_ms: Option<u64>,
    events: u64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn secs(s: f64) -> T {
    (s * SEC as f64).round() as T
}

impl Sim {
    /// A simulation of `p`, nothing run yet.
    pub fn new(p: Params) -> Result<Sim, SimError> {
        p.validate()?;
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(p.seed),
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::with_capacity(p.nodes),
            idx: HashMap::new(),
            origin: 0,
            announcement: None,
            announcement_bytes: 0,
            loads: Vec::new(),
            room: Vec::new(),
            room_pos: Vec::new(),
            sessions: Vec::new(),
            attempts: HashMap::new(),
            requests: HashMap::new(),
            next_request: 0,
            arrivals: Vec::new(),
            kill_tracker: Tracker::default(),
            churn_tracker: Tracker::default(),
            healing: false,
            end: 0,
            viewers: Viewers::default(),
            unknown_outputs: 0,
            requests_timed_out: 0,
            asked: HashMap::new(),
            parked_timeouts: 0,
            stream_wait_ms: Vec::new(),
            depth_before_kill: Default::default(),
            loop_checks: 0,
            loops_found: 0,
            first_loop_ms: None,
            events: 0,
            p,
        };
        for _ in 0..sim.p.nodes {
            sim.add_node()?;
        }
        let join_start = SEC;
        let join = secs(sim.p.join_secs);
        if let Some(every) = join.checked_div(sim.p.viewers) {
            sim.arrivals.push(Arrivals { remaining: sim.p.viewers, every: every.max(1) });
            sim.push(join_start, Ev::Arrive(0));
        }
        let kill_at = join_start + join + secs(sim.p.settle_secs);
        let heal_end = kill_at + secs(sim.p.heal_secs);
        sim.end = heal_end;
        if sim.p.kill > 0.0 {
            sim.push(kill_at, Ev::Kill);
        }
        if sim.p.churn > 0.0 && sim.p.churn_secs > 0.0 {
            let every = secs(1.0 / sim.p.churn).max(1);
            let steps = (sim.p.churn_secs * sim.p.churn).round() as u64;
            for k in 0..steps {
                sim.push(heal_end + k * every, Ev::Churn);
            }
            sim.end = heal_end + secs(sim.p.churn_secs) + secs(sim.p.heal_secs);
        }
        sim.push(SWEEP, Ev::Sweep);
        Ok(sim)
    }

    fn push(&mut self, at: T, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued { at, seq: self.seq, ev });
    }

    fn at(&self, t: T) -> Instant {
        self.base + Duration::from_micros(t)
    }

    /// The instant of simulated time `t`.
    pub(crate) fn instant(&self, t: T) -> Instant {
        self.at(t)
    }

    /// Whether node `j`'s last report carries the stream with spare fan-out.
    pub(crate) fn has_room(&self, j: usize) -> bool {
        self.room_pos[j].is_some()
    }

    /// The peers node `i` has open relay-out sessions to.
    pub(crate) fn children_of(&self, i: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for &sid in &self.nodes[i].outs {
            if let Some(s) = sid.checked_sub(1).and_then(|k| self.sessions.get(k as usize))
                && s.open
                && !out.contains(&s.peer)
            {
                out.push(s.peer);
            }
        }
        out
    }

    fn t_of(&self, i: Instant) -> T {
        u64::try_from(i.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX)
    }

    /// One-way latency between two nodes, from the seed.
    fn lat(&self, a: usize, b: usize) -> T {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let h = splitmix(self.p.seed ^ splitmix(((lo as u64) << 32) | hi as u64));
        let span = self.p.latency_max_ms - self.p.latency_min_ms + 1;
        (self.p.latency_min_ms + h % span) * MS
    }

    pub(crate) fn rtt(&self, a: usize, b: usize) -> Duration {
        Duration::from_micros(2 * self.lat(a, b))
    }

    fn add_node(&mut self) -> Result<usize, SimError> {
        let i = self.nodes.len();
        // An identity multihash of an ed25519 public key, as libp2p peer ids are, from the seed.
        let mut bytes = vec![0x00, 36, 0x08, 0x01, 0x12, 0x20];
        for _ in 0..4 {
            bytes.extend_from_slice(&self.rng.random::<u64>().to_le_bytes());
        }
        let peer = PeerId::from_bytes(&bytes).map_err(|e| SimError::BadParams(format!("peer id: {e}")))?;
        let cfg = Config {
            me: peer,
            http_url: format!("http://n{i}"),
            region: None,
            capacity: self.p.capacity,
            max_relay_children: self.p.max_relay_children,
            max_depth: self.p.max_depth,
            trusted: vec![],
            media_addrs: vec![],
        };
        self.nodes.push(Node {
            peer,
            core: Core::new(cfg),
            alive: true,
            born: self.now,
            viewers: 0,
            pending: 0,
            want_out: false,
            want_since: None,
            retries: 0,
            packets: 0,
            outs: Vec::new(),
            sample: Vec::new(),
            sample_at: None,
            lost: Vec::new(),
            timer_at: None,
            recv: 0,
            sent: 0,
            requests: 0,
            refusals: 0,
            handover: None,
        });
        self.idx.insert(peer, i);
        self.loads.push(None);
        self.room_pos.push(None);
        let tick = self.now + self.rng.random_range(0..TICK);
        let refresh = self.now + self.rng.random_range(0..self.p.refresh_ms * MS);
        self.push(tick, Ev::Tick(i));
        self.push(refresh, Ev::Refresh(i));
        Ok(i)
    }

    fn random_live(&mut self) -> Option<usize> {
        for _ in 0..64 {
            let i = self.rng.random_range(0..self.nodes.len());
            if self.nodes[i].alive {
                return Some(i);
            }
        }
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].alive).collect();
        (!live.is_empty()).then(|| live[self.rng.random_range(0..live.len())])
    }

    fn carries(&self, i: usize) -> bool {
        i == self.origin || self.nodes[i].core.relay_in(STREAM).is_some()
    }

    fn open(&self, sid: u64) -> bool {
        sid.checked_sub(1).and_then(|k| self.sessions.get(k as usize)).is_some_and(|s| s.open)
    }

    fn session(&mut self, sid: u64) -> Option<&mut Session> {
        sid.checked_sub(1).and_then(|k| self.sessions.get_mut(k as usize))
    }

    fn new_session(&mut self, peer: usize, pair: Option<u64>) -> u64 {
        self.sessions.push(Session { peer, open: true, pair, paused: false });
        self.sessions.len() as u64
    }

    fn close(&mut self, sid: u64) {
        let pair = match self.session(sid) {
            Some(s) if s.open => {
                s.open = false;
                s.pair
            }
            _ => return,
        };
        if let Some(p) = pair
            && let Some(s) = self.session(p)
        {
            s.open = false;
        }
    }

    /// Whether node `i` receives media: its upstream links reach the origin through live nodes
    /// and open sessions.
    pub(crate) fn receives(&self, i: usize) -> bool {
        let mut cur = i;
        for _ in 0..=self.nodes.len() {
            let n = &self.nodes[cur];
            if !n.alive {
                return false;
            }
            if cur == self.origin {
                return true;
            }
            let Some(r) = n.core.relay_in(STREAM) else { return false };
            if !self.open(r.session) {
                return false;
            }
            let Some(&up) = self.idx.get(&r.upstream) else { return false };
            cur = up;
        }
        false
    }

    /// Once the chain from the origin to node `i` is whole again, how much later its media
    /// resumes: at the first keyframe through the edge that changed. The orphan above `i` (or `i`
    /// itself) asks its new upstream for one and gets the cached keyframe back (a round trip, as
    /// a resumed standby edge and a new edge alike do); each hop below carries it down (one way).
    /// With `--publisher-keyframe-ms` the request goes on to the origin and the publisher's
    /// keyframe comes back down the whole path.
    pub(crate) fn keyframe_delay(&self, i: usize, orphans: &HashSet<usize>) -> T {
        let mut delay = 0;
        let mut cur = i;
        let mut from_orphan: Option<T> = None;
        for _ in 0..=self.nodes.len() {
            let Some(up) = self.nodes[cur].core.relay_in(STREAM).and_then(|r| self.idx.get(&r.upstream).copied()) else {
                break;
            };
            match (&mut from_orphan, self.p.publisher_keyframe_ms) {
                (Some(rest), _) => *rest += self.lat(cur, up),
                (None, None) if orphans.contains(&cur) => return delay + 2 * self.lat(cur, up),
                (None, Some(_)) if orphans.contains(&cur) => from_orphan = Some(self.lat(cur, up)),
                (None, _) => delay += self.lat(cur, up),
            }
            cur = up;
        }
        match (from_orphan, self.p.publisher_keyframe_ms) {
            // Up from the orphan to the origin, the publisher's answer, and back down.
            (Some(rest), Some(ms)) => delay + 2 * rest + ms * MS,
            _ => delay,
        }
    }

    /// Follows the upstream links from `i` (live nodes only): a node met twice is a loop.
    fn check_loop(&mut self, i: usize) -> Result<(), SimError> {
        self.loop_checks += 1;
        let mut chain = vec![i];
        let mut cur = i;
        loop {
            let n = &self.nodes[cur];
            if !n.alive {
                return Ok(());
            }
            let Some(r) = n.core.relay_in(STREAM) else { return Ok(()) };
            let Some(&up) = self.idx.get(&r.upstream) else { return Ok(()) };
            if chain.contains(&up) {
                if self.p.count_loops {
                    self.loops_found += 1;
                    self.first_loop_ms.get_or_insert(self.now / MS);
                    return Ok(());
                }
                return Err(SimError::Loop { at_ms: self.now / MS, node: i, repeated: up, chain });
            }
            chain.push(up);
            cur = up;
        }
    }

    /// Walks every live node's ancestors and checks each core's own path.
    fn sweep(&mut self) -> Result<(), SimError> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            self.check_loop(i)?;
            if let Some(r) = self.nodes[i].core.relay_in(STREAM) {
                let me = self.nodes[i].peer;
                let dup = r.path.iter().enumerate().any(|(k, p)| *p == me || r.path[..k].contains(p));
                if dup {
                    let path = r.path.iter().map(|p| self.idx.get(p).copied().unwrap_or(usize::MAX)).collect();
                    return Err(SimError::BadPath { at_ms: self.now / MS, node: i, path });
                }
            }
        }
        Ok(())
    }

    /// Gives node `i`'s core one input now and carries out what it asks.
    fn feed(&mut self, i: usize, input: Input) -> Result<(), SimError> {
        let now = self.at(self.now);
        self.nodes[i].core.handle_input(input, now);
        self.pump(i)
    }

    fn pump(&mut self, i: usize) -> Result<(), SimError> {
        while let Some(o) = self.nodes[i].core.poll_output() {
            self.carry_out(i, o);
        }
        // A node fed by what was its standby edge asked that edge for a keyframe: it runs.
        let fed_by = self.nodes[i].core.relay_in(STREAM).map(|r| r.session);
        if let Some(out) = fed_by.and_then(|sid| self.session(sid)?.pair)
            && let Some(s) = self.session(out)
        {
            s.paused = false;
        }
        while let Some(p) = self.nodes[i].core.poll_push() {
            self.send_path(i, p);
        }
        self.check_loop(i)?;
        if let Some(due) = self.nodes[i].core.poll_timeout() {
            let due = self.t_of(due).max(self.now);
            if self.nodes[i].timer_at.is_none_or(|t| due < t) {
                self.nodes[i].timer_at = Some(due);
                self.push(due, Ev::Timer(i));
            }
        }
        Ok(())
    }

    /// Gives node `i` its view of the mesh (counting its control bytes when `gossip`: a
    /// snapshot taken for an event is local, not traffic).
    fn give_view(&mut self, i: usize, gossip: bool) -> Result<(), SimError> {
        let (dir, cost): (Directory, ViewCost) = view::build(self, i, self.now, gossip);
        if gossip {
            self.nodes[i].recv += cost.recv;
            for (j, bytes) in cost.sent {
                self.nodes[j].sent += bytes;
            }
        }
        self.feed(i, Input::Directory(dir))
    }

    /// Draws live nodes at random for the onehop policy's connections (peer sampling).
    /// Keeps a uniform random `k` of `items` (all of them when there are no more).
    pub(crate) fn sample_of(&mut self, items: &mut Vec<usize>, k: usize) {
        if items.len() > k {
            let (chosen, _) = rand::seq::SliceRandom::partial_shuffle(items.as_mut_slice(), &mut self.rng, k);
            *items = chosen.to_vec();
        }
    }

    pub(crate) fn draw_any(&mut self, i: usize, into: &mut Vec<usize>, k: usize) {
        let n = self.nodes.len();
        let want = k.min(n.saturating_sub(1));
        let mut tries = 0;
        while into.len() < want && tries < 4 * k + 8 {
            tries += 1;
            let j = self.rng.random_range(0..n);
            if j != i && self.nodes[j].alive && !into.contains(&j) {
                into.push(j);
            }
        }
    }

    /// Draws from the nodes with room for the bounded policy's sample.
    pub(crate) fn draw_room(&mut self, i: usize, into: &mut Vec<usize>, k: usize) {
        let want = k.min(self.room.len());
        let mut tries = 0;
        while into.len() < want && tries < 4 * k + 8 {
            tries += 1;
            let j = self.room[self.rng.random_range(0..self.room.len())];
            if j != i && !into.contains(&j) {
                into.push(j);
            }
        }
    }

    fn set_room(&mut self, i: usize, has: bool) {
        match (has, self.room_pos[i]) {
            (true, None) => {
                self.room_pos[i] = Some(self.room.len());
                self.room.push(i);
            }
            (false, Some(pos)) => {
                self.room.swap_remove(pos);
                if let Some(&moved) = self.room.get(pos) {
                    self.room_pos[moved] = Some(pos);
                }
                self.room_pos[i] = None;
            }
            _ => {}
        }
    }

    #[allow(unreachable_patterns)]
    fn carry_out(&mut self, i: usize, o: Output) {
        let now = self.now;
        match o {
            Output::Lookup { .. } => {
                let delay = 2 * self.lat(i, self.origin) * 2;
                self.push(now + delay, Ev::Found { node: i });
            }
            Output::Attach { attempt, peer, standby, fed, .. } => {
                self.nodes[i].requests += 1;
                let Some(&u) = self.idx.get(&peer) else {
                    self.push(now + REQUEST_TIMEOUT, Ev::Failed { to: i, attempt });
                    return;
                };
                // A fed edge held as a standby (a move below a sibling) is asked for as fed.
                self.attempts.insert((i, attempt), AttemptSt { up: u, out: None, standby: standby && !fed });
                if self.p.loss > 0.0 && self.rng.random_bool(self.p.loss) {
                    self.push(now + REQUEST_TIMEOUT, Ev::Failed { to: i, attempt });
                    return;
                }
                self.next_request += 1;
                let id = self.next_request;
                self.requests.insert(id, (i, attempt, false));
                let at = now + self.lat(i, u);
                self.push(at, Ev::Request { to: u, id });
                self.asked.insert(id, u);
                // Unanswered (a dead peer, or a request parked on an attach that never ends).
                self.push(now + REQUEST_TIMEOUT, Ev::RequestTimeout(id));
            }
            Output::Serve { id, depth, path, standby } => {
                let Some((x, attempt, timed_out)) = self.requests.remove(&id) else {
                    let t = self.at(now);
                    self.nodes[i].core.handle_input(Input::Served { id, session: None }, t);
                    return;
                };
                // The media plane opens the relay-out session even when the requester gave up
                // (its answer goes nowhere): it holds a fan-out slot until the connect timeout.
                let sid = self.new_session(x, None);
                if let Some(s) = self.session(sid) {
                    s.paused = standby;
                }
                self.nodes[i].outs.push(sid);
                let t = self.at(now);
                self.nodes[i].core.handle_input(Input::Served { id, session: Some(sid) }, t);
                self.push(now + CONNECT_TIMEOUT, Ev::ConnectTimeout(sid));
                if timed_out {
                    return;
                }
                if let Some(st) = self.attempts.get_mut(&(x, attempt)) {
                    st.out = Some(sid);
                }
                if self.p.loss > 0.0 && self.rng.random_bool(self.p.loss) {
                    // The answer is lost: the request times out.
                    self.requests.insert(id, (x, attempt, false));
                } else {
                    let at = now + self.lat(i, x);
                    self.push(at, Ev::Answer { to: x, attempt, depth, path });
                }
            }
            Output::Refuse { id, .. } => {
                self.nodes[i].refusals += 1;
                if let Some((x, attempt, false)) = self.requests.remove(&id) {
                    let at = now + self.lat(i, x);
                    self.push(at, Ev::Failed { to: x, attempt });
                }
            }
            Output::Connect { attempt } => match self.attempts.get(&(i, attempt)).map(|s| s.up) {
                Some(up) => {
                    let at = now + 2 * self.lat(i, up);
                    self.push(at, Ev::Connect { node: i, attempt });
                }
                None => self.push(now, Ev::Failed { to: i, attempt }),
            },
            Output::Abandon { attempt } => {
                // The upstream's served offer (if any) times out on its own.
                self.attempts.remove(&(i, attempt));
            }
            Output::Detach { session, .. } | Output::Close { session } => self.close(session),
            Output::Handover { session, .. } => {
                // The standby's edge resumes and its first keyframe takes the stream over; the
                // core sees it at its next tick (the keyframe comes well within a tick).
                if let Some(out) = self.session(session).and_then(|s| s.pair)
                    && let Some(s) = self.session(out)
                {
                    s.paused = false;
                }
                self.nodes[i].handover = Some(session);
            }
            Output::Follow { .. } => {}
            Output::Ready { ok, .. } => self.on_ready(i, ok),
            Output::Announce { streams, load } => {
                if i == self.origin
                    && let Some(mut ann) = streams.into_iter().find(|a| a.stream == STREAM)
                {
                    ann.started_ms = 1;
                    if self.announcement.as_ref() != Some(&ann) {
                        self.announcement_bytes = serde_json::to_vec(&ann).map(|v| v.len() as u64).unwrap_or(0);
                        self.announcement = Some(ann);
                    }
                }
                let room = load.streams.iter().any(|s| s.stream == STREAM) && load.relay_children < load.max_relay_children;
                // Sized as the mesh sends it (JSON); an unchanged report keeps its size.
                let (bytes, presence_bytes, summary_bytes) = match &self.loads[i] {
                    Some(rec) if rec.load == load => (rec.bytes, rec.presence_bytes, rec.summary_bytes),
                    _ => {
                        let size = |v: Result<Vec<u8>, serde_json::Error>| v.map(|v| v.len() as u64).unwrap_or(0);
                        let presence = load.streams.iter().find(|s| s.stream == STREAM);
                        (
                            size(serde_json::to_vec(&load)),
                            presence.map_or(0, |p| size(serde_json::to_vec(p))),
                            size(serde_json::to_vec(&relaycast_mesh::CarrierSummary::of(&load))),
                        )
                    }
                };
                self.loads[i] = Some(LoadRec { load, bytes, presence_bytes, summary_bytes, at: now });
                self.set_room(i, room && self.nodes[i].alive);
            }
            _ => self.unknown_outputs += 1,
        }
    }

    /// Sends a path push of node `i` to its relay child over the network model.
    fn send_path(&mut self, i: usize, p: PathPush) {
        let Some(&to) = self.idx.get(&p.peer) else { return };
        // Sized as a relay-protocol message: the stream, the depth and the path's peer ids as
        // text.
        let bytes = PUSH_BYTES + PEER_ID_BYTES * p.path.len() as u64;
        self.nodes[i].sent += bytes;
        if self.p.loss > 0.0 && self.rng.random_bool(self.p.loss) {
            return;
        }
        self.nodes[to].recv += bytes;
        let at = self.now + self.lat(i, to);
        self.push(at, Ev::PathPush { to, from: i, depth: p.depth, path: p.path, frozen: p.frozen, shed: p.shed, left: p.left, room: p.room, move_to: p.move_to });
    }

    fn on_ready(&mut self, i: usize, ok: bool) {
        let carries = self.carries(i);
        let now = self.now;
        let n = &mut self.nodes[i];
        n.want_out = false;
        if ok || carries {
            if n.pending > 0
                && let Some(t) = n.want_since
            {
                self.stream_wait_ms.push(now.saturating_sub(t) as f64 / MS as f64);
            }
            n.want_since = None;
            n.viewers += n.pending;
            n.pending = 0;
            n.retries = 0;
        } else if n.pending > 0 {
            if n.retries < self.p.viewer_retries {
                n.retries += 1;
                self.push(now + SEC, Ev::Retry(i));
            } else {
                self.viewers.unplaced += u64::from(n.pending);
                self.viewers.unplaced_no_stream += u64::from(n.pending);
                n.pending = 0;
                n.retries = 0;
                n.want_since = None;
            }
        }
    }

    fn own_streams(&self, i: usize) -> Vec<LocalStream> {
        let n = &self.nodes[i];
        let paused = |sid: u64| self.sessions.get((sid - 1) as usize).is_some_and(|s| s.paused);
        let children = n.outs.iter().filter(|s| self.open(**s) && !paused(**s)).count() as u32;
        let standbys = n.outs.iter().filter(|s| self.open(**s) && paused(**s)).count() as u32;
        let origin = i == self.origin;
        if !(origin || n.core.relay_in(STREAM).is_some() || n.viewers > 0 || children > 0 || standbys > 0) {
            return vec![];
        }
        vec![LocalStream {
            name: STREAM.into(),
            live: origin,
            codec: origin.then(|| "VP8".to_string()),
            viewers: n.viewers,
            relay_children: children,
            standby_children: standbys,
            layers: vec![LocalLayer { rid: "h".into(), bitrate_bps: VIDEO_BPS }],
            audio_bps: AUDIO_BPS,
            packets: n.packets,
            fed_by: n.handover.filter(|s| self.open(*s)).or(n.core.relay_in(STREAM).map(|r| r.session)),
            paused_relays: n.outs.iter().copied().filter(|s| self.open(*s) && paused(*s)).collect(),
        }]
    }

    /// A viewer arrives at node `i` (after `hops` redirects).
    fn viewer(&mut self, i: usize, hops: u32) -> Result<(), SimError> {
        if !self.nodes[i].alive {
            match self.random_live() {
                Some(j) => return self.viewer(j, hops),
                None => {
                    self.viewers.unplaced += 1;
                    return Ok(());
                }
            }
        }
        let n = &self.nodes[i];
        if n.viewers + n.pending >= self.p.capacity {
            let mut own = n.core.load_of(&self.own_streams(i));
            own.viewers = own.viewers.saturating_add(n.pending);
            let target = n
                .core
                .redirect(STREAM, &own)
                .and_then(|url| url.strip_prefix("http://n").and_then(|r| r.split('/').next()).and_then(|x| x.parse::<usize>().ok()));
            match target {
                Some(j) if hops < self.p.max_redirects && j < self.nodes.len() => {
                    self.viewers.redirected += 1;
                    let at = self.now + self.lat(i, j);
                    self.push(at, Ev::Viewer { node: j, hops: hops + 1 });
                }
                _ => self.viewers.unplaced += 1,
            }
            return Ok(());
        }
        if self.carries(i) {
            self.nodes[i].viewers += 1;
            return Ok(());
        }
        self.nodes[i].pending += 1;
        self.want(i)
    }

    fn want(&mut self, i: usize) -> Result<(), SimError> {
        if self.nodes[i].want_out {
            return Ok(());
        }
        self.nodes[i].want_out = true;
        self.nodes[i].want_since.get_or_insert(self.now);
        // The node driver gives the core a fresh directory with every want.
        self.give_view(i, false)?;
        let has_source = self.carries(i);
        self.feed(i, Input::Want { stream: STREAM.into(), has_source })
    }

    /// Kills `victims` at once; their tree neighbours lose them after one round trip.
    fn kill(&mut self, victims: &[usize], churn: bool) {
        let before: Vec<bool> = (0..self.nodes.len()).map(|i| self.nodes[i].alive && self.receives(i)).collect();
        for &k in victims {
            let mut neighbours: Vec<usize> = Vec::new();
            if let Some(r) = self.nodes[k].core.relay_in(STREAM)
                && let Some(&u) = self.idx.get(&r.upstream)
            {
                neighbours.push(u);
            }
            for &sid in &self.nodes[k].outs {
                if let Some(s) = sid.checked_sub(1).and_then(|x| self.sessions.get(x as usize))
                    && s.open
                    && !neighbours.contains(&s.peer)
                {
                    neighbours.push(s.peer);
                }
            }
            let n = &mut self.nodes[k];
            n.alive = false;
            let gone = u64::from(n.viewers + n.pending);
            n.viewers = 0;
            n.pending = 0;
            self.viewers.lost_with_node += gone;
            if self.p.rejoin && gone > 0 {
                self.arrivals.push(Arrivals { remaining: gone, every: (REJOIN_OVER / gone).max(1) });
                let g = self.arrivals.len() - 1;
                self.push(self.now + SEC, Ev::Arrive(g));
            }
            self.set_room(k, false);
            for nb in neighbours {
                let at = self.now + 2 * self.lat(nb, k);
                self.push(at, Ev::Lost { node: nb, peer: k });
            }
            self.push(self.now + DISCONNECT_TIMEOUT, Ev::CloseDead(k));
        }
        let now = self.now;
        let mut orphans = Vec::new();
        let mut affected = Vec::new();
        for (i, &was) in before.iter().enumerate() {
            if !self.nodes[i].alive {
                continue;
            }
            let orphan = self.nodes[i].core.relay_in(STREAM).and_then(|r| self.idx.get(&r.upstream)).is_some_and(|u| victims.contains(u));
            if orphan {
                orphans.push((i, now));
            }
            if was && !self.receives(i) {
                affected.push((i, now));
            }
        }
        let t = if churn { &mut self.churn_tracker } else { &mut self.kill_tracker };
        t.killed += victims.len();
        t.orphans += orphans.len();
        t.affected += affected.len();
        t.orphan_nodes.extend(orphans.iter().map(|o| o.0));
        t.pending_orphans.extend(orphans);
        t.pending_affected.extend(affected);
        if !self.healing {
            self.healing = true;
            self.push(now + HEAL_CHECK, Ev::HealCheck);
        }
    }

    fn heal_check(&mut self) {
        let now = self.now;
        let mut left = 0;
        for churn in [false, true] {
            let t = if churn { &self.churn_tracker } else { &self.kill_tracker };
            let check = |list: &[(usize, T)], out: &mut Vec<f64>| -> Vec<(usize, T)> {
                let mut keep = Vec::new();
                for &(n, start) in list {
                    if !self.nodes[n].alive {
                        continue;
                    }
                    if self.receives(n) {
                        let resumed = now + self.keyframe_delay(n, &t.orphan_nodes);
                        out.push((resumed - start) as f64 / MS as f64);
                    } else {
                        keep.push((n, start));
                    }
                }
                keep
            };
            let mut om = Vec::new();
            let mut am = Vec::new();
            let po = check(&t.pending_orphans, &mut om);
            let pa = check(&t.pending_affected, &mut am);
            let t = if churn { &mut self.churn_tracker } else { &mut self.kill_tracker };
            t.orphan_ms.extend(om);
            t.affected_ms.extend(am);
            t.pending_orphans = po;
            t.pending_affected = pa;
            left += t.pending_orphans.len() + t.pending_affected.len();
        }
        if left > 0 {
            self.push(now + HEAL_CHECK, Ev::HealCheck);
        } else {
            self.healing = false;
        }
    }

    fn handle(&mut self, ev: Ev) -> Result<(), SimError> {
        let now = self.now;
        match ev {
            Ev::Tick(i) => {
                if !self.nodes[i].alive {
                    return Ok(());
                }
                if i == self.origin || self.receives(i) {
                    self.nodes[i].packets += PACKETS_PER_TICK;
                }
                let streams = self.own_streams(i);
                let ended: Vec<u64> = self.nodes[i].core.sessions().into_iter().filter(|s| !self.open(*s)).collect();
                let open: Vec<u64> = self.nodes[i].outs.iter().copied().filter(|s| self.open(*s)).collect();
                self.nodes[i].outs = open;
                self.push(now + TICK, Ev::Tick(i));
                self.feed(i, Input::Tick { streams, ended })
            }
            Ev::Refresh(i) => {
                if !self.nodes[i].alive {
                    return Ok(());
                }
                self.nodes[i].lost.retain(|(_, t)| now.saturating_sub(*t) < LOST_FOR);
                self.push(now + self.p.refresh_ms * MS, Ev::Refresh(i));
                self.give_view(i, true)
            }
            Ev::Timer(i) => {
                if !self.nodes[i].alive || self.nodes[i].timer_at != Some(now) {
                    return Ok(());
                }
                self.nodes[i].timer_at = None;
                let t = self.at(now);
                self.nodes[i].core.handle_timeout(t);
                self.pump(i)
            }
            Ev::Arrive(g) => {
                let Some(a) = self.arrivals.get_mut(g) else { return Ok(()) };
                a.remaining = a.remaining.saturating_sub(1);
                let (more, every) = (a.remaining > 0, a.every);
                if more {
                    self.push(now + every, Ev::Arrive(g));
                }
                self.viewers.arrivals += 1;
                match self.random_live() {
                    Some(i) => self.viewer(i, 0),
                    None => {
                        self.viewers.unplaced += 1;
                        Ok(())
                    }
                }
            }
            Ev::Viewer { node, hops } => self.viewer(node, hops),
            Ev::Retry(i) => {
                if !self.nodes[i].alive || self.nodes[i].pending == 0 {
                    return Ok(());
                }
                if self.carries(i) {
                    self.on_ready(i, true);
                    return Ok(());
                }
                self.want(i)
            }
            Ev::Request { to, id } => {
                let Some(&(x, attempt, _)) = self.requests.get(&id) else { return Ok(()) };
                if !self.nodes[to].alive {
                    return Ok(());
                }
                let has_source = self.carries(to);
                let from = self.nodes[x].peer;
                let standby = self.attempts.get(&(x, attempt)).is_some_and(|a| a.standby);
                self.feed(to, Input::RelayRequest { id, from, stream: STREAM.into(), has_source, standby })
            }
            Ev::RequestTimeout(id) => {
                if let Some(e) = self.requests.get_mut(&id)
                    && !e.2
                {
                    e.2 = true;
                    let (x, attempt) = (e.0, e.1);
                    self.requests_timed_out += 1;
                    // Asked a live node that does not carry the stream: it parked the request
                    // on its own attach, which did not end in time.
                    if let Some(&to) = self.asked.get(&id)
                        && self.nodes[to].alive
                        && !self.carries(to)
                    {
                        self.parked_timeouts += 1;
                    }
                    self.push(now, Ev::Failed { to: x, attempt });
                }
                Ok(())
            }
            Ev::Answer { to, attempt, depth, path } => {
                if !self.nodes[to].alive {
                    return Ok(());
                }
                self.feed(to, Input::Answered { attempt, depth, path })
            }
            Ev::Failed { to, attempt } => {
                if !self.nodes[to].alive {
                    return Ok(());
                }
                self.attempts.remove(&(to, attempt));
                self.feed(to, Input::AttachFailed { attempt, fatal: false })
            }
            Ev::Connect { node, attempt } => {
                if !self.nodes[node].alive {
                    return Ok(());
                }
                let st = self.attempts.remove(&(node, attempt));
                let served = st.and_then(|s| {
                    let out = s.out?;
                    let usable =
                        self.nodes[s.up].alive && self.sessions.get((out - 1) as usize).is_some_and(|x| x.open && x.pair.is_none());
                    usable.then_some((s.up, out))
                });
                match served {
                    Some((up, out)) => {
                        let sid = self.new_session(up, Some(out));
                        if let Some(s) = self.session(out) {
                            s.pair = Some(sid);
                        }
                        self.feed(node, Input::Connected { attempt, session: sid })
                    }
                    None => self.feed(node, Input::AttachFailed { attempt, fatal: false }),
                }
            }
            Ev::PathPush { to, from, depth, path, frozen, shed, left, room, move_to } => {
                if !self.nodes[to].alive {
                    return Ok(());
                }
                let from = self.nodes[from].peer;
                self.feed(to, Input::PathUpdate { from, stream: STREAM.into(), depth, path, frozen, shed, left, room, move_to })
            }
            Ev::Found { node } => {
                if !self.nodes[node].alive {
                    return Ok(());
                }
                let announcement = self.announcement.clone().filter(|_| self.nodes[self.origin].alive);
                self.feed(node, Input::Found { stream: STREAM.into(), announcement })
            }
            Ev::Lost { node, peer } => {
                if !self.nodes[node].alive {
                    return Ok(());
                }
                self.nodes[node].lost.push((peer, now));
                // The node driver gives the core a fresh directory with every mesh event.
                self.give_view(node, false)?;
                let p = self.nodes[peer].peer;
                self.feed(node, Input::PeerLost(p))
            }
            Ev::ConnectTimeout(sid) => {
                if self.sessions.get((sid - 1) as usize).is_some_and(|s| s.open && s.pair.is_none()) {
                    self.close(sid);
                }
                Ok(())
            }
            Ev::CloseDead(k) => {
                let outs = std::mem::take(&mut self.nodes[k].outs);
                for sid in outs {
                    self.close(sid);
                }
                if let Some(sid) = self.nodes[k].core.relay_in(STREAM).map(|r| r.session) {
                    self.close(sid);
                }
                Ok(())
            }
            Ev::Kill => {
                self.depth_before_kill = self.depths();
                let mut cands: Vec<usize> = (0..self.nodes.len()).filter(|&i| i != self.origin && self.nodes[i].alive).collect();
                let count = ((self.nodes.len() as f64) * self.p.kill).round() as usize;
                let count = count.min(cands.len());
                let mut victims = Vec::with_capacity(count);
                for _ in 0..count {
                    let k = self.rng.random_range(0..cands.len());
                    victims.push(cands.swap_remove(k));
                }
                self.kill(&victims, false);
                Ok(())
            }
            Ev::Churn => {
                let origin = self.origin;
                let victim = (0..8).filter_map(|_| self.random_live()).find(|&i| i != origin);
                if let Some(v) = victim {
                    self.kill(&[v], true);
                }
                self.add_node()?;
                Ok(())
            }
            Ev::HealCheck => {
                self.heal_check();
                Ok(())
            }
            Ev::Sweep => {
                self.push(now + SWEEP, Ev::Sweep);
                self.sweep()
            }
        }
    }

    /// Runs to the end and reports (an error on the first loop).
    pub fn run(mut self) -> Result<Report, SimError> {
        let wall = Instant::now();
        while let Some(q) = self.queue.pop() {
            if q.at > self.end {
                break;
            }
            self.now = q.at;
            self.events += 1;
            self.handle(q.ev)?;
        }
        self.now = self.end;
        self.sweep()?;
        self.heal_check();
        let mut r = self.report();
        r.runtime_ms = u64::try_from(wall.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(r)
    }

    /// Live nodes by depth (0 is the origin); nodes without the stream are not counted.
    fn depths(&self) -> std::collections::BTreeMap<u32, usize> {
        let mut h = std::collections::BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive {
                continue;
            }
            let depth = if i == self.origin { Some(0) } else { n.core.relay_in(STREAM).map(|r| r.depth) };
            if let Some(d) = depth {
                *h.entry(d).or_default() += 1;
            }
        }
        h
    }

    fn report(&self) -> Report {
        let mut r = Report { params: Some(self.p.clone()), created_nodes: self.nodes.len(), ..Report::default() };
        let mut children = Vec::new();
        let mut bytes = Vec::new();
        let mut conns = Vec::new();
        let mut counters = CoreCounters {
            unknown_outputs: self.unknown_outputs,
            timeouts: self.requests_timed_out,
            parked_timeouts: self.parked_timeouts,
            ..CoreCounters::default()
        };
        let mut report_sizes = Vec::new();
        let mut viewers = self.viewers.clone();
        for (i, n) in self.nodes.iter().enumerate() {
            let c = n.core.counters();
            counters.reattaches += c.reattaches;
            counters.stalls += c.stalls;
            counters.cycles_refused += c.cycles;
            counters.too_deep += c.too_deep;
            counters.lookups += c.lookups;
            counters.standbys += c.standbys;
            counters.standby_switches += c.standby_switches;
            counters.sheds += c.sheds;
            counters.handovers += c.handovers;
            counters.path_pushes += c.path_pushes;
            counters.pushed_invalid += c.pushed_invalid;
            counters.frozen_requests += c.frozen_requests;
            counters.relay_requests += n.requests;
            counters.refusals += n.refusals;
            if !n.alive {
                continue;
            }
            r.live_nodes += 1;
            r.control.directory_entries += n.core.directory().nodes.len() as u64;
            let connected: Vec<usize> = n
                .outs
                .iter()
                .filter_map(|s| self.sessions.get((*s - 1) as usize))
                .filter(|s| s.open && s.pair.is_some() && !s.paused)
                .map(|s| s.peer)
                .collect();
            let receiving = self.receives(i);
            let upstream = n.core.relay_in(STREAM).and_then(|x| self.idx.get(&x.upstream).copied());
            if i == self.origin {
                r.origin_fan_out = connected.len();
                children.push(connected.len() as f64);
            } else if n.core.relay_in(STREAM).is_some() {
                children.push(connected.len() as f64);
                if !receiving {
                    r.carriers_without_media += 1;
                }
            } else {
                r.nodes_without_stream += 1;
            }
            viewers.placed += u64::from(n.viewers);
            viewers.waiting += u64::from(n.pending);
            if n.pending > 0 {
                viewers.nodes_waiting += 1;
            }
            if !receiving {
                viewers.without_media += u64::from(n.viewers);
            }
            let life = (self.now.saturating_sub(n.born) as f64 / SEC as f64).max(1.0);
            let per_s = (n.recv + n.sent) as f64 / life;
            bytes.push(per_s);
            if i == self.origin {
                r.control.origin_bytes_s = per_s.round();
            }
            let tree = connected.len() + usize::from(upstream.is_some());
            conns.push(match self.p.policy {
                Policy::Global => (view::MESH_DEGREE + tree) as f64,
                Policy::Bounded | Policy::OneHop => {
                    let mut peers: Vec<usize> = connected.clone();
                    peers.extend(upstream);
                    for s in &n.sample {
                        if !peers.contains(s) {
                            peers.push(*s);
                        }
                    }
                    peers.len() as f64
                }
            });
            if let Some(l) = &self.loads[i] {
                report_sizes.push(l.bytes as f64);
            }
        }
        r.over_cap = children.iter().filter(|c| **c > f64::from(self.p.max_relay_children)).count();
        r.children = Summary::of(&children);
        r.depth_histogram = self.depths();
        r.depth_before_kill = self.depth_before_kill.clone();
        r.control = Control {
            bytes_per_node_s: Summary::of(&bytes),
            connections_per_node: Summary::of(&conns),
            mean_report_bytes: Summary::of(&report_sizes).mean.round(),
            ..r.control
        };
        r.kill = self.kill_tracker.heal();
        r.churn = self.churn_tracker.heal();
        viewers.stream_wait_ms = Summary::of(&self.stream_wait_ms);
        r.viewers = viewers;
        r.counters = counters;
        r.loop_checks = self.loop_checks;
        r.loops_found = self.loops_found;
        r.first_loop_ms = self.first_loop_ms;
        r.events = self.events;
        r.simulated_s = self.now as f64 / SEC as f64;
        r.notes.push(format!(
            "control bytes: load reports as JSON; a gossiped message costs each node about {} times its size (mesh degree), a report sent directly its size once",
            view::MESH_DEGREE
        ));
        r.notes.push(format!("heal times are checked every {} ms", HEAL_CHECK / MS));
        if self.p.policy == Policy::Global {
            r.notes.push(format!(
                "global policy: every core holds every node's load (memory grows with nodes squared); limited to {} nodes",
                crate::params::GLOBAL_LIMIT
            ));
        }
        if self.p.policy == Policy::OneHop {
            r.notes.push(format!(
                "onehop policy: load reports every {} refreshes, one hop; a sample of about {} presences each refresh (the origin's always), {} copies each (mesh degree) to every follower of the stream",
                relaycast_mesh::gossip::SUMMARY_EVERY,
                relaycast_mesh::presence_rate::PRESENCE_TARGET,
                view::MESH_DEGREE
            ));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use relaycast_mesh::{NodeLoad, StreamPresence};

    use super::*;

    /// A directory where `origin` announces the stream with no spare fan-out and `relay`
    /// carries it at depth 1 with room.
    fn dir(origin: PeerId, relay: PeerId, now: Instant) -> Directory {
        let mut d = Directory::default();
        let ann = StreamAnnouncement {
            origin,
            stream: STREAM.into(),
            codec: "VP8".into(),
            layers: vec![],
            http_url: "http://n0".into(),
            started_ms: 1,
        };
        d.insert_stream(ann, now);
        let load = |relay_children, streams| NodeLoad {
            http_url: "http://n".into(),
            capacity: 10,
            max_relay_children: 2,
            relay_children,
            streams,
            ..NodeLoad::default()
        };
        d.insert_load(origin, load(2, vec![StreamPresence { stream: STREAM.into(), ..Default::default() }]), now, true);
        let p = StreamPresence { stream: STREAM.into(), depth: 1, upstream: Some(origin), path: vec![origin], ..Default::default() };
        d.insert_load(relay, load(0, vec![p]), now, true);
        d
    }

    /// Attaches `core` to `up`, which answers with `path`.
    fn attach(core: &mut Core, up: PeerId, path: Vec<PeerId>, session: u64, now: Instant) {
        core.handle_input(Input::Want { stream: STREAM.into(), has_source: false }, now);
        let attempt = std::iter::from_fn(|| core.poll_output())
            .find_map(|o| match o {
                Output::Attach { attempt, peer, .. } if peer == up => Some(attempt),
                _ => None,
            })
            .expect("asks the relay");
        core.handle_input(Input::Answered { attempt, depth: 1, path }, now);
        core.handle_input(Input::Connected { attempt, session }, now);
        while core.poll_output().is_some() {}
        assert_eq!(core.relay_in(STREAM).map(|r| r.upstream), Some(up));
    }

    #[test]
    fn the_loop_check_catches_two_nodes_feeding_each_other() {
        let p = Params { nodes: 3, viewers: 0, kill: 0.0, ..Params::default() };
        let mut sim = Sim::new(p).expect("valid settings");
        let (p0, p1, p2) = (sim.nodes[0].peer, sim.nodes[1].peer, sim.nodes[2].peer);
        let now = sim.at(0);
        // Answers no real upstream gives (node 1 already sits below 2 when it claims to sit
        // below the origin) close a cycle: 1 takes 2 as upstream and 2 takes 1.
        sim.nodes[1].core.handle_input(Input::Directory(dir(p0, p2, now)), now);
        attach(&mut sim.nodes[1].core, p2, vec![p0, p2], 1, now);
        assert!(sim.check_loop(1).is_ok());
        sim.nodes[2].core.handle_input(Input::Directory(dir(p0, p1, now)), now);
        attach(&mut sim.nodes[2].core, p1, vec![p0, p1], 2, now);
        match sim.check_loop(1) {
            Err(SimError::Loop { node: 1, repeated: 1, chain, .. }) => assert_eq!(chain, vec![1, 2]),
            other => panic!("a loop must be reported: {other:?}"),
        }
        assert!(matches!(sim.sweep(), Err(SimError::Loop { .. })));
        // With `count_loops` the same loop is counted, not fatal.
        sim.p.count_loops = true;
        assert!(sim.check_loop(1).is_ok());
        assert_eq!(sim.loops_found, 1);
        assert!(sim.sweep().is_ok());
        assert!(sim.loops_found > 1);
        assert_eq!(sim.first_loop_ms, Some(0));
    }
}
