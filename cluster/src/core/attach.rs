//! Attaching a stream to an upstream node: the attach of a first want (looked up in the DHT when
//! the directory does not name the stream), rounds over the candidates with parallel attempts,
//! checking each answer's path, connecting the first good one, and answering everyone waiting.

use std::collections::VecDeque;
use std::time::Instant;

use relaycast_mesh::{PeerId, RelayError, StreamAnnouncement};
use tracing::{debug, info, warn};

use super::{AttemptId, Core, MAX_ATTACHES, Output, PARALLEL_ATTEMPTS, Parked, REATTACH_PAUSE, RelayIn, SessionId, Standby};
use crate::bounds::{self, Absent, Plan};
use crate::path::{self, PathError};
use crate::placement;

/// An attach in progress.
#[derive(Debug)]
pub(super) struct Attaching {
    pub(super) origin: Option<PeerId>,
    pub(super) simulcast: bool,
    /// Never tried in this attach (the lost upstream, a requesting downstream).
    pub(super) barred: Vec<PeerId>,
    /// Tried this round.
    pub(super) tried: Vec<PeerId>,
    pub(super) candidates: VecDeque<PeerId>,
    /// Attempts in flight (at most [`PARALLEL_ATTEMPTS`]).
    pub(super) attempts: Vec<Attempt>,
    /// The attempt whose answer is being applied (connected next, or failed).
    pub(super) connecting: Option<AttemptId>,
    pub(super) looking_up: bool,
    /// Holds one of the [`bounds::MAX_LOOKUPS`] lookup slots (a first attach's lookup).
    pub(super) holds_lookup: bool,
    /// Re-attach: rounds go on until then.
    pub(super) deadline: Option<Instant>,
    /// Attaches a standby upstream beside the relay in (see [`Standby`]).
    pub(super) standby: bool,
    /// With `standby`: a fed edge from this sibling, to move below it (see
    /// [`super::PathPush::move_to`]); the only candidate.
    pub(super) move_to: Option<PeerId>,
    pub(super) retry_at: Option<Instant>,
    pub(super) started: Instant,
}

impl Attaching {
    /// An attach about to start: `barred` is never asked; a re-attach has a `deadline`.
    pub(super) fn new(ann: Option<&StreamAnnouncement>, barred: Vec<PeerId>, deadline: Option<Instant>, standby: bool, now: Instant) -> Self {
        Attaching {
            origin: ann.map(|a| a.origin),
            simulcast: ann.is_some_and(|a| a.layers.len() > 1),
            barred,
            tried: Vec::new(),
            candidates: VecDeque::new(),
            attempts: Vec::new(),
            connecting: None,
            looking_up: false,
            holds_lookup: false,
            deadline,
            standby,
            move_to: None,
            retry_at: None,
            started: now,
        }
    }
}

/// The attempt in progress of an attach.
#[derive(Debug)]
pub(super) struct Attempt {
    pub(super) id: AttemptId,
    pub(super) peer: PeerId,
    /// The path and depth the upstream's answer gives this node, once accepted.
    pub(super) below: Option<(Vec<PeerId>, u32)>,
}

impl Core {
    /// A viewer (or, with `requester`, a downstream node) wants `stream` here.
    pub(super) fn want(&mut self, stream: &str, has_source: bool, requester: Option<PeerId>, now: Instant) {
        if has_source || self.relays_in.contains_key(stream) {
            self.ready(stream, true);
            return;
        }
        if let Some(a) = self.attaching.get_mut(stream) {
            // Joins the attach in progress; a requester is never its own upstream.
            a.barred.extend(requester);
            a.candidates.retain(|p| Some(*p) != requester);
            return;
        }
        let me = self.cfg.me;
        let known = self.dir.stream(stream).filter(|a| a.origin != me).cloned();
        let alone = self.dir.nodes.is_empty() && self.dir.streams.is_empty();
        let meshed_for = self.meshed_since.map(|t| now.saturating_duration_since(t));
        let negative = self.absent.contains(stream, now);
        let plan = bounds::plan(known.is_some(), alone, meshed_for, negative, self.lookups);
        if let Plan::NotFound(why) = plan {
            match why {
                Absent::Alone => self.counters.alone += 1,
                Absent::NotInDirectory => self.counters.not_in_directory += 1,
                Absent::NegativeCache => self.counters.negative_cache += 1,
                Absent::TooManyLookups => self.counters.too_many_lookups += 1,
            }
            debug!(stream, ?why, "stream not in the mesh; answered without a lookup");
            self.ready(stream, false);
            return;
        }
        if self.attaching.len() >= MAX_ATTACHES {
            self.counters.attaches_full += 1;
            self.ready(stream, false);
            return;
        }
        let a = Attaching::new(known.as_ref(), requester.into_iter().collect(), None, false, now);
        self.attaching.insert(stream.to_string(), a);
        if known.is_some() {
            self.round(stream, now);
        } else {
            self.lookup(stream, true);
        }
    }

    pub(super) fn lookup(&mut self, stream: &str, counted: bool) {
        let Some(a) = self.attaching.get_mut(stream) else { return };
        a.looking_up = true;
        if counted && !a.holds_lookup {
            a.holds_lookup = true;
            self.lookups += 1;
            self.counters.lookups += 1;
        }
        self.push(Output::Lookup { stream: stream.to_string() });
    }

    pub(super) fn on_found(&mut self, stream: &str, ann: Option<StreamAnnouncement>, now: Instant) {
        let Some(a) = self.attaching.get_mut(stream) else { return };
        if !a.looking_up {
            return;
        }
        a.looking_up = false;
        let reattach = a.deadline.is_some();
        if a.holds_lookup {
            a.holds_lookup = false;
            self.lookups = self.lookups.saturating_sub(1);
        }
        match ann {
            Some(ann) if ann.origin != self.cfg.me => {
                a.origin = Some(ann.origin);
                a.simulcast = ann.layers.len() > 1;
                self.next(stream, true, now);
            }
            _ if reattach => {
                debug!(stream, "stream not announced in the mesh any more");
                self.pause_or_give_up(stream, now);
            }
            _ => {
                debug!(stream, "no node of the mesh announces the stream");
                self.absent.insert(stream, now);
                self.finish(stream, false);
            }
        }
    }

    /// Starts a round over the candidates (from the directory, or a lookup when it does not
    /// name the stream any more).
    pub(super) fn round(&mut self, stream: &str, now: Instant) {
        let me = self.cfg.me;
        let known = self.dir.stream(stream).filter(|a| a.origin != me).cloned();
        let Some(a) = self.attaching.get_mut(stream) else { return };
        a.tried.clear();
        match known {
            Some(ann) => {
                a.origin = Some(ann.origin);
                a.simulcast = ann.layers.len() > 1;
                self.next(stream, true, now);
            }
            None if a.origin.is_some() && a.deadline.is_none() => self.next(stream, true, now),
            None => self.lookup(stream, false),
        }
    }

    /// Tries the next candidate; with `fresh`, computes the candidates first.
    pub(super) fn next(&mut self, stream: &str, fresh: bool, now: Instant) {
        let me = self.cfg.me;
        if fresh {
            let Some(a) = self.attaching.get(stream) else { return };
            let Some(origin) = a.origin else {
                self.pause_or_give_up(stream, now);
                return;
            };
            let exclude: Vec<PeerId> = a.barred.iter().chain(a.tried.iter()).copied().collect();
            let standby = a.standby;
            let target = a.move_to;
            let mut cands = match target {
                Some(t) if !exclude.contains(&t) => vec![t],
                Some(_) => Vec::new(),
                None => placement::relay_candidates(&self.dir, stream, origin, me, &exclude),
            };
            cands.retain(|p| self.trusted(p) && !self.below_me(p, stream) && !self.stale(p, stream, now));
            if standby && target.is_none() {
                let primary = self.relays_in.get(stream).map(|r| (r.upstream, r.depth));
                cands.retain(|p| primary.is_some_and(|(up, depth)| self.standby_fits(p, stream, origin, up, depth)));
                self.rank_standbys(stream, origin, &mut cands);
            }
            if let Some(a) = self.attaching.get_mut(stream) {
                a.candidates = cands.into();
            }
        }
        let Some(a) = self.attaching.get_mut(stream) else { return };
        let dir = &self.dir;
        // A node that carries the stream (or its origin) answers a request at no cost of its own;
        // any other candidate would attach the stream itself to serve it, so it is asked only
        // alone, never beside another attempt.
        let carries = |p: &PeerId| {
            a.origin == Some(*p) || dir.node(p).is_some_and(|l| l.streams.iter().any(|s| s.stream == stream))
        };
        let mut started = Vec::new();
        // A standby is not urgent: its candidates are asked one at a time, best first.
        let parallel = if a.standby { 1 } else { PARALLEL_ATTEMPTS };
        while a.attempts.len() < parallel
            && a.candidates.front().is_some_and(|p| a.attempts.is_empty() || carries(p))
            && let Some(peer) = a.candidates.pop_front()
        {
            a.tried.push(peer);
            self.next_attempt += 1;
            let attempt = self.next_attempt;
            a.attempts.push(Attempt { id: attempt, peer, below: None });
            started.push((attempt, peer, a.simulcast, a.standby));
        }
        let idle = a.attempts.is_empty();
        let fed = a.move_to.is_some();
        for (attempt, peer, simulcast, standby) in started {
            self.push(Output::Attach { attempt, stream: stream.to_string(), peer, simulcast, standby, fed });
        }
        if idle {
            self.pause_or_give_up(stream, now);
        }
    }

    /// Whether `peer` is below this node for `stream` by the latest reports: its path holds this
    /// node, or following each node's own reported upstream from it reaches this node. (A path a
    /// node reports or answers with can lag a move of one of its ancestors by a report; each
    /// node's own upstream is the freshest link.)
    pub(super) fn below_me(&self, peer: &PeerId, stream: &str) -> bool {
        let me = self.cfg.me;
        let mut cur = *peer;
        for _ in 0..relaycast_mesh::relay_protocol::MAX_PATH {
            let Some(s) = self.dir.node(&cur).and_then(|l| l.streams.iter().find(|s| s.stream == stream)) else {
                return false;
            };
            if s.upstream == Some(me) || s.path.contains(&me) {
                return true;
            }
            match s.upstream {
                Some(up) => cur = up,
                None => return false,
            }
        }
        false
    }

    /// Whether `peer`'s latest report of `stream` names a node lost moments ago (its path is
    /// about to change).
    pub(super) fn stale(&self, peer: &PeerId, stream: &str, now: Instant) -> bool {
        let origin = self.attaching.get(stream).and_then(|a| a.origin);
        (Some(*peer) != origin && self.lost.contains(peer, now)) || self.presence(peer, stream).is_some_and(|s| self.names_lost(&s.path, now))
    }

    /// Whether `path` (origin first) names a node lost moments ago besides the origin: losing
    /// the connection to the origin says nothing about the tree below it.
    pub(super) fn names_lost(&self, path: &[PeerId], now: Instant) -> bool {
        self.lost.any_in(path.get(1..).unwrap_or_default(), now)
    }

    /// Everyone refused: a re-attach tries them all again after a pause until its deadline; a
    /// first attach gives up.
    pub(super) fn pause_or_give_up(&mut self, stream: &str, now: Instant) {
        let Some(a) = self.attaching.get_mut(stream) else { return };
        match a.deadline {
            Some(deadline) if now + REATTACH_PAUSE < deadline => {
                a.tried.clear();
                a.retry_at = Some(now + REATTACH_PAUSE);
            }
            Some(_) => {
                warn!(stream, "could not re-attach the stream to any upstream node");
                self.finish(stream, false);
            }
            None => self.finish(stream, false),
        }
    }

    pub(super) fn on_answered(&mut self, attempt: AttemptId, depth: u32, answered: &[PeerId], now: Instant) {
        let Some((stream, peer)) = self.attempt(attempt) else {
            self.push(Output::Abandon { attempt });
            return;
        };
        // The answer's path may lag a move of the upstream's ancestors: the latest reports of
        // the upstream and of every node on that path must not lead back here either.
        let checked = path::path_below(self.cfg.me, peer, answered, depth, self.cfg.max_depth).and_then(|found| {
            if self.names_lost(answered, now) {
                Err(PathError::Stale)
            } else if answered.iter().chain(std::iter::once(&peer)).any(|p| self.below_me(p, &stream)) {
                Err(PathError::Cycle)
            } else {
                Ok(found)
            }
        });
        match checked {
            Ok(found) => {
                let Some(a) = self.attaching.get_mut(&stream) else { return };
                if let Some(x) = a.attempts.iter_mut().find(|x| x.id == attempt) {
                    x.below = Some(found);
                }
                // The first good answer is connected; later ones wait in case it fails.
                if a.connecting.is_none() {
                    a.connecting = Some(attempt);
                    self.push(Output::Connect { attempt });
                }
            }
            Err(e) => {
                info!(stream = %stream, upstream = %peer, error = %e, "upstream's relay answer refused");
                self.count_path_error(&e);
                self.push(Output::Abandon { attempt });
                self.drop_attempt(&stream, attempt);
                self.next(&stream, false, now);
            }
        }
    }

    /// The stream and peer of the attempt in progress with this id.
    pub(super) fn attempt(&self, attempt: AttemptId) -> Option<(String, PeerId)> {
        self.attaching
            .iter()
            .find_map(|(s, a)| a.attempts.iter().find(|c| c.id == attempt).map(|c| (s.clone(), c.peer)))
    }

    /// Forgets an attempt of `stream` (failed or abandoned); when it was being connected, the
    /// next attempt already answered is connected instead.
    pub(super) fn drop_attempt(&mut self, stream: &str, attempt: AttemptId) {
        let Some(a) = self.attaching.get_mut(stream) else { return };
        a.attempts.retain(|x| x.id != attempt);
        if a.connecting == Some(attempt) {
            a.connecting = a.attempts.iter().find(|x| x.below.is_some()).map(|x| x.id);
            if let Some(next) = a.connecting {
                self.push(Output::Connect { attempt: next });
            }
        }
    }

    pub(super) fn on_attach_failed(&mut self, attempt: AttemptId, fatal: bool, now: Instant) {
        let Some((stream, _)) = self.attempt(attempt) else { return };
        self.drop_attempt(&stream, attempt);
        if fatal {
            self.finish(&stream, false);
        } else {
            let busy = self.attaching.get(&stream).is_some_and(|a| a.connecting.is_some());
            if !busy {
                self.next(&stream, false, now);
            }
        }
    }

    pub(super) fn on_connected(&mut self, attempt: AttemptId, session: SessionId, now: Instant) {
        let found = self.attaching.iter().find_map(|(s, a)| {
            a.attempts
                .iter()
                .find(|c| c.id == attempt)
                .and_then(|c| c.below.as_ref().map(|(path, depth)| (s.clone(), c.peer, path.clone(), *depth)))
        });
        let Some((stream, upstream, path, depth)) = found else {
            self.push(Output::Close { session });
            return;
        };
        // The winner leaves the attempts; `finish` abandons the others.
        let (mut standby, mut target) = (false, None);
        if let Some(a) = self.attaching.get_mut(&stream) {
            a.attempts.retain(|x| x.id != attempt);
            a.connecting = None;
            standby = a.standby;
            target = a.move_to;
        }
        if standby {
            match self.relays_in.get_mut(&stream) {
                Some(r) if r.standby.is_none() && target.is_some() => {
                    // A planned move below a sibling: the fed edge takes over at once.
                    info!(stream = %stream, %upstream, depth, "edge from a sibling connected: moving below it (make-before-break)");
                    r.standby = Some(Standby { upstream, session, path, depth, pushed: false, room: true, target: true });
                    r.moving = Some(now);
                    self.push(Output::Handover { stream: stream.clone(), session });
                }
                Some(r) if r.standby.is_none() => {
                    info!(stream = %stream, %upstream, depth, "standby upstream connected");
                    r.standby = Some(Standby { upstream, session, path, depth, pushed: false, room: false, target: false });
                    self.counters.standbys += 1;
                }
                _ => self.push(Output::Close { session }),
            }
            self.finish(&stream, true);
            return;
        }
        info!(stream = %stream, %upstream, depth, "relaying stream from upstream node");
        if let Some(a) = self.attaching.get(&stream)
            && a.deadline.is_some()
        {
            let after_ms = now.saturating_duration_since(a.started).as_millis() as u64;
            info!(stream = %stream, after_ms, "stream re-attached");
        }
        self.relays_in.insert(stream.clone(), RelayIn::new(upstream, session, path, depth, now));
        self.push(Output::Follow { stream: stream.clone(), on: true });
        // The relay children (frozen while this node re-attached) get the new path at once.
        self.push_path(&stream);
        self.finish(&stream, true);
    }

    /// Ends the attach of `stream` (abandoning attempts still in flight) and answers everyone
    /// waiting for it.
    pub(super) fn finish(&mut self, stream: &str, ok: bool) {
        if let Some(a) = self.attaching.remove(stream) {
            if a.holds_lookup {
                self.lookups = self.lookups.saturating_sub(1);
            }
            for x in a.attempts {
                self.push(Output::Abandon { attempt: x.id });
            }
            if a.standby {
                // The stream is here either way; nobody waits for a standby.
                if !ok {
                    debug!(stream, "no standby upstream could be attached");
                }
                return;
            }
        }
        self.ready(stream, ok);
    }

    /// Answers the waiters of `stream` and the relay requests parked on it.
    pub(super) fn ready(&mut self, stream: &str, ok: bool) {
        self.push(Output::Ready { stream: stream.to_string(), ok });
        let (mine, rest): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked).into_iter().partition(|p| p.stream == stream);
        self.parked = rest;
        for p in mine {
            if ok && self.frozen(stream) {
                self.parked.push(p);
            } else if ok {
                self.decide(p.id, p.from, &p.stream, false);
            } else {
                self.push(Output::Refuse { id: p.id, error: RelayError::NotFound });
            }
        }
    }
}
