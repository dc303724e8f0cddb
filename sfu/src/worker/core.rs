//! The sans-IO core of a media worker: its peers (str0m sessions) and routing tables, driven
//! by what it is handed and telling what to send.
//!
//! Inputs: [`WorkerCore::handle_datagram`] (one datagram from the socket),
//! [`WorkerCore::handle_command`] (a [`Command`] from signaling or another worker) and
//! [`WorkerCore::handle_timeout`] (time passed: peers' timers, housekeeping, failover checks,
//! expiry). Each takes the time it happens at; the core reads no clock of its own unless given
//! one ([`WorkerCore::set_wall_clock`], which only bounds how far str0m's pacer runs ahead
//! while one peer's packets leave).
//!
//! Outputs:
//! - datagrams, handed to a [`Transmits`] as they are produced (the shell's send batch, which
//!   it flushes to the socket; a list in tests);
//! - the next wake-up, [`WorkerCore::poll_timeout`];
//! - side effects that still go through the structures shared with the signaling handle and
//!   the other workers ([`crate::Shared`]), as they did before the split, since moving them
//!   would reach into every caller: session events (each session's broadcast channel and the
//!   registry), node and stream counters (atomics in [`crate::Metrics`] and
//!   [`crate::stream::StreamShared`]), the archive tap and lifecycle queues, and media handoffs
//!   and keyframe requests to other workers (their command queues).
//!
//! A peer's own work for the worker comes back from it as values: [`crate::peer::Effects`]
//! (packets to fan out, keyframe requests, joining viewers, session events, join times), which
//! the core routes ([`super::routing`]), and counter deltas ([`crate::metrics::LocalCounts`]),
//! which the core adds to the stream's counters every housekeeping interval, and why its
//! session expires ([`crate::peer::Expiry`]), which the core logs before dropping it. A peer still
//! writes its stream's state that the API shows (layer bitrates, activity, sizes, packet
//! counts, codec) directly.
//!
//! Session set-up (offers, answers, peer creation and removal) is in the parent module, and
//! backup-ingest switching in [`super::sources`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::net::{DatagramSend, Protocol, Receive};
use str0m::{Input, Output};
use tracing::{debug, info, warn};

use super::sources::{FAILOVER_CHECK_INTERVAL, Sources};
use super::{Command, MAX_IMMEDIATE, PACER_IMMEDIATE, PANIC_QUARANTINE, PendingRelay};
use crate::Shared;
use crate::gop::GopCache;
use crate::keyframe::KeyframeReason;
use crate::peer::{Effects, Expiry, Peer};
use crate::stream::SessionId;
use crate::tap::TapEvent;

/// Where the core's datagrams go, in the order it produces them.
pub(crate) trait Transmits {
    /// Queues one datagram for `destination`.
    fn transmit(&mut self, destination: SocketAddr, contents: DatagramSend);
}

/// The peers and routing of one media worker, without its socket: see the module docs.
pub(crate) struct WorkerCore {
    /// The worker's index among the node's workers.
    pub(super) index: usize,
    /// The worker's socket address: every datagram's destination, and the host candidate.
    pub(super) local: SocketAddr,
    /// What the workers and the signaling handle share (registry, metrics, channels).
    pub(super) shared: Arc<Shared>,
    /// The real clock, read while a peer's paced packets leave (see [`WorkerCore::drive`]);
    /// `None` keeps the core on the times it is handed (virtual time in tests).
    pub(super) wall_clock: Option<fn() -> Instant>,
    /// The worker's peers; a removed one leaves its slot empty for reuse.
    pub(super) peers: Vec<Option<Box<Peer>>>,
    /// Peer slots by session id.
    pub(super) by_id: HashMap<SessionId, usize>,
    /// Peer slots by the remote address their datagrams came from.
    pub(super) by_addr: HashMap<SocketAddr, usize>,
    /// Local viewers (peer slots) per stream id.
    pub(super) viewers: HashMap<u64, Vec<usize>>,
    /// Local publisher slot per stream id: the source that feeds the stream.
    pub(super) publishers: HashMap<u64, usize>,
    /// The primary and backup publisher slots of each stream published on this worker (relays
    /// from upstream are not here).
    pub(super) sources: HashMap<u64, Sources>,
    /// When the backup-ingest sources are next checked for a switch.
    pub(super) next_failover_check: Instant,
    /// Per stream published on this worker: each layer's latest keyframe and the packets since
    /// it, to start joining viewers of any worker from ([`crate::gop`]).
    pub(super) gops: HashMap<u64, GopCache>,
    /// Per stream whose source just switched (backup ingest, a relay's standby): when, until the
    /// new source's first keyframe (logged with the time it took: how long viewers wait).
    pub(super) switched: HashMap<u64, Instant>,
    /// Work the peers' events created, taken by [`WorkerCore::deliver`].
    pub(super) fx: Effects,
    /// Relay-in sessions waiting for the upstream node's answer.
    pub(super) pending_relays: HashMap<SessionId, PendingRelay>,
    /// One DTLS certificate for all of this worker's peers: generating one per peer would cost
    /// a key generation on every join.
    pub(super) dtls_cert: Option<str0m::config::DtlsCert>,
    /// The peer slot being worked on: the one dropped if a panic interrupts the work.
    pub(super) busy: Option<usize>,
    /// The session a command is starting (its slot may not exist yet).
    pub(super) busy_session: Option<SessionId>,
    /// Until when the worker takes no new sessions after a panic.
    pub(super) quarantine: Option<Instant>,
    /// Whether sessions of [`super::FAULT_INJECTION_STREAM`] panic the worker.
    #[cfg(debug_assertions)]
    pub(super) inject_faults: bool,
    /// Publisher start/end events the archive tap had no room for yet: sent, in order, before
    /// any further packet, so that a full tap drops packets but never a stream's start or end.
    pub(super) tap_backlog: std::collections::VecDeque<TapEvent>,
}

impl WorkerCore {
    /// A core for worker `index` whose socket is `local`, at `now`.
    pub(crate) fn new(index: usize, local: SocketAddr, shared: Arc<Shared>, now: Instant) -> Self {
        WorkerCore {
            index,
            local,
            shared,
            wall_clock: None,
            peers: Vec::new(),
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            viewers: HashMap::new(),
            publishers: HashMap::new(),
            sources: HashMap::new(),
            next_failover_check: now,
            gops: HashMap::new(),
            switched: HashMap::new(),
            pending_relays: HashMap::new(),
            fx: Effects::default(),
            dtls_cert: str0m::crypto::from_feature_flags()
                .dtls_provider
                .generate_certificate(),
            busy: None,
            busy_session: None,
            quarantine: None,
            #[cfg(debug_assertions)]
            inject_faults: std::env::var("RELAYCAST_FAULT_INJECTION").is_ok_and(|v| v == "1"),
            tap_backlog: std::collections::VecDeque::new(),
        }
    }

    /// Lets [`WorkerCore::drive`] read the real clock while one peer's paced packets leave (the
    /// shell passes [`Instant::now`]).
    pub(crate) fn set_wall_clock(&mut self, clock: fn() -> Instant) {
        self.wall_clock = Some(clock);
    }

    /// The worker's index.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The worker's socket address.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Number of live peers.
    #[cfg(test)]
    pub(crate) fn peer_count(&self) -> usize {
        self.peers.iter().flatten().count()
    }

    /// One datagram from `source` to `destination` (the worker's socket) arrived at `now`: hands
    /// it to the peer it belongs to, polls that peer and routes what it produced.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        out: &mut dyn Transmits,
    ) {
        let m = &self.shared.metrics;
        m.ingress_packets.fetch_add(1, Ordering::Relaxed);
        m.ingress_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let Ok(contents) = data.try_into() else {
            m.dropped_unrecognised.fetch_add(1, Ordering::Relaxed);
            debug!(worker = self.index, %source, len = data.len(), "dropping unrecognised datagram");
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let slot = match self.by_addr.get(&source) {
            Some(&s)
                if self.peers[s]
                    .as_ref()
                    .is_some_and(|p| p.rtc.accepts(&input)) =>
            {
                Some(s)
            }
            _ => {
                let found = self
                    .peers
                    .iter()
                    .position(|p| p.as_ref().is_some_and(|p| p.rtc.accepts(&input)));
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
            self.shared
                .metrics
                .dropped_no_session
                .fetch_add(1, Ordering::Relaxed);
            debug!(worker = self.index, %source, "no session accepts datagram");
            return;
        };
        self.busy = Some(slot);
        let Some(peer) = self.peers[slot].as_mut() else {
            return;
        };
        peer.last_input = now;
        if peer.take_viewer_rtcp(data, now, &mut self.fx) {
            self.drive(slot, now, out);
            self.deliver(now);
            self.busy = None;
            return;
        }
        if let Err(e) = peer.rtc.handle_input(input) {
            warn!(session = peer.id, error = %e, hint = crate::dtls::failure_hint(&e.to_string()), "peer input error; disconnecting");
            peer.rtc.disconnect();
        }
        // str0m holds at most one received RTP packet until it is polled: poll right away.
        self.drive(slot, now, out);
        self.deliver(now);
        self.busy = None;
    }

    /// Time passed until `now`: polls every peer that has work (a timer due, or input and
    /// writes since its last poll), runs housekeeping, delivers what the peers produce, checks
    /// backup-ingest sources and drops expired sessions. Call it after any other input too:
    /// that input leaves peers to poll (viewers a packet was written to).
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut dyn Transmits) {
        self.flush_tap_backlog();
        // Several rounds: fanning out marks viewers dirty, which are then polled in the next round.
        for _round in 0..4 {
            let mut any = false;
            for slot in 0..self.peers.len() {
                let Some(p) = self.peers[slot].as_mut() else {
                    continue;
                };
                let due = p.next_timeout <= now;
                if !(p.dirty || due) {
                    continue;
                }
                any = true;
                self.busy = Some(slot);
                if due {
                    p.handle_timeout(now);
                }
                if p.housekeeping(now, &mut self.fx) {
                    // The peer's counter deltas go to its stream's counters.
                    p.local.flush(&p.stream.counters);
                }
                self.drive(slot, now, out);
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
            let expiry = self.peers[slot]
                .as_ref()
                .and_then(|p| Some((p.id, p.expiry(now)?)));
            if let Some((id, why)) = expiry {
                match why {
                    Expiry::Dead => {}
                    Expiry::NeverConnected => {
                        info!(session = id, "session never connected; dropping")
                    }
                    Expiry::Silent => info!(
                        session = id,
                        "nothing received from the peer for 10 s; dropping"
                    ),
                    Expiry::Disconnected => {
                        info!(session = id, "session disconnected too long; dropping")
                    }
                }
                self.remove(slot, now);
            }
        }
        self.busy = None;
        if self.quarantine.is_some_and(|t| now >= t) {
            self.quarantine = None;
            self.shared.worker_healthy[self.index].store(true, Ordering::Relaxed);
            info!(worker = self.index, "media worker takes new sessions again");
        }
    }

    /// When the core next wants [`WorkerCore::handle_timeout`], given the time of the last
    /// call: a peer's timer, the next housekeeping, and at most 50 ms from then.
    pub(crate) fn poll_timeout(&self, now: Instant) -> Instant {
        let mut next = now + Duration::from_millis(50);
        for p in self.peers.iter().flatten() {
            next = next.min(p.next_timeout);
        }
        next.min(now + crate::peer::HOUSEKEEPING_INTERVAL)
    }

    /// Ends every session (each peer says goodbye through `out`) before the worker stops.
    pub(crate) fn shutdown(&mut self, now: Instant, out: &mut dyn Transmits) {
        for slot in 0..self.peers.len() {
            if let Some(p) = self.peers[slot].as_mut() {
                p.rtc.disconnect();
                self.drive(slot, now, out);
            }
            self.remove(slot, now);
        }
    }

    /// After a panic: counts it, drops the peer (or the session being started) that caused it,
    /// and stops taking new sessions for a while.
    pub(crate) fn recover(&mut self, payload: &(dyn std::any::Any + Send), now: Instant) {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        self.shared
            .metrics
            .worker_panics
            .fetch_add(1, Ordering::Relaxed);
        let culprit = self.busy.take().or_else(|| {
            self.busy_session
                .take()
                .and_then(|id| self.by_id.get(&id).copied())
        });
        self.busy_session = None;
        let session = culprit
            .and_then(|s| self.peers.get(s))
            .and_then(|p| p.as_ref())
            .map(|p| p.id);
        tracing::error!(worker = self.index, ?session, panic = %what, "media worker panicked; dropping the session that caused it");
        if let Some(slot) = culprit {
            self.evict(slot, now);
        }
        self.quarantine = Some(now + PANIC_QUARANTINE);
        self.shared.worker_healthy[self.index].store(false, Ordering::Relaxed);
    }

    /// Removes a peer after a panic; should the removal panic too, the peer is dropped bare.
    fn evict(&mut self, slot: usize, now: Instant) {
        let removed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.remove(slot, now)));
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
            self.sources
                .retain(|_, s| s.primary.is_some() || s.backup.is_some());
        }
    }

    /// Panics on purpose for a session of [`super::FAULT_INJECTION_STREAM`] when enabled.
    #[cfg(debug_assertions)]
    fn maybe_inject_fault(&self, slot: usize) {
        if self.inject_faults
            && let Some(p) = self.peers.get(slot).and_then(Option::as_ref)
            && p.stream.name == super::FAULT_INJECTION_STREAM
        {
            panic!("injected fault for session {}", p.id);
        }
    }

    /// Polls one peer until str0m wants a timeout that is not yet due.
    ///
    /// str0m's pacer releases one packet per timeout and asks for the next timeout a microsecond
    /// later. Such immediate timeouts are handled here, so that a peer's queued packets (a frame
    /// for a viewer) leave back to back: consecutive in the send batch, they go out as one GSO
    /// message, and the peer is not visited again by the next loop turns for each packet.
    pub(super) fn drive(&mut self, slot: usize, now: Instant, out: &mut dyn Transmits) {
        let outer = self.busy.replace(slot);
        #[cfg(debug_assertions)]
        self.maybe_inject_fault(slot);
        self.drive_peer(slot, now, out);
        self.busy = outer;
    }

    /// [`WorkerCore::drive`] without the panic bookkeeping.
    fn drive_peer(&mut self, slot: usize, now: Instant, out: &mut dyn Transmits) {
        let Some(p) = self.peers[slot].as_mut() else {
            return;
        };
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
                    p.rtc_timeout = t;
                    if t > clock {
                        // Sending took time: compare with the clock, so that str0m's time never
                        // runs more than PACER_IMMEDIATE ahead of it.
                        if let Some(wall) = self.wall_clock {
                            clock = wall().max(clock);
                        }
                    }
                    if t.saturating_duration_since(clock) <= PACER_IMMEDIATE
                        && immediate < MAX_IMMEDIATE
                    {
                        immediate += 1;
                        p.handle_timeout(t.max(clock));
                        continue;
                    }
                    p.next_timeout = p.held_keyframe_due().map_or(t, |k| k.min(t));
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    p.local.egress_packets += 1;
                    p.local.egress_bytes += t.contents.len() as u64;
                    // DTLS and SRTP go to the selected pair (STUN also to candidates checked).
                    if t.contents.first().is_some_and(|b| *b >= 20) {
                        p.remote = Some(t.destination);
                    }
                    out.transmit(t.destination, t.contents);
                }
                Ok(Output::Event(e)) => p.handle_event(e, now, &mut self.fx),
                Err(e) => {
                    warn!(session = p.id, error = %e, hint = crate::dtls::failure_hint(&e.to_string()), "peer failed; disconnecting");
                    p.rtc.disconnect();
                }
            }
        }
        Self::drive_egress(p, clock, self.wall_clock, out);
    }

    /// Sends what a viewer's own send path has due, paced packets due within
    /// [`PACER_IMMEDIATE`] included (back to back in the batch, like str0m's above).
    fn drive_egress(p: &mut Peer, mut clock: Instant, wall_clock: Option<fn() -> Instant>, out: &mut dyn Transmits) {
        let Some(remote) = p.remote else { return };
        let mut immediate = 0;
        let next;
        let Some(e) = p.egress_mut() else { return };
        loop {
            while let Some(d) = e.poll_datagram(clock) {
                out.transmit(remote, d.into());
            }
            let t = e.poll_timeout();
            if t > clock
                && let Some(wall) = wall_clock
            {
                clock = wall().max(clock);
            }
            if t.saturating_duration_since(clock) <= PACER_IMMEDIATE && immediate < MAX_IMMEDIATE {
                immediate += 1;
                clock = t.max(clock);
                continue;
            }
            next = t;
            break;
        }
        let counts = e.take_counts();
        p.next_timeout = p.next_timeout.min(next);
        p.local.egress_packets += counts.datagrams;
        p.local.egress_bytes += counts.bytes;
        p.local.viewer_nacks += counts.nacks;
        p.local.egress_queue_full += counts.dropped_full;
        p.local.egress_seal_failed += counts.seal_errors;
        p.local.resend_over_budget += counts.resends_over_budget;
        p.local.viewer_rtcp_over_limit += counts.rtcp_over_limit;
        if counts.dropped_full > 0 || counts.seal_errors > 0 || counts.resends_over_budget > 0 || counts.rtcp_over_limit > 0 {
            debug!(
                session = p.id,
                queue_full = counts.dropped_full,
                seal_failed = counts.seal_errors,
                resend_over_budget = counts.resends_over_budget,
                rtcp_over_limit = counts.rtcp_over_limit,
                "own send path dropped packets at its limits"
            );
        }
    }

    /// A command from signaling or another worker, at `now`. [`Command::Shutdown`] is the
    /// shell's to act on (it stops the loop); the core ignores it.
    pub(crate) fn handle_command(&mut self, now: Instant, cmd: Command, out: &mut dyn Transmits) {
        self.busy_session = match &cmd {
            Command::Publish { id, .. }
            | Command::Subscribe { id, .. }
            | Command::Trickle { id, .. }
            | Command::SetLayer { id, .. }
            | Command::RelayOffer { id, .. }
            | Command::RelayAnswer { id, .. }
            | Command::RelayServe { id, .. }
            | Command::Handover { id }
            | Command::Close { id, .. } => Some(*id),
            _ => None,
        };
        self.handle_command_inner(cmd, now, out);
        self.busy_session = None;
    }

    /// [`WorkerCore::handle_command`] without the panic bookkeeping.
    fn handle_command_inner(&mut self, cmd: Command, now: Instant, out: &mut dyn Transmits) {
        match cmd {
            Command::Media(pkt) => self.fan_out_local(&pkt, now),
            Command::Keyframe {
                stream_id,
                layer,
                reason,
            } => {
                self.request_local_keyframe(stream_id, layer, reason, now);
            }
            Command::StartViewer {
                stream_id,
                layer,
                session,
                worker,
            } => {
                let packets = self.cached_start(stream_id, layer, now).map(<[_]>::to_vec);
                let sent = packets.is_some_and(|packets| {
                    self.shared.workers.get(worker).is_some_and(|tx| {
                        tx.try_send(Command::CachedStart { session, packets })
                            .is_ok()
                    })
                });
                if !sent {
                    self.request_local_keyframe(stream_id, layer, KeyframeReason::Join, now);
                }
            }
            Command::CachedStart { session, packets } => {
                self.start_from(session, &packets, now);
            }
            Command::Publish {
                id,
                entry,
                offer,
                video,
                backup,
                reply,
            } => {
                let _ = reply.send(self.start_publisher(id, entry, offer, video, backup, now));
            }
            Command::Subscribe {
                id,
                entry,
                offer,
                pref,
                video,
                reply,
            } => {
                let _ = reply.send(self.start_viewer(id, entry, offer, pref, video, now));
            }
            Command::Trickle { id, candidates } => {
                if let Some(p) = self.by_id.get(&id).and_then(|&s| self.peers[s].as_mut()) {
                    for c in candidates {
                        if p.remote_candidates >= crate::peer::MAX_REMOTE_CANDIDATES {
                            self.shared
                                .metrics
                                .ignored_candidates
                                .fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        p.remote_candidates += 1;
                        p.rtc.add_remote_candidate(c);
                    }
                    p.dirty = true;
                }
            }
            Command::Handover { id } => {
                if let Some(&slot) = self.by_id.get(&id) {
                    self.handover(slot, now);
                    self.deliver(now);
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
            Command::RelayOffer {
                id,
                entry,
                simulcast,
                reply,
            } => {
                let _ = reply.send(self.relay_offer(id, entry, simulcast, now));
            }
            Command::RelayAnswer {
                id,
                answer,
                standby,
                reply,
            } => {
                let _ = reply.send(self.relay_answer(id, answer, standby, now));
            }
            Command::RelayServe {
                id,
                entry,
                offer,
                video_mids,
                standby,
                reply,
            } => {
                let _ = reply.send(self.start_relay_out(id, entry, offer, &video_mids, standby, now));
            }
            Command::Close { id, done } => {
                if let Some(&slot) = self.by_id.get(&id) {
                    if let Some(p) = self.peers[slot].as_mut() {
                        p.rtc.disconnect();
                    }
                    self.drive(slot, now, out);
                    self.deliver(now);
                    self.remove(slot, now);
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Command::Shutdown => {}
        }
    }
}
