//! Streams and sessions known to the node: the registry shared by signaling and workers.
//!
//! The registry is control-plane state behind one mutex, touched when sessions come and go.
//! The per-stream counters the forwarding path updates are atomics in [`StreamShared`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::codec::VideoCodec;
use crate::layer::{LayerState, MAX_LAYERS};
use crate::metrics::StreamCounters;
use crate::negotiate::VideoFormat;

/// Identifies one WHIP or WHEP session on the node.
pub type SessionId = u64;

/// Simulcast rid names by layer index.
pub const RIDS: [&str; MAX_LAYERS] = ["q", "h", "f"];

/// Layer index for a rid name (`q`, `h`, `f`, also `l`/`m`/`h` spellings are not used).
pub fn layer_of_rid(rid: &str) -> Option<u8> {
    RIDS.iter().position(|r| *r == rid).map(|i| i as u8)
}

/// Live counters of one incoming video layer, written by the publisher's worker.
#[derive(Debug, Default)]
pub struct LayerCounters {
    /// Recent bitrate in bits per second.
    pub bitrate_bps: AtomicU64,
    /// Packets received on this layer since the publisher connected.
    pub packets: AtomicU64,
    /// Frame width from the last keyframe (0 = unknown).
    pub width: AtomicU32,
    /// Frame height from the last keyframe (0 = unknown).
    pub height: AtomicU32,
    /// True while packets of this layer keep arriving.
    pub active: AtomicBool,
}

/// Counters of the incoming audio track.
#[derive(Debug, Default)]
pub struct AudioCounters {
    /// Recent bitrate in bits per second.
    pub bitrate_bps: AtomicU64,
    /// Packets received since the publisher connected.
    pub packets: AtomicU64,
}

/// State of one stream that every worker can read without locking.
#[derive(Debug)]
pub struct StreamShared {
    /// Registry id, unique for the node's lifetime.
    pub id: u64,
    /// The stream's name (the `{stream}` in `/whip/{stream}`).
    pub name: String,
    /// Bit `i` set when worker `i` has subscribers of this stream.
    pub worker_mask: AtomicU64,
    /// Worker index of the current publisher, or `usize::MAX` when none.
    pub publisher_worker: AtomicUsize,
    /// Increments each time a publisher connects.
    pub generation: AtomicU32,
    /// Video codec of the current or last publisher: 0 unknown, 1 VP8, 2 H264.
    codec: AtomicU8,
    /// The video format the current or last publisher negotiated (viewers are answered in it).
    video_format: Mutex<Option<VideoFormat>>,
    /// True when the publisher sends several simulcast layers.
    pub simulcast: AtomicBool,
    /// Per-layer counters.
    pub layers: [LayerCounters; MAX_LAYERS],
    /// Audio counters.
    pub audio: AudioCounters,
    /// Number of viewers on the node.
    pub viewers: AtomicUsize,
    /// Number of downstream nodes relaying the stream from this node.
    pub relay_children: AtomicUsize,
    /// Number of downstream nodes standing by on a paused relay edge from this node (not fed
    /// until they ask for a keyframe; then counted in `relay_children`).
    pub standby_children: AtomicUsize,
    /// The sessions of those paused edges (changed only when an edge opens, resumes or ends).
    pub paused_relays: Mutex<Vec<SessionId>>,
    /// Traffic and feedback counters for `/metrics`.
    pub counters: StreamCounters,
    /// Backup ingest: 0 no backup, 1 a backup stands by, 2 the backup feeds the stream.
    backup: AtomicU8,
}

impl StreamShared {
    fn new(id: u64, name: &str) -> Self {
        StreamShared {
            id,
            name: name.to_string(),
            worker_mask: AtomicU64::new(0),
            publisher_worker: AtomicUsize::new(usize::MAX),
            generation: AtomicU32::new(0),
            codec: AtomicU8::new(0),
            video_format: Mutex::new(None),
            simulcast: AtomicBool::new(false),
            layers: Default::default(),
            audio: AudioCounters::default(),
            viewers: AtomicUsize::new(0),
            relay_children: AtomicUsize::new(0),
            standby_children: AtomicUsize::new(0),
            paused_relays: Mutex::new(Vec::new()),
            counters: StreamCounters::default(),
            backup: AtomicU8::new(0),
        }
    }

    /// Records paused relay edge `id` as opened (`true`) or no longer paused (resumed or ended).
    pub fn set_paused_relay(&self, id: SessionId, paused: bool) {
        let mut v = self.paused_relays.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|s| *s != id);
        if paused {
            v.push(id);
        }
    }

    /// The video codec of the current or last publisher.
    pub fn codec(&self) -> Option<VideoCodec> {
        match self.codec.load(Ordering::Relaxed) {
            1 => Some(VideoCodec::Vp8),
            2 => Some(VideoCodec::H264),
            _ => None,
        }
    }

    /// Records the publisher's video codec.
    pub fn set_codec(&self, codec: VideoCodec) {
        let v = match codec {
            VideoCodec::Vp8 => 1,
            VideoCodec::H264 => 2,
        };
        self.codec.store(v, Ordering::Relaxed);
    }

    /// The video format of the current or last publisher, once known.
    pub fn video_format(&self) -> Option<VideoFormat> {
        *self.video_format.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the publisher's video format (and its codec).
    pub fn set_video_format(&self, format: VideoFormat) {
        self.set_codec(format.codec);
        *self.video_format.lock().unwrap_or_else(|e| e.into_inner()) = Some(format);
    }

    /// True while a publisher is connected.
    pub fn is_live(&self) -> bool {
        self.publisher_worker.load(Ordering::Acquire) != usize::MAX
    }

    /// Snapshot of the layers for layer selection.
    pub fn layer_states(&self) -> [LayerState; MAX_LAYERS] {
        let mut out = [LayerState::default(); MAX_LAYERS];
        for (o, l) in out.iter_mut().zip(self.layers.iter()) {
            let h = l.height.load(Ordering::Relaxed);
            *o = LayerState {
                active: l.active.load(Ordering::Relaxed),
                bitrate_bps: l.bitrate_bps.load(Ordering::Relaxed),
                height: (h > 0).then_some(h),
            };
        }
        out
    }

    /// Forgets the layers of the source that fed the stream until now (another one takes over):
    /// which are active, their bitrates and frame sizes. Packet counts keep counting.
    pub fn clear_layers(&self) {
        for l in &self.layers {
            l.active.store(false, Ordering::Relaxed);
            l.bitrate_bps.store(0, Ordering::Relaxed);
            l.width.store(0, Ordering::Relaxed);
            l.height.store(0, Ordering::Relaxed);
        }
        self.audio.bitrate_bps.store(0, Ordering::Relaxed);
    }

    /// Which local source feeds the stream: `Some(true)` its backup publisher, `Some(false)`
    /// its primary, `None` when it has no backup at all.
    pub fn backup_state(&self) -> Option<bool> {
        match self.backup.load(Ordering::Relaxed) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    /// Records whether a backup stands by (`Some(false)`), feeds (`Some(true)`) or is absent.
    pub fn set_backup_state(&self, feeding: Option<bool>) {
        let v = match feeding {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.backup.store(v, Ordering::Relaxed);
    }

    /// Resets the counters when a new publisher connects.
    pub fn reset_counters(&self) {
        for l in &self.layers {
            l.bitrate_bps.store(0, Ordering::Relaxed);
            l.packets.store(0, Ordering::Relaxed);
            l.active.store(false, Ordering::Relaxed);
        }
        self.audio.bitrate_bps.store(0, Ordering::Relaxed);
        self.audio.packets.store(0, Ordering::Relaxed);
    }
}

/// An event sent to a session's event channel (SSE).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SessionEvent {
    /// The layer a viewer receives, and the one it is heading for.
    Layer {
        /// Rid being forwarded (`null` when nothing is).
        rid: Option<String>,
        /// Rid wanted.
        target: Option<String>,
    },
    /// The stream's viewer count changed.
    Viewers {
        /// Viewers on this node.
        count: usize,
    },
    /// The stream's publisher connected or left.
    Publisher {
        /// True while a publisher is connected.
        live: bool,
    },
    /// A segment of the stream was archived (its CID is durable and served).
    Segment {
        /// Media sequence number.
        seq: u64,
        /// CID of the segment file.
        cid: String,
        /// Duration in milliseconds.
        duration_ms: u64,
    },
    /// The session is being ended on purpose (taken over by another publisher, or by an admin);
    /// clients should not reconnect. `closed` follows.
    Ended {
        /// Why, in words.
        reason: String,
    },
    /// The session's ICE and DTLS completed: media can flow.
    Connected,
    /// The session ended.
    Closed,
}

/// Events a publisher's or relay's channel holds for a listener that reads late.
const SESSION_EVENTS: usize = 64;
/// Events a viewer's channel holds (a viewer's events are its layer and the viewer count, of
/// which a late reader needs only the newest; every viewer has one, so it stays small).
const VIEWER_EVENTS: usize = 16;

/// Whether a session publishes or watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A WHIP publisher.
    Publisher,
    /// A WHEP viewer.
    Viewer,
    /// The stream arriving from an upstream node: takes the publisher's place.
    RelayIn,
    /// A downstream node receiving every layer of the stream.
    RelayOut,
    /// A WHIP publisher that declared itself backup (`?backup=1`): held ready, it feeds the
    /// stream while the primary publisher is gone or stalled (see [`crate::failover`]).
    Backup,
}

impl Role {
    /// True for the roles that feed a stream (publisher, backup or relay from upstream).
    pub fn feeds(self) -> bool {
        matches!(self, Role::Publisher | Role::RelayIn | Role::Backup)
    }
}

/// One session as the registry knows it.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    /// The stream it belongs to.
    pub stream: Arc<StreamShared>,
    /// The worker that runs it.
    pub worker: usize,
    /// Publisher or viewer.
    pub role: Role,
    /// Its event channel.
    pub events: broadcast::Sender<SessionEvent>,
    /// The last layer event of a viewer, to greet late event listeners.
    pub layer: Arc<Mutex<Option<SessionEvent>>>,
    /// When the session was admitted.
    pub since: std::time::SystemTime,
    /// The peer's media address once its first datagram arrived.
    pub remote: Arc<Mutex<Option<std::net::SocketAddr>>>,
}

#[derive(Debug)]
struct StreamEntry {
    shared: Arc<StreamShared>,
    publisher: Option<SessionId>,
    /// The backup publisher, if one stands by (or feeds).
    backup: Option<SessionId>,
    sessions: HashSet<SessionId>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    streams: HashMap<String, StreamEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    next_id: u64,
    /// Sessions with [`Role::Viewer`].
    viewers: usize,
    /// Relay-in sessions offered as the standby of their stream's relay (not yet answered).
    standby_offers: HashSet<SessionId>,
}

/// What a relay-in session became when its upstream's answer was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// It feeds the stream.
    Feed,
    /// It stands by beside the relay in that feeds the stream.
    Standby,
}

/// Why the registry refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// The stream is not published (viewers only).
    NotFound,
    /// The stream already has a publisher.
    Busy,
    /// The node reached its session limit.
    Full,
}

/// All streams and sessions of the node.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, RegistryInner> {
        // A panic elsewhere must not wedge the control plane.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new session, reserving the publisher slot for publishers.
    pub fn admit(
        &self,
        stream: &str,
        role: Role,
        worker: usize,
        max_sessions: usize,
    ) -> Result<(SessionId, SessionEntry), AdmitError> {
        self.admit_limited(stream, role, worker, max_sessions, max_sessions)
    }

    /// Admits a new session when the node holds fewer than `max_sessions` and, for a viewer,
    /// fewer than `max_viewers` viewers (the rest of the capacity is kept for publishers).
    ///
    /// A publisher or backup of a stream whose other source is already on the node goes to that
    /// source's worker, whatever `worker` says: the two are switched between on one worker.
    pub fn admit_limited(
        &self,
        stream: &str,
        role: Role,
        worker: usize,
        max_sessions: usize,
        max_viewers: usize,
    ) -> Result<(SessionId, SessionEntry), AdmitError> {
        let mut g = self.lock();
        if g.sessions.len() >= max_sessions || (role == Role::Viewer && g.viewers >= max_viewers) {
            return Err(AdmitError::Full);
        }
        g.next_id += 1;
        let id = g.next_id;
        let next_stream_id = id;
        let mut worker = worker;
        let entry = match role {
            Role::Viewer | Role::RelayOut => {
                let e = g.streams.get_mut(stream).ok_or(AdmitError::NotFound)?;
                if e.publisher.is_none() && !e.shared.is_live() && e.sessions.is_empty() {
                    return Err(AdmitError::NotFound);
                }
                e
            }
            Role::Publisher | Role::RelayIn | Role::Backup => {
                let inner = &mut *g;
                let e = inner.streams.entry(stream.to_string()).or_insert_with(|| StreamEntry {
                    shared: Arc::new(StreamShared::new(next_stream_id, stream)),
                    publisher: None,
                    backup: None,
                    sessions: HashSet::new(),
                });
                let relayed = e.publisher.and_then(|p| inner.sessions.get(&p)).is_some_and(|s| s.role == Role::RelayIn);
                match role {
                    Role::Backup if e.backup.is_some() || relayed => return Err(AdmitError::Busy),
                    Role::Backup => e.backup = Some(id),
                    Role::RelayIn if e.backup.is_some() || e.publisher.is_some() => return Err(AdmitError::Busy),
                    // Relays from upstream are offered to several candidates at once: the one
                    // whose answer is applied first takes the slot (`claim_feed`).
                    Role::RelayIn => {}
                    _ if e.publisher.is_some() => return Err(AdmitError::Busy),
                    _ => e.publisher = Some(id),
                }
                let other = if role == Role::Backup { e.publisher } else { e.backup };
                if let Some(s) = other.and_then(|o| inner.sessions.get(&o)) {
                    worker = s.worker;
                }
                e
            }
        };
        entry.sessions.insert(id);
        let shared = entry.shared.clone();
        Ok((id, Self::insert_session(&mut g, id, shared, worker, role)))
    }

    fn insert_session(g: &mut RegistryInner, id: SessionId, stream: Arc<StreamShared>, worker: usize, role: Role) -> SessionEntry {
        let capacity = if role == Role::Viewer { VIEWER_EVENTS } else { SESSION_EVENTS };
        let (events, _) = broadcast::channel(capacity);
        let session = SessionEntry {
            stream,
            worker,
            role,
            events,
            layer: Arc::default(),
            since: std::time::SystemTime::now(),
            remote: Arc::default(),
        };
        g.sessions.insert(id, session.clone());
        if role == Role::Viewer {
            g.viewers += 1;
        }
        session
    }

    /// Admits a relay-in session offered as the standby of `stream`'s relay from upstream (a
    /// second upstream, ready to take over at once): the stream must be fed by a relay in and
    /// have no standby yet. It runs on that relay's worker, where the two are switched between.
    pub fn admit_standby(&self, stream: &str, max_sessions: usize) -> Result<(SessionId, SessionEntry), AdmitError> {
        let mut g = self.lock();
        if g.sessions.len() >= max_sessions {
            return Err(AdmitError::Full);
        }
        let inner = &mut *g;
        let e = inner.streams.get(stream).ok_or(AdmitError::NotFound)?;
        let feeder = e.publisher.and_then(|p| inner.sessions.get(&p)).filter(|s| s.role == Role::RelayIn);
        let (Some(feeder), None) = (feeder, e.backup) else { return Err(AdmitError::Busy) };
        let (worker, shared) = (feeder.worker, e.shared.clone());
        g.next_id += 1;
        let id = g.next_id;
        if let Some(e) = g.streams.get_mut(stream) {
            e.sessions.insert(id);
        }
        g.standby_offers.insert(id);
        Ok((id, Self::insert_session(&mut g, id, shared, worker, Role::RelayIn)))
    }

    /// After the relay in that fed `stream` left: its standby (if any) feeds the stream now.
    /// Returns the promoted session.
    pub fn promote_standby(&self, stream: &str) -> Option<SessionId> {
        let mut g = self.lock();
        let inner = &mut *g;
        let e = inner.streams.get_mut(stream)?;
        let b = e.backup.filter(|b| e.publisher.is_none() && inner.sessions.get(b).is_some_and(|s| s.role == Role::RelayIn))?;
        e.publisher = Some(b);
        e.backup = None;
        Some(b)
    }

    /// A standby relay in of `stream` took it over while the relay in that fed it is still
    /// there (a planned move): the two change places, the old one standing by until it closes.
    /// False (nothing changed) unless both are relays in.
    pub fn swap_standby(&self, stream: &str) -> bool {
        let mut g = self.lock();
        let inner = &mut *g;
        let Some(e) = inner.streams.get_mut(stream) else { return false };
        let relay_in = |id: Option<SessionId>| id.and_then(|id| inner.sessions.get(&id)).is_some_and(|s| s.role == Role::RelayIn);
        if !relay_in(e.publisher) || !relay_in(e.backup) {
            return false;
        }
        std::mem::swap(&mut e.publisher, &mut e.backup);
        true
    }

    /// Looks a session up.
    pub fn session(&self, id: SessionId) -> Option<SessionEntry> {
        self.lock().sessions.get(&id).cloned()
    }

    /// Removes a session; drops the stream once it has neither publisher nor viewers.
    pub fn remove(&self, id: SessionId) -> Option<SessionEntry> {
        let mut g = self.lock();
        let entry = g.sessions.remove(&id)?;
        g.standby_offers.remove(&id);
        if entry.role == Role::Viewer {
            g.viewers = g.viewers.saturating_sub(1);
        }
        let name = entry.stream.name.clone();
        let mut drop_stream = false;
        if let Some(s) = g.streams.get_mut(&name) {
            s.sessions.remove(&id);
            if s.publisher == Some(id) {
                s.publisher = None;
            }
            if s.backup == Some(id) {
                s.backup = None;
            }
            drop_stream = s.sessions.is_empty() && s.publisher.is_none() && s.backup.is_none();
        }
        if drop_stream {
            g.streams.remove(&name);
        }
        Some(entry)
    }

    /// Sends an event to every session of a stream.
    pub fn broadcast(&self, stream: &str, event: &SessionEvent) {
        let g = self.lock();
        if let Some(s) = g.streams.get(stream) {
            for id in &s.sessions {
                if let Some(e) = g.sessions.get(id) {
                    let _ = e.events.send(event.clone());
                }
            }
        }
    }

    /// All streams, for `/api/streams`.
    pub fn streams(&self) -> Vec<Arc<StreamShared>> {
        let g = self.lock();
        let mut v: Vec<_> = g.streams.values().map(|e| e.shared.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Number of sessions on the node.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// The session feeding `stream` (publisher or relay from upstream) and its role.
    pub fn publisher(&self, stream: &str) -> Option<(SessionId, Role)> {
        let g = self.lock();
        let id = g.streams.get(stream)?.publisher?;
        Some((id, g.sessions.get(&id)?.role))
    }

    /// Makes relay-in session `id` the one feeding its stream when its upstream's answer is
    /// applied (refused while another session feeds the stream); a standby offer
    /// ([`Registry::admit_standby`]) stands by beside the relay in that feeds it, or feeds the
    /// stream when that one left meanwhile.
    pub fn claim_feed(&self, id: SessionId) -> Result<Claim, AdmitError> {
        let mut g = self.lock();
        let name = g.sessions.get(&id).ok_or(AdmitError::NotFound)?.stream.name.clone();
        let standby = g.standby_offers.remove(&id);
        let e = g.streams.get_mut(&name).ok_or(AdmitError::NotFound)?;
        match e.publisher {
            Some(p) if p != id && standby && e.backup.is_none() => {
                e.backup = Some(id);
                Ok(Claim::Standby)
            }
            Some(p) if p != id => Err(AdmitError::Busy),
            _ if e.backup.is_some() => Err(AdmitError::Busy),
            _ => {
                e.publisher = Some(id);
                Ok(Claim::Feed)
            }
        }
    }

    /// The backup publisher of `stream`, if one is on the node.
    pub fn backup(&self, stream: &str) -> Option<SessionId> {
        self.lock().streams.get(stream)?.backup
    }

    /// Records the media address a session's datagrams come from.
    pub fn set_remote(&self, id: SessionId, addr: std::net::SocketAddr) {
        if let Some(e) = self.lock().sessions.get(&id) {
            *e.remote.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        }
    }

    /// Every session with its entry, in id order.
    pub fn sessions(&self) -> Vec<(SessionId, SessionEntry)> {
        let mut v: Vec<_> = self.lock().sessions.iter().map(|(id, e)| (*id, e.clone())).collect();
        v.sort_by_key(|(id, _)| *id);
        v

    }

    /// Number of viewer sessions on the node.
    pub fn viewer_count(&self) -> usize {
        self.lock().viewers
    }

    /// Ids of the sessions placed on `worker`.
    pub fn sessions_on_worker(&self, worker: usize) -> Vec<SessionId> {
        self.lock().sessions.iter().filter(|(_, e)| e.worker == worker).map(|(id, _)| *id).collect()
    }

    /// Ids of every session (for shutdown).
    pub fn session_ids(&self) -> Vec<SessionId> {
        self.lock().sessions.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_slot_remote_and_listing() {
        let r = Registry::default();
        let (p, _) = r.admit("s", Role::Publisher, 0, 10).unwrap();
        let (v, _) = r.admit("s", Role::Viewer, 0, 10).unwrap();
        assert_eq!(r.admit("s", Role::Publisher, 0, 10).unwrap_err(), AdmitError::Busy);
        assert_eq!(r.publisher("s"), Some((p, Role::Publisher)));
        assert_eq!(r.publisher("t"), None);
        let addr: std::net::SocketAddr = "192.0.2.1:5000".parse().unwrap();
        r.set_remote(v, addr);
        let all = r.sessions();
        assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![p, v]);
        assert_eq!(*all[1].1.remote.lock().unwrap(), Some(addr));
        assert_eq!(*all[0].1.remote.lock().unwrap(), None);
        // The publisher leaves: the slot is free, the viewer keeps the stream.
        r.remove(p);
        assert_eq!(r.publisher("s"), None);
        let (p2, _) = r.admit("s", Role::Publisher, 0, 10).unwrap();
        assert_eq!(r.publisher("s"), Some((p2, Role::Publisher)));

    }

    #[test]
    fn a_backup_stands_beside_the_primary_on_its_worker() {
        let r = Registry::default();
        let (p, pe) = r.admit("s", Role::Publisher, 1, 10).unwrap();
        assert_eq!(pe.worker, 1);
        // The backup is placed with the primary, whichever worker was picked for it.
        let (b, be) = r.admit("s", Role::Backup, 0, 10).unwrap();
        assert_eq!(be.worker, 1);
        assert!(Arc::ptr_eq(&pe.stream, &be.stream));
        assert_eq!(r.admit("s", Role::Backup, 0, 10).unwrap_err(), AdmitError::Busy, "one backup per stream");
        assert_eq!((r.publisher("s"), r.backup("s")), (Some((p, Role::Publisher)), Some(b)));
        // The primary leaves: the stream stays with its backup, and a new primary joins it.
        r.remove(p);
        assert_eq!(r.streams().len(), 1);
        let (_, pe2) = r.admit("s", Role::Publisher, 0, 10).unwrap();
        assert_eq!(pe2.worker, 1);
        // A backup alone also keeps the stream.
        let (_, alone) = r.admit("t", Role::Backup, 0, 10).unwrap();
        assert_eq!(alone.worker, 0);
        // A stream relayed from upstream takes no backup, and a backup keeps the relay out.
        let (relay, _) = r.admit("u", Role::RelayIn, 0, 10).unwrap();
        assert_eq!(r.claim_feed(relay).unwrap(), Claim::Feed);
        assert_eq!(r.admit("u", Role::Backup, 0, 10).unwrap_err(), AdmitError::Busy);
        assert_eq!(r.admit("t", Role::RelayIn, 0, 10).unwrap_err(), AdmitError::Busy);
    }

    #[test]
    fn relay_offers_to_several_upstreams_and_the_first_answer_applied_feeds() {
        let r = Registry::default();
        let (a, _) = r.admit("s", Role::RelayIn, 0, 10).unwrap();
        let (b, _) = r.admit("s", Role::RelayIn, 1, 10).unwrap();
        assert_eq!(r.publisher("s"), None, "offers alone feed nothing");
        r.claim_feed(b).unwrap();
        assert_eq!(r.claim_feed(a).unwrap_err(), AdmitError::Busy);
        assert_eq!(r.publisher("s"), Some((b, Role::RelayIn)));
        assert_eq!(r.admit("s", Role::RelayIn, 0, 10).unwrap_err(), AdmitError::Busy, "no new offer once fed");
        r.remove(a);
        r.remove(b);
        assert!(r.streams().is_empty());
    }

    #[test]
    fn a_standby_relay_stands_beside_the_relay_that_feeds_and_takes_over_when_it_leaves() {
        let r = Registry::default();
        assert_eq!(r.admit_standby("s", 10).unwrap_err(), AdmitError::NotFound);
        let (a, ae) = r.admit("s", Role::RelayIn, 1, 10).unwrap();
        assert_eq!(r.admit_standby("s", 10).unwrap_err(), AdmitError::Busy, "nothing feeds the stream yet");
        assert_eq!(r.claim_feed(a).unwrap(), Claim::Feed);
        let (b, be) = r.admit_standby("s", 10).unwrap();
        assert_eq!(be.worker, ae.worker, "the standby runs beside the relay it stands in for");
        assert_eq!(r.claim_feed(b).unwrap(), Claim::Standby);
        assert_eq!((r.publisher("s"), r.backup("s")), (Some((a, Role::RelayIn)), Some(b)));
        assert_eq!(r.admit_standby("s", 10).unwrap_err(), AdmitError::Busy, "one standby per stream");
        assert_eq!(r.promote_standby("s"), None, "the relay in still feeds");
        r.remove(a);
        assert_eq!(r.promote_standby("s"), Some(b));
        assert_eq!((r.publisher("s"), r.backup("s")), (Some((b, Role::RelayIn)), None));
        // A standby whose relay left before its answer came feeds the stream itself.
        let (c, _) = r.admit_standby("s", 10).unwrap();
        r.remove(b);
        assert_eq!(r.claim_feed(c).unwrap(), Claim::Feed);
        assert_eq!(r.publisher("s"), Some((c, Role::RelayIn)));
        // A WHIP publisher's stream takes no standby relay.
        r.admit("t", Role::Publisher, 0, 10).unwrap();
        assert_eq!(r.admit_standby("t", 10).unwrap_err(), AdmitError::Busy);
    }

    #[test]
    fn viewers_cannot_take_the_publishers_reserve() {
        let r = Registry::default();
        let (max, max_viewers) = (10, 7);
        r.admit_limited("live", Role::Publisher, 0, max, max_viewers).unwrap();
        let mut viewers = vec![];
        for _ in 0..max_viewers {
            viewers.push(r.admit_limited("live", Role::Viewer, 0, max, max_viewers).unwrap().0);
        }
        assert_eq!(r.viewer_count(), max_viewers);
        assert_eq!(r.admit_limited("live", Role::Viewer, 0, max, max_viewers).unwrap_err(), AdmitError::Full);
        // Publishers still get in, up to the node's limit.
        for i in 0..(max - 1 - max_viewers) {
            r.admit_limited(&format!("p{i}"), Role::Publisher, 1, max, max_viewers).unwrap();
        }
        assert_eq!(r.admit_limited("late", Role::Publisher, 0, max, max_viewers).unwrap_err(), AdmitError::Full);
        r.remove(viewers[0]);
        assert_eq!(r.viewer_count(), max_viewers - 1);
        assert_eq!(r.sessions_on_worker(1).len(), max - 1 - max_viewers);
        assert!(r.admit_limited("late", Role::Publisher, 0, max, max_viewers).is_ok(), "a freed viewer slot serves a publisher");
    }
}
