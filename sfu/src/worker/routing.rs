//! Routing on a worker: what a peer's [`crate::peer::Effects`] become. Packets fan out to the
//! local viewers and relay edges of their stream (and to the workers with viewers of it, and the
//! archive tap), joining viewers start from the cached keyframe or ask the publisher for one,
//! and keyframe requests reach the stream's publisher, here or on its worker.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::core::WorkerCore;
use super::{Command, MAX_TAP_BACKLOG};
use crate::keyframe::KeyframeReason;
use crate::packet::MediaPacket;
use crate::stream::{SessionId, StreamShared};
use crate::tap::TapEvent;

impl WorkerCore {
    /// Fans out packets and routes keyframe requests produced by the last drive.
    pub(super) fn deliver(&mut self, now: Instant) {
        // A backup-ingest source that took its stream over on its keyframe: the stream is its
        // from that packet on (its start event goes to the tap before the packet).
        let took_over = std::mem::take(&mut self.fx.took_over);
        for id in took_over {
            if let Some(&slot) = self.by_id.get(&id) {
                self.took_over(slot, now);
            }
        }
        // In arrival order: a reordered keyframe start would break a layer switch.
        let mut media = std::mem::take(&mut self.fx.media);
        for pkt in media.drain(..) {
            if pkt.keyframe_start
                && let Some(at) = self.switched.remove(&pkt.stream_id)
            {
                let ms = now.saturating_duration_since(at).as_secs_f64() * 1000.0;
                let name = self.publishers.get(&pkt.stream_id).and_then(|&s| self.peers[s].as_ref()).map(|p| p.stream.name.clone());
                info!(stream = name.as_deref().unwrap_or("?"), layer = pkt.layer, after_ms = format!("{ms:.1}"), "first keyframe from the stream's new source");
            }
            self.fan_out_local(&pkt, now);
            let (mask, tapped) = self.publisher_routing(&pkt);
            if tapped
                && let Some(tap) = &self.shared.tap
                && (!self.tap_backlog.is_empty()
                    || tap.try_send(TapEvent::Packet(pkt.clone())).is_err())
            {
                self.shared
                    .metrics
                    .dropped_tap
                    .fetch_add(1, Ordering::Relaxed);
            }
            if mask != 0 {
                for (w, tx) in self.shared.workers.iter().enumerate() {
                    if w != self.index
                        && mask & (1 << w) != 0
                        && tx.try_send(Command::Media(pkt.clone())).is_err()
                    {
                        self.shared
                            .metrics
                            .dropped_handoff
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.fx.media = media;
        let mut resumed = std::mem::take(&mut self.fx.resumed);
        for id in resumed.drain(..) {
            self.relay_resumed(id);
        }
        self.fx.resumed = resumed;
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
        for (id, ev) in self.fx.events.drain(..) {
            if let Some(p) = self.by_id.get(&id).and_then(|&s| self.peers[s].as_ref()) {
                p.note_event(&ev);
                let _ = p.events.send(ev);
            }
        }
    }

    /// For a packet of a local publisher: the other workers with viewers of its stream, and
    /// whether the archive tap wants it (origin publishers only, not relays from upstream).
    pub(super) fn publisher_routing(&self, pkt: &MediaPacket) -> (u64, bool) {
        match self
            .publishers
            .get(&pkt.stream_id)
            .and_then(|&s| self.peers[s].as_ref())
        {
            Some(p) => (
                p.stream.worker_mask.load(Ordering::Relaxed) & !(1u64 << self.index),
                !p.is_relay_in(),
            ),
            None => (0, false),
        }
    }

    /// Tells the archive tap about a publisher starting or leaving: now, or as soon as the tap
    /// has room (before any further packet).
    pub(super) fn tap_event(&mut self, ev: TapEvent) {
        if self.shared.tap.is_none() {
            return;
        }
        if self.tap_backlog.len() >= MAX_TAP_BACKLOG {
            self.shared
                .metrics
                .dropped_tap
                .fetch_add(1, Ordering::Relaxed);
            warn!(event = ?ev, "archive tap backlog full; start/end event dropped");
            return;
        }
        self.tap_backlog.push_back(ev);
        self.flush_tap_backlog();
    }

    /// Sends held start/end events while the tap has room.
    pub(super) fn flush_tap_backlog(&mut self) {
        let Some(tap) = &self.shared.tap else { return };
        if tap.is_closed() {
            self.tap_backlog.clear();
            return;
        }
        while !self.tap_backlog.is_empty() {
            let Ok(permit) = tap.try_reserve() else {
                return;
            };
            if let Some(ev) = self.tap_backlog.pop_front() {
                permit.send(ev);
            }
        }
    }

    /// Reports a local publisher starting or leaving (webhooks).
    pub(super) fn lifecycle_event(&self, ev: crate::lifecycle::StreamLifecycle) {
        if let Some(tx) = &self.shared.lifecycle
            && let Err(e) = tx.try_send(ev)
        {
            warn!(event = ?e.into_inner(), "stream lifecycle queue full; event dropped");
        }
    }

    /// A local viewer waits for its first frame of `layer`: start it from the stream's cached
    /// keyframe (kept by the worker its publisher is on), else ask the publisher for a keyframe.
    pub(super) fn start_waiting_viewer(
        &mut self,
        id: SessionId,
        stream: &StreamShared,
        layer: u8,
        now: Instant,
    ) {
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
            let _ = tx.try_send(Command::StartViewer {
                stream_id: stream.id,
                layer,
                session: id,
                worker: self.index,
            });
        }
    }

    /// The cached packets of a local stream's `layer` to start a viewer from now, if usable.
    pub(super) fn cached_start(
        &self,
        stream_id: u64,
        layer: u8,
        now: Instant,
    ) -> Option<&[Arc<MediaPacket>]> {
        let feeding = self
            .publishers
            .get(&stream_id)
            .and_then(|&slot| self.peers[slot].as_ref())?;
        let generation = feeding.generation()?;
        match self
            .gops
            .get(&stream_id)
            .map(|g| g.start(layer, generation, now))
        {
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
    pub(super) fn start_from(
        &mut self,
        id: SessionId,
        packets: &[Arc<MediaPacket>],
        now: Instant,
    ) -> bool {
        let Some(&slot) = self.by_id.get(&id) else {
            return false;
        };
        let Some(peer) = self.peers[slot].as_mut() else {
            return false;
        };
        let outer = self.busy.replace(slot);
        let started = peer.start_from(packets, now);
        self.busy = outer;
        let stream = peer.stream.clone();
        if started {
            stream
                .counters
                .cached_starts
                .fetch_add(1, Ordering::Relaxed);
            debug!(
                session = id,
                packets = packets.len(),
                "session started from the cached keyframe"
            );
        } else if peer.is_relay_out()
            && let Some(first) = packets.first()
        {
            self.route_keyframe(&stream, first.layer, KeyframeReason::Join, now);
        }
        started
    }

    /// Keeps a local publisher's packet for joining viewers ([`crate::gop`]) and hands it to
    /// each local viewer and relay edge of its stream (their forwarders decide what to send).
    pub(super) fn fan_out_local(&mut self, pkt: &Arc<MediaPacket>, now: Instant) {
        if self.publishers.contains_key(&pkt.stream_id) {
            self.gops.entry(pkt.stream_id).or_default().push(pkt);
        }
        let Some(list) = self.viewers.get(&pkt.stream_id) else {
            return;
        };
        let outer = self.busy;
        for &slot in list {
            if let Some(p) = self.peers[slot].as_mut() {
                self.busy = Some(slot);
                p.forward(pkt, now);
            }
        }
        self.busy = outer;
    }

    /// Hands a keyframe request to the stream's publisher if it lives on this worker.
    pub(super) fn request_local_keyframe(
        &mut self,
        stream_id: u64,
        layer: u8,
        reason: KeyframeReason,
        now: Instant,
    ) -> bool {
        let Some(p) = self
            .publishers
            .get(&stream_id)
            .and_then(|&slot| self.peers[slot].as_mut())
        else {
            return false;
        };
        p.request_keyframe(layer, reason, now);
        true
    }

    pub(super) fn route_keyframe(
        &mut self,
        stream: &StreamShared,
        layer: u8,
        reason: KeyframeReason,
        now: Instant,
    ) {
        if self.request_local_keyframe(stream.id, layer, reason, now) {
            return;
        }
        // The publisher lives on another worker.
        let w = stream.publisher_worker.load(Ordering::Acquire);
        if w != self.index
            && let Some(tx) = self.shared.workers.get(w)
        {
            let _ = tx.try_send(Command::Keyframe {
                stream_id: stream.id,
                layer,
                reason,
            });
        }
    }
}
