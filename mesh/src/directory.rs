//! What a node knows about streams and other nodes (sans-IO state, snapshotted by [`crate::Mesh::directory`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::gossip::{CarrierSummary, NodeLoad, SUMMARY_EVERY, StreamAnnouncement, StreamPresence, StreamWithdrawal};

/// Withdrawn claims remembered (one per stream name; the oldest is forgotten beyond this), so a
/// claim's announcement delivered after its withdrawal does not pin the name again.
pub const MAX_WITHDRAWN: usize = 4096;

/// A known stream announcement: the stream's pinned origin claim.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// The latest announcement of the pinned origin.
    pub announcement: StreamAnnouncement,
    /// When it was last received.
    pub last_seen: Instant,
    /// When this origin was pinned here (its first announcement seen by this node).
    pub pinned_at: Instant,
}

/// What became of an origin claim offered to [`Directory::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimVerdict {
    /// The name was free (or its origin's claim stale): the claimant is now pinned.
    Pinned,
    /// The pinned origin refreshed its claim.
    Refreshed,
    /// Two claims made at once: the claimant's earlier signed time (or lower peer id) wins,
    /// displacing `displaced`.
    Won {
        /// The origin that lost the name.
        displaced: PeerId,
    },
    /// The claim was withdrawn by its origin (an announcement delivered after the withdrawal):
    /// ignored.
    Withdrawn,
    /// Another origin holds the name.
    Rejected {
        /// The pinned origin.
        holder: PeerId,
        /// True when the claim came within the settle window of the pin (an honest race
        /// rather than a hijack attempt).
        race: bool,
    },
}

impl ClaimVerdict {
    /// Whether the claim was accepted.
    pub fn accepted(&self) -> bool {
        !matches!(self, ClaimVerdict::Rejected { .. } | ClaimVerdict::Withdrawn)
    }
}

/// A known node: a connected peer that sent its load report, or a carrier of a followed stream
/// known from its presences ([`Directory::merge_presences`]).
#[derive(Debug, Clone)]
pub struct NodeEntry {
    /// The latest load report.
    pub load: NodeLoad,
    /// When it was last received.
    pub last_seen: Instant,
    /// Latest ping round-trip time.
    pub rtt: Option<Duration>,
    /// Whether a connection to the node is open.
    pub connected: bool,
}

/// Streams by name and nodes by peer id, plus rejection counters.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Stream announcements by stream name.
    pub streams: HashMap<String, StreamEntry>,
    /// Node load reports by peer (from the load topic, every [`SUMMARY_EVERY`] intervals, from
    /// connected peers only: load reports go one hop); snapshots also hold the carriers known
    /// from their presences only ([`Directory::merge_presences`]).
    pub nodes: HashMap<PeerId, NodeEntry>,
    /// Stream presences from the per-stream presence topics this node follows, by node and
    /// stream, with when each was received; [`Directory::merge_presences`] folds them into
    /// `nodes`.
    pub presences: HashMap<PeerId, HashMap<String, (StreamPresence, Instant)>>,
    /// The latest node-wide figures each carrier added to a presence (every [`SUMMARY_EVERY`]
    /// intervals), or those of the last load report of a peer whose connection was lost, with
    /// when it was received; kept as long as a load report.
    pub summaries: HashMap<PeerId, (CarrierSummary, Instant)>,
    /// Ping round-trip times by peer (also for peers without a load report).
    pub rtts: HashMap<PeerId, Duration>,
    /// Gossip messages rejected by validation since start.
    pub rejected: u64,
    /// Stream announcements rejected because their origin was not their signer.
    pub rejected_forged: u64,
    /// Origin claims rejected because another origin holds the stream's name.
    pub rejected_claims: u64,
    /// Announced HTTP URLs refused (host not seen for the peer nor trusted, or bad scheme).
    pub rejected_urls: u64,
    /// Segment announcements rejected because their signer is not the stream's pinned origin.
    pub rejected_segments: u64,
    /// Relay requests refused before reaching the node (untrusted peer, bad name, over the
    /// per-peer rate, too many in progress).
    pub refused_relay_requests: u64,
    /// Incoming connections denied by the swarm's connection or memory limits.
    pub denied_connections: u64,
    /// Claims withdrawn by their origin, by stream name: origin, signed start time, and when.
    pub withdrawn: HashMap<String, (PeerId, u64, Instant)>,
    /// Withdrawals received that freed a name.
    pub withdrawals: u64,
    /// Announced media addresses refused (not on an IP the peer is seen at).
    pub rejected_media_addrs: u64,
    /// Archived CIDs this node stopped providing on the DHTs because it provides
    /// `MAX_PROVIDED_CIDS` newer ones.
    pub provided_evicted: u64,
    /// Paths pushed by peers and passed to the node.
    pub path_pushes_received: u64,
    /// Paths pushed by peers and dropped (undecodable, invalid, untrusted peer, node busy).
    pub path_pushes_refused: u64,
    /// Paths this node pushed that were not delivered (no answer, peer gone, protocol unknown).
    pub path_pushes_failed: u64,
}

impl Directory {
    /// The announcement of a stream, if known.
    pub fn stream(&self, name: &str) -> Option<&StreamAnnouncement> {
        self.streams.get(name).map(|e| &e.announcement)
    }

    /// The load report of a node, if known.
    pub fn node(&self, peer: &PeerId) -> Option<&NodeLoad> {
        self.nodes.get(peer).map(|e| &e.load)
    }

    /// Latest RTT to a peer.
    pub fn rtt(&self, peer: &PeerId) -> Option<Duration> {
        self.nodes.get(peer).and_then(|e| e.rtt).or_else(|| self.rtts.get(peer).copied())
    }

    /// Records a (validated) stream announcement unconditionally (tests and local use; the
    /// swarm goes through [`Directory::claim`]).
    pub fn insert_stream(&mut self, announcement: StreamAnnouncement, now: Instant) {
        self.streams.insert(
            announcement.stream.clone(),
            StreamEntry { announcement, last_seen: now, pinned_at: now },
        );
    }

    /// Offers a (validated, signed) origin claim. The first origin of a live stream is pinned
    /// while its announcements stay fresher than `ttl`; a competing claim is rejected, except
    /// that a claim arriving within `settle` of the pin, with a signed start time within `settle`
    /// of the pinned one's, is settled by the earlier signed start time, then the lower peer id
    /// (so every node picks the same winner of a race). Once the
    /// pinned origin's announcements are stale (or its peer is lost), the name is free again.
    pub fn claim(&mut self, ann: StreamAnnouncement, now: Instant, ttl: Duration, settle: Duration) -> ClaimVerdict {
        if self.withdrawn.get(&ann.stream).is_some_and(|(origin, started, at)| {
            *origin == ann.origin && *started == ann.started_ms && now.saturating_duration_since(*at) <= ttl
        }) {
            return ClaimVerdict::Withdrawn;
        }
        let Some(entry) = self.streams.get_mut(&ann.stream) else {
            self.insert_stream(ann, now);
            return ClaimVerdict::Pinned;
        };
        if now.saturating_duration_since(entry.last_seen) > ttl {
            *entry = StreamEntry { announcement: ann, last_seen: now, pinned_at: now };
            return ClaimVerdict::Pinned;
        }
        let holder = entry.announcement.origin;
        if holder == ann.origin {
            // A restarted publish at the same origin keeps the pin; it is the same node.
            entry.announcement = ann;
            entry.last_seen = now;
            return ClaimVerdict::Refreshed;
        }
        // Made at once: seen within `settle` of the pin, and signed start times no further apart
        // (a claim back-dated to win the tie-break is no race).
        let settle_ms = u64::try_from(settle.as_millis()).unwrap_or(u64::MAX);
        let race = now.saturating_duration_since(entry.pinned_at) <= settle
            && ann.started_ms.abs_diff(entry.announcement.started_ms) <= settle_ms;
        let earlier = (ann.started_ms, ann.origin) < (entry.announcement.started_ms, holder);
        if race && earlier {
            *entry = StreamEntry { announcement: ann, last_seen: now, pinned_at: entry.pinned_at };
            return ClaimVerdict::Won { displaced: holder };
        }
        ClaimVerdict::Rejected { holder, race }
    }

    /// Withdraws `origin`'s claim on `stream` (it stopped originating it); the name is free.
    pub fn withdraw(&mut self, stream: &str, origin: &PeerId) {
        if self.streams.get(stream).is_some_and(|e| e.announcement.origin == *origin) {
            self.streams.remove(stream);
        }
    }

    /// Applies an origin's (validated, signed) withdrawal: frees the name at once when the pinned
    /// claim is the withdrawal's (same origin and signed start time), and remembers it for
    /// `ttl` so that announcements of that claim still in flight do not pin it again. Returns
    /// whether a pinned claim was removed.
    pub fn withdraw_claim(&mut self, w: &StreamWithdrawal, now: Instant) -> bool {
        let pinned = self
            .streams
            .get(&w.stream)
            .is_some_and(|e| e.announcement.origin == w.origin && e.announcement.started_ms == w.started_ms);
        if pinned {
            self.streams.remove(&w.stream);
            self.withdrawals += 1;
        }
        // Remembered whether or not it was pinned here (its announcement may still be on the way).
        if !self.withdrawn.contains_key(&w.stream) && self.withdrawn.len() >= MAX_WITHDRAWN {
            let oldest = self.withdrawn.iter().min_by_key(|(_, (_, _, at))| *at).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.withdrawn.remove(&k);
            }
        }
        self.withdrawn.insert(w.stream.clone(), (w.origin, w.started_ms, now));
        pinned
    }

    /// The pinned origin of a stream, if its claim is fresh within `ttl`.
    pub fn origin_of(&self, stream: &str, now: Instant, ttl: Duration) -> Option<PeerId> {
        self.streams
            .get(stream)
            .filter(|e| now.saturating_duration_since(e.last_seen) <= ttl)
            .map(|e| e.announcement.origin)
    }

    /// Records a (validated) load report of `peer` (carrier summaries inside its streams are
    /// dropped: the report's own fields say the same).
    pub fn insert_load(&mut self, peer: PeerId, mut load: NodeLoad, now: Instant, connected: bool) {
        for s in &mut load.streams {
            s.node = None;
        }
        let rtt = self.rtts.get(&peer).copied();
        self.nodes.insert(peer, NodeEntry { load, last_seen: now, rtt, connected });
    }

    /// Whether `peer` is a mesh node this node knows of: it sent a current load report (a
    /// connected peer) or a presence on a followed stream's topic.
    pub fn knows_node(&self, peer: &PeerId) -> bool {
        self.nodes.contains_key(peer) || self.presences.contains_key(peer)
    }

    /// Records a ping result.
    pub fn set_rtt(&mut self, peer: PeerId, rtt: Duration) {
        self.rtts.insert(peer, rtt);
        if let Some(e) = self.nodes.get_mut(&peer) {
            e.rtt = Some(rtt);
            e.connected = true;
        }
    }

    /// Marks a peer connected.
    pub fn set_connected(&mut self, peer: PeerId) {
        if let Some(e) = self.nodes.get_mut(&peer) {
            e.connected = true;
        }
    }

    /// Forgets a peer this node lost its connection to: its node entry (its load reports came
    /// over that connection) and its presences. Its latest figures stay as its summary (until
    /// it expires), so that if it still carries a followed stream (a connection closed for being
    /// over the target) its next presence, passed on by other peers, makes it a node again at
    /// once. Its origin claims stay until they are stale (their announcements may still arrive
    /// through other peers; a connection dropped for a moment must not free the name of a live
    /// stream).
    pub fn remove_peer(&mut self, peer: &PeerId) {
        if let Some(e) = self.nodes.remove(peer)
            && self.summaries.get(peer).is_none_or(|(_, at)| *at < e.last_seen)
        {
            self.summaries.insert(*peer, (CarrierSummary::of(&e.load), e.last_seen));
        }
        self.rtts.remove(peer);
        self.presences.remove(peer);
    }

    /// Records a (validated) stream presence of `peer` from the stream's presence topic, and
    /// the node-wide figures it carries, if any, apart from it.
    pub fn insert_presence(&mut self, peer: PeerId, mut presence: StreamPresence, now: Instant) {
        if let Some(summary) = presence.node.take() {
            self.summaries.insert(peer, (summary, now));
        }
        self.presences.entry(peer).or_default().insert(presence.stream.clone(), (presence, now));
    }

    /// Drops entries not refreshed within `ttl` (the announce interval's; node load reports,
    /// sent [`SUMMARY_EVERY`] times less often, within that many times `ttl`).
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        self.streams.retain(|_, e| now.saturating_duration_since(e.last_seen) <= ttl);
        let node_ttl = ttl * SUMMARY_EVERY;
        self.nodes.retain(|_, e| now.saturating_duration_since(e.last_seen) <= node_ttl);
        self.summaries.retain(|_, (_, at)| now.saturating_duration_since(*at) <= node_ttl);
        self.withdrawn.retain(|_, (_, _, at)| now.saturating_duration_since(*at) <= ttl);
        self.presences.retain(|_, m| {
            m.retain(|_, (_, at)| now.saturating_duration_since(*at) <= ttl);
            !m.is_empty()
        });
    }

    /// Folds the presences heard on presence topics into the nodes' loads: a presence newer than
    /// the node's load report replaces the report's entry for that stream (or is added), and a
    /// carrier summary newer than the report sets the node-wide figures. A carrier without a load
    /// report here (load reports go one hop: it is not connected to this node) becomes a node
    /// built from its presences while one of them is fresh and its latest summary is (a summary
    /// comes every [`SUMMARY_EVERY`] intervals and lasts as long as a load report; presences of
    /// nodes that predate summaries make no node); it is `connected: false`, and seen when its
    /// newest presence came.
    pub fn merge_presences(&mut self) {
        for (peer, streams) in &self.presences {
            let summary = self.summaries.get(peer);
            let built = !self.nodes.contains_key(peer);
            if built {
                let (Some(_), Some(last)) = (summary, streams.values().map(|(_, at)| *at).max()) else { continue };
                let rtt = self.rtts.get(peer).copied();
                self.nodes.insert(*peer, NodeEntry { load: NodeLoad::default(), last_seen: last, rtt, connected: false });
            }
            let Some(entry) = self.nodes.get_mut(peer) else { continue };
            let seen = entry.last_seen;
            let newer = |at: Instant| built || at >= seen;
            if let Some((summary, at)) = summary
                && newer(*at)
            {
                summary.apply_to(&mut entry.load);
            }
            for (name, (p, at)) in streams {
                if !newer(*at) {
                    continue;
                }
                match entry.load.streams.iter_mut().find(|s| s.stream == *name) {
                    Some(s) => *s = p.clone(),
                    None => entry.load.streams.push(p.clone()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::CarrierSummary;

    #[test]
    fn presences_newer_than_the_load_report_are_merged_into_it_and_expire_sooner() {
        let (a, b, up) = (PeerId::random(), PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let ttl = Duration::from_secs(3);
        let mut d = Directory::default();
        let old = StreamPresence { stream: "cam".into(), depth: 1, ..Default::default() };
        d.insert_load(a, NodeLoad { capacity: 9, streams: vec![old.clone()], ..Default::default() }, t0, true);
        let moved = StreamPresence { stream: "cam".into(), depth: 2, upstream: Some(up), ..Default::default() };
        let new = StreamPresence { stream: "new".into(), depth: 3, ..Default::default() };
        d.insert_presence(a, moved.clone(), t0 + Duration::from_secs(1));
        d.insert_presence(a, new.clone(), t0 + Duration::from_secs(1));
        d.insert_presence(b, new.clone(), t0 + Duration::from_secs(1));
        let mut snap = d.clone();
        snap.merge_presences();
        let load = snap.node(&a).expect("a");
        assert_eq!((load.capacity, load.streams.clone()), (9, vec![moved.clone(), new.clone()]));
        assert!(snap.node(&b).is_none(), "no load report: not a node yet");

        // A newer load report wins over older presences.
        d.insert_load(a, NodeLoad { capacity: 9, streams: vec![old.clone()], ..Default::default() }, t0 + Duration::from_secs(2), true);
        let mut snap = d.clone();
        snap.merge_presences();
        assert_eq!(snap.node(&a).expect("a").streams, vec![old]);

        // Presences expire after the interval's TTL, load reports after SUMMARY_EVERY times it.
        d.expire(t0 + Duration::from_secs(5), ttl);
        assert!(d.presences.is_empty());
        assert!(d.node(&a).is_some());
        d.expire(t0 + Duration::from_secs(2) + ttl * SUMMARY_EVERY + Duration::from_millis(1), ttl);
        assert!(d.node(&a).is_none());
    }

    fn summary(relay_children: u32) -> CarrierSummary {
        CarrierSummary {
            http_url: "http://192.0.2.1:8080".into(),
            region: Some("eu".into()),
            viewers: 5,
            capacity: 50,
            relay_children,
            max_relay_children: 4,
        }
    }

    fn snapshot(d: &Directory, now: Instant, ttl: Duration) -> Directory {
        let mut s = d.clone();
        s.expire(now, ttl);
        s.merge_presences();
        s
    }

    #[test]
    fn a_carrier_known_from_its_presences_only_is_a_node_while_they_keep_coming() {
        let (far, up, old_node) = (PeerId::random(), PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let ttl = Duration::from_secs(3);
        let mut d = Directory::default();
        let cam = |node| StreamPresence { stream: "cam".into(), depth: 2, upstream: Some(up), node, ..Default::default() };
        // One presence a second for a minute, its figures on every fifth: the node is there the
        // whole time (no load report ever comes from a node this one is not connected to), with
        // the latest figures.
        for i in 0..60u64 {
            let at = t0 + Duration::from_secs(i);
            let with = i % u64::from(SUMMARY_EVERY) == 0;
            d.insert_presence(far, cam(with.then(|| summary(i as u32))), at);
            // A node that predates summaries is not made a node from its presences.
            d.insert_presence(old_node, StreamPresence { stream: "cam".into(), ..Default::default() }, at);
            for probe in [at, at + Duration::from_millis(999)] {
                let s = snapshot(&d, probe, ttl);
                let e = s.nodes.get(&far).unwrap_or_else(|| panic!("node at {i} s"));
                let last_summary = i - i % u64::from(SUMMARY_EVERY);
                assert_eq!(e.load.relay_children, last_summary as u32);
                assert_eq!((e.load.max_relay_children, e.load.capacity, e.load.viewers), (4, 50, 5));
                assert_eq!((e.load.http_url.as_str(), e.load.region.as_deref()), ("http://192.0.2.1:8080", Some("eu")));
                assert_eq!(e.load.streams, vec![cam(None)], "merged without the summary");
                assert!(!e.connected);
                assert_eq!(e.last_seen, at);
                assert!(s.node(&old_node).is_none());
                assert!(d.knows_node(&far) && d.knows_node(&old_node), "both are mesh nodes (segment holders)");
            }
        }
        // Once its presences stop (it left the stream, or the mesh), it is gone after the TTL.
        let last = t0 + Duration::from_secs(59);
        assert!(snapshot(&d, last + ttl, ttl).node(&far).is_some());
        assert!(snapshot(&d, last + ttl + Duration::from_millis(1), ttl).node(&far).is_none());
        // Presences without a current summary make no node.
        let mut stale = d.clone();
        let late = last + ttl * SUMMARY_EVERY;
        stale.insert_presence(far, cam(None), late);
        assert!(snapshot(&stale, late, ttl).node(&far).is_none());
        // A peer this node loses its connection to is forgotten at once; its next presence
        // (from other peers) makes it a node again with the figures it last sent.
        d.remove_peer(&far);
        assert!(snapshot(&d, last, ttl).node(&far).is_none());
        assert!(!d.knows_node(&far));
        d.insert_presence(far, cam(None), last + Duration::from_secs(1));
        assert!(snapshot(&d, last + Duration::from_secs(1), ttl).node(&far).is_some_and(|l| l.relay_children == 55));
        d.insert_presence(far, cam(Some(summary(1))), last + Duration::from_secs(2));
        assert!(snapshot(&d, last + Duration::from_secs(2), ttl).node(&far).is_some_and(|l| l.relay_children == 1));
    }

    #[test]
    fn a_neighbour_let_go_stays_a_node_through_its_presences_with_its_reported_figures() {
        let near = PeerId::random();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(3);
        let mut d = Directory::default();
        let report = NodeLoad {
            http_url: "http://192.0.2.2:8080".into(),
            capacity: 10,
            relay_children: 2,
            max_relay_children: 4,
            streams: vec![StreamPresence { stream: "cam".into(), ..Default::default() }],
            ..Default::default()
        };
        d.insert_load(near, report, t0, true);
        // The connection is closed (over the target): no load report any more.
        d.remove_peer(&near);
        assert!(snapshot(&d, t0, ttl).node(&near).is_none());
        // Its presence a second later, without figures, makes it a node with its reported ones.
        let p = StreamPresence { stream: "cam".into(), depth: 1, ..Default::default() };
        d.insert_presence(near, p.clone(), t0 + Duration::from_secs(1));
        let s = snapshot(&d, t0 + Duration::from_secs(1), ttl);
        let e = s.nodes.get(&near).expect("near");
        assert_eq!((e.load.relay_children, e.load.capacity, e.load.http_url.as_str()), (2, 10, "http://192.0.2.2:8080"));
        assert_eq!((e.load.streams.clone(), e.connected), (vec![p.clone()], false));
        // A dead peer sends no presence: it is not a node, and its figures expire.
        let later = t0 + ttl * SUMMARY_EVERY + Duration::from_millis(1);
        assert!(snapshot(&d, later, ttl).node(&near).is_none());
        let mut expired = d.clone();
        expired.expire(later, ttl);
        assert!(expired.summaries.is_empty());
    }

    #[test]
    fn summaries_newer_than_a_neighbours_load_report_update_its_figures() {
        let (near, up) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        let ttl = Duration::from_secs(3);
        let mut d = Directory::default();
        let report = NodeLoad {
            http_url: "http://192.0.2.2:8080".into(),
            capacity: 10,
            relay_children: 0,
            max_relay_children: 4,
            egress_bps: 7,
            media_addrs: vec!["192.0.2.2:5000".parse().expect("addr")],
            streams: vec![StreamPresence { stream: "cam".into(), node: Some(summary(3)), ..Default::default() }],
            ..Default::default()
        };
        d.insert_load(near, report.clone(), t0, true);
        assert!(d.node(&near).expect("near").streams[0].node.is_none(), "summaries inside a report are dropped");
        // An older presence changes nothing; a newer one updates the node-wide figures and
        // keeps what only the report carries.
        let p = StreamPresence { stream: "cam".into(), depth: 1, upstream: Some(up), node: Some(summary(3)), ..Default::default() };
        d.insert_presence(near, p.clone(), t0 - Duration::from_millis(10));
        let s = snapshot(&d, t0, ttl);
        assert_eq!(s.node(&near).map(|l| (l.relay_children, l.capacity)), Some((0, 10)));
        d.insert_presence(near, p.clone(), t0 + Duration::from_secs(1));
        let s = snapshot(&d, t0 + Duration::from_secs(1), ttl);
        let l = s.node(&near).expect("near");
        assert_eq!((l.relay_children, l.capacity, l.viewers, l.http_url.as_str()), (3, 50, 5, "http://192.0.2.1:8080"));
        assert_eq!((l.egress_bps, l.media_addrs.clone()), (7, report.media_addrs.clone()));
        assert_eq!(l.streams, vec![StreamPresence { node: None, ..p }]);
        assert!(s.nodes.get(&near).is_some_and(|e| e.connected && e.last_seen == t0));
    }

    fn ann(origin: PeerId, stream: &str) -> StreamAnnouncement {
        StreamAnnouncement {
            origin,
            stream: stream.into(),
            codec: "VP8".into(),
            layers: vec![],
            http_url: String::new(),
            started_ms: 0,
        }
    }

    fn claim_at(origin: PeerId, stream: &str, started_ms: u64) -> StreamAnnouncement {
        StreamAnnouncement { started_ms, ..ann(origin, stream) }
    }

    const TTL: Duration = Duration::from_secs(3);
    const SETTLE: Duration = Duration::from_secs(2);

    #[test]
    fn first_origin_is_pinned_and_competitors_rejected() {
        let t0 = Instant::now();
        let (a, liar) = (PeerId::random(), PeerId::random());
        let mut d = Directory::default();
        assert_eq!(d.claim(claim_at(a, "room", 1000), t0, TTL, SETTLE), ClaimVerdict::Pinned);
        // A later claim is rejected while the origin stays fresh (within the settle window it
        // counts as a race, after it as a hijack attempt).
        for i in 1..=10u64 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(d.claim(claim_at(a, "room", 1000), now, TTL, SETTLE), ClaimVerdict::Refreshed);
            let v = d.claim(claim_at(liar, "room", 2000), now, TTL, SETTLE);
            assert_eq!(v, ClaimVerdict::Rejected { holder: a, race: i <= 2 });
            assert!(!v.accepted());
        }
        // After the settle window, even an earlier signed time does not displace a fresh origin.
        let v = d.claim(claim_at(liar, "room", 1), t0 + Duration::from_secs(10), TTL, SETTLE);
        assert_eq!(v, ClaimVerdict::Rejected { holder: a, race: false });
        assert_eq!(d.stream("room").map(|s| s.origin), Some(a));
        // The pinned origin's own re-announcement with a new start time keeps its pin.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(d.claim(claim_at(a, "room", 5000), later, TTL, SETTLE), ClaimVerdict::Refreshed);
        assert_eq!(d.origin_of("room", later, TTL), Some(a));
    }

    #[test]
    fn simultaneous_claims_settle_by_time_then_peer_id() {
        let t0 = Instant::now();
        let (p, q) = (PeerId::random(), PeerId::random());
        let (low, high) = if p < q { (p, q) } else { (q, p) };
        // Earlier signed time wins, in either order of arrival.
        for (first, second) in [((high, 100), (low, 200)), ((low, 200), (high, 100))] {
            let mut d = Directory::default();
            d.claim(claim_at(first.0, "room", first.1), t0, TTL, SETTLE);
            d.claim(claim_at(second.0, "room", second.1), t0 + Duration::from_millis(300), TTL, SETTLE);
            assert_eq!(d.stream("room").map(|s| s.origin), Some(high), "signed time 100 wins");
        }
        // Same signed time: the lower peer id wins, in either order.
        for (first, second) in [(high, low), (low, high)] {
            let mut d = Directory::default();
            d.claim(claim_at(first, "room", 100), t0, TTL, SETTLE);
            let v = d.claim(claim_at(second, "room", 100), t0 + Duration::from_millis(300), TTL, SETTLE);
            assert_eq!(d.stream("room").map(|s| s.origin), Some(low));
            if second == low {
                assert_eq!(v, ClaimVerdict::Won { displaced: high });
            } else {
                assert_eq!(v, ClaimVerdict::Rejected { holder: low, race: true });
            }
        }
        // A back-dated claim within the settle window is no race: the pin holds.
        let mut d = Directory::default();
        d.claim(claim_at(high, "room", 1_000_000), t0, TTL, SETTLE);
        let v = d.claim(claim_at(low, "room", 1), t0 + Duration::from_millis(300), TTL, SETTLE);
        assert_eq!(v, ClaimVerdict::Rejected { holder: high, race: false });
        // Outside the settle window the pin holds even against an earlier time.
        let mut d = Directory::default();
        d.claim(claim_at(high, "room", 100), t0, TTL, SETTLE);
        d.claim(claim_at(high, "room", 100), t0 + Duration::from_secs(2), TTL, SETTLE);
        let v = d.claim(claim_at(low, "room", 1), t0 + Duration::from_millis(2500), TTL, SETTLE);
        assert_eq!(v, ClaimVerdict::Rejected { holder: high, race: false });
    }

    #[test]
    fn name_is_free_once_the_origin_stops() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut d = Directory::default();
        d.claim(claim_at(a, "room", 1), t0, TTL, SETTLE);
        // Stale: a new origin is pinned.
        let later = t0 + TTL + Duration::from_millis(1);
        assert_eq!(d.origin_of("room", later, TTL), None);
        assert_eq!(d.claim(claim_at(b, "room", 9), later, TTL, SETTLE), ClaimVerdict::Pinned);
        assert_eq!(d.stream("room").map(|s| s.origin), Some(b));
        // Withdrawn: only its holder can withdraw it.
        d.withdraw("room", &a);
        assert!(d.stream("room").is_some());
        d.withdraw("room", &b);
        assert!(d.stream("room").is_none());
        assert_eq!(d.claim(claim_at(a, "room", 1), later, TTL, SETTLE), ClaimVerdict::Pinned);
        // A lost peer's claim stays pinned while fresh, and frees the name once stale.
        d.remove_peer(&a);
        assert_eq!(d.claim(claim_at(b, "room", 9), later, TTL, SETTLE), ClaimVerdict::Rejected { holder: a, race: true });
        let stale = later + TTL + Duration::from_millis(1);
        assert_eq!(d.claim(claim_at(b, "room", 9), stale, TTL, SETTLE), ClaimVerdict::Pinned);
    }

    #[test]
    fn withdrawal_frees_the_name_at_once_only_from_the_claims_signer() {
        let t0 = Instant::now();
        let (a, b, liar) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut d = Directory::default();
        d.claim(claim_at(a, "room", 100), t0, TTL, SETTLE);
        // Another peer's withdrawal of the name (signed by itself) frees nothing.
        let forged = StreamWithdrawal { origin: liar, stream: "room".into(), started_ms: 100 };
        assert!(!d.withdraw_claim(&forged, t0));
        assert_eq!(d.stream("room").map(|s| s.origin), Some(a));
        // A withdrawal of an older claim of the same origin (replayed) frees nothing either.
        let old = StreamWithdrawal { origin: a, stream: "room".into(), started_ms: 99 };
        assert!(!d.withdraw_claim(&old, t0));
        assert_eq!(d.origin_of("room", t0, TTL), Some(a));
        // The origin's own withdrawal frees it at once, well before the claim would be stale.
        let now = t0 + Duration::from_millis(100);
        let w = StreamWithdrawal { origin: a, stream: "room".into(), started_ms: 100 };
        assert!(d.withdraw_claim(&w, now));
        assert_eq!(d.origin_of("room", now, TTL), None);
        assert_eq!(d.withdrawals, 1);
        // An announcement of the withdrawn claim still in flight does not pin it again...
        assert_eq!(d.claim(claim_at(a, "room", 100), now, TTL, SETTLE), ClaimVerdict::Withdrawn);
        assert!(d.stream("room").is_none());
        // ...while a new publish elsewhere is pinned at once,
        assert_eq!(d.claim(claim_at(b, "room", 200), now, TTL, SETTLE), ClaimVerdict::Pinned);
        // and the first origin's new publish (a new signed time) is a claim like any other.
        assert!(d.withdraw_claim(&StreamWithdrawal { origin: b, stream: "room".into(), started_ms: 200 }, now));
        assert_eq!(d.claim(claim_at(a, "room", 300), now, TTL, SETTLE), ClaimVerdict::Pinned);
        // Remembered withdrawals expire with the ttl and are bounded in number.
        d.expire(now + TTL + Duration::from_millis(1), TTL);
        assert!(d.withdrawn.is_empty());
        for i in 0..(MAX_WITHDRAWN + 10) {
            let w = StreamWithdrawal { origin: a, stream: format!("s{i}"), started_ms: 1 };
            d.withdraw_claim(&w, now + Duration::from_millis(i as u64));
        }
        assert_eq!(d.withdrawn.len(), MAX_WITHDRAWN);
        assert!(!d.withdrawn.contains_key("s0"), "the oldest is forgotten first");
    }

    #[test]
    fn entries_expire_and_lost_peers_are_dropped() {
        let t0 = Instant::now();
        let a = PeerId::random();
        let b = PeerId::random();
        let mut d = Directory::default();
        d.insert_stream(ann(a, "s1"), t0);
        d.insert_stream(ann(b, "s2"), t0 + Duration::from_secs(2));
        d.insert_load(a, NodeLoad::default(), t0, true);
        d.set_rtt(a, Duration::from_millis(5));
        assert_eq!(d.rtt(&a), Some(Duration::from_millis(5)));
        d.expire(t0 + Duration::from_secs(3), Duration::from_millis(2500));
        assert!(d.stream("s1").is_none());
        assert!(d.node(&a).is_some(), "load reports come SUMMARY_EVERY intervals");
        assert!(d.stream("s2").is_some());
        d.expire(t0 + Duration::from_millis(2500) * SUMMARY_EVERY + Duration::from_millis(1), Duration::from_millis(2500));
        assert!(d.node(&a).is_none());
        d.insert_stream(ann(b, "s2"), t0 + Duration::from_secs(14));
        d.insert_load(b, NodeLoad::default(), t0, true);
        d.remove_peer(&b);
        assert!(d.stream("s2").is_some(), "a lost peer's claim stays until stale");
        assert!(d.node(&b).is_none());
    }
}
