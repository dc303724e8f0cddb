//! Backup ingest on a worker: the primary and backup publisher slots of each stream, and the
//! switches between them that [`crate::failover::decide`] asks for (routing, the archive tap,
//! the API state, the switch count).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::WorkerCore;
use crate::peer::Peer;
use crate::failover::{Decision, Source};
use crate::stream::{SessionEvent, StreamShared};
use crate::tap::TapEvent;

/// How often a worker checks its streams' backup-ingest sources for a switch.
pub(super) const FAILOVER_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// A relay's standby that took its stream over and still sends nothing this long after the
/// switch is asked for keyframes again: the request that resumes its paused edge was lost.
pub(super) const RESUME_RETRY: Duration = Duration::from_millis(250);

/// The local publisher slots of one stream: its primary and its backup (backup ingest).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Sources {
    pub(super) primary: Option<usize>,
    pub(super) backup: Option<usize>,
}

impl Sources {
    pub(super) fn slot(&self, source: Source) -> Option<usize> {
        match source {
            Source::Primary => self.primary,
            Source::Backup => self.backup,
        }
    }

    pub(super) fn of(&self, slot: usize) -> Option<Source> {
        if self.primary == Some(slot) {
            Some(Source::Primary)
        } else if self.backup == Some(slot) {
            Some(Source::Backup)
        } else {
            None
        }
    }
}

impl WorkerCore {
    /// Records in the stream's state whether a backup stands by or feeds it (for the API).
    pub(super) fn update_backup_state(&self, stream: &StreamShared) {
        // A relay's standby upstream is not backup ingest: the API shows no source for it.
        let state = self
            .sources
            .get(&stream.id)
            .and_then(|s| s.backup)
            .filter(|b| !self.peers.get(*b).and_then(Option::as_ref).is_some_and(|p| p.is_relay_in()))
            .map(|b| self.publishers.get(&stream.id) == Some(&b));
        stream.set_backup_state(state);
    }

    /// Checks every stream with a primary and a backup publisher for a switch (see
    /// [`crate::failover::decide`]).
    pub(super) fn check_failover(&mut self, now: Instant) {
        self.retry_resume(now);
        let streams: Vec<(u64, Sources)> =
            self.sources.iter().filter(|(_, s)| s.primary.is_some() && s.backup.is_some()).map(|(k, v)| (*k, *v)).collect();
        for (_, src) in streams {
            let state = |slot: Option<usize>| slot.and_then(|s| self.peers.get(s)?.as_ref()?.source_state().copied());
            let (primary, backup) = (state(src.primary), state(src.backup));
            match crate::failover::decide(primary.as_ref(), backup.as_ref(), now) {
                Decision::Stay => {}
                Decision::SwitchNow(to) => {
                    let why = match to {
                        Source::Backup => "the primary sent nothing for 2 s",
                        Source::Primary => "the backup sent nothing for 2 s",
                    };
                    if let Some(slot) = src.slot(to) {
                        self.switch_to(slot, now, why);
                    }
                }
                Decision::SwitchAtKeyframe(to) => {
                    if let Some(p) = src.slot(to).and_then(|s| self.peers[s].as_mut()) {
                        info!(session = p.id, stream = %p.stream.name, source = to.as_str(), "source sends again; switching back to it at its next keyframe");
                        p.set_pending(true);
                        p.request_keyframes(now);
                    }
                }
                Decision::CancelPending(to) => {
                    if let Some(p) = src.slot(to).and_then(|s| self.peers[s].as_mut()) {
                        info!(session = p.id, stream = %p.stream.name, source = to.as_str(), "source stopped again before its keyframe; switch called off");
                        p.set_pending(false);
                    }
                }
            }
        }
    }

    /// Asks again for keyframes from each relay standby that took its stream over
    /// [`RESUME_RETRY`] ago or more and has sent nothing since (its upstream resumes the paused
    /// edge on the request; the throttle spaces the requests).
    fn retry_resume(&mut self, now: Instant) {
        let silent: Vec<usize> = self
            .switched
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= RESUME_RETRY)
            .filter_map(|(stream_id, at)| {
                let slot = *self.publishers.get(stream_id)?;
                let p = self.peers.get(slot)?.as_ref()?;
                let silent = p.is_relay_in() && p.source_state()?.last_media.is_none_or(|t| t < *at);
                silent.then_some(slot)
            })
            .collect();
        for slot in silent {
            if let Some(p) = self.peers[slot].as_mut() {
                debug!(session = p.id, stream = %p.stream.name, "nothing yet from the standby upstream since the switch: asking it for keyframes again");
                p.request_keyframes(now);
            }
        }
    }

    /// Makes the publisher in `slot` feed its stream at once (the one feeding it stands by) and
    /// asks it for keyframes: viewers resume audio at once and video at that keyframe.
    pub(super) fn switch_to(&mut self, slot: usize, now: Instant, why: &str) {
        let Some(stream_id) = self.peers.get(slot).and_then(Option::as_ref).map(|p| p.stream.id) else { return };
        let previous = self.publishers.get(&stream_id).copied();
        if previous == Some(slot) {
            return;
        }
        let previous_generation = previous.and_then(|o| self.peers[o].as_mut()).and_then(|p| {
            p.stand_by();
            p.generation()
        });
        if let Some(p) = self.peers[slot].as_mut() {
            p.feed();
            p.request_keyframes(now);
            p.dirty = true;
        }
        self.fed_by(slot, previous_generation, why, now);
    }

    /// A standing-by publisher took its stream over on its own keyframe (its packets feed the
    /// stream already): the one that fed it until now stands by.
    pub(super) fn took_over(&mut self, slot: usize, now: Instant) {
        let Some((stream_id, name, relayed)) =
            self.peers.get(slot).and_then(Option::as_ref).map(|p| (p.stream.id, p.stream.name.clone(), p.is_relay_in()))
        else {
            return;
        };
        let previous = self.publishers.get(&stream_id).copied().filter(|s| *s != slot);
        let previous_generation = previous.and_then(|o| self.peers[o].as_mut()).and_then(|p| {
            p.stand_by();
            p.generation()
        });
        let why = if relayed {
            // A planned move to the standby upstream: the two relays in change places, so that
            // the old one, still sending until the cluster closes it, is not switched back to.
            if let Some(s) = self.sources.get_mut(&stream_id)
                && s.backup == Some(slot)
            {
                s.backup = s.primary.take();
                s.primary = Some(slot);
                self.shared.registry.swap_standby(&name);
            }
            "the node moves to its standby upstream"
        } else {
            "it sends steadily again"
        };
        self.fed_by(slot, previous_generation, why, now);
    }

    /// Moves a relayed stream to its standby relay in (`slot`) while the relay in that feeds it
    /// still does: the standby asks its upstream for keyframes, which resumes its paused edge,
    /// and takes the stream over at the first one ([`WorkerCore::took_over`]), so viewers see
    /// no gap. The cluster closes the old relay in once the standby feeds the stream.
    pub(super) fn handover(&mut self, slot: usize, now: Instant) {
        let Some(p) = self.peers.get_mut(slot).and_then(Option::as_mut) else { return };
        let stream_id = p.stream.id;
        let standby = self.sources.get(&stream_id).is_some_and(|s| s.backup == Some(slot) && s.primary.is_some());
        if !p.is_relay_in() || !standby || self.publishers.get(&stream_id) == Some(&slot) {
            debug!(session = p.id, stream = %p.stream.name, "handover asked of a session that is not a standing-by relay in: ignored");
            return;
        }
        info!(session = p.id, stream = %p.stream.name, "moving the stream to its standby upstream at its first keyframe");
        p.set_pending(true);
        p.request_keyframes(now);
        p.dirty = true;
    }

    /// Bookkeeping once the publisher in `slot` feeds its stream: routing, the archive (the
    /// previous source's recording ends, a new one starts), the API state and the switch count.
    /// `previous_generation` is the source that fed the stream until now, if any.
    pub(super) fn fed_by(&mut self, slot: usize, previous_generation: Option<u32>, why: &str, now: Instant) {
        let Some(p) = self.peers.get(slot).and_then(Option::as_ref) else { return };
        let (id, stream, generation) = (p.id, p.stream.clone(), p.generation().unwrap_or(0));
        // A relayed stream is recorded and announced at its origin, not here.
        let relayed = p.is_relay_in();
        let source = self.sources.get(&stream.id).and_then(|s| s.of(slot)).unwrap_or(Source::Primary);
        self.publishers.insert(stream.id, slot);
        stream.publisher_worker.store(self.index, Ordering::Release);
        match previous_generation {
            Some(g) => {
                self.shared.metrics.source_switches.fetch_add(1, Ordering::Relaxed);
                self.switched.insert(stream.id, now);
                if relayed {
                    info!(session = id, stream = %stream.name, reason = why, "stream switched to its standby upstream");
                } else {
                    info!(session = id, stream = %stream.name, source = source.as_str(), reason = why, "stream switched to its {} publisher", source.as_str());
                    self.tap_event(TapEvent::Ended { stream_id: stream.id, generation: g });
                }
            }
            None => {
                info!(session = id, stream = %stream.name, source = source.as_str(), reason = why, "stream fed by its {} publisher", source.as_str());
                if !relayed {
                    self.lifecycle_event(crate::lifecycle::StreamLifecycle::Started { stream: stream.name.clone(), generation });
                }
                self.shared.registry.broadcast(&stream.name, &SessionEvent::Publisher { live: true });
            }
        }
        if !relayed {
            self.tap_event(TapEvent::Started { stream_id: stream.id, stream: stream.name.clone(), generation });
        }
        self.update_backup_state(&stream);
    }

    /// A publisher session of a stream on this worker ended: with the stream's other source
    /// still here (backup ingest) that one feeds the stream from now on; otherwise the stream
    /// ends (archive, webhooks, API state, its cached keyframes).
    pub(super) fn publisher_ended(&mut self, slot: usize, peer: &Peer, now: Instant) {
        let stream = peer.stream.clone();
        let source = self.sources.get_mut(&stream.id).and_then(|s| {
            let which = s.of(slot)?;
            match which {
                Source::Primary => s.primary = None,
                Source::Backup => s.backup = None,
            }
            Some(which)
        });
        let other = source.and_then(|w| self.sources.get(&stream.id)?.slot(w.other()));
        // A relay in that leaves hands its stream to its standby for good: the standby becomes
        // the primary, and the node's cluster may attach a new standby beside it.
        if peer.is_relay_in()
            && source == Some(Source::Primary)
            && let Some(standby) = other
            && let Some(s) = self.sources.get_mut(&stream.id)
        {
            s.primary = Some(standby);
            s.backup = None;
            self.shared.registry.promote_standby(&stream.name);
        }
        if self.sources.get(&stream.id).is_some_and(|s| s.primary.is_none() && s.backup.is_none()) {
            self.sources.remove(&stream.id);
        }
        let feeding = self.publishers.get(&stream.id) == Some(&slot);
        if let (true, Some(other)) = (feeding, other) {
            // Backup ingest: the stream's other source feeds it from now on.
            self.publishers.remove(&stream.id);
            let why = if source == Some(Source::Primary) { "the primary left" } else { "the backup left" };
            if let Some(p) = self.peers[other].as_mut() {
                p.feed();
                p.request_keyframes(now);
                p.dirty = true;
            }
            self.fed_by(other, peer.generation(), why, now);
        } else if feeding {
            self.publishers.remove(&stream.id);
            if !peer.is_relay_in() {
                let generation = peer.generation().unwrap_or_else(|| stream.generation.load(Ordering::Acquire));
                self.tap_event(TapEvent::Ended { stream_id: stream.id, generation });
                self.lifecycle_event(crate::lifecycle::StreamLifecycle::Ended { stream: stream.name.clone(), generation });
            }
            stream.publisher_worker.store(usize::MAX, Ordering::Release);
            self.gops.remove(&stream.id);
            self.switched.remove(&stream.id);
            for l in &stream.layers {
                l.active.store(false, Ordering::Relaxed);
                l.bitrate_bps.store(0, Ordering::Relaxed);
            }
            self.shared.registry.broadcast(&stream.name, &SessionEvent::Publisher { live: false });
        }
        self.update_backup_state(&stream);
        info!(session = peer.id, stream = %stream.name, source = source.map_or("relay", Source::as_str), "publisher session ended");
    }
}
