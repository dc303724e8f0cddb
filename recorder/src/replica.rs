//! Copies of other nodes' recordings, sans-IO: which blocks to fetch as an origin announces its
//! segments, the copy's index once they are here, and which nodes hold each segment.
//!
//! Inputs (announcements, fetch outcomes, holders' messages, time) go in; [`ReplicaAction`]s
//! come out for the driver (`crate::copies`) to carry out. A copy's index has the same shape as
//! the origin's ([`RecordingIndex`]), so the archive routes and the gateway serve it the same way.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use relaycast_archive::{Container, Manifest};
use relaycast_archive::manifest::{ManifestSegment, rfc3339_ms};
use relaycast_mesh::SegmentAnnouncement;

use crate::index::{RecordingIndex, StoredFile};

/// Bounds of the copies a node keeps and of the work it does for them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Streams copied at once (the oldest copy stops growing when a new stream needs room).
    pub max_streams: usize,
    /// Segments awaiting a fetch, over every stream (more are dropped, counted).
    pub max_queued: usize,
    /// Segment fetches in flight at once.
    pub max_fetching: usize,
    /// Tries per segment before it is given up.
    pub max_attempts: u32,
    /// First retry delay; doubled per try.
    pub retry_after: Duration,
    /// Holders remembered per segment.
    pub max_providers: usize,
    /// Segments whose holders are remembered, per stream (the oldest are forgotten first).
    pub max_tracked_segments: usize,
    /// Streams whose holders are remembered.
    pub max_tracked_streams: usize,
    /// How long a copied stream must be gone from the mesh (no live origin) before its copy is
    /// closed into a VOD root.
    pub finish_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_streams: 64,
            max_queued: 4096,
            max_fetching: 4,
            max_attempts: 6,
            retry_after: Duration::from_millis(500),
            max_providers: 32,
            max_tracked_segments: 20_000,
            max_tracked_streams: 1024,
            finish_after: Duration::from_secs(10),
        }
    }
}

/// What the driver does for the core.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaAction {
    /// Fetch every block under `roots` (the segment, and its init segment when not held yet)
    /// from `from` (the origin first) and report with [`Replicas::fetched`].
    Fetch {
        /// Stream name.
        stream: String,
        /// Segment sequence number.
        seq: u64,
        /// CIDs of the file roots to fetch.
        roots: Vec<String>,
        /// Peers to ask, in order of preference.
        from: Vec<String>,
    },
    /// Write the copy's index durably.
    Persist {
        /// Stream name.
        stream: String,
        /// The index to write.
        index: RecordingIndex,
    },
    /// Close the copy into a VOD root (`crate::index::finish_index`) and report it with
    /// [`Replicas::vod_built`]: the origin's deterministic function over the same files and
    /// segment list, so every complete copy gets the origin's root CID.
    BuildVod {
        /// Stream name.
        stream: String,
        /// The copy's index.
        index: RecordingIndex,
    },
    /// Ask the origin's archive API (or another holder's) for the signed announcements of the
    /// segments before `before`, check each against `origin`'s key, and hand the good ones to
    /// [`Replicas::announced`]: a copy started mid-recording gets the whole recording.
    Backfill {
        /// Stream name.
        stream: String,
        /// The origin's peer id.
        origin: String,
        /// First segment this copy heard of.
        before: u64,
    },
    /// Tell the stream's followers that this node holds the segment.
    AnnounceHeld {
        /// Stream name.
        stream: String,
        /// Segment sequence number.
        seq: u64,
        /// Segment CID.
        cid: String,
    },
}

/// One file root fetched: its CID, content size and whole-DAG size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// Root CID.
    pub cid: String,
    /// Content bytes.
    pub size: u64,
    /// Sum of the DAG's block sizes.
    pub dag_size: u64,
}

/// A segment waiting for its blocks.
#[derive(Debug)]
struct Wanted {
    seg: SegmentAnnouncement,
    attempts: u32,
    not_before: Instant,
    fetching: bool,
}

/// A copy of one stream's current recording.
#[derive(Debug)]
struct Copy {
    origin: String,
    index: RecordingIndex,
    /// Init segment CIDs held, in the order first seen (names `init.mp4`, `init-1.mp4`, …).
    inits: Vec<String>,
    wanted: BTreeMap<u64, Wanted>,
    /// Order of creation, to pick the oldest copy when room is needed.
    created: u64,
    /// Since when the stream has had no live origin in the mesh.
    gone_since: Option<Instant>,
    /// A [`ReplicaAction::BuildVod`] is out.
    finishing: bool,
    /// The origin's signature of each copied segment's announcement (served with the archive, so
    /// that other nodes can copy from this one and check what they get).
    sigs: BTreeMap<u64, String>,
}

/// Counters of the copying work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// Segments copied (every block here, index written).
    pub copied: u64,
    /// Segment fetches that failed (each retry counts).
    pub fetch_failures: u64,
    /// Segments given up after every try.
    pub given_up: u64,
    /// Announcements not queued because a bound was reached.
    pub dropped: u64,
}

/// The copies of a node and the holders it knows of.
#[derive(Debug)]
pub struct Replicas {
    me: String,
    limits: Limits,
    copies: HashMap<String, Copy>,
    /// Segments in the order they were announced, for fair, in-order fetching.
    queue: VecDeque<(String, u64)>,
    fetching: usize,
    next_copy: u64,
    /// Per stream, per segment, the peers known to hold it (besides the origin and this node).
    holders: HashMap<String, BTreeMap<u64, BTreeSet<String>>>,
    holder_streams: VecDeque<String>,
    counts: ReplicaCounts,
}

impl Replicas {
    /// An empty set for the node whose peer id is `me`.
    pub fn new(me: impl Into<String>, limits: Limits) -> Self {
        Self {
            me: me.into(),
            limits,
            copies: HashMap::new(),
            queue: VecDeque::new(),
            fetching: 0,
            next_copy: 0,
            holders: HashMap::new(),
            holder_streams: VecDeque::new(),
            counts: ReplicaCounts::default(),
        }
    }

    /// This node's peer id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// What the copying did so far.
    pub fn counts(&self) -> ReplicaCounts {
        self.counts
    }

    /// Takes a copy loaded from disk (at start).
    pub fn restore(&mut self, origin: String, index: RecordingIndex, sigs: BTreeMap<u64, String>) {
        let inits = index.files.iter().filter(|f| f.name.starts_with("init")).map(|f| f.cid.clone()).collect();
        self.next_copy += 1;
        let created = self.next_copy;
        self.copies.insert(
            index.stream.clone(),
            Copy { origin, index, inits, wanted: BTreeMap::new(), created, gone_since: None, finishing: false, sigs },
        );
    }

    /// The copy of `stream`'s recording, when this node holds one.
    pub fn index(&self, stream: &str) -> Option<&RecordingIndex> {
        self.copies.get(stream).map(|c| &c.index)
    }

    /// The origin's signatures of the copied segments of `stream`, by sequence number.
    pub fn sigs(&self, stream: &str) -> Option<&BTreeMap<u64, String>> {
        self.copies.get(stream).map(|c| &c.sigs)
    }

    /// The index of every copy held.
    pub fn indexes(&self) -> Vec<&RecordingIndex> {
        self.copies.values().map(|c| &c.index).collect()
    }

    /// Forgets the copy of `stream` if it is closed (its VOD root built); returns its index.
    pub fn remove_closed(&mut self, stream: &str) -> Option<RecordingIndex> {
        if self.copies.get(stream)?.index.vod.is_none() {
            return None;
        }
        let index = self.copies.get(stream).map(|c| c.index.clone());
        self.drop_copy(stream);
        self.holders.remove(stream);
        index
    }

    /// The origin of the copy of `stream`.
    pub fn origin(&self, stream: &str) -> Option<&str> {
        self.copies.get(stream).map(|c| c.origin.as_str())
    }

    /// The peers known to hold segment `seq` of `stream` besides its origin: other holders that
    /// said so, and this node when its copy has it.
    pub fn holders(&self, stream: &str, seq: u64) -> Vec<String> {
        let mut out: BTreeSet<String> = self.holders.get(stream).and_then(|m| m.get(&seq)).cloned().unwrap_or_default();
        if self
            .copies
            .get(stream)
            .is_some_and(|c| c.index.manifest.as_ref().is_some_and(|m| m.segments.iter().any(|s| s.seq == seq)))
        {
            out.insert(self.me.clone());
        }
        out.into_iter().collect()
    }

    /// Every peer other than this node known to hold some segment of `stream`, the one holding
    /// the most segments first.
    pub fn stream_holders(&self, stream: &str) -> Vec<String> {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for peers in self.holders.get(stream).into_iter().flat_map(|m| m.values()) {
            for p in peers.iter().filter(|p| **p != self.me) {
                *count.entry(p.as_str()).or_default() += 1;
            }
        }
        let mut out: Vec<(&str, usize)> = count.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out.into_iter().map(|(p, _)| p.to_owned()).collect()
    }

    /// `holder` says it holds segment `seq` of `stream`.
    pub fn held_by(&mut self, stream: &str, seq: u64, holder: &str) {
        if holder == self.me {
            return;
        }
        if !self.holders.contains_key(stream) {
            if self.holders.len() >= self.limits.max_tracked_streams
                && let Some(old) = self.holder_streams.pop_front()
            {
                self.holders.remove(&old);
            }
            self.holder_streams.push_back(stream.to_owned());
        }
        let segs = self.holders.entry(stream.to_owned()).or_default();
        let set = segs.entry(seq).or_default();
        if set.len() < self.limits.max_providers {
            set.insert(holder.to_owned());
        }
        while segs.len() > self.limits.max_tracked_segments {
            segs.pop_first();
        }
    }

    /// `origin` announced `seg` of a stream this node copies; returns the fetches it allows.
    pub fn announced(&mut self, origin: &str, seg: SegmentAnnouncement, now: Instant) -> Vec<ReplicaAction> {
        let stream = seg.stream.clone();
        let restart = self.copies.get(&stream).is_some_and(|c| {
            c.origin != origin
                || c.index
                    .manifest
                    .as_ref()
                    .is_some_and(|m| m.segments.iter().any(|s| s.seq == seg.seq && s.cid != seg.cid))
        });
        if restart {
            // A new recording under the same name (or a new origin): a new copy.
            self.drop_copy(&stream);
        }
        let mut backfill = None;
        if !self.copies.contains_key(&stream) {
            if self.copies.len() >= self.limits.max_streams {
                let Some(oldest) = self.copies.iter().min_by_key(|(_, c)| c.created).map(|(s, _)| s.clone()) else {
                    return Vec::new();
                };
                self.drop_copy(&oldest);
            }
            self.next_copy += 1;
            let index = RecordingIndex {
                stream: stream.clone(),
                started_unix_ms: seg.start_unix_ms,
                manifest: None,
                files: Vec::new(),
                vod: None,
                layer: None,
                renditions: Vec::new(),
                resolution: None,
                pinned: false,
                announce_ms: Vec::new(),
            };
            let created = self.next_copy;
            self.copies.insert(
                stream.clone(),
                Copy {
                    origin: origin.to_owned(),
                    index,
                    inits: Vec::new(),
                    wanted: BTreeMap::new(),
                    created,
                    gone_since: None,
                    finishing: false,
                    sigs: BTreeMap::new(),
                },
            );
            if seg.seq > 0 {
                // Joined mid-recording: the earlier segments come from an archive API, each
                // checked against the origin's signature.
                backfill = Some(ReplicaAction::Backfill { stream: stream.clone(), origin: origin.to_owned(), before: seg.seq });
            }
        }
        let Some(copy) = self.copies.get_mut(&stream) else {
            return Vec::new();
        };
        copy.gone_since = None;
        if copy.index.vod.is_some() || copy.finishing {
            // The recording goes on after its copy was closed (the origin came back): reopened.
            copy.index.vod = None;
            copy.finishing = false;
            if let Some(m) = copy.index.manifest.as_mut() {
                m.ended = false;
            }
        }
        let have = copy.index.manifest.as_ref().is_some_and(|m| m.segments.iter().any(|s| s.seq == seg.seq));
        if have || copy.wanted.contains_key(&seg.seq) {
            return Vec::new();
        }
        if self.queue.len() >= self.limits.max_queued {
            self.counts.dropped += 1;
            tracing::warn!(%stream, seq = seg.seq, queued = self.limits.max_queued, "copy queue full; segment not copied");
            return backfill.into_iter().collect();
        }
        copy.index.started_unix_ms = copy.index.started_unix_ms.min(seg.start_unix_ms);
        self.queue.push_back((stream, seg.seq));
        copy.wanted.insert(seg.seq, Wanted { seg, attempts: 0, not_before: now, fetching: false });
        let mut out: Vec<ReplicaAction> = backfill.into_iter().collect();
        out.extend(self.pump(now));
        out
    }

    /// The outcome of a [`ReplicaAction::Fetch`]: every root's sizes, or an error.
    pub fn fetched(
        &mut self,
        stream: &str,
        seq: u64,
        result: Result<Vec<FetchedFile>, ()>,
        now: Instant,
    ) -> Vec<ReplicaAction> {
        let Some(copy) = self.copies.get_mut(stream) else {
            // The copy was dropped while its fetch ran.
            return self.pump(now);
        };
        let Some(w) = copy.wanted.get_mut(&seq) else {
            return self.pump(now);
        };
        if !w.fetching {
            return self.pump(now);
        }
        self.fetching = self.fetching.saturating_sub(1);
        w.fetching = false;
        let mut out = Vec::new();
        match result {
            Ok(files) => {
                let Some(w) = copy.wanted.remove(&seq) else {
                    return self.pump(now);
                };
                let seg = w.seg;
                let find = |cid: &str| files.iter().find(|f| f.cid == cid);
                if !copy.inits.contains(&seg.init)
                    && let Some(f) = find(&seg.init)
                {
                    let n = copy.inits.len();
                    let name = Container::of_codecs(&seg.codecs).init_name(n);
                    copy.index.files.push(StoredFile { name, cid: f.cid.clone(), size: f.size, dag_size: f.dag_size });
                    copy.inits.push(seg.init.clone());
                }
                let Some(f) = find(&seg.cid) else {
                    self.counts.given_up += 1;
                    return self.pump(now);
                };
                copy.index.files.push(StoredFile {
                    name: Container::of_codecs(&seg.codecs).segment_name(seg.seq),
                    cid: f.cid.clone(),
                    size: f.size,
                    dag_size: f.dag_size,
                });
                sort_files(&mut copy.index.files);
                let manifest =
                    copy.index.manifest.get_or_insert_with(|| Manifest::new(seg.init.clone(), seg.codecs.clone()));
                let at = manifest.segments.partition_point(|s| s.seq < seg.seq);
                manifest.segments.insert(
                    at,
                    ManifestSegment {
                        seq: seg.seq,
                        cid: seg.cid.clone(),
                        duration: seg.duration,
                        start: rfc3339_ms(seg.start_unix_ms),
                        start_unix_ms: seg.start_unix_ms,
                        init: (seg.init != manifest.init).then(|| seg.init.clone()),
                    },
                );
                if !seg.sig.is_empty() {
                    copy.sigs.insert(seg.seq, seg.sig.clone());
                }
                self.counts.copied += 1;
                out.push(ReplicaAction::Persist { stream: stream.to_owned(), index: copy.index.clone() });
                out.push(ReplicaAction::AnnounceHeld { stream: stream.to_owned(), seq: seg.seq, cid: seg.cid });
            }
            Err(()) => {
                self.counts.fetch_failures += 1;
                w.attempts += 1;
                if w.attempts >= self.limits.max_attempts {
                    let tries = w.attempts;
                    copy.wanted.remove(&seq);
                    self.counts.given_up += 1;
                    tracing::warn!(%stream, seq, tries, "segment copy given up");
                } else {
                    let backoff = self.limits.retry_after.saturating_mul(1 << (w.attempts - 1).min(10));
                    w.not_before = now + backoff;
                    self.queue.push_back((stream.to_owned(), seq));
                }
            }
        }
        out.extend(self.pump(now));
        out
    }

    /// Closes copies whose stream has been gone from the mesh for [`Limits::finish_after`]
    /// (`live` tells whether a stream has a live origin), once nothing is left to fetch.
    pub fn tick(&mut self, now: Instant, live: &dyn Fn(&str) -> bool) -> Vec<ReplicaAction> {
        let mut out = Vec::new();
        for (stream, copy) in &mut self.copies {
            if copy.index.vod.is_some() || copy.finishing || copy.index.manifest.is_none() {
                continue;
            }
            if live(stream) {
                copy.gone_since = None;
                continue;
            }
            let since = *copy.gone_since.get_or_insert_with(|| {
                tracing::info!(%stream, after_s = self.limits.finish_after.as_secs(), "copied stream has no live origin; its copy is closed into a VOD root unless it comes back");
                now
            });
            if now.saturating_duration_since(since) < self.limits.finish_after {
                continue;
            }
            // Segments still waiting for a retry are given up (their origin is gone, and no
            // holder had them); fetches in flight are waited for.
            let before = copy.wanted.len();
            copy.wanted.retain(|_, w| w.fetching);
            let dropped = before - copy.wanted.len();
            if dropped > 0 {
                self.counts.given_up += dropped as u64;
                tracing::warn!(%stream, segments = dropped, "stream gone: segments still waiting for a retry are not copied");
            }
            if copy.wanted.is_empty() {
                copy.finishing = true;
                out.push(ReplicaAction::BuildVod { stream: stream.clone(), index: copy.index.clone() });
            }
        }
        out
    }

    /// The outcome of a [`ReplicaAction::BuildVod`]: the closed index (with its `vod` root), or
    /// `None` when it could not be built (tried again at the next tick).
    pub fn vod_built(&mut self, stream: &str, closed: Option<RecordingIndex>) -> Vec<ReplicaAction> {
        let Some(copy) = self.copies.get_mut(stream) else { return Vec::new() };
        if !copy.finishing {
            // Reopened meanwhile: the root no longer describes the copy.
            return Vec::new();
        }
        copy.finishing = false;
        match closed {
            Some(ix) if ix.files == copy.index.files => {
                copy.index = ix;
                vec![ReplicaAction::Persist { stream: stream.to_owned(), index: copy.index.clone() }]
            }
            _ => Vec::new(),
        }
    }

    /// When [`Replicas::handle_timeout`] next has work (a retry due).
    /// `None` while every fetch slot is taken: a fetch's outcome comes first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.fetching >= self.limits.max_fetching {
            return None;
        }
        self.queue.iter().filter_map(|(s, q)| self.copies.get(s)?.wanted.get(q).map(|w| w.not_before)).min()
    }

    /// Time passed: retries that are due start.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<ReplicaAction> {
        self.pump(now)
    }

    /// Starts queued fetches that are due, up to the bound.
    fn pump(&mut self, now: Instant) -> Vec<ReplicaAction> {
        let mut out = Vec::new();
        let mut later = VecDeque::new();
        while self.fetching < self.limits.max_fetching {
            let Some((stream, seq)) = self.queue.pop_front() else {
                break;
            };
            let Some(copy) = self.copies.get_mut(&stream) else {
                continue;
            };
            let Some(w) = copy.wanted.get_mut(&seq) else {
                continue;
            };
            if w.fetching {
                continue;
            }
            if w.not_before > now {
                later.push_back((stream, seq));
                continue;
            }
            w.fetching = true;
            self.fetching += 1;
            let mut roots = Vec::with_capacity(2);
            if !copy.inits.contains(&w.seg.init) {
                roots.push(w.seg.init.clone());
            }
            roots.push(w.seg.cid.clone());
            let mut from = vec![copy.origin.clone()];
            if let Some(h) = self.holders.get(&stream).and_then(|m| m.get(&seq)) {
                from.extend(h.iter().filter(|p| **p != copy.origin).cloned());
            }
            out.push(ReplicaAction::Fetch { stream, seq, roots, from });
        }
        // Not yet due: back in front, in their order.
        while let Some(x) = later.pop_back() {
            self.queue.push_front(x);
        }
        out
    }

    fn drop_copy(&mut self, stream: &str) {
        if let Some(c) = self.copies.remove(stream) {
            let running = c.wanted.values().filter(|w| w.fetching).count();
            self.fetching = self.fetching.saturating_sub(running);
        }
        self.queue.retain(|(s, _)| s != stream);
    }
}

/// Files in the origin's order: init segments first by number, then media segments by name.
fn sort_files(files: &mut [StoredFile]) {
    files.sort_by(|a, b| a.name.cmp(&b.name));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u64, cid: &str) -> SegmentAnnouncement {
        SegmentAnnouncement {
            stream: "room".into(),
            seq,
            cid: cid.into(),
            init: "init0".into(),
            codecs: "avc1.42e01f,opus".into(),
            duration: 2.0,
            start_unix_ms: 1_700_000_000_000 + seq * 2000,
            sig: format!("sig{seq}"),
        }
    }

    fn files(cids: &[&str]) -> Vec<FetchedFile> {
        cids.iter().map(|c| FetchedFile { cid: (*c).into(), size: 100, dag_size: 110 }).collect()
    }

    #[test]
    fn a_copied_segment_is_indexed_persisted_and_announced() {
        let t = Instant::now();
        let mut r = Replicas::new("me", Limits::default());
        let a = r.announced("origin", seg(0, "s0"), t);
        assert_eq!(
            a,
            vec![ReplicaAction::Fetch {
                stream: "room".into(),
                seq: 0,
                roots: vec!["init0".into(), "s0".into()],
                from: vec!["origin".into()]
            }]
        );
        let a = r.fetched("room", 0, Ok(files(&["init0", "s0"])), t);
        assert!(
            matches!(&a[0], ReplicaAction::Persist { index, .. } if index.files.len() == 2 && index.manifest.as_ref().is_some_and(|m| m.segments.len() == 1 && m.init == "init0"))
        );
        assert_eq!(a[1], ReplicaAction::AnnounceHeld { stream: "room".into(), seq: 0, cid: "s0".into() });
        assert_eq!(r.holders("room", 0), vec!["me".to_string()]);
        // The next segment needs only its own root: the init is here.
        let a = r.announced("origin", seg(1, "s1"), t);
        assert!(matches!(&a[0], ReplicaAction::Fetch { roots, .. } if roots == &vec!["s1".to_string()]));
        // Announced twice: fetched once.
        assert!(r.announced("origin", seg(1, "s1"), t).is_empty());
        let m = r.index("room").and_then(|i| i.manifest.clone()).expect("manifest");
        assert_eq!(m.segments[0].start, rfc3339_ms(1_700_000_000_000));
    }

    #[test]
    fn segments_completing_out_of_order_are_listed_in_order() {
        let t = Instant::now();
        let mut r = Replicas::new("me", Limits::default());
        r.announced("o", seg(0, "s0"), t);
        r.announced("o", seg(1, "s1"), t);
        r.fetched("room", 1, Ok(files(&["init0", "s1"])), t);
        r.fetched("room", 0, Ok(files(&["s0"])), t);
        let ix = r.index("room").expect("copy");
        let seqs: Vec<u64> =
            ix.manifest.as_ref().map(|m| m.segments.iter().map(|s| s.seq).collect()).unwrap_or_default();
        assert_eq!(seqs, vec![0, 1]);
        let names: Vec<&str> = ix.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["init.mp4", "segment-000000.m4s", "segment-000001.m4s"]);
    }

    #[test]
    fn failures_retry_with_backoff_then_give_up() {
        let t = Instant::now();
        let limits = Limits { max_attempts: 3, retry_after: Duration::from_secs(1), ..Limits::default() };
        let mut r = Replicas::new("me", limits);
        r.announced("o", seg(0, "s0"), t);
        assert!(r.fetched("room", 0, Err(()), t).is_empty(), "not retried at once");
        assert_eq!(r.poll_timeout(), Some(t + Duration::from_secs(1)));
        assert!(r.handle_timeout(t + Duration::from_millis(999)).is_empty());
        assert_eq!(r.handle_timeout(t + Duration::from_secs(1)).len(), 1);
        r.fetched("room", 0, Err(()), t + Duration::from_secs(1));
        assert_eq!(r.poll_timeout(), Some(t + Duration::from_secs(3)), "doubled");
        assert_eq!(r.handle_timeout(t + Duration::from_secs(3)).len(), 1);
        assert!(r.fetched("room", 0, Err(()), t + Duration::from_secs(3)).is_empty());
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.counts().given_up, 1);
        assert_eq!(r.counts().fetch_failures, 3);
    }

    #[test]
    fn fetches_in_flight_are_bounded() {
        let t = Instant::now();
        let mut r = Replicas::new("me", Limits { max_fetching: 2, max_queued: 3, ..Limits::default() });
        assert_eq!(r.announced("o", seg(0, "s0"), t).len(), 1);
        assert_eq!(r.announced("o", seg(1, "s1"), t).len(), 1);
        assert!(r.announced("o", seg(2, "s2"), t).is_empty(), "two in flight");
        r.announced("o", seg(3, "s3"), t);
        r.announced("o", seg(4, "s4"), t);
        assert_eq!(r.counts().dropped, 0);
        r.announced("o", seg(5, "s5"), t);
        assert_eq!(r.counts().dropped, 1, "three wait at most");
        assert_eq!(r.poll_timeout(), None, "no slot: the driver waits for an outcome, not a timer");
        let a = r.fetched("room", 0, Ok(files(&["init0", "s0"])), t);
        assert!(a.iter().any(|x| matches!(x, ReplicaAction::Fetch { seq: 2, .. })), "the next starts");
    }

    #[test]
    fn holders_are_bounded_and_feed_the_fetch() {
        let t = Instant::now();
        let mut r = Replicas::new("me", Limits { max_providers: 2, max_tracked_segments: 2, ..Limits::default() });
        for p in ["b", "c", "d"] {
            r.held_by("room", 5, p);
        }
        r.held_by("room", 5, "me");
        assert_eq!(r.holders("room", 5), vec!["b".to_string(), "c".to_string()]);
        r.held_by("room", 6, "b");
        r.held_by("room", 7, "b");
        assert!(r.holders("room", 5).is_empty(), "the oldest segment is forgotten");
        let a = r.announced("o", seg(7, "s7"), t);
        let fetch = a.iter().find(|x| matches!(x, ReplicaAction::Fetch { .. }));
        assert!(matches!(fetch, Some(ReplicaAction::Fetch { from, .. }) if from == &vec!["o".to_string(), "b".to_string()]));
    }

    #[test]
    fn stream_holders_are_every_other_holder_most_segments_first() {
        let mut r = Replicas::new("me", Limits::default());
        for (seq, p) in [(1, "c"), (2, "b"), (3, "b"), (3, "c"), (4, "b"), (4, "me")] {
            r.held_by("room", seq, p);
        }
        r.held_by("other", 1, "z");
        assert_eq!(r.stream_holders("room"), vec!["b".to_string(), "c".to_string()]);
        assert!(r.stream_holders("nothing").is_empty());
    }

    #[test]
    fn a_new_recording_under_the_name_starts_a_new_copy() {
        let t = Instant::now();
        let mut r = Replicas::new("me", Limits::default());
        r.announced("o", seg(0, "s0"), t);
        r.fetched("room", 0, Ok(files(&["init0", "s0"])), t);
        let a = r.announced("o", seg(0, "other"), t);
        assert_eq!(a.len(), 1);
        assert!(r.index("room").is_some_and(|i| i.manifest.is_none()), "the old copy is gone");
    }

    #[test]
    fn a_copy_is_closed_once_its_stream_is_gone_and_reopened_if_it_goes_on() {
        let t = Instant::now();
        let mut r = Replicas::new("me", Limits { finish_after: Duration::from_secs(10), ..Limits::default() });
        r.announced("o", seg(0, "s0"), t);
        assert!(r.tick(t + Duration::from_secs(30), &|_| false).is_empty(), "a segment is still being fetched");
        r.fetched("room", 0, Ok(files(&["init0", "s0"])), t);
        // A segment that keeps failing is given up once the stream is gone.
        r.announced("o", seg(1, "s1"), t);
        r.fetched("room", 1, Err(()), t);
        assert!(r.tick(t + Duration::from_secs(5), &|_| true).is_empty(), "live");
        assert!(r.tick(t + Duration::from_secs(6), &|_| false).is_empty(), "gone, not for long");
        let a = r.tick(t + Duration::from_secs(16), &|_| false);
        let [ReplicaAction::BuildVod { index, .. }] = a.as_slice() else { panic!("{a:?}") };
        assert!(r.tick(t + Duration::from_secs(17), &|_| false).is_empty(), "built once");
        let mut closed = index.clone();
        closed.vod = Some("vodroot".into());
        let a = r.vod_built("room", Some(closed));
        assert!(
            matches!(a.as_slice(), [ReplicaAction::Persist { index, .. }] if index.vod.as_deref() == Some("vodroot"))
        );
        assert_eq!(r.counts().given_up, 1);
        assert_eq!(r.poll_timeout(), None, "nothing left to retry");
        // The origin came back with the next segment: the copy is open again.
        r.announced("o", seg(2, "s2"), t + Duration::from_secs(20));
        assert!(r.index("room").is_some_and(|i| i.vod.is_none()));
    }

    #[test]
    fn a_copy_started_mid_recording_asks_for_the_earlier_segments() {
        let t = Instant::now();
        let mut r = Replicas::new("me", Limits::default());
        let a = r.announced("o", seg(5, "s5"), t);
        assert_eq!(a[0], ReplicaAction::Backfill { stream: "room".into(), origin: "o".into(), before: 5 });
        assert!(matches!(&a[1], ReplicaAction::Fetch { seq: 5, .. }));
        assert!(r.announced("o", seg(6, "s6"), t).iter().all(|x| !matches!(x, ReplicaAction::Backfill { .. })), "once");
        // The backfilled segments are fetched and listed in order, with their signatures.
        for q in 0..5 {
            r.announced("o", seg(q, &format!("s{q}")), t);
        }
        r.fetched("room", 5, Ok(files(&["init0", "s5"])), t);
        r.fetched("room", 6, Ok(files(&["s6"])), t);
        for q in 0..5 {
            r.fetched("room", q, Ok(files(&[&format!("s{q}")])), t);
        }
        let seqs: Vec<u64> = r.index("room").and_then(|i| i.manifest.clone()).map(|m| m.segments.iter().map(|s| s.seq).collect()).unwrap_or_default();
        assert_eq!(seqs, (0..7).collect::<Vec<_>>());
        assert_eq!(r.sigs("room").and_then(|s| s.get(&3)).map(String::as_str), Some("sig3"));
        assert_eq!(r.index("room").map(|i| i.started_unix_ms), Some(1_700_000_000_000), "the earliest start");
        // A copy from the first segment needs none.
        let mut other = seg(0, "x0");
        other.stream = "other".into();
        assert!(r.announced("o", other, t).iter().all(|x| !matches!(x, ReplicaAction::Backfill { .. })));
    }

    #[test]
    fn copies_are_bounded() {
        let t = Instant::now();
        let mut r = Replicas::new("me", Limits { max_streams: 1, ..Limits::default() });
        r.announced("o", seg(0, "s0"), t);
        let mut other = seg(0, "x0");
        other.stream = "other".into();
        r.announced("o", other, t);
        assert!(r.index("room").is_none());
        assert!(r.index("other").is_some());
        // The dropped copy's fetch reports late: ignored, and the slot is free.
        r.fetched("room", 0, Ok(files(&["init0", "s0"])), t);
        assert!(r.index("room").is_none());
    }
}
