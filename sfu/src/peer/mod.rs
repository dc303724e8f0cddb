//! One str0m peer connection and what the node does with its events: a publisher that feeds a
//! stream, or a viewer that a [`Forwarder`] feeds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Event, IceConnectionState, Rtc};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::bitrate::BitrateMeter;
use crate::codec;
use crate::forward::Forwarder;
use crate::keyframe::{KeyframeReason, KeyframeThrottle};
use crate::layer::{LayerPreference, MAX_LAYERS};
use crate::metrics::LocalCounts;
use crate::negotiate::VideoFormat;
use crate::packet::{MediaPacket, TrackKind};
use crate::relay::RelayForwarder;
use crate::rewrite::vp8_patch_for;
use crate::stream::{RIDS, SessionEvent, SessionId, StreamShared, layer_of_rid};

mod own_path;
mod publisher;
mod viewer;

/// How long a publisher or relay session may take to connect before it is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a viewer (WHEP) session may take to connect before it is dropped: an offer that
/// never connects holds a session slot this long at most.
pub const VIEWER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most remote ICE candidates trickled to one session; later ones are ignored.
pub const MAX_REMOTE_CANDIDATES: usize = 64;
/// How long a connected session may stay disconnected before it is dropped.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a connected session may send nothing at all (no RTP, RTCP or STUN) before it is
/// dropped; live peers send RTCP at least every few seconds.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(10);
/// A viewer whose oldest unsent video packet is older than this skips to the next keyframe.
pub const MAX_SEND_QUEUE_DELAY: Duration = Duration::from_millis(300);
/// Most sent video packets a viewer's session keeps to answer its NACKs (str0m's resend cache).
/// Bounded by [`VIEWER_RESEND_AGE`] first: about 150 packets at 1.5 Mbit/s.
pub const VIEWER_RESEND_PACKETS: usize = 384;
/// How long a viewer's sent video packets stay in its resend cache. A receiver asks again within
/// a few round trips; libwebrtc keeps one second of history at least, as here. str0m's default
/// (3 s) makes each viewer's cache grow to the packet bound, about 160 KiB of packet records
/// per viewer at 1.5 Mbit/s (heaptrack; BENCHMARKS "Memory per viewer: where it goes").
pub const VIEWER_RESEND_AGE: Duration = Duration::from_secs(1);
/// Resends queued for a viewer are dropped while they exceed this share of what it is sent
/// (str0m's default).
pub const VIEWER_RESEND_RATIO_CAP: Option<f32> = Some(0.15);
/// How often viewers re-evaluate their layer and publishers refresh their counters.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// Work a peer's events create for the worker.
#[derive(Debug, Default)]
pub struct Effects {
    /// Packets a publisher received, to fan out.
    pub media: Vec<Arc<MediaPacket>>,
    /// Keyframe requests to send to a stream's publisher: (stream, layer, why).
    pub keyframes: Vec<(Arc<StreamShared>, u8, KeyframeReason)>,
    /// Sessions that connected: their role and how long after set-up.
    pub joins: Vec<(crate::metrics::JoinRole, std::time::Duration)>,
    /// Viewers waiting for their first frame of a layer: (session, stream, layer). The worker
    /// starts each from its cached keyframe of that layer when it has a usable one
    /// ([`crate::gop`]), and otherwise asks the publisher for a keyframe (a join request).
    pub waiting: Vec<(SessionId, Arc<StreamShared>, u8)>,
    /// Publishers that were waiting for their own keyframe to take their stream over (backup
    /// ingest) and just did: the keyframe's packet is already in `media`.
    pub took_over: Vec<SessionId>,
    /// Events for a session's listeners (its SSE stream): the worker sends each on the
    /// session's channel, and keeps a viewer's latest layer event for late listeners.
    pub events: Vec<(SessionId, SessionEvent)>,
    /// Paused relay edges (standbys) that the downstream node just switched to.
    pub resumed: Vec<SessionId>,
}

/// Why a session is dropped ([`Peer::expiry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Its str0m session ended (closed or failed).
    Dead,
    /// It did not connect within its connect timeout ([`CONNECT_TIMEOUT`],
    /// [`VIEWER_CONNECT_TIMEOUT`]).
    NeverConnected,
    /// Connected, it sent nothing for [`SILENCE_TIMEOUT`].
    Silent,
    /// It stayed disconnected for [`DISCONNECT_TIMEOUT`].
    Disconnected,
}

/// A publisher's incoming-track bookkeeping.
#[derive(Debug)]
pub struct Publisher {
    generation: u32,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    /// SSRC → (kind, layer) for known incoming streams.
    ssrcs: Vec<(Ssrc, TrackKind, u8)>,
    /// Rid per layer index, as the publisher named them.
    rids: [Option<Rid>; MAX_LAYERS],
    meters: [BitrateMeter; MAX_LAYERS],
    audio_meter: BitrateMeter,
    throttle: KeyframeThrottle,
    params: Vec<PayloadParams>,
    /// For a stream relayed from an upstream node: the video m-line of each layer.
    relay_mids: Option<[Mid; MAX_LAYERS]>,
    /// Payload type of the last video packet, to record the stream's format when it changes.
    video_pt: Option<u8>,
    /// The publisher's wall clock, from its sender reports.
    clock: crate::clock::PublisherClock,
    /// Whether it feeds the stream or stands by (backup ingest), and how recently it sent.
    source: crate::failover::SourceState,
    /// Whether it sends several simulcast layers (written to the stream while it feeds it).
    simulcast: bool,
}

/// The upstream side of a relay edge: a downstream node receiving every layer.
#[derive(Debug)]
pub struct RelayOut {
    /// Video m-line per layer, in layer order.
    video_mids: [Option<Mid>; MAX_LAYERS],
    audio_mid: Option<Mid>,
    /// Publisher PT → our PT, filled lazily; `None` entry = no match.
    pt_map: Vec<(u8, Option<u8>)>,
    forwarder: RelayForwarder,
    /// The edge's bandwidth estimate (transport-wide feedback from the downstream node).
    estimate: Option<u64>,
    /// Which layers the edge carries (congestion control).
    layers: crate::relay::EdgeLayers,
    /// A downstream node's standby edge: connected, nothing sent until the downstream node
    /// asks for a keyframe (it switched to this edge).
    paused: bool,
}

/// A viewer's outgoing-track bookkeeping.
#[derive(Debug)]
pub struct Viewer {
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    /// Publisher PT → our PT, filled lazily; `None` entry = no match.
    pt_map: Vec<(u8, Option<u8>)>,
    forwarder: Forwarder,
    estimate: Option<u64>,
    last_layer: (Option<u8>, Option<u8>),
    last_event: Arc<std::sync::Mutex<Option<SessionEvent>>>,
    /// Where its DTLS handshake leaves the SRTP keys, when the own send path serves it.
    keys: Option<Arc<crate::dtls::KeySlot>>,
    /// The own send path, once the viewer connected ([`crate::egress::SendPath::Own`]).
    egress: Option<Box<relaycast_egress::session::ViewerEgress>>,
}

/// What a peer does.
#[derive(Debug)]
pub enum PeerRole {
    /// Publishes the stream.
    Publisher(Box<Publisher>),
    /// Watches the stream.
    Viewer(Box<Viewer>),
    /// Relays every layer of the stream to a downstream node.
    RelayOut(Box<RelayOut>),
}

/// One peer connection on a worker.
pub struct Peer {
    /// Session id.
    pub id: SessionId,
    /// The str0m instance.
    pub rtc: Rtc,
    /// The stream it publishes or watches.
    pub stream: Arc<StreamShared>,
    /// Publisher or viewer state.
    pub role: PeerRole,
    /// Its event channel.
    pub events: broadcast::Sender<SessionEvent>,
    /// When the peer next wants a timeout: str0m's, a held keyframe request's or the own send
    /// path's, whichever is first.
    pub next_timeout: Instant,
    /// When str0m itself next wants a timeout (a viewer on the own send path is woken far more
    /// often by its pacer, which str0m need not hear of).
    pub rtc_timeout: Instant,
    /// True when input or writes happened since the last poll.
    pub dirty: bool,
    /// Counter deltas not yet added to the stream's counters (the worker adds them).
    pub local: LocalCounts,
    /// Last cumulative NACK count seen per (mid, rid) in str0m's stats.
    nacks_seen: Vec<(Mid, Option<Rid>, u64)>,
    created: Instant,
    /// When a datagram from the peer last arrived.
    pub last_input: Instant,
    connected: bool,
    disconnected_since: Option<Instant>,
    last_housekeeping: Instant,
    /// Remote ICE candidates trickled so far (bounded by [`MAX_REMOTE_CANDIDATES`]).
    pub remote_candidates: usize,
    /// Where str0m last sent DTLS or SRTP: the selected ICE pair's remote address, which the
    /// own send path sends to.
    pub remote: Option<std::net::SocketAddr>,
}

impl Peer {
    /// Wraps a negotiated publisher Rtc.
    pub fn publisher(
        id: SessionId,
        rtc: Rtc,
        stream: Arc<StreamShared>,
        events: broadcast::Sender<SessionEvent>,
        generation: u32,
        now: Instant,
    ) -> Self {
        let params = rtc.codec_config().params().to_vec();
        let p = Publisher {
            generation,
            video_mid: None,
            audio_mid: None,
            ssrcs: Vec::new(),
            rids: [None, None, None],
            meters: Default::default(),
            audio_meter: BitrateMeter::new(),
            throttle: KeyframeThrottle::default(),
            params,
            relay_mids: None,
            video_pt: None,
            clock: crate::clock::PublisherClock::new(),
            source: crate::failover::SourceState {
                created: now,
                last_media: None,
                run_start: None,
                active: true,
                pending: false,
            },
            simulcast: false,
        };
        Self::new(id, rtc, stream, PeerRole::Publisher(Box::new(p)), events, now)
    }

    /// Wraps a relay-in Rtc (this node offered `relay_mids` as its per-layer video m-lines and
    /// `audio_mid` for audio): it feeds the stream like a publisher. (str0m announces no
    /// `MediaAdded` for m-lines this side offered, so the audio m-line is named here.)
    #[allow(clippy::too_many_arguments)]
    pub fn relay_in(
        id: SessionId,
        rtc: Rtc,
        stream: Arc<StreamShared>,
        events: broadcast::Sender<SessionEvent>,
        generation: u32,
        relay_mids: [Mid; MAX_LAYERS],
        audio_mid: Mid,
        now: Instant,
    ) -> Self {
        let mut peer = Self::publisher(id, rtc, stream, events, generation, now);
        if let PeerRole::Publisher(p) = &mut peer.role {
            p.relay_mids = Some(relay_mids);
            p.audio_mid = Some(audio_mid);
        }
        peer
    }

    /// Wraps a relay-out Rtc whose offer named `video_mids` (layer order) and `audio_mid`;
    /// `paused` for a downstream node's standby edge (nothing sent until it asks for a keyframe).
    pub fn relay_out(
        id: SessionId,
        rtc: Rtc,
        stream: Arc<StreamShared>,
        events: broadcast::Sender<SessionEvent>,
        video_mids: [Option<Mid>; MAX_LAYERS],
        paused: bool,
        now: Instant,
    ) -> Self {
        let r = RelayOut {
            video_mids,
            audio_mid: None,
            pt_map: Vec::with_capacity(4),
            forwarder: RelayForwarder::new(),
            estimate: None,
            layers: crate::relay::EdgeLayers::default(),
            paused,
        };
        Self::new(id, rtc, stream, PeerRole::RelayOut(Box::new(r)), events, now)
    }

    /// Wraps a negotiated viewer Rtc.
    pub fn viewer(
        id: SessionId,
        rtc: Rtc,
        stream: Arc<StreamShared>,
        events: broadcast::Sender<SessionEvent>,
        forwarder: Forwarder,
        last_event: Arc<std::sync::Mutex<Option<SessionEvent>>>,
        now: Instant,
    ) -> Self {
        let v = Viewer {
            last_event,
            video_mid: None,
            audio_mid: None,
            pt_map: Vec::with_capacity(4),
            forwarder,
            estimate: None,
            last_layer: (None, None),
            keys: None,
            egress: None,
        };
        Self::new(id, rtc, stream, PeerRole::Viewer(Box::new(v)), events, now)
    }

    fn new(
        id: SessionId,
        rtc: Rtc,
        stream: Arc<StreamShared>,
        role: PeerRole,
        events: broadcast::Sender<SessionEvent>,
        now: Instant,
    ) -> Self {
        Peer {
            id,
            rtc,
            stream,
            role,
            events,
            next_timeout: now,
            rtc_timeout: now,
            dirty: true,
            local: LocalCounts::default(),
            nacks_seen: Vec::new(),
            created: now,
            last_input: now,
            connected: false,
            disconnected_since: None,
            last_housekeeping: now,
            remote_candidates: 0,
            remote: None,
        }
    }

    /// True for the stream's publisher (or the relay from upstream that takes its place).
    pub fn is_publisher(&self) -> bool {
        matches!(self.role, PeerRole::Publisher(_))
    }

    /// Sets the publisher generation of a relay-in peer once its answer is applied.
    pub fn set_generation(&mut self, generation: u32) {
        if let PeerRole::Publisher(p) = &mut self.role {
            p.generation = generation;
        }
    }

    /// Whether a relay-in peer's stream has several layers (its offer named them; str0m
    /// reports no simulcast for m-lines this side offered).
    pub fn set_relay_simulcast(&mut self, simulcast: bool) {
        if let PeerRole::Publisher(p) = &mut self.role {
            p.simulcast = simulcast;
        }
    }

    /// A publisher's generation (the one its packets carry).
    pub fn generation(&self) -> Option<u32> {
        match &self.role {
            PeerRole::Publisher(p) => Some(p.generation),
            _ => None,
        }
    }

    /// A publisher's source state (backup ingest).
    pub fn source_state(&self) -> Option<&crate::failover::SourceState> {
        match &self.role {
            PeerRole::Publisher(p) => Some(&p.source),
            _ => None,
        }
    }

    /// True for a publisher whose packets feed its stream (false while it stands by).
    pub fn is_feeding(&self) -> bool {
        matches!(&self.role, PeerRole::Publisher(p) if p.source.active)
    }

    /// Makes a publisher feed its stream from its next packet: the layers the previous source
    /// left in the stream's state are forgotten, and its own are written from now on.
    pub fn feed(&mut self) {
        let PeerRole::Publisher(p) = &mut self.role else { return };
        p.source.active = true;
        p.source.pending = false;
        p.video_pt = None;
        self.stream.clear_layers();
        self.stream.simulcast.store(p.simulcast, Ordering::Relaxed);
    }

    /// Makes a publisher stand by: its packets are dropped at the node.
    pub fn stand_by(&mut self) {
        if let PeerRole::Publisher(p) = &mut self.role {
            p.source.active = false;
            p.source.pending = false;
        }
    }

    /// Makes a standing-by publisher take its stream over at its next keyframe (`true`), or
    /// calls that off (`false`).
    pub fn set_pending(&mut self, pending: bool) {
        if let PeerRole::Publisher(p) = &mut self.role {
            p.source.pending = pending && !p.source.active;
        }
    }

    /// Asks a publisher for a keyframe of each layer it sends (throttled like joins).
    pub fn request_keyframes(&mut self, now: Instant) {
        let PeerRole::Publisher(p) = &self.role else { return };
        let mask = if p.relay_mids.is_some() {
            // A relay in has an m-line per layer.
            (1u8 << MAX_LAYERS) - 1
        } else if p.rids.iter().any(Option::is_some) {
            p.rids.iter().enumerate().filter(|(_, r)| r.is_some()).fold(0u8, |m, (i, _)| m | 1 << i)
        } else {
            1
        };
        for layer in (0..MAX_LAYERS as u8).filter(|l| mask & 1 << l != 0) {
            self.request_keyframe(layer, KeyframeReason::Join, now);
        }
    }

    /// True for a stream arriving from an upstream node.
    pub fn is_relay_in(&self) -> bool {
        matches!(&self.role, PeerRole::Publisher(p) if p.relay_mids.is_some())
    }

    /// True for the upstream side of a relay edge.
    pub fn is_relay_out(&self) -> bool {
        matches!(self.role, PeerRole::RelayOut(_))
    }

    /// True for a relay edge still paused as a downstream node's standby.
    pub fn is_paused_relay(&self) -> bool {
        matches!(&self.role, PeerRole::RelayOut(r) if r.paused)
    }

    /// Resumes a paused relay edge: every layer starts from a keyframe (the cached one where
    /// there is one), audio at once.
    fn resume_relay(&mut self, fx: &mut Effects) {
        let PeerRole::RelayOut(r) = &mut self.role else { return };
        if !r.paused {
            return;
        }
        r.paused = false;
        fx.resumed.push(self.id);
        for layer in 0..MAX_LAYERS as u8 {
            fx.waiting.push((self.id, self.stream.clone(), layer));
        }
    }

    /// How long this session may take to connect.
    pub fn connect_timeout(&self) -> Duration {
        if matches!(self.role, PeerRole::Viewer(_)) { VIEWER_CONNECT_TIMEOUT } else { CONNECT_TIMEOUT }
    }

    /// Whether the session has connected (ICE and DTLS).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the session should be dropped now, and why (the worker logs it and drops it).
    pub fn expiry(&self, now: Instant) -> Option<Expiry> {
        if !self.rtc.is_alive() {
            return Some(Expiry::Dead);
        }
        if !self.connected && now.duration_since(self.created) > self.connect_timeout() {
            return Some(Expiry::NeverConnected);
        }
        if self.connected && now.saturating_duration_since(self.last_input) > SILENCE_TIMEOUT {
            return Some(Expiry::Silent);
        }
        if let Some(t) = self.disconnected_since
            && now.duration_since(t) > DISCONNECT_TIMEOUT {
                return Some(Expiry::Disconnected);
            }
        None
    }

    /// Handles one str0m event.
    pub fn handle_event(&mut self, event: Event, now: Instant, fx: &mut Effects) {
        match event {
            Event::IceConnectionStateChange(state) => {
                debug!(session = self.id, ?state, "ice state");
                match state {
                    IceConnectionState::Disconnected => {
                        self.disconnected_since.get_or_insert(now);
                    }
                    IceConnectionState::Connected | IceConnectionState::Completed => {
                        self.disconnected_since = None;
                    }
                    _ => {}
                }
            }
            Event::Connected => {
                info!(session = self.id, stream = %self.stream.name, "connected");
                self.connected = true;
                self.start_egress(now);
                fx.events.push((self.id, SessionEvent::Connected));
                let role = match &self.role {
                    PeerRole::Viewer(_) => crate::metrics::JoinRole::Viewer,
                    PeerRole::Publisher(_) => crate::metrics::JoinRole::Publisher,
                    PeerRole::RelayOut(_) => crate::metrics::JoinRole::Relay,
                };
                fx.joins.push((role, now.saturating_duration_since(self.created)));
                match &self.role {
                    PeerRole::Viewer(_) => self.viewer_housekeeping(now, fx),
                    // A new relay edge: get every layer going from a keyframe at once, both ways
                    // (from the cached one where there is one). A standby's waits to be asked.
                    PeerRole::RelayOut(r) if r.paused => {}
                    PeerRole::RelayOut(_) => {
                        for layer in 0..MAX_LAYERS as u8 {
                            fx.waiting.push((self.id, self.stream.clone(), layer));
                        }
                    }
                    // A standby relay in asks only when it takes over: its request resumes the
                    // paused edge upstream.
                    PeerRole::Publisher(p) if p.relay_mids.is_some() && p.source.active => {
                        for layer in 0..MAX_LAYERS as u8 {
                            self.request_keyframe(layer, KeyframeReason::Join, now);
                        }
                    }
                    PeerRole::Publisher(_) => {}
                }
            }
            Event::MediaAdded(m) => match &mut self.role {
                PeerRole::Publisher(p) => {
                    match m.kind {
                        MediaKind::Video => {
                            p.video_mid.get_or_insert(m.mid);
                            if let Some(sim) = &m.simulcast {
                                p.simulcast = sim.recv.len() > 1;
                                if p.source.active {
                                    self.stream.simulcast.store(p.simulcast, Ordering::Relaxed);
                                }
                                for (i, layer) in sim.recv.iter().enumerate() {
                                    let idx = layer_of_rid(&layer.rid).unwrap_or(i as u8) as usize;
                                    if idx < MAX_LAYERS {
                                        p.rids[idx] = Some(layer.rid);
                                    }
                                }
                            }
                        }
                        MediaKind::Audio => {
                            p.audio_mid.get_or_insert(m.mid);
                        }
                    }
                }
                PeerRole::Viewer(v) => match m.kind {
                    MediaKind::Video => {
                        v.video_mid.get_or_insert(m.mid);
                        // On the own send path str0m sends no media: it needs no resend cache.
                        if v.keys.is_none()
                            && let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(m.mid, None)
                        {
                            tx.set_rtx_cache(VIEWER_RESEND_PACKETS, VIEWER_RESEND_AGE, VIEWER_RESEND_RATIO_CAP);
                        }
                    }
                    MediaKind::Audio => {
                        v.audio_mid.get_or_insert(m.mid);
                    }
                },
                PeerRole::RelayOut(r) => {
                    if m.kind == MediaKind::Audio {
                        r.audio_mid.get_or_insert(m.mid);
                    }
                }
            },
            Event::RtpPacket(pkt) => {
                if let Some(mp) = self.on_publisher_rtp(pkt, now, fx) {
                    fx.media.push(Arc::new(mp));
                }
            }
            Event::KeyframeRequest(req) => {
                // A viewer's PLI/FIR: ask upstream for the layer it is receiving.
                match &self.role {
                    PeerRole::Viewer(v) => {
                        self.local.viewer_keyframe_requests += 1;
                        let sel = v.forwarder.selector_ref();
                        if let Some(layer) = sel.current().or(sel.target()) {
                            debug!(session = self.id, kind = ?req.kind, layer, "viewer keyframe request");
                            fx.keyframes.push((self.stream.clone(), layer, KeyframeReason::Refresh));
                        }
                    }
                    // The downstream node switched to this standby edge: it is fed from now on.
                    PeerRole::RelayOut(r) if r.paused => self.resume_relay(fx),
                    // A downstream node's request travels up the tree (throttled at the publisher
                    // side of every hop). It may be for a viewer joining there: a join here.
                    PeerRole::RelayOut(r) => {
                        if let Some(layer) = r.video_mids.iter().position(|m| *m == Some(req.mid)) {
                            self.local.viewer_keyframe_requests += 1;
                            debug!(session = self.id, layer, "downstream relay keyframe request");
                            fx.keyframes.push((self.stream.clone(), layer as u8, KeyframeReason::Join));
                        }
                    }
                    PeerRole::Publisher(_) => {}
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) if self.is_relay_out() => {
                if let PeerRole::RelayOut(r) = &mut self.role {
                    r.estimate = Some(estimate.as_u64());
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, can_probe }) => {
                if let PeerRole::Viewer(v) = &mut self.role {
                    let bps = estimate.as_u64();
                    if v.estimate.is_none_or(|old| old.abs_diff(bps) > old / 5) {
                        debug!(session = self.id, estimate_bps = bps, can_probe, "bandwidth estimate");
                    }
                    v.estimate = Some(bps);
                }
            }
            Event::RawPacket(raw) => {
                if let str0m::rtp::RawPacket::RtcpRx(rtcp) = *raw
                    && let Some(e) = self.egress_mut()
                {
                    e.handle_rtcp(&rtcp, now);
                    self.dirty = true;
                }
            }
            Event::MediaEgressStats(st) => {
                let d = self.nack_delta(st.mid, st.rid, st.nacks);
                self.local.viewer_nacks += d;
            }
            Event::MediaIngressStats(st) => {
                let d = self.nack_delta(st.mid, st.rid, st.nacks);
                self.local.upstream_nacks += d;
            }
            Event::SenderFeedback(sf) => {
                if let PeerRole::Publisher(p) = &mut self.role {
                    let audio = Some(sf.mid) == p.audio_mid;
                    let rate = if audio { 48_000 } else { 90_000 };
                    let info = sf.sender_info;
                    p.clock.on_sender_report(*info.ssrc, rate, info.rtp_time.numer() as u32, info.ntp_time, sf.received_at);
                }
            }
            Event::StreamPaused(p) => {
                if let PeerRole::Publisher(pb) = &self.role
                    && pb.source.active
                    && let Some(&(_, TrackKind::Video, layer)) =
                        pb.ssrcs.iter().find(|(s, _, _)| *s == p.ssrc)
                        && let Some(l) = self.stream.layers.get(layer as usize) {
                            l.active.store(!p.paused, Ordering::Relaxed);
                        }
            }
            _ => {}
        }
    }

    /// Hands str0m a timeout at `t` (unless only the own send path's is due); a failure
    /// disconnects the peer.
    pub fn handle_timeout(&mut self, t: Instant) {
        if t < self.rtc_timeout && matches!(&self.role, PeerRole::Viewer(v) if v.egress.is_some()) {
            return;
        }
        if let Err(e) = self.rtc.handle_input(str0m::Input::Timeout(t)) {
            warn!(session = self.id, error = %e, hint = crate::dtls::failure_hint(&e.to_string()), "timeout handling failed; disconnecting");
            self.rtc.disconnect();
        }
    }

    /// Periodic work: publisher counters, viewer layer choice. Cheap; runs every ~100 ms. True
    /// when that periodic part ran: the worker then adds the peer's counter deltas
    /// ([`Peer::local`]) to the stream's counters.
    pub fn housekeeping(&mut self, now: Instant, fx: &mut Effects) -> bool {
        // Held keyframe requests go out once their interval ends. This runs whenever the peer
        // is serviced, before the housekeeping interval check: a publisher's own timeouts
        // (receiver reports, NACK and transport-wide feedback) come due far more often.
        if let PeerRole::Publisher(p) = &mut self.role {
            let due = p.throttle.take_due(now).fold(0u8, |mask, slot| mask | 1 << slot);
            for layer in (0..8).filter(|l| due & 1 << l != 0) {
                self.send_keyframe_request(layer);
            }
        }
        if now.duration_since(self.last_housekeeping) < HOUSEKEEPING_INTERVAL {
            return false;
        }
        self.last_housekeeping = now;
        match &mut self.role {
            // A publisher standing by (backup ingest) leaves the stream's counters alone.
            PeerRole::Publisher(p) if !p.source.active => {}
            PeerRole::Publisher(p) => {
                for (i, m) in p.meters.iter().enumerate() {
                    let bps = m.bitrate_bps(now);
                    let l = &self.stream.layers[i];
                    l.bitrate_bps.store(bps, Ordering::Relaxed);
                    if bps == 0 && m.last_activity().is_some_and(|t| now.duration_since(t) > Duration::from_secs(2)) {
                        l.active.store(false, Ordering::Relaxed);
                    }
                }
                self.stream.audio.bitrate_bps.store(p.audio_meter.bitrate_bps(now), Ordering::Relaxed);
            }
            PeerRole::Viewer(_) => self.viewer_housekeeping(now, fx),
            PeerRole::RelayOut(_) => self.edge_housekeeping(now, fx),
        }
        true
    }

    /// Remembers a viewer's layer event for listeners that subscribe later (the worker calls
    /// it as it sends the event).
    pub fn note_event(&self, ev: &SessionEvent) {
        if let (PeerRole::Viewer(v), SessionEvent::Layer { .. }) = (&self.role, ev) {
            *v.last_event.lock().unwrap_or_else(|e| e.into_inner()) = Some(ev.clone());
        }
    }

    /// Congestion control of a relay edge: sheds the highest layers the edge's estimate cannot
    /// carry, brings them back (from a keyframe) when it can, and lets the estimator probe up to
    /// what every layer needs.
    fn edge_housekeeping(&mut self, now: Instant, fx: &mut Effects) {
        let PeerRole::RelayOut(r) = &mut self.role else { return };
        let layers = self.stream.layer_states();
        let audio = self.stream.audio.bitrate_bps.load(Ordering::Relaxed);
        match r.layers.update(now, r.estimate, &layers, audio) {
            Some(crate::relay::EdgeChange::Shed(layer)) => {
                info!(session = self.id, stream = %self.stream.name, layer, estimate_bps = r.estimate.unwrap_or(0), "relay edge congested: layers from {layer} up are no longer sent");
                self.local.relay_layer_sheds += 1;
            }
            Some(crate::relay::EdgeChange::Restore(layer)) => {
                info!(session = self.id, stream = %self.stream.name, layer, estimate_bps = r.estimate.unwrap_or(0), "relay edge has room again: layer {layer} is sent from its next keyframe");
                r.forwarder.resume_layer(layer);
                fx.keyframes.push((self.stream.clone(), layer, KeyframeReason::Refresh));
            }
            None => {}
        }
        let all: u64 = layers.iter().filter(|l| l.active).map(|l| l.bitrate_bps).fold(audio, u64::saturating_add);
        self.rtc.bwe().set_bitrate(Bitrate::kbps(100), Bitrate::bps((all.saturating_mul(3) / 2).max(300_000)));
    }

}


#[cfg(test)]
mod tests;
