//! Volunteers for replication, sans-IO: which streams this node copies although it does not
//! relay them, so that every segment ends up on `--replicas` nodes.
//!
//! Every node watches the segment announcements of the mesh's live streams and who says it holds
//! each segment. A segment that, [`Config::grace`] after its announcement, has fewer holders than
//! `replicas` (the origin counted) is short. The nodes that could fill the gap rank themselves by
//! a rendezvous hash of (stream, peer id), the same order on every node, and the one ranked `r`
//! volunteers once the stream has been short for `grace + r * step`: the best-ranked ones start
//! at once, the next ones only if the shortage lasts (say the best ones have no room). A node
//! without room (its archive budget nearly spent) never volunteers. An `--archive-node` copies
//! every stream it has room for. A volunteer keeps its copy until the stream ends; the copy
//! itself (fetching, backfill of earlier segments, VOD root) is [`crate::replica`]'s.

use std::collections::{BTreeMap, HashSet, VecDeque};

/// Segments remembered per watched stream (the newest one older than the grace is judged).
const RECENT: usize = 16;
use std::time::{Duration, Instant};

/// How volunteering works on this node.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Nodes (the origin counted) that should hold every segment (`--replicas`).
    pub replicas: usize,
    /// Copy every stream (`--archive-node`), not only short ones.
    pub archive_node: bool,
    /// How long after a segment's announcement its holders are counted.
    pub grace: Duration,
    /// Extra wait per rank before a lower-ranked node volunteers.
    pub step: Duration,
    /// Live streams watched at once (more are ignored).
    pub max_streams: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            replicas: 3,
            archive_node: false,
            grace: Duration::from_secs(4),
            step: Duration::from_secs(3),
            max_streams: 256,
        }
    }
}

/// What this node should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolunteerAction {
    /// Copy `stream` (from its origin `origin`) from now on, earlier segments included.
    Copy {
        /// Stream name.
        stream: String,
        /// Its origin's peer id.
        origin: String,
    },
}

#[derive(Debug)]
struct Watched {
    origin: String,
    /// The latest announced segments and when each was heard of, oldest first.
    recent: VecDeque<(u64, Instant)>,
    /// Since when the stream has been short of holders.
    short_since: Option<Instant>,
    volunteering: bool,
}

/// What the node knows at a tick, from the rest of the node.
pub struct View<'a> {
    /// Every mesh node this node knows (itself included), by peer id.
    pub nodes: &'a [String],
    /// Peers known to hold a segment of a stream (besides its origin): `(stream, seq)` → ids.
    pub holders: &'a dyn Fn(&str, u64) -> Vec<String>,
    /// Whether this node relays the stream (it copies it then anyway).
    pub carrying: &'a dyn Fn(&str) -> bool,
    /// Whether this node's archive has room for another copy.
    pub room: bool,
}

/// The volunteering state of a node.
#[derive(Debug)]
pub struct Volunteers {
    me: String,
    config: Config,
    streams: BTreeMap<String, Watched>,
}

impl Volunteers {
    /// State for node `me`.
    pub fn new(me: impl Into<String>, config: Config) -> Self {
        Self { me: me.into(), config, streams: BTreeMap::new() }
    }

    /// The mesh's live streams (name, origin) other than this node's own: new ones are watched,
    /// gone ones forgotten (a volunteer's copy is closed by the copies once its stream is gone).
    /// Returns how many of them are not watched because `max_streams` are.
    pub fn live_streams(&mut self, live: &[(String, String)]) -> usize {
        let names: HashSet<&str> = live.iter().map(|(s, _)| s.as_str()).collect();
        self.streams.retain(|s, _| names.contains(s.as_str()));
        let mut unwatched = 0;
        for (stream, origin) in live {
            if *origin == self.me {
                continue;
            }
            if self.streams.len() >= self.config.max_streams && !self.streams.contains_key(stream) {
                unwatched += 1;
                continue;
            }
            let w = self.streams.entry(stream.clone()).or_insert_with(|| Watched {
                origin: origin.clone(),
                recent: VecDeque::new(),
                short_since: None,
                volunteering: false,
            });
            if w.origin != *origin {
                // A new origin for the name: a new recording, judged afresh.
                *w = Watched { origin: origin.clone(), recent: VecDeque::new(), short_since: None, volunteering: false };
            }
        }
        unwatched
    }

    /// Streams whose segment announcements this node should receive.
    pub fn watched(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    /// A segment of `stream` was announced.
    pub fn segment(&mut self, stream: &str, seq: u64, now: Instant) {
        if let Some(w) = self.streams.get_mut(stream)
            && w.recent.back().is_none_or(|(s, _)| seq > *s)
        {
            w.recent.push_back((seq, now));
            if w.recent.len() > RECENT {
                w.recent.pop_front();
            }
        }
    }

    /// True when this node copies `stream` as a volunteer.
    pub fn volunteering(&self, stream: &str) -> bool {
        self.streams.get(stream).is_some_and(|w| w.volunteering)
    }

    /// Decides which streams to start copying.
    pub fn tick(&mut self, now: Instant, view: &View<'_>) -> Vec<VolunteerAction> {
        let mut out = Vec::new();
        for (stream, w) in &mut self.streams {
            if w.volunteering || (view.carrying)(stream) {
                w.short_since = None;
                continue;
            }
            if !view.room {
                continue;
            }
            if self.config.archive_node {
                w.volunteering = true;
                out.push(VolunteerAction::Copy { stream: stream.clone(), origin: w.origin.clone() });
                continue;
            }
            // Holders of the newest segment old enough to have been copied by now.
            let grace = self.config.grace;
            let Some(&(seq, heard)) = w.recent.iter().rev().find(|(_, t)| now.saturating_duration_since(*t) >= grace) else {
                continue;
            };
            let holders: HashSet<String> =
                (view.holders)(stream, seq).into_iter().chain(std::iter::once(w.origin.clone())).collect();
            if holders.len() >= self.config.replicas || holders.contains(&self.me) {
                w.short_since = None;
                continue;
            }
            let since = *w.short_since.get_or_insert(heard + self.config.grace);
            let rank = rank_of(&self.me, stream, view.nodes.iter().filter(|n| !holders.contains(*n)));
            let wait = self.config.step.saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX));
            if now.saturating_duration_since(since) >= wait {
                w.volunteering = true;
                out.push(VolunteerAction::Copy { stream: stream.clone(), origin: w.origin.clone() });
            }
        }
        out
    }
}

/// This node's place among `candidates` (itself included or not) in the rendezvous order of
/// `stream`: 0 for the first.
fn rank_of<'a>(me: &str, stream: &str, candidates: impl Iterator<Item = &'a String>) -> usize {
    let mine = weight(stream, me);
    candidates.filter(|c| c.as_str() != me && weight(stream, c) > mine).count()
}

/// The rendezvous weight of `peer` for `stream` (FNV-1a 64, the same on every node and build).
fn weight(stream: &str, peer: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes().chain([0u8]).chain(peer.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("peer-{i}")).collect()
    }

    /// Runs one node's volunteers from 0 to `at_ms` (segments every 2 s, a tick every 500 ms)
    /// against fixed holders; returns whether it volunteered by then.
    fn decide(me: &str, all: &[String], holders: &[&str], at_ms: u64, cfg: Config) -> bool {
        let t0 = Instant::now();
        let mut v = Volunteers::new(me, cfg);
        v.live_streams(&[("s".into(), "origin".into())]);
        let held: Vec<String> = holders.iter().map(|h| (*h).to_owned()).collect();
        let holders_fn = move |_: &str, _: u64| held.clone();
        let carrying = |_: &str| false;
        let view = View { nodes: all, holders: &holders_fn, carrying: &carrying, room: true };
        let mut t = 0;
        while t <= at_ms {
            let now = t0 + Duration::from_millis(t);
            if t % 2_000 == 0 {
                v.segment("s", 7 + t / 2_000, now);
            }
            if !v.tick(now, &view).is_empty() {
                return true;
            }
            t += 500;
        }
        false
    }

    #[test]
    fn the_best_ranked_nodes_fill_a_shortage_first_and_others_only_if_it_lasts() {
        let all = nodes(10);
        let cfg = Config::default();
        // One holder besides the origin: one more copy is needed. Nothing before the grace ends.
        assert!(all.iter().all(|n| !decide(n, &all, &["peer-0"], 3_500, cfg)));
        // At the grace's end exactly one node (rank 0 among non-holders) volunteers.
        let first: Vec<&String> = all.iter().filter(|n| decide(n, &all, &["peer-0"], 4_000, cfg)).collect();
        assert_eq!(first.len(), 1, "one volunteer at first: {first:?}");
        assert_ne!(first[0], "peer-0", "a holder does not volunteer");
        // If the shortage lasts a step longer, the next-ranked node joins in.
        assert_eq!(all.iter().filter(|n| decide(n, &all, &["peer-0"], 6_500, cfg)).count(), 1);
        assert_eq!(all.iter().filter(|n| decide(n, &all, &["peer-0"], 7_000, cfg)).count(), 2);
        // Every node computes the same order.
        let again: Vec<&String> = all.iter().filter(|n| decide(n, &all, &["peer-0"], 4_000, cfg)).collect();
        assert_eq!(first, again);
    }

    #[test]
    fn enough_holders_means_no_volunteer_and_a_full_node_never_volunteers() {
        let all = nodes(5);
        let cfg = Config::default();
        assert!(all.iter().all(|n| !decide(n, &all, &["peer-1", "peer-2"], 60_000, cfg)), "origin + 2 = 3 replicas");
        let t0 = Instant::now();
        let mut v = Volunteers::new("peer-3", cfg);
        v.live_streams(&[("s".into(), "origin".into())]);
        v.segment("s", 1, t0);
        let none = |_: &str, _: u64| Vec::new();
        let no = |_: &str| false;
        let full = View { nodes: &all, holders: &none, carrying: &no, room: false };
        assert!(v.tick(t0 + Duration::from_secs(600), &full).is_empty());
        // A relay copies the stream anyway: it does not volunteer for it.
        let yes = |_: &str| true;
        let relaying = View { nodes: &all, holders: &none, carrying: &yes, room: true };
        assert!(v.tick(t0 + Duration::from_secs(600), &relaying).is_empty());
    }

    #[test]
    fn an_archive_node_copies_every_live_stream_once_and_its_own_are_not_watched() {
        let t0 = Instant::now();
        let mut v = Volunteers::new("me", Config { archive_node: true, ..Config::default() });
        v.live_streams(&[("a".into(), "o1".into()), ("b".into(), "o2".into()), ("mine".into(), "me".into())]);
        assert_eq!(v.watched().collect::<Vec<_>>(), vec!["a", "b"]);
        let none = |_: &str, _: u64| Vec::new();
        let no = |_: &str| false;
        let view = View { nodes: &[], holders: &none, carrying: &no, room: true };
        let out = v.tick(t0, &view);
        assert_eq!(
            out,
            vec![
                VolunteerAction::Copy { stream: "a".into(), origin: "o1".into() },
                VolunteerAction::Copy { stream: "b".into(), origin: "o2".into() }
            ]
        );
        assert!(v.volunteering("a"));
        assert!(v.tick(t0, &view).is_empty(), "once");
        // The stream ends: forgotten; a new stream under the name is judged afresh.
        v.live_streams(&[("b".into(), "o3".into())]);
        assert!(!v.volunteering("a"));
        assert!(!v.volunteering("b"));
    }

    #[test]
    fn the_watch_list_is_bounded() {
        let mut v = Volunteers::new("me", Config { max_streams: 2, ..Config::default() });
        let live: Vec<(String, String)> = (0..5).map(|i| (format!("s{i}"), "o".to_owned())).collect();
        assert_eq!(v.live_streams(&live), 3, "the streams over the bound are counted");
        assert_eq!(v.watched().count(), 2);
    }
}
