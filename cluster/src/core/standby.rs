//! Standby upstreams (see [`Standby`]): which node may stand by beside a relay in (off this
//! node's own path when possible), attaching one, keeping its path current, and whether it may
//! take over when the upstream goes.

use std::time::Instant;

use relaycast_mesh::PeerId;
use tracing::{debug, info};

use super::{Attaching, Core, DetachReason, MAX_ATTACHES, STANDBY_RETRY, Standby};
use crate::placement;

impl Core {
    /// Keeps each standby's path current from its upstream's report; a standby that would now
    /// close a cycle, sits too deep, or hangs below this node's upstream is closed.
    pub(super) fn check_standbys(&mut self, now: Instant) {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for (stream, r) in &self.relays_in {
            // A move target hangs below the upstream by design (it is taking over).
            let Some(sb) = r.standby.as_ref().filter(|sb| !sb.target) else { continue };
            match self.path_through(sb.upstream, stream) {
                // A pushed path is fresher than the report.
                Some((Ok(_), _)) if sb.pushed => {}
                Some((Ok(found), p)) if p.upstream != Some(r.upstream) && !p.path.contains(&r.upstream) => kept.push((stream.clone(), found)),
                Some(_) => dropped.push((stream.clone(), sb.session, sb.upstream)),
                None => {}
            }
        }
        for (stream, (path, depth)) in kept {
            if let Some(sb) = self.relays_in.get_mut(&stream).and_then(|r| r.standby.as_mut()) {
                sb.path = path;
                sb.depth = depth;
            }
        }
        for (stream, _, _) in &dropped {
            if let Some(r) = self.relays_in.get_mut(stream) {
                r.standby = None;
                r.standby_after = now + STANDBY_RETRY;
            }
        }
        for (stream, session, upstream) in dropped {
            info!(stream = %stream, "the standby upstream moved: closing it");
            self.detach(&stream, session, Some(upstream), DetachReason::PathInvalid);
        }
    }

    /// Whether `peer` may stand by as a second upstream of `stream` for a relay in from
    /// `upstream` at `depth` (see [`Standby`]).
    pub(super) fn standby_fits(&self, peer: &PeerId, stream: &str, origin: PeerId, upstream: PeerId, depth: u32) -> bool {
        // A standby edge is paused until used, so it takes no fan-out slot: a node with none spare
        // may stand by (it refuses when its standby edges are full; the next candidate is asked).
        let Some(load) = self.dir.node(peer) else { return false };
        if *peer == upstream {
            return false;
        }
        if *peer == origin {
            return true;
        }
        load.streams
            .iter()
            .find(|s| s.stream == stream)
            .is_some_and(|s| s.depth < depth && s.upstream != Some(upstream) && !s.path.contains(&upstream))
    }

    /// Orders the standby candidates, best first (a stable sort: placement's order within a
    /// rank): off this node's own path before its ancestors (an ancestor of the upstream is lost
    /// with it when that ancestor dies; the origin counts as off the path: nothing feeds the
    /// stream without it), then with a spare fed slot before without (a standby that takes over
    /// becomes a fed edge, which a full node carries above its cap).
    pub(super) fn rank_standbys(&self, stream: &str, origin: PeerId, cands: &mut [PeerId]) {
        let own = self.own_path(stream);
        let room = |p: &PeerId| self.dir.node(p).is_some_and(|l| l.relay_children < l.max_relay_children);
        cands.sort_by_key(|p| (*p != origin && own.contains(p), !room(p)));
    }

    /// Whether the standby `sb` of a relay in at `depth` may take over now that `lost` is gone:
    /// its upstream's current report (it must have one) still places it strictly nearer the
    /// origin, off the lost node's branch, with a valid path below it. A standby chosen from
    /// reports that have aged since could otherwise close a cycle.
    pub(super) fn standby_usable(&self, stream: &str, sb: &Standby, depth: u32, lost: Option<PeerId>) -> bool {
        if Some(sb.upstream) == lost || lost.is_some_and(|l| sb.path.contains(&l)) {
            return false;
        }
        if sb.pushed {
            // Its pushes keep its path current (one that held this node closed it): the standby
            // upstream (one above this node's depth through it) sits nearer the origin.
            return sb.depth <= depth;
        }
        match self.path_through(sb.upstream, stream) {
            Some((Ok(_), p)) => p.depth < depth && !lost.is_some_and(|l| p.path.contains(&l) || p.upstream == Some(l)),
            _ => false,
        }
    }

    /// Attaches a standby upstream for `stream` when one fits.
    pub(super) fn attach_standby(&mut self, stream: &str, now: Instant) {
        let Some(r) = self.relays_in.get_mut(stream) else { return };
        r.standby_after = now + STANDBY_RETRY;
        let (upstream, depth) = (r.upstream, r.depth);
        let Some(ann) = self.dir.stream(stream).filter(|a| a.origin != self.cfg.me).cloned() else { return };
        let me = self.cfg.me;
        let any = placement::relay_candidates(&self.dir, stream, ann.origin, me, &[upstream])
            .iter()
            .any(|p| self.trusted(p) && !self.below_me(p, stream) && self.standby_fits(p, stream, ann.origin, upstream, depth));
        if !any || self.attaching.len() >= MAX_ATTACHES {
            return;
        }
        debug!(stream, %upstream, "attaching a standby upstream");
        self.attaching.insert(stream.to_string(), Attaching::new(Some(&ann), vec![upstream], None, true, now));
        self.next(stream, true, now);
    }
}
