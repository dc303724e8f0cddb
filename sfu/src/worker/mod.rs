//! A media worker: one thread, one UDP socket, its own peers. A sans-IO core
//! ([`core::WorkerCore`]: peers, routing, session set-up) and the tokio shell around it
//! ([`shell::Worker`]: socket, send batch, sleeping), so that the core is tested with in-memory
//! peers and no sockets.

pub(crate) mod core;
mod routing;
mod shell;
mod sources;
#[cfg(test)]
mod tests;

pub(crate) use self::core::WorkerCore;
pub(crate) use shell::Worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::udp::SendBatch;
use crate::{Shared, SfuError};
use crate::failover::Source;
use crate::forward::Forwarder;
use crate::keyframe::KeyframeReason;
use crate::layer::{LayerPreference, SelectorConfig};
use crate::negotiate::VideoFormat;
use crate::packet::MediaPacket;
use crate::peer::Peer;
use crate::stream::{SessionEntry, SessionEvent, SessionId, StreamShared};
use crate::tap::TapEvent;

/// Commands a worker accepts from signaling and from other workers.
pub(crate) enum Command {
    /// Start a publisher session.
    Publish {
        id: SessionId,
        entry: SessionEntry,
        offer: SdpOffer,
        video: Option<VideoFormat>,
        /// The publisher declared itself backup (`?backup=1`).
        backup: bool,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    /// Start a viewer session.
    Subscribe {
        id: SessionId,
        entry: SessionEntry,
        offer: SdpOffer,
        pref: LayerPreference,
        video: Option<VideoFormat>,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    /// Remote ICE candidates for a session.
    Trickle { id: SessionId, candidates: Vec<Candidate> },
    /// Change a viewer's layer preference.
    SetLayer { id: SessionId, pref: LayerPreference },
    /// Create a relay-in session: this node offers to receive every layer from an upstream node.
    RelayOffer { id: SessionId, entry: SessionEntry, simulcast: bool, reply: oneshot::Sender<Result<String, SfuError>> },
    /// The upstream node's answer to a relay-in offer.
    RelayAnswer { id: SessionId, answer: SdpAnswer, standby: bool, reply: oneshot::Sender<Result<(), SfuError>> },
    /// Serve a downstream node's relay offer.
    /// With `standby`, the edge starts paused (see [`crate::Sfu::relay_serve`]).
    RelayServe { id: SessionId, entry: SessionEntry, offer: SdpOffer, video_mids: Vec<String>, standby: bool, reply: oneshot::Sender<Result<String, SfuError>> },
    /// Move a relayed stream to its standby relay in `id` while the relay in that feeds it still
    /// does (see [`crate::Sfu::relay_handover`]).
    Handover { id: SessionId },
    /// End a session; `done` is told once it is gone.
    Close { id: SessionId, done: Option<oneshot::Sender<()>> },
    /// A packet from a publisher on another worker, for this worker's viewers.
    Media(Arc<MediaPacket>),
    /// A keyframe request for a publisher on this worker.
    Keyframe { stream_id: u64, layer: u8, reason: KeyframeReason },
    /// A viewer on worker `worker` waits for its first frame of `layer` of a stream published on
    /// this worker: start it from the cached keyframe (answered with [`Command::CachedStart`]
    /// on the media queue, after the packets already handed over) or ask the publisher for one.
    StartViewer { stream_id: u64, layer: u8, session: SessionId, worker: usize },
    /// The cached packets to start a waiting viewer of this worker from.
    CachedStart { session: SessionId, packets: Vec<Arc<MediaPacket>> },
    /// Stop the worker.
    Shutdown,
}

/// How often each audio track sends an RTCP sender report (as video's does).
pub const AUDIO_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Largest datagram read from the socket.
const RECV_BUF: usize = 2048;
/// Datagrams read per wake-up before peers are serviced again.
const RECV_BATCH: usize = 64;
/// Commands handled per wake-up.
const CMD_BATCH: usize = 256;
/// A str0m timeout at most this far ahead is handled at once by [`WorkerCore::drive`] (the pacer
/// asks for one a microsecond after each packet it releases).
const PACER_IMMEDIATE: Duration = Duration::from_micros(20);
/// Immediate timeouts handled per drive of one peer, so that one peer cannot hold the worker.
const MAX_IMMEDIATE: usize = 64;
/// Session commands (start, trickle, layer, close) handled per wake-up, so that a flood of them
/// cannot starve media.
const CONTROL_BATCH: usize = 32;
/// After a panic the worker takes no new sessions for this long.
const PANIC_QUARANTINE: Duration = Duration::from_secs(30);
/// Name of the stream whose sessions panic the worker in debug builds when the environment sets
/// `RELAYCAST_FAULT_INJECTION=1` (tests of panic containment; compiled out of release builds).
#[cfg(debug_assertions)]
pub const FAULT_INJECTION_STREAM: &str = "fault-injection-panic";

/// A relay-in offer sent upstream, waiting for its answer. Its peer already runs, so that it
/// answers the upstream node's early ICE checks (their retransmission would delay connecting).
struct PendingRelay {
    pending: SdpPendingOffer,
    simulcast: bool,
}

/// Start/end events a worker holds for a full archive tap before it drops them (each is logged).
const MAX_TAP_BACKLOG: usize = 65_536;
impl Worker {
    /// A worker for `socket` (advertised as `local`): the shell around a new core.
    pub(crate) fn new(index: usize, socket: UdpSocket, local: SocketAddr, shared: Arc<Shared>) -> Self {
        let mut core = WorkerCore::new(index, local, shared.clone(), Instant::now());
        core.set_wall_clock(Instant::now);
        Worker { socket, shared, batch: SendBatch::new(), core }
    }
}

impl WorkerCore {
    /// A str0m session in RTP mode; `video` (the format chosen from the offer) replaces the
    /// default video codecs.
    fn new_rtc(&self, now: Instant, viewer_codec: Option<crate::codec::VideoCodec>, viewer: bool, video: Option<&VideoFormat>) -> Rtc {
        self.new_rtc_with(now, viewer_codec, viewer, video, false)
    }

    /// [`Worker::new_rtc`]; `edge` enables the bandwidth estimate of a relay edge (upstream side),
    /// which starts high ([`crate::relay::EDGE_INITIAL_ESTIMATE_BPS`]).
    fn new_rtc_with(&self, now: Instant, viewer_codec: Option<crate::codec::VideoCodec>, viewer: bool, video: Option<&VideoFormat>, edge: bool) -> Rtc {
        use crate::codec::VideoCodec;
        let mut cfg = Rtc::builder()
            .set_rtp_mode(true)
            .set_crypto_provider(crate::dtls::crypto_provider_for(self.shared.dtls_backend))
            .set_stats_interval(Some(Duration::from_secs(1)))
            // Audio sender reports every second like video's (str0m's default is 5 s): a report
            // written before this node had the publisher's audio clock (it maps arrival times
            // until the upstream's first audio report) is corrected within a second, not five,
            // at every depth of a relay tree.
            .set_rtcp_report_interval_audio(AUDIO_REPORT_INTERVAL)
            .clear_codecs()
            .enable_opus(true, false);
        cfg = match (viewer, viewer_codec) {
            (true, Some(VideoCodec::Vp8)) => cfg.enable_vp8(true),
            (true, Some(VideoCodec::H264)) => cfg.enable_h264(true),
            _ => cfg.enable_vp8(true).enable_h264(true),
        };
        if let Some(format) = video {
            crate::negotiate::configure(cfg.codec_config(), format);
        }
        if let Some(cert) = &self.dtls_cert {
            cfg = cfg.set_dtls_cert(cert.clone());
        }
        if viewer && self.shared.send_path == crate::egress::SendPath::Own {
            // The own send path sends the media, its sender reports and its probes: str0m runs
            // ICE, DTLS and hands over the viewer's RTCP, and sends no report of its own.
            cfg = cfg
                .enable_raw_packets(true)
                .set_rtcp_report_interval_audio(crate::egress::NO_REPORTS)
                .set_rtcp_report_interval_video(crate::egress::NO_REPORTS);
        } else if viewer {
            cfg = cfg.enable_bwe(Some(str0m::bwe::Bitrate::kbps(1_000))).set_send_buffer_video(crate::peer::VIEWER_RESEND_PACKETS);
        } else if edge {
            cfg = cfg.enable_bwe(Some(str0m::bwe::Bitrate::bps(crate::relay::EDGE_INITIAL_ESTIMATE_BPS)));
        }
        cfg.build(now)
    }

    /// Creates the offer of a relay-in session: one receive-only video m-line per layer, then
    /// audio. The session starts once the upstream node's answer arrives.
    fn relay_offer(&mut self, id: SessionId, entry: SessionEntry, simulcast: bool, now: Instant) -> Result<String, SfuError> {
        let mut rtc = self.new_rtc(now, entry.stream.codec(), false, None);
        let cand = Candidate::host(self.local, "udp").map_err(|e| SfuError::Internal(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let mids = [(); crate::layer::MAX_LAYERS]
            .map(|_| api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
        let audio_mid = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().ok_or_else(|| SfuError::Internal("no relay offer created".into()))?;
        let peer = Peer::relay_in(id, rtc, entry.stream.clone(), entry.events, 0, mids, audio_mid, now);
        self.insert(peer);
        self.pending_relays.insert(id, PendingRelay { pending, simulcast });
        Ok(offer.to_sdp_string())
    }

    /// Applies the upstream node's answer and starts feeding the stream from it.
    fn relay_answer(&mut self, id: SessionId, answer: SdpAnswer, standby: bool, now: Instant) -> Result<(), SfuError> {
        let PendingRelay { pending, simulcast } = self.pending_relays.remove(&id).ok_or(SfuError::SessionNotFound)?;
        let slot = *self.by_id.get(&id).ok_or(SfuError::SessionNotFound)?;
        let Some(peer) = self.peers[slot].as_mut() else { return Err(SfuError::SessionNotFound) };
        if let Err(e) = peer.rtc.sdp_api().accept_answer(pending, answer) {
            self.remove(slot, now);
            return Err(SfuError::BadSdp(e.to_string()));
        }
        peer.set_relay_simulcast(simulcast);
        let stream = peer.stream.clone();
        if standby {
            return self.relay_standby(slot, &stream, now);
        }
        stream.reset_counters();
        stream.simulcast.store(simulcast, Ordering::Relaxed);
        let generation = stream.generation.fetch_add(1, Ordering::AcqRel) + 1;
        peer.set_generation(generation);
        peer.dirty = true;
        self.publishers.insert(stream.id, slot);
        stream.publisher_worker.store(self.index, Ordering::Release);
        self.sources.entry(stream.id).or_default().primary = Some(slot);
        info!(session = id, stream = %stream.name, worker = self.index, "relay from upstream started");
        self.shared.registry.broadcast(&stream.name, &SessionEvent::Publisher { live: true });
        Ok(())
    }

    /// A relay in from a second upstream stands by beside the one that feeds the stream (its
    /// packets are dropped here until it feeds): the two are the stream's primary and backup
    /// source, switched between as backup ingest is (see [`crate::failover`]).
    fn relay_standby(&mut self, slot: usize, stream: &Arc<StreamShared>, now: Instant) -> Result<(), SfuError> {
        let feeder = self.publishers.get(&stream.id).copied().filter(|&f| self.peers[f].as_ref().is_some_and(|p| p.is_relay_in()));
        let Some(feeder) = feeder else {
            // The relay it was to stand beside left meanwhile: the node's cluster attaches anew.
            self.remove(slot, now);
            return Err(SfuError::StreamBusy);
        };
        let generation = stream.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let Some(peer) = self.peers[slot].as_mut() else { return Err(SfuError::SessionNotFound) };
        peer.set_generation(generation);
        peer.stand_by();
        peer.dirty = true;
        let id = peer.id;
        let src = self.sources.entry(stream.id).or_default();
        src.primary = Some(feeder);
        src.backup = Some(slot);
        info!(session = id, stream = %stream.name, worker = self.index, "standby relay from a second upstream started");
        Ok(())
    }

    /// Answers a downstream node's relay offer: every layer of the stream goes to it.
    fn start_relay_out(
        &mut self,
        id: SessionId,
        entry: SessionEntry,
        offer: SdpOffer,
        video_mids: &[String],
        standby: bool,
        now: Instant,
    ) -> Result<String, SfuError> {
        let stream = entry.stream.clone();
        let mut rtc = self.new_rtc_with(now, stream.codec(), false, None, true);
        let answer = self.negotiate(&mut rtc, offer)?;
        let mut mids = [None; crate::layer::MAX_LAYERS];
        for (slot, m) in mids.iter_mut().zip(video_mids) {
            *slot = Some(Mid::from(m.as_str()));
        }
        let peer = Peer::relay_out(id, rtc, stream.clone(), entry.events, mids, standby, now);
        let slot = self.insert(peer);
        self.viewers.entry(stream.id).or_default().push(slot);
        stream.worker_mask.fetch_or(1 << self.index, Ordering::AcqRel);
        if standby {
            stream.set_paused_relay(id, true);
            let standbys = stream.standby_children.fetch_add(1, Ordering::AcqRel) + 1;
            info!(session = id, stream = %stream.name, worker = self.index, standby_children = standbys, "paused relay to a downstream node's standby created");
        } else {
            let children = stream.relay_children.fetch_add(1, Ordering::AcqRel) + 1;
            info!(session = id, stream = %stream.name, worker = self.index, relay_children = children, "relay to downstream node created");
        }
        Ok(answer)
    }

    /// A paused relay edge (a downstream node's standby) was asked for a keyframe: the
    /// downstream node switched to it, and it counts as a relay child from now on.
    pub(super) fn relay_resumed(&mut self, id: SessionId) {
        let Some(p) = self.by_id.get(&id).and_then(|&s| self.peers[s].as_ref()) else { return };
        let stream = p.stream.clone();
        stream.set_paused_relay(id, false);
        let _ = stream.standby_children.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        let children = stream.relay_children.fetch_add(1, Ordering::AcqRel) + 1;
        info!(session = id, stream = %stream.name, relay_children = children, "a downstream node switched to its standby edge: relaying the stream to it");
    }

    fn negotiate(&self, rtc: &mut Rtc, offer: SdpOffer) -> Result<String, SfuError> {
        let cand = Candidate::host(self.local, "udp").map_err(|e| SfuError::Internal(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(cand);
        // str0m 0.25 panics on some offers ("Pt locked multiple times", found by fuzzing): such an
        // offer is refused like any other it cannot take, and the worker carries on (no
        // quarantine for a stranger's SDP).
        let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)));
        let answer = match accepted {
            Ok(r) => r.map_err(|e| SfuError::BadSdp(e.to_string()))?,
            Err(_) => {
                self.shared.metrics.codec_refusals.fetch_add(1, Ordering::Relaxed);
                warn!(worker = self.index, "the WebRTC stack could not take an offer (it panicked); refused");
                return Err(SfuError::BadSdp("the offer could not be negotiated".into()));
            }
        };
        Ok(answer.to_sdp_string())
    }

    fn insert(&mut self, peer: Peer) -> usize {
        let id = peer.id;
        let slot = match self.peers.iter().position(Option::is_none) {
            Some(s) => {
                self.peers[s] = Some(Box::new(peer));
                s
            }
            None => {
                self.peers.push(Some(Box::new(peer)));
                self.peers.len() - 1
            }
        };
        self.by_id.insert(id, slot);
        self.shared.worker_load[self.index].fetch_add(1, Ordering::Relaxed);
        slot
    }

    fn start_publisher(
        &mut self,
        id: SessionId,
        entry: SessionEntry,
        offer: SdpOffer,
        video: Option<VideoFormat>,
        backup: bool,
        now: Instant,
    ) -> Result<String, SfuError> {
        let mut rtc = self.new_rtc(now, None, false, video.as_ref());
        let answer = self.negotiate(&mut rtc, offer)?;
        let stream = entry.stream.clone();
        let source = if backup { Source::Backup } else { Source::Primary };
        // With the stream's other source feeding it, this one stands by (backup ingest).
        let standby = self.publishers.contains_key(&stream.id);
        let generation = stream.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let mut peer = Peer::publisher(id, rtc, stream.clone(), entry.events, generation, now);
        if standby {
            peer.stand_by();
        }
        let slot = self.insert(peer);
        let src = self.sources.entry(stream.id).or_default();
        match source {
            Source::Primary => src.primary = Some(slot),
            Source::Backup => src.backup = Some(slot),
        }
        if standby {
            info!(session = id, stream = %stream.name, worker = self.index, source = source.as_str(), "publisher session created; standing by while the stream's other source feeds it");
            self.update_backup_state(&stream);
            return Ok(answer);
        }
        stream.reset_counters();
        if let Some(format) = video {
            stream.set_video_format(format);
        }
        self.publishers.insert(stream.id, slot);
        stream.publisher_worker.store(self.index, Ordering::Release);
        info!(session = id, stream = %stream.name, worker = self.index, source = source.as_str(), "publisher session created");
        self.tap_event(TapEvent::Started { stream_id: stream.id, stream: stream.name.clone(), generation });
        self.lifecycle_event(crate::lifecycle::StreamLifecycle::Started { stream: stream.name.clone(), generation });
        self.shared.registry.broadcast(&stream.name, &SessionEvent::Publisher { live: true });
        self.update_backup_state(&stream);
        Ok(answer)
    }

    fn start_viewer(
        &mut self,
        id: SessionId,
        entry: SessionEntry,
        offer: SdpOffer,
        pref: LayerPreference,
        video: Option<VideoFormat>,
        now: Instant,
    ) -> Result<String, SfuError> {
        let stream = entry.stream.clone();
        let (mut rtc, keys) = match self.shared.send_path {
            crate::egress::SendPath::Own => {
                let (rtc, keys) = crate::dtls::with_key_capture(|| self.new_rtc(now, stream.codec(), true, video.as_ref()));
                (rtc, Some(keys))
            }
            crate::egress::SendPath::Str0m => (self.new_rtc(now, stream.codec(), true, video.as_ref()), None),
        };
        let answer = self.negotiate(&mut rtc, offer)?;
        let forwarder = Forwarder::new(SelectorConfig::default(), pref);
        let mut peer = Peer::viewer(id, rtc, stream.clone(), entry.events, forwarder, entry.layer, now);
        if let Some(keys) = keys {
            peer.use_own_send_path(keys);
        }
        let slot = self.insert(peer);
        self.viewers.entry(stream.id).or_default().push(slot);
        stream.worker_mask.fetch_or(1 << self.index, Ordering::AcqRel);
        let count = stream.viewers.fetch_add(1, Ordering::AcqRel) + 1;
        info!(session = id, stream = %stream.name, worker = self.index, viewers = count, "viewer session created");
        self.shared.registry.broadcast(&stream.name, &SessionEvent::Viewers { count });
        Ok(answer)
    }

    /// Removes a peer and updates the registry, stream state and event channels.
    pub(super) fn remove(&mut self, slot: usize, now: Instant) {
        let Some(mut peer) = self.peers.get_mut(slot).and_then(Option::take) else { return };
        peer.local.flush(&peer.stream.counters);
        self.by_id.remove(&peer.id);
        self.pending_relays.remove(&peer.id);
        self.by_addr.retain(|_, s| *s != slot);
        self.shared.worker_load[self.index].fetch_sub(1, Ordering::Relaxed);
        let stream = peer.stream.clone();
        let _ = peer.events.send(SessionEvent::Closed);
        self.shared.registry.remove(peer.id);
        if peer.is_publisher() {
            self.publisher_ended(slot, &peer, now);
        } else {
            if let Some(list) = self.viewers.get_mut(&stream.id) {
                list.retain(|s| *s != slot);
                if list.is_empty() {
                    self.viewers.remove(&stream.id);
                    stream.worker_mask.fetch_and(!(1u64 << self.index), Ordering::AcqRel);
                }
            }
            if peer.is_relay_out() {
                if peer.is_paused_relay() {
                    stream.set_paused_relay(peer.id, false);
                }
                let count = if peer.is_paused_relay() { &stream.standby_children } else { &stream.relay_children };
                let children = count.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
                info!(session = peer.id, stream = %stream.name, relay_children = children, standby = peer.is_paused_relay(), "relay to downstream node ended");
                return;
            }
            let count = stream.viewers.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
            info!(session = peer.id, stream = %stream.name, viewers = count, "viewer session ended");
            self.shared.registry.broadcast(&stream.name, &SessionEvent::Viewers { count });
        }
    }
}
