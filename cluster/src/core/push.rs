//! Paths pushed down the relay edges: a node whose path changes (attach, re-attach, standby
//! switch, an ancestor's move) tells each relay child at once, and again every
//! [`PATH_REPUSH`]; a node takes the path its upstream pushes and passes it on; a node that
//! lost its upstream freezes its subtree (its descendants keep their edges but serve no relay
//! request for the stream) until it has a path again. A pushed path that holds this node, or
//! puts it over the depth cap, sends the stream elsewhere at once.
//!
//! Load reports would carry the same news a gossip interval later (and a report can be older
//! than a push): once an upstream has pushed, its reports no longer change the path.
//!
//! The same protocol carries releases the other way: a node that closes its relay in (or a
//! standby) tells that upstream, which closes its relay out at once (`left`).

use std::collections::BTreeSet;
use std::time::Instant;

use relaycast_mesh::PeerId;
use relaycast_mesh::relay_protocol::MAX_PATH;
use tracing::{debug, info, warn};

use super::{Core, DetachReason, MAX_RELEASES, Output, PATH_REPUSH, Parked, PathPush, STANDBY_RETRY, SessionId};
use crate::path;

impl Core {
    /// Whether `stream` is frozen here: this node (re-attaching) or an ancestor has no current
    /// path, so no relay request for it is served.
    pub(super) fn frozen(&self, stream: &str) -> bool {
        match self.relays_in.get(stream) {
            Some(r) => r.frozen,
            None => self
                .attaching
                .get(stream)
                .is_some_and(|a| a.deadline.is_some()),
        }
    }

    /// The depth and path (this node appended) a relay child of `stream` gets below this node,
    /// or `None` while this node has no current path.
    fn path_for_children(&self, stream: &str) -> Option<(u32, Vec<PeerId>)> {
        let me = self.cfg.me;
        match self.relays_in.get(stream) {
            Some(r) if r.frozen => None,
            Some(r) => {
                let mut path = r.path.clone();
                path.push(me);
                Some((r.depth, path))
            }
            None if self.live.iter().any(|s| s == stream) => Some((0, vec![me])),
            None => None,
        }
    }

    /// Tells every relay child of `stream` (connected or being connected) its path below this
    /// node now, or that it is frozen.
    pub(super) fn push_path(&mut self, stream: &str) {
        let mut peers: Vec<PeerId> = self
            .relays_out
            .values()
            .filter(|o| o.stream == stream)
            .map(|o| o.peer)
            .collect();
        if peers.is_empty() {
            return;
        }
        peers.sort();
        peers.dedup();
        let below = self.path_for_children(stream);
        for peer in peers {
            self.counters.path_pushes += 1;
            let (depth, path, frozen) = match &below {
                Some((depth, path)) => (*depth, path.clone(), false),
                None => (0, Vec::new(), true),
            };
            let edge = |f: fn(&super::RelayOut) -> bool| self.relays_out.values().any(|o| o.peer == peer && o.stream == stream && f(o));
            let (shed, room) = (!frozen && edge(|o| o.shed), !frozen && edge(|o| o.granted));
            let move_to = if shed {
                self.relays_out.values().find(|o| o.peer == peer && o.stream == stream && o.shed).and_then(|o| o.move_to)
            } else {
                None
            };
            let push = PathPush {
                peer,
                stream: stream.to_string(),
                depth,
                path,
                frozen,
                shed,
                left: false,
                room,
                move_to,
            };
            self.pushes.insert((peer, stream.to_string()), push);
        }
    }

    /// Drops paths queued for nodes that are no longer relay children, and pushes every
    /// stream's path to its relay children again when [`PATH_REPUSH`] has passed.
    pub(super) fn repush_due(&mut self, now: Instant) {
        let children: BTreeSet<(PeerId, &str)> = self
            .relays_out
            .values()
            .map(|o| (o.peer, o.stream.as_str()))
            .collect();
        self.pushes
            .retain(|(peer, stream), _| children.contains(&(*peer, stream.as_str())));
        if self
            .repushed_at
            .is_some_and(|t| now.saturating_duration_since(t) < PATH_REPUSH)
        {
            return;
        }
        self.repushed_at = Some(now);
        let mut streams: Vec<String> = self.relays_out.values().map(|o| o.stream.clone()).collect();
        streams.sort();
        streams.dedup();
        for stream in streams {
            self.push_path(&stream);
        }
    }

    /// A path pushed by `from` (see [`super::Input::PathUpdate`]); `room`: a standby upstream
    /// keeps a fed slot for this node.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_path_update(
        &mut self,
        from: PeerId,
        stream: &str,
        depth: u32,
        path: Vec<PeerId>,
        frozen: bool,
        room: bool,
        now: Instant,
    ) {
        if path.len() > MAX_PATH {
            debug!(stream, %from, len = path.len(), "pushed path too long: ignored");
            self.counters.bad_paths += 1;
            return;
        }
        // A path through a node lost moments ago is about to change: the sender's subtree is
        // re-attaching, as good as frozen.
        let frozen = frozen || self.names_lost(&path, now);
        let (upstream, standby) = match self.relays_in.get(stream) {
            Some(r) => (Some(r.upstream), r.standby.as_ref().map(|s| s.upstream)),
            None => (None, None),
        };
        if upstream == Some(from) {
            self.upstream_path(from, stream, depth, &path, frozen, now);
        } else if standby == Some(from) {
            self.standby_path(from, stream, depth, &path, frozen, now);
            if let Some(sb) = self.relays_in.get_mut(stream).and_then(|r| r.standby.as_mut()) {
                sb.room = room && !frozen;
            }
        } else {
            self.attempt_path(from, stream, depth, &path, frozen, now);
        }
    }

    /// The upstream pushed its path: take it (and pass it on), freeze, or re-attach when it
    /// would close a cycle or sit too deep.
    fn upstream_path(
        &mut self,
        from: PeerId,
        stream: &str,
        depth: u32,
        answered: &[PeerId],
        frozen: bool,
        now: Instant,
    ) {
        let me = self.cfg.me;
        let Some(r) = self.relays_in.get_mut(stream) else {
            return;
        };
        r.pushed = true;
        if frozen {
            if !r.frozen {
                debug!(stream, upstream = %from, "an ancestor is re-attaching: the stream is frozen here");
                r.frozen = true;
                self.push_path(stream);
            }
            return;
        }
        match path::path_below(me, from, answered, depth, self.cfg.max_depth) {
            Ok((path, depth)) => {
                let thawed = r.frozen;
                let changed = thawed || path != r.path || depth != r.depth;
                r.frozen = false;
                r.path = path;
                r.depth = depth;
                if changed {
                    debug!(stream, depth, "the upstream pushed a new path");
                    self.push_path(stream);
                }
                if thawed {
                    self.serve_parked(stream);
                }
            }
            Err(e) => {
                warn!(stream, upstream = %from, error = %e, "the upstream pushed a path that is not valid here: re-attaching");
                self.count_path_error(&e);
                self.counters.pushed_invalid += 1;
                // Nodes after this one on the pushed path are below it now.
                let below: Vec<PeerId> = answered
                    .iter()
                    .skip_while(|p| **p != me)
                    .skip(1)
                    .copied()
                    .collect();
                self.reattach(stream, Some(from), DetachReason::PathInvalid, &below, now);
            }
        }
    }

    /// The standby upstream pushed its path: keep it current, or close the standby when it is
    /// frozen, would close a cycle, sits too deep or hangs below the upstream.
    fn standby_path(
        &mut self,
        from: PeerId,
        stream: &str,
        depth: u32,
        answered: &[PeerId],
        frozen: bool,
        now: Instant,
    ) {
        let me = self.cfg.me;
        let max_depth = self.cfg.max_depth;
        let Some(r) = self.relays_in.get_mut(stream) else {
            return;
        };
        let upstream = r.upstream;
        let target = r.standby.as_ref().is_some_and(|sb| sb.target);
        let checked = if frozen {
            None
        } else {
            path::path_below(me, from, answered, depth, max_depth).ok()
        };
        match checked {
            Some((path, depth)) if target || !path.contains(&upstream) => {
                if let Some(sb) = r.standby.as_mut() {
                    sb.path = path;
                    sb.depth = depth;
                    sb.pushed = true;
                }
            }
            _ => {
                if let Some(sb) = r.standby.take() {
                    r.standby_after = now + STANDBY_RETRY;
                    info!(stream, standby = %from, frozen, "the standby upstream moved or is re-attaching: closing it");
                    self.detach(stream, sb.session, Some(from), DetachReason::PathInvalid);
                }
            }
        }
    }

    /// An upstream whose answer is accepted (being connected, or waiting) pushed its path: the
    /// answer is updated, or abandoned when the upstream is frozen or the path is no longer
    /// valid here.
    fn attempt_path(
        &mut self,
        from: PeerId,
        stream: &str,
        depth: u32,
        answered: &[PeerId],
        frozen: bool,
        now: Instant,
    ) {
        let me = self.cfg.me;
        let max_depth = self.cfg.max_depth;
        let Some(a) = self.attaching.get_mut(stream) else {
            return;
        };
        let Some(x) = a
            .attempts
            .iter_mut()
            .find(|x| x.peer == from && x.below.is_some())
        else {
            return;
        };
        let attempt = x.id;
        let checked = if frozen {
            None
        } else {
            path::path_below(me, from, answered, depth, max_depth).ok()
        };
        match checked {
            Some(found) => x.below = Some(found),
            None => {
                info!(stream, upstream = %from, frozen, "the upstream moved before its answer was connected: abandoned");
                self.push(Output::Abandon { attempt });
                self.drop_attempt(stream, attempt);
                let busy = self
                    .attaching
                    .get(stream)
                    .is_some_and(|a| a.connecting.is_some());
                if !busy {
                    self.next(stream, false, now);
                }
            }
        }
    }

    /// Serves the relay requests parked on `stream` while it was frozen here.
    fn serve_parked(&mut self, stream: &str) {
        let (mine, rest): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.stream == stream);
        self.parked = rest;
        for p in mine {
            self.decide(p.id, p.from, &p.stream, false);
        }
    }

    /// Closes a relay in (or standby) of `stream`; with `upstream` (alive), tells that node, so
    /// that it closes its relay out at once ([`PathPush::left`]).
    pub(super) fn detach(&mut self, stream: &str, session: SessionId, upstream: Option<PeerId>, reason: DetachReason) {
        self.push(Output::Detach { stream: stream.to_string(), session, reason });
        if let Some(peer) = upstream
            && self.releases.len() < MAX_RELEASES
        {
            let left = PathPush { peer, stream: stream.to_string(), depth: 0, path: Vec::new(), frozen: false, shed: false, left: true, room: false, move_to: None };
            self.releases.insert((peer, stream.to_string()), left);
        }
    }

    /// A relay child closed its edge of `stream` from this node (it moved or re-attached): its
    /// relay outs of the stream close now rather than at their silence timeout.
    pub(super) fn child_left(&mut self, from: PeerId, stream: &str) {
        let gone: Vec<SessionId> =
            self.relays_out.iter().filter(|(_, o)| o.peer == from && o.stream == stream).map(|(id, _)| *id).collect();
        for session in gone {
            info!(peer = %from, stream, session, "a downstream node closed its relay edge: closing ours");
            self.relays_out.remove(&session);
            self.push(Output::Close { session });
        }
    }
}
