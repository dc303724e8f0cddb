//! Planned moves, make-before-break: a node that relays to more nodes than its cap (a standby
//! edge that took over is fed at once, whatever the cap) asks its newest fed children to move
//! ([`PathPush::shed`]); a child so asked moves to its standby upstream when that one has a
//! spare fed slot. The media plane resumes the standby's edge and lets it take the stream over
//! at its first keyframe while the old upstream still feeds it ([`Output::Handover`]), and only
//! once the standby feeds the stream ([`LocalStream::fed_by`]) is the old relay in closed, so
//! viewers see no gap.

use std::time::Instant;

use relaycast_mesh::PeerId;
use tracing::{debug, info, warn};

use super::{Attaching, Core, DetachReason, HANDOVER_FOR, LocalStream, MAX_ATTACHES, Output, RelayIn, STANDBY_RETRY, SessionId};
use crate::placement;

impl Core {
    /// Marks the fed relay edges beyond the fan-out cap to be shed (those whose nodes relay to
    /// the fewest others, then the newest), and the oldest
    /// standby edges, one per spare fed slot, as offered a slot; pushes the news to the streams
    /// whose marks changed (the marks go out with every push until they change).
    pub(super) fn shed_over_cap(&mut self) {
        let cap = self.cfg.max_relay_children as usize;
        // Children with the fewest relay children of their own first (a move below a sibling
        // deepens the mover's whole subtree by a level), then the newest.
        let below = |p: &PeerId| self.dir.node(p).map_or(u32::MAX, |l| l.relay_children);
        let mut fed: Vec<(u32, std::cmp::Reverse<u64>, SessionId)> = self
            .relays_out
            .iter()
            .filter(|(_, o)| !o.standby)
            .map(|(id, o)| (below(&o.peer), std::cmp::Reverse(o.fed_seq), *id))
            .collect();
        fed.sort_unstable();
        let excess = fed.len().saturating_sub(cap);
        let shed: Vec<SessionId> = fed.iter().take(excess).map(|(_, _, id)| *id).collect();
        let mut standbys: Vec<SessionId> = self.relays_out.iter().filter(|(_, o)| o.standby).map(|(id, _)| *id).collect();
        standbys.sort_unstable();
        // Serves under way take slots too.
        let spare = cap.saturating_sub(self.fan_out(false));
        let granted: Vec<SessionId> = standbys.into_iter().take(spare).collect();
        let targets = self.move_targets(&shed);
        let mut changed = Vec::new();
        for (id, o) in self.relays_out.iter_mut() {
            let g = granted.contains(id);
            if o.granted != g {
                o.granted = g;
                changed.push(o.stream.clone());
            }
            let t = targets.iter().find(|(s, _)| s == id).map(|(_, t)| *t);
            if o.move_to != t {
                o.move_to = t;
                changed.push(o.stream.clone());
            }
            let s = shed.contains(id);
            if o.shed == s {
                continue;
            }
            o.shed = s;
            if s {
                self.counters.sheds += 1;
                info!(peer = %o.peer, stream = %o.stream, max = cap, "over the relay fan-out: asking a downstream node to move to its standby upstream");
            }
            changed.push(o.stream.clone());
        }
        changed.sort();
        changed.dedup();
        for stream in changed {
            self.push_path(&stream);
        }
    }

    /// For the edges to shed, a fed relay child of the same stream (not shed) that reports room
    /// to move below, each taking as many as it reports spare slots, most room first.
    fn move_targets(&self, shed: &[SessionId]) -> Vec<(SessionId, PeerId)> {
        let mut spare: Vec<(PeerId, String, u32)> = self
            .relays_out
            .iter()
            .filter(|(id, o)| !o.standby && !shed.contains(id))
            .filter_map(|(_, o)| {
                let l = self.dir.node(&o.peer)?;
                let room = l.max_relay_children.saturating_sub(l.relay_children);
                l.streams.iter().any(|s| s.stream == o.stream).then(|| (o.peer, o.stream.clone(), room)).filter(|x| x.2 > 0)
            })
            .collect();
        spare.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        let mut shed: Vec<SessionId> = shed.to_vec();
        shed.sort_unstable();
        let mut out = Vec::new();
        for id in shed {
            let Some(o) = self.relays_out.get(&id) else { continue };
            if let Some(t) = spare.iter_mut().find(|(p, s, room)| *s == o.stream && *room > 0 && *p != o.peer) {
                t.2 -= 1;
                out.push((id, t.0));
            }
        }
        out
    }

    /// The upstream `from` asks this node to move `stream` elsewhere (it is over its fan-out):
    /// a move to the standby upstream starts, or is asked of the media plane again, when the
    /// standby may take over and reports a spare fed slot. A standby without one is replaced
    /// by a candidate with one, if there is any (the move follows at the next ask); otherwise
    /// the node stays: moving onto a full node would only make that one shed in turn.
    pub(super) fn asked_to_move(&mut self, from: PeerId, stream: &str, move_to: Option<PeerId>, now: Instant) {
        let Some(r) = self.relays_in.get(stream) else { return };
        if r.upstream != from || r.frozen {
            return;
        }
        // The standby's own pushes say whether it keeps a slot for this node (its load report,
        // older, is the fallback); a move target is fed already.
        let usable = r.standby.as_ref().filter(|sb| {
            let room = if sb.pushed { sb.room } else { self.has_room(&sb.upstream) };
            (sb.target || room) && (sb.target || self.standby_usable(stream, sb, r.depth, None))
        });
        let Some(sb) = usable else {
            match move_to {
                Some(sibling) => self.move_below(stream, sibling, now),
                None if r.standby.is_some() => self.replace_full_standby(stream, now),
                None => debug!(stream, upstream = %from, "the upstream asks this node to move, but it has no standby upstream yet"),
            }
            return;
        };
        let (session, to) = (sb.session, sb.upstream);
        if let Some(r) = self.relays_in.get_mut(stream)
            && r.moving.is_none()
        {
            r.moving = Some(now);
            info!(stream, from = %from, to = %to, "the upstream is over its relay fan-out: moving to the standby upstream (make-before-break)");
        }
        self.push(Output::Handover { stream: stream.to_string(), session });
    }

    /// Moves `stream` below `sibling` (another relay child of this node's upstream, which named
    /// it): a fed edge from it is attached beside the relay in, held as the standby, and takes
    /// over at its first keyframe. The sibling is never below this node (it hangs off the same
    /// upstream), so the move cannot close a loop; the sibling's own check of the request (its
    /// path, its depth cap, its live fan-out) decides.
    fn move_below(&mut self, stream: &str, sibling: PeerId, now: Instant) {
        let Some(r) = self.relays_in.get(stream) else { return };
        let (upstream, me) = (r.upstream, self.cfg.me);
        if r.moving.is_some() || self.attaching.contains_key(stream) || sibling == me || sibling == upstream || self.below_me(&sibling, stream) {
            return;
        }
        if self.attaching.len() >= MAX_ATTACHES {
            return;
        }
        let Some(ann) = self.dir.stream(stream).filter(|a| a.origin != me).cloned() else { return };
        if let Some(sb) = self.relays_in.get_mut(stream).and_then(|r| r.standby.take()) {
            info!(stream, standby = %sb.upstream, "moving below a sibling: closing the standby that has no slot");
            self.detach(stream, sb.session, Some(sb.upstream), DetachReason::Replaced);
        }
        info!(stream, %upstream, %sibling, "the upstream is over its relay fan-out: moving below a sibling that has room");
        let mut a = Attaching::new(Some(&ann), vec![upstream], None, true, now);
        a.move_to = Some(sibling);
        self.attaching.insert(stream.to_string(), a);
        self.next(stream, true, now);
    }

    /// Whether `peer` reports a spare fed relay slot.
    fn has_room(&self, peer: &PeerId) -> bool {
        self.dir.node(peer).is_some_and(|l| l.relay_children < l.max_relay_children)
    }

    /// The standby of `stream` has no spare fed slot, and this node is asked to move: when
    /// another node that may stand by has one, the standby is closed and a new one attached
    /// (candidates with a spare slot are asked first).
    fn replace_full_standby(&mut self, stream: &str, now: Instant) {
        let Some(r) = self.relays_in.get(stream) else { return };
        let Some(sb) = r.standby.as_ref() else { return };
        let (upstream, depth, full) = (r.upstream, r.depth, sb.upstream);
        if self.attaching.contains_key(stream) {
            return;
        }
        let Some(origin) = self.dir.stream(stream).map(|a| a.origin) else { return };
        let better = placement::relay_candidates(&self.dir, stream, origin, self.cfg.me, &[upstream, full]).into_iter().any(|p| {
            self.trusted(&p) && !self.below_me(&p, stream) && self.standby_fits(&p, stream, origin, upstream, depth) && self.has_room(&p)
        });
        if !better {
            debug!(stream, standby = %full, "asked to move, but no node that may stand by has a spare relay slot: staying");
            return;
        }
        let Some(sb) = self.relays_in.get_mut(stream).and_then(|r| r.standby.take()) else { return };
        info!(stream, standby = %full, "asked to move, but the standby upstream is full: replacing it with one that has room");
        self.detach(stream, sb.session, Some(full), DetachReason::Replaced);
        self.attach_standby(stream, now);
    }

    /// Completes the moves whose standby feeds the stream now (whatever started them), and gives
    /// up those that took longer than [`HANDOVER_FOR`] (the standby is closed; another is
    /// attached later).
    pub(super) fn check_moves(&mut self, streams: &[LocalStream], now: Instant) {
        let fed_by = |name: &str| streams.iter().find(|s| s.name == name).and_then(|s| s.fed_by);
        let moved: Vec<String> = self
            .relays_in
            .iter()
            .filter(|(name, r)| r.standby.as_ref().is_some_and(|sb| fed_by(name) == Some(sb.session)))
            .map(|(name, _)| name.clone())
            .collect();
        for name in moved {
            self.complete_move(&name, now);
        }
        let late: Vec<String> = self
            .relays_in
            .iter()
            .filter(|(_, r)| r.moving.is_some_and(|t| now.saturating_duration_since(t) >= HANDOVER_FOR))
            .map(|(name, _)| name.clone())
            .collect();
        for name in late {
            let Some(r) = self.relays_in.get_mut(&name) else { continue };
            r.moving = None;
            self.counters.handovers_failed += 1;
            if let Some(sb) = r.standby.take() {
                r.standby_after = now + STANDBY_RETRY;
                warn!(stream = %name, standby = %sb.upstream, "the standby upstream did not take the stream over in time: closing it");
                self.detach(&name, sb.session, Some(sb.upstream), DetachReason::Stalled);
            }
        }
    }

    /// The standby relay in of `stream` feeds it: it becomes the relay in, the old one is
    /// closed, and the relay children get the new path.
    fn complete_move(&mut self, stream: &str, now: Instant) {
        let Some(mut old) = self.relays_in.remove(stream) else { return };
        let Some(sb) = old.standby.take() else {
            self.relays_in.insert(stream.to_string(), old);
            return;
        };
        info!(stream, from = %old.upstream, to = %sb.upstream, depth = sb.depth, "moved to the standby upstream: closing the old relay in");
        self.counters.handovers += 1;
        self.detach(stream, old.session, Some(old.upstream), DetachReason::Moved);
        let mut r = RelayIn::new(sb.upstream, sb.session, sb.path, sb.depth, now);
        r.pushed = sb.pushed;
        r.idle_since = old.idle_since;
        r.packets = old.packets;
        r.media_at = old.media_at;
        self.relays_in.insert(stream.to_string(), r);
        self.push_path(stream);
    }
}
