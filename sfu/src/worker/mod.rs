//! A media worker: one thread, one UDP socket, its own peers; the tokio driver around the
//! sans-IO peers and forwarders.

mod sources;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::forward::Forwarder;
use crate::gop::GopCache;
use crate::layer::{LayerPreference, SelectorConfig};
use crate::negotiate::VideoFormat;
use crate::packet::MediaPacket;
use crate::peer::{Effects, Peer};
use crate::stream::{SessionEntry, SessionEvent, SessionId, StreamShared};
use crate::tap::TapEvent;
use sources::{FAILOVER_CHECK_INTERVAL, Sources};
use crate::failover::Source;
use crate::keyframe::KeyframeReason;
use crate::udp::SendBatch;
use crate::{Shared, SfuError};

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
    RelayServe { id: SessionId, entry: SessionEntry, offer: SdpOffer, video_mids: Vec<String>, reply: oneshot::Sender<Result<String, SfuError>> },
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

/// Largest datagram read from the socket.
const RECV_BUF: usize = 2048;
/// Datagrams read per wake-up before peers are serviced again.
const RECV_BATCH: usize = 64;
/// Commands handled per wake-up.
const CMD_BATCH: usize = 256;
/// A str0m timeout at most this far ahead is handled at once by [`Worker::drive`] (the pacer
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

pub(crate) struct Worker {
    index: usize,
    socket: UdpSocket,
    local: SocketAddr,
    shared: Arc<Shared>,
    peers: Vec<Option<Peer>>,
    by_id: HashMap<SessionId, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Local viewers (peer slots) per stream id.
    viewers: HashMap<u64, Vec<usize>>,
    /// Local publisher slot per stream id: the source that feeds the stream.
    publishers: HashMap<u64, usize>,
    /// The primary and backup publisher slots of each stream published on this worker (relays
    /// from upstream are not here).
    sources: HashMap<u64, Sources>,
    /// When the backup-ingest sources are next checked for a switch.
    next_failover_check: Instant,
    /// Per stream published on this worker: each layer's latest keyframe and the packets since
    /// it, to start joining viewers of any worker from ([`crate::gop`]).
    gops: HashMap<u64, GopCache>,
    fx: Effects,
    batch: SendBatch,
    /// Relay-in sessions waiting for the upstream node's answer.
    pending_relays: HashMap<SessionId, PendingRelay>,
    /// One DTLS certificate for all of this worker's peers: generating one per peer would cost
    /// a key generation on every join.
    dtls_cert: Option<str0m::config::DtlsCert>,
    /// The peer slot being worked on: the one dropped if a panic interrupts the work.
    busy: Option<usize>,
    /// The session a command is starting (its slot may not exist yet).
    busy_session: Option<SessionId>,
    /// Until when the worker takes no new sessions after a panic.
    quarantine: Option<Instant>,
    /// Whether sessions of [`FAULT_INJECTION_STREAM`] panic the worker.
    #[cfg(debug_assertions)]
    inject_faults: bool,
    /// Publisher start/end events the archive tap had no room for yet: sent, in order, before
    /// any further packet, so that a full tap drops packets but never a stream's start or end.
    tap_backlog: std::collections::VecDeque<TapEvent>,
}

/// Start/end events a worker holds for a full archive tap before it drops them (each is logged).
const MAX_TAP_BACKLOG: usize = 65_536;
impl Worker {
    pub(crate) fn new(index: usize, socket: UdpSocket, local: SocketAddr, shared: Arc<Shared>) -> Self {
        Worker {
            index,
            socket,
            local,
            shared,
            peers: Vec::new(),
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            viewers: HashMap::new(),
            publishers: HashMap::new(),
            sources: HashMap::new(),
            next_failover_check: Instant::now(),
            gops: HashMap::new(),
            pending_relays: HashMap::new(),
            fx: Effects::default(),
            batch: SendBatch::new(),
            dtls_cert: str0m::crypto::from_feature_flags().dtls_provider.generate_certificate(),
            busy: None,
            busy_session: None,
            quarantine: None,
            #[cfg(debug_assertions)]
            inject_faults: std::env::var("RELAYCAST_FAULT_INJECTION").is_ok_and(|v| v == "1"),
            tap_backlog: std::collections::VecDeque::new(),
        }
    }

    /// Runs until shutdown. A panic while handling one peer drops that peer and the worker
    /// carries on with the others (counted in `relaycast_worker_panics_total`); for
    /// [`PANIC_QUARANTINE`] afterwards it takes no new sessions.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Command>, mut ctl: mpsc::Receiver<Command>) {
        use futures_util::FutureExt;
        info!(worker = self.index, addr = %self.local, "media worker started");
        loop {
            let turn = std::panic::AssertUnwindSafe(self.run_loop(&mut rx, &mut ctl)).catch_unwind().await;
            match turn {
                Ok(()) => break,
                Err(payload) => self.recover(payload.as_ref()),
            }
        }
        self.shutdown();
    }

    async fn run_loop(&mut self, rx: &mut mpsc::Receiver<Command>, ctl: &mut mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let now = Instant::now();
            let next = self.service(now);
            let sleep_for = next.saturating_duration_since(Instant::now()).max(Duration::from_micros(200));
            tokio::select! {
                biased;
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { return };
                    if !self.handle_command(cmd) { return; }
                    for _ in 0..CMD_BATCH {
                        match rx.try_recv() {
                            Ok(cmd) => if !self.handle_command(cmd) { return },
                            Err(_) => break,
                        }
                    }
                }
                r = self.socket.readable() => {
                    if r.is_ok() { self.read_batch(&mut buf); }
                }
                cmd = ctl.recv() => {
                    let Some(cmd) = cmd else { return };
                    if !self.handle_command(cmd) { return; }
                    for _ in 1..CONTROL_BATCH {
                        match ctl.try_recv() {
                            Ok(cmd) => if !self.handle_command(cmd) { return },
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }
    }

    /// After a panic: counts it, drops the peer (or the session being started) that caused it,
    /// and stops taking new sessions for a while.
    fn recover(&mut self, payload: &(dyn std::any::Any + Send)) {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        self.shared.metrics.worker_panics.fetch_add(1, Ordering::Relaxed);
        let culprit = self.busy.take().or_else(|| self.busy_session.take().and_then(|id| self.by_id.get(&id).copied()));
        self.busy_session = None;
        let session = culprit.and_then(|s| self.peers.get(s)).and_then(|p| p.as_ref()).map(|p| p.id);
        tracing::error!(worker = self.index, ?session, panic = %what, "media worker panicked; dropping the session that caused it");
        if let Some(slot) = culprit {
            self.evict(slot);
        }
        self.quarantine = Some(Instant::now() + PANIC_QUARANTINE);
        self.shared.worker_healthy[self.index].store(false, Ordering::Relaxed);
    }

    /// Removes a peer after a panic; should the removal panic too, the peer is dropped bare.
    fn evict(&mut self, slot: usize) {
        let removed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.remove(slot)));
        if removed.is_err() {
            let taken = self.peers.get_mut(slot).and_then(Option::take);
            if let Some(p) = taken {
                let id = p.id;
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(p)));
                self.by_id.remove(&id);
                self.shared.registry.remove(id);
                self.shared.worker_load[self.index].fetch_sub(1, Ordering::Relaxed);
            }
            self.by_addr.retain(|_, s| *s != slot);
            for list in self.viewers.values_mut() {
                list.retain(|s| *s != slot);
            }
            self.publishers.retain(|_, s| *s != slot);
            for src in self.sources.values_mut() {
                src.primary = src.primary.filter(|s| *s != slot);
                src.backup = src.backup.filter(|s| *s != slot);
            }
            self.sources.retain(|_, s| s.primary.is_some() || s.backup.is_some());
        }
    }

    /// Panics on purpose for a session of [`FAULT_INJECTION_STREAM`] when enabled.
    #[cfg(debug_assertions)]
    fn maybe_inject_fault(&self, slot: usize) {
        if self.inject_faults
            && let Some(p) = self.peers.get(slot).and_then(Option::as_ref)
            && p.stream.name == FAULT_INJECTION_STREAM
        {
            panic!("injected fault for session {}", p.id);
        }
    }

    fn shutdown(&mut self) {
        for slot in 0..self.peers.len() {
            if let Some(p) = self.peers[slot].as_mut() {
                p.rtc.disconnect();
                self.drive(slot, Instant::now());
            }
            self.remove(slot);
        }
        flush(&mut self.batch, &self.socket, &self.shared);
        info!(worker = self.index, "media worker stopped");
    }

    /// Reads up to a batch of datagrams and hands them to their peers.
    fn read_batch(&mut self, buf: &mut [u8]) {
        for _ in 0..RECV_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, source)) => self.on_datagram(&buf[..n], source),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(worker = self.index, error = %e, "udp receive error");
                    break;
                }
            }
        }
    }

    fn on_datagram(&mut self, data: &[u8], source: SocketAddr) {
        let m = &self.shared.metrics;
        m.ingress_packets.fetch_add(1, Ordering::Relaxed);
        m.ingress_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let Ok(contents) = data.try_into() else {
            m.dropped_unrecognised.fetch_add(1, Ordering::Relaxed);
            debug!(worker = self.index, %source, len = data.len(), "dropping unrecognised datagram");
            return;
        };
        let now = Instant::now();
        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: self.local, contents });
        let slot = match self.by_addr.get(&source) {
            Some(&s) if self.peers[s].as_ref().is_some_and(|p| p.rtc.accepts(&input)) => Some(s),
            _ => {
                let found = self.peers.iter().position(|p| p.as_ref().is_some_and(|p| p.rtc.accepts(&input)));
                if let Some(s) = found {
                    self.by_addr.insert(source, s);
                    if let Some(p) = self.peers[s].as_ref() {
                        self.shared.registry.set_remote(p.id, source);
                    }
                }
                found
            }
        };
        let Some(slot) = slot else {
            self.shared.metrics.dropped_no_session.fetch_add(1, Ordering::Relaxed);
            debug!(worker = self.index, %source, "no session accepts datagram");
            return;
        };
        self.busy = Some(slot);
        let Some(peer) = self.peers[slot].as_mut() else { return };
        peer.last_input = now;
        if let Err(e) = peer.rtc.handle_input(input) {
            warn!(session = peer.id, error = %e, hint = crate::dtls::failure_hint(&e.to_string()), "peer input error; disconnecting");
            peer.rtc.disconnect();
        }
        // str0m holds at most one received RTP packet until it is polled: poll right away.
        self.drive(slot, now);
        self.deliver(now);
        self.busy = None;
    }

    /// Polls every peer that has work, delivers what they produce, and returns the next wake-up.
    fn service(&mut self, now: Instant) -> Instant {
        let mut next = now + Duration::from_millis(50);
        self.flush_tap_backlog();
        // Several rounds: fanning out marks viewers dirty, which are then polled in the next round.
        for _round in 0..4 {
            let mut any = false;
            for slot in 0..self.peers.len() {
                let Some(p) = self.peers[slot].as_mut() else { continue };
                let due = p.next_timeout <= now;
                if !(p.dirty || due) {
                    continue;
                }
                any = true;
                self.busy = Some(slot);
                if due {
                    p.handle_timeout(now);
                }
                p.housekeeping(now, &mut self.fx);
                self.drive(slot, now);
                self.deliver(now);
                self.busy = None;
            }
            if !any {
                break;
            }
        }
        if !self.sources.is_empty() && now >= self.next_failover_check {
            self.next_failover_check = now + FAILOVER_CHECK_INTERVAL;
            self.check_failover(now);
        }
        // Drop expired sessions (a relay offer never answered expires as never connected).
        for slot in 0..self.peers.len() {
            self.busy = Some(slot);
            let expired = self.peers[slot].as_ref().is_some_and(|p| p.expired(now));
            if expired {
                self.remove(slot);
            }
        }
        self.busy = None;
        if self.quarantine.is_some_and(|t| now >= t) {
            self.quarantine = None;
            self.shared.worker_healthy[self.index].store(true, Ordering::Relaxed);
            info!(worker = self.index, "media worker takes new sessions again");
        }
        flush(&mut self.batch, &self.socket, &self.shared);
        for p in self.peers.iter().flatten() {
            next = next.min(p.next_timeout);
        }
        next.min(now + crate::peer::HOUSEKEEPING_INTERVAL)
    }

    /// Polls one peer until str0m wants a timeout that is not yet due.
    ///
    /// str0m's pacer releases one packet per timeout and asks for the next timeout a microsecond
    /// later. Such immediate timeouts are handled here, so that a peer's queued packets (a frame
    /// for a viewer) leave back to back: consecutive in the send batch, they go out as one GSO
    /// message, and the peer is not visited again by the next loop turns for each packet.
    fn drive(&mut self, slot: usize, now: Instant) {
        let outer = self.busy.replace(slot);
        #[cfg(debug_assertions)]
        self.maybe_inject_fault(slot);
        self.drive_peer(slot, now);
        self.busy = outer;
    }

    fn drive_peer(&mut self, slot: usize, now: Instant) {
        let Some(p) = self.peers[slot].as_mut() else { return };
        p.dirty = false;
        let mut immediate = 0;
        let mut clock = now;
        loop {
            if !p.rtc.is_alive() {
                p.next_timeout = now;
                return;
            }
            match p.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    if t > clock {
                        // Sending took time: compare with the clock, so that str0m's time never
                        // runs more than PACER_IMMEDIATE ahead of it.
                        clock = Instant::now().max(clock);
                    }
                    if t.saturating_duration_since(clock) <= PACER_IMMEDIATE && immediate < MAX_IMMEDIATE {
                        immediate += 1;
                        p.handle_timeout(t.max(clock));
                        continue;
                    }
                    p.next_timeout = p.held_keyframe_due().map_or(t, |k| k.min(t));
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    p.local.egress_packets += 1;
                    p.local.egress_bytes += t.contents.len() as u64;
                    self.batch.push(t.destination, t.contents);
                    if self.batch.len() >= crate::udp::MAX_QUEUED {
                        flush(&mut self.batch, &self.socket, &self.shared);
                    }
                }
                Ok(Output::Event(e)) => p.handle_event(e, now, &mut self.fx),
                Err(e) => {
                    warn!(session = p.id, error = %e, hint = crate::dtls::failure_hint(&e.to_string()), "peer failed; disconnecting");
                    p.rtc.disconnect();
                }
            }
        }
    }

    /// Fans out packets and routes keyframe requests produced by the last drive.
    fn deliver(&mut self, now: Instant) {
        // A backup-ingest source that took its stream over on its keyframe: the stream is its
        // from that packet on (its start event goes to the tap before the packet).
        let took_over = std::mem::take(&mut self.fx.took_over);
        for id in took_over {
            if let Some(&slot) = self.by_id.get(&id) {
                self.took_over(slot);
            }
        }
        // In arrival order: a reordered keyframe start would break a layer switch.
        let mut media = std::mem::take(&mut self.fx.media);
        for pkt in media.drain(..) {
            self.fan_out_local(&pkt);
            let (mask, tapped) = self.publisher_routing(&pkt);
            if tapped
                && let Some(tap) = &self.shared.tap
                && (!self.tap_backlog.is_empty() || tap.try_send(TapEvent::Packet(pkt.clone())).is_err())
            {
                self.shared.metrics.dropped_tap.fetch_add(1, Ordering::Relaxed);
            }
            if mask != 0 {
                for (w, tx) in self.shared.workers.iter().enumerate() {
                    if w != self.index && mask & (1 << w) != 0 && tx.try_send(Command::Media(pkt.clone())).is_err() {
                        self.shared.metrics.dropped_handoff.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.fx.media = media;
        // Viewers waiting for their first frame: from the cached keyframe if there is a usable
        // one, else a keyframe request to the publisher.
        let mut waiting = std::mem::take(&mut self.fx.waiting);
        for (id, stream, layer) in waiting.drain(..) {
            self.start_waiting_viewer(id, &stream, layer, now);
        }
        self.fx.waiting = waiting;
        let mut keyframes = std::mem::take(&mut self.fx.keyframes);
        for (stream, layer, reason) in keyframes.drain(..) {
            self.route_keyframe(&stream, layer, reason, now);
        }
        self.fx.keyframes = keyframes;
        for (role, took) in self.fx.joins.drain(..) {
            self.shared.metrics.observe_join(role, took);
        }
    }

    /// For a packet of a local publisher: the other workers with viewers of its stream, and
    /// whether the archive tap wants it (origin publishers only, not relays from upstream).
    fn publisher_routing(&self, pkt: &MediaPacket) -> (u64, bool) {
        match self.publishers.get(&pkt.stream_id).and_then(|&s| self.peers[s].as_ref()) {
            Some(p) => (p.stream.worker_mask.load(Ordering::Relaxed) & !(1u64 << self.index), !p.is_relay_in()),
            None => (0, false),
        }
    }

    /// Tells the archive tap about a publisher starting or leaving: now, or as soon as the tap
    /// has room (before any further packet).
    fn tap_event(&mut self, ev: TapEvent) {
        if self.shared.tap.is_none() {
            return;
        }
        if self.tap_backlog.len() >= MAX_TAP_BACKLOG {
            self.shared.metrics.dropped_tap.fetch_add(1, Ordering::Relaxed);
            warn!(event = ?ev, "archive tap backlog full; start/end event dropped");
            return;
        }
        self.tap_backlog.push_back(ev);
        self.flush_tap_backlog();
    }

    /// Sends held start/end events while the tap has room.
    fn flush_tap_backlog(&mut self) {
        let Some(tap) = &self.shared.tap else { return };
        if tap.is_closed() {
            self.tap_backlog.clear();
            return;
        }
        while !self.tap_backlog.is_empty() {
            let Ok(permit) = tap.try_reserve() else { return };
            if let Some(ev) = self.tap_backlog.pop_front() {
                permit.send(ev);
            }
        }
    }

    /// Reports a local publisher starting or leaving (webhooks).
    fn lifecycle_event(&self, ev: crate::lifecycle::StreamLifecycle) {
        if let Some(tx) = &self.shared.lifecycle
            && let Err(e) = tx.try_send(ev)
        {
            warn!(event = ?e.into_inner(), "stream lifecycle queue full; event dropped");
        }
    }

    /// A local viewer waits for its first frame of `layer`: start it from the stream's cached
    /// keyframe (kept by the worker its publisher is on), else ask the publisher for a keyframe.
    fn start_waiting_viewer(&mut self, id: SessionId, stream: &StreamShared, layer: u8, now: Instant) {
        if self.publishers.contains_key(&stream.id) {
            match self.cached_start(stream.id, layer, now) {
                Some(packets) => {
                    let packets = packets.to_vec();
                    self.start_from(id, &packets, now);
                }
                None => {
                    self.request_local_keyframe(stream.id, layer, KeyframeReason::Join, now);
                }
            }
            return;
        }
        let w = stream.publisher_worker.load(Ordering::Acquire);
        if w != self.index
            && let Some(tx) = self.shared.workers.get(w)
        {
            let _ = tx.try_send(Command::StartViewer { stream_id: stream.id, layer, session: id, worker: self.index });
        }
    }

    /// The cached packets of a local stream's `layer` to start a viewer from now, if usable.
    fn cached_start(&self, stream_id: u64, layer: u8, now: Instant) -> Option<&[Arc<MediaPacket>]> {
        let feeding = self.publishers.get(&stream_id).and_then(|&slot| self.peers[slot].as_ref())?;
        let generation = feeding.generation()?;
        match self.gops.get(&stream_id).map(|g| g.start(layer, generation, now)) {
            Some(Ok(packets)) => Some(packets),
            why => {
                debug!(stream_id, layer, why = ?why.and_then(Result::err), "no usable cached keyframe");
                None
            }
        }
    }

    /// Starts a local viewer waiting for its first frame, or a layer of a new relay edge, from
    /// cached packets; false when it is gone or no longer waits for them. A relay edge that cannot
    /// start from them (the layer's live packets went out first) asks the publisher for a
    /// keyframe of the layer instead; a viewer asks on its next housekeeping if it still waits.
    fn start_from(&mut self, id: SessionId, packets: &[Arc<MediaPacket>], now: Instant) -> bool {
        let Some(&slot) = self.by_id.get(&id) else { return false };
        let Some(peer) = self.peers[slot].as_mut() else { return false };
        let outer = self.busy.replace(slot);
        let started = peer.start_from(packets);
        self.busy = outer;
        let stream = peer.stream.clone();
        if started {
            stream.counters.cached_starts.fetch_add(1, Ordering::Relaxed);
            debug!(session = id, packets = packets.len(), "session started from the cached keyframe");
        } else if peer.is_relay_out()
            && let Some(first) = packets.first()
        {
            self.route_keyframe(&stream, first.layer, KeyframeReason::Join, now);
        }
        started
    }

    fn fan_out_local(&mut self, pkt: &Arc<MediaPacket>) {
        if self.publishers.contains_key(&pkt.stream_id) {
            self.gops.entry(pkt.stream_id).or_default().push(pkt);
        }
        let Some(list) = self.viewers.get(&pkt.stream_id) else { return };
        let outer = self.busy;
        for &slot in list {
            if let Some(p) = self.peers[slot].as_mut() {
                self.busy = Some(slot);
                p.forward(pkt);
            }
        }
        self.busy = outer;
    }

    /// Hands a keyframe request to the stream's publisher if it lives on this worker.
    fn request_local_keyframe(&mut self, stream_id: u64, layer: u8, reason: KeyframeReason, now: Instant) -> bool {
        let Some(p) = self.publishers.get(&stream_id).and_then(|&slot| self.peers[slot].as_mut()) else { return false };
        p.request_keyframe(layer, reason, now);
        true
    }

    fn route_keyframe(&mut self, stream: &StreamShared, layer: u8, reason: KeyframeReason, now: Instant) {
        if self.request_local_keyframe(stream.id, layer, reason, now) {
            return;
        }
        // The publisher lives on another worker.
        let w = stream.publisher_worker.load(Ordering::Acquire);
        if w != self.index
            && let Some(tx) = self.shared.workers.get(w)
        {
            let _ = tx.try_send(Command::Keyframe { stream_id: stream.id, layer, reason });
        }
    }

    /// Handles a command; false means stop.
    fn handle_command(&mut self, cmd: Command) -> bool {
        let now = Instant::now();
        self.busy_session = match &cmd {
            Command::Publish { id, .. }
            | Command::Subscribe { id, .. }
            | Command::Trickle { id, .. }
            | Command::SetLayer { id, .. }
            | Command::RelayOffer { id, .. }
            | Command::RelayAnswer { id, .. }
            | Command::RelayServe { id, .. }
            | Command::Close { id, .. } => Some(*id),
            _ => None,
        };
        let go_on = self.handle_command_inner(cmd, now);
        self.busy_session = None;
        go_on
    }

    fn handle_command_inner(&mut self, cmd: Command, now: Instant) -> bool {
        match cmd {
            Command::Media(pkt) => self.fan_out_local(&pkt),
            Command::Keyframe { stream_id, layer, reason } => {
                self.request_local_keyframe(stream_id, layer, reason, now);
            }
            Command::StartViewer { stream_id, layer, session, worker } => {
                let packets = self.cached_start(stream_id, layer, now).map(<[_]>::to_vec);
                let sent = packets.is_some_and(|packets| {
                    self.shared.workers.get(worker).is_some_and(|tx| tx.try_send(Command::CachedStart { session, packets }).is_ok())
                });
                if !sent {
                    self.request_local_keyframe(stream_id, layer, KeyframeReason::Join, now);
                }
            }
            Command::CachedStart { session, packets } => {
                self.start_from(session, &packets, now);
            }
            Command::Publish { id, entry, offer, video, backup, reply } => {
                let _ = reply.send(self.start_publisher(id, entry, offer, video, backup, now));
            }
            Command::Subscribe { id, entry, offer, pref, video, reply } => {
                let _ = reply.send(self.start_viewer(id, entry, offer, pref, video, now));
            }
            Command::Trickle { id, candidates } => {
                if let Some(p) = self.by_id.get(&id).and_then(|&s| self.peers[s].as_mut()) {
                    for c in candidates {
                        if p.remote_candidates >= crate::peer::MAX_REMOTE_CANDIDATES {
                            self.shared.metrics.ignored_candidates.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        p.remote_candidates += 1;
                        p.rtc.add_remote_candidate(c);
                    }
                    p.dirty = true;
                }
            }
            Command::SetLayer { id, pref } => {
                if let Some(&slot) = self.by_id.get(&id) {
                    if let Some(p) = self.peers[slot].as_mut() {
                        p.set_preference(pref, now, &mut self.fx);
                        p.dirty = true;
                    }
                    self.deliver(now);
                }
            }
            Command::RelayOffer { id, entry, simulcast, reply } => {
                let _ = reply.send(self.relay_offer(id, entry, simulcast, now));
            }
            Command::RelayAnswer { id, answer, standby, reply } => {
                let _ = reply.send(self.relay_answer(id, answer, standby, now));
            }
            Command::RelayServe { id, entry, offer, video_mids, reply } => {
                let _ = reply.send(self.start_relay_out(id, entry, offer, &video_mids, now));
            }
            Command::Close { id, done } => {
                if let Some(&slot) = self.by_id.get(&id) {
                    if let Some(p) = self.peers[slot].as_mut() {
                        p.rtc.disconnect();
                    }
                    self.drive(slot, now);
                    self.remove(slot);
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Command::Shutdown => return false,
        }
        true
    }

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
        if viewer {
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
            self.remove(slot);
            return Err(SfuError::BadSdp(e.to_string()));
        }
        peer.set_relay_simulcast(simulcast);
        let stream = peer.stream.clone();
        if standby {
            return self.relay_standby(slot, &stream);
        }
        stream.reset_counters();
        stream.simulcast.store(simulcast, Ordering::Relaxed);
        let generation = stream.generation.fetch_add(1, Ordering::AcqRel) + 1;
        peer.set_generation(generation);
        peer.dirty = true;
        let _ = now;
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
    fn relay_standby(&mut self, slot: usize, stream: &Arc<StreamShared>) -> Result<(), SfuError> {
        let feeder = self.publishers.get(&stream.id).copied().filter(|&f| self.peers[f].as_ref().is_some_and(Peer::is_relay_in));
        let Some(feeder) = feeder else {
            // The relay it was to stand beside left meanwhile: the node's cluster attaches anew.
            self.remove(slot);
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
        now: Instant,
    ) -> Result<String, SfuError> {
        let stream = entry.stream.clone();
        let mut rtc = self.new_rtc_with(now, stream.codec(), false, None, true);
        let answer = self.negotiate(&mut rtc, offer)?;
        let mut mids = [None; crate::layer::MAX_LAYERS];
        for (slot, m) in mids.iter_mut().zip(video_mids) {
            *slot = Some(Mid::from(m.as_str()));
        }
        let peer = Peer::relay_out(id, rtc, stream.clone(), entry.events, mids, now);
        let slot = self.insert(peer);
        self.viewers.entry(stream.id).or_default().push(slot);
        stream.worker_mask.fetch_or(1 << self.index, Ordering::AcqRel);
        let children = stream.relay_children.fetch_add(1, Ordering::AcqRel) + 1;
        info!(session = id, stream = %stream.name, worker = self.index, relay_children = children, "relay to downstream node created");
        Ok(answer)
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
                self.peers[s] = Some(peer);
                s
            }
            None => {
                self.peers.push(Some(peer));
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
        let mut rtc = self.new_rtc(now, stream.codec(), true, video.as_ref());
        let answer = self.negotiate(&mut rtc, offer)?;
        let forwarder = Forwarder::new(SelectorConfig::default(), pref);
        let peer = Peer::viewer(id, rtc, stream.clone(), entry.events, forwarder, entry.layer, now);
        let slot = self.insert(peer);
        self.viewers.entry(stream.id).or_default().push(slot);
        stream.worker_mask.fetch_or(1 << self.index, Ordering::AcqRel);
        let count = stream.viewers.fetch_add(1, Ordering::AcqRel) + 1;
        info!(session = id, stream = %stream.name, worker = self.index, viewers = count, "viewer session created");
        self.shared.registry.broadcast(&stream.name, &SessionEvent::Viewers { count });
        Ok(answer)
    }

    /// Removes a peer and updates the registry, stream state and event channels.
    fn remove(&mut self, slot: usize) {
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
            self.publisher_ended(slot, &peer);
        } else {
            if let Some(list) = self.viewers.get_mut(&stream.id) {
                list.retain(|s| *s != slot);
                if list.is_empty() {
                    self.viewers.remove(&stream.id);
                    stream.worker_mask.fetch_and(!(1u64 << self.index), Ordering::AcqRel);
                }
            }
            if peer.is_relay_out() {
                let children = stream.relay_children.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
                info!(session = peer.id, stream = %stream.name, relay_children = children, "relay to downstream node ended");
                return;
            }
            let count = stream.viewers.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
            info!(session = peer.id, stream = %stream.name, viewers = count, "viewer session ended");
            self.shared.registry.broadcast(&stream.name, &SessionEvent::Viewers { count });
        }
    }
}

/// Sends the queued datagrams and accounts for them.
fn flush(batch: &mut SendBatch, socket: &UdpSocket, shared: &Shared) {
    if batch.is_empty() {
        return;
    }
    #[cfg(target_os = "linux")]
    let f = {
        use std::os::fd::AsRawFd;
        batch.flush(socket.as_raw_fd())
    };
    #[cfg(not(target_os = "linux"))]
    let f = {
        let _ = socket;
        batch.flush_each(|data, to| socket.try_send_to(data, to).is_ok())
    };
    let m = &shared.metrics;
    m.egress_packets.fetch_add(f.sent as u64, Ordering::Relaxed);
    m.egress_bytes.fetch_add(f.bytes as u64, Ordering::Relaxed);
    m.egress_messages.fetch_add(f.messages as u64, Ordering::Relaxed);
    if f.dropped > 0 {
        m.dropped_send.fetch_add(f.dropped as u64, Ordering::Relaxed);
        debug!(dropped = f.dropped, "udp sends dropped");
    }
}
