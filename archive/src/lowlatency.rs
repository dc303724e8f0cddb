//! The live edge of a recording for low-latency HLS (RFC 8216bis §4.4.4.9, §6.2.5).
//!
//! [`LiveEdge`] keeps, in memory, the partial segments of the segment being written and of the
//! last few complete ones: what a low-latency player needs before a segment's CID exists.
//! [`LiveEdge::render`] writes the live playlist: the durable segments of the [`Manifest`] (URIs
//! `/ipfs/<cid>`), the recent ones with their `EXT-X-PART`s, then the parts of the segment being
//! written and an `EXT-X-PRELOAD-HINT` for the next part, under
//! `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES`. [`LiveEdge::contains`] answers whether a blocking
//! playlist reload (`_HLS_msn`, `_HLS_part`) can be answered.
//!
//! A segment is listed complete (its `EXTINF` and URI) only once it is durable, by its CID: a
//! segment's URI never changes between reloads (players check), and nothing that is not on disk
//! is named as a segment. Until then its parts are listed, and the next segment's parts wait for
//! it (a few milliseconds: the segment's write and index write). A segment that was never stored
//! is an `EXT-X-GAP` entry, as in the archive's own playlists. Parts are listed only once the init
//! segment they need is durable (its CID is in `EXT-X-MAP`). A new init segment (the publisher
//! changed resolution) empties the edge.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::manifest::{Manifest, ManifestSegment, rfc3339_ms};
use crate::recorder::Part;

/// Part target of live recordings: about a third of a second (ten frames at 30 fps), so that a
/// player in low-latency mode, which holds back three parts, plays about a second behind.
pub const PART_TARGET: Duration = Duration::from_millis(340);

/// Complete segments whose parts the edge keeps (listed before each segment's URI).
pub const EDGE_SEGMENTS: usize = 3;

/// Most bytes of parts an edge holds; the oldest segments' parts go first.
pub const MAX_EDGE_BYTES: usize = 32 * 1024 * 1024;

/// One part in memory.
#[derive(Clone, Debug)]
struct EdgePart {
    duration: Duration,
    independent: bool,
    bytes: Arc<[u8]>,
}

/// A segment at the live edge: its parts so far, and whether it is complete or lost.
#[derive(Clone, Debug)]
struct EdgeSegment {
    seq: u64,
    parts: Vec<EdgePart>,
    /// Its duration once the recorder closed it.
    complete: Option<Duration>,
    /// Never stored: listed as a gap.
    lost: bool,
}

impl EdgeSegment {
    fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.bytes.len()).sum()
    }
}

/// What the recording pipeline tells a [`LiveEdge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeUpdate {
    /// A new init segment: what the edge holds belongs to the old one.
    Init,
    /// The init segment in force is durable under this CID.
    InitStored(String),
    /// A part of the segment being written.
    Part(Part),
    /// Segment `seq` is complete (it lasts `duration`); it is listed once durable.
    Complete {
        /// Its media sequence number.
        seq: u64,
        /// Its duration.
        duration: Duration,
    },
    /// Segment `seq` will never be stored (its write failed or was dropped): a gap.
    Lost(u64),
}

/// Where the rendered playlist stops: every segment before `seq` is complete in it (durable or a
/// gap), and `parts` parts of segment `seq` are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tip {
    seq: u64,
    parts: usize,
    /// Segment `seq` is complete but not yet durable (no part of a later one can be listed).
    closing: bool,
}

/// The in-memory live edge of one recording; see the module documentation.
#[derive(Clone, Debug)]
pub struct LiveEdge {
    part_target: Duration,
    segment_target: Duration,
    segments: VecDeque<EdgeSegment>,
    init_cid: Option<String>,
    bytes: usize,
}

impl LiveEdge {
    /// An empty edge whose segments are cut at about `segment_target` and parts at about
    /// `part_target`.
    pub fn new(part_target: Duration, segment_target: Duration) -> Self {
        Self { part_target, segment_target, segments: VecDeque::new(), init_cid: None, bytes: 0 }
    }

    /// The part target duration (`EXT-X-PART-INF:PART-TARGET`).
    pub fn part_target(&self) -> Duration {
        self.part_target
    }

    /// Applies an update from the recording pipeline.
    pub fn apply(&mut self, update: EdgeUpdate) {
        match update {
            EdgeUpdate::Init => {
                self.segments.clear();
                self.bytes = 0;
                self.init_cid = None;
            }
            EdgeUpdate::InitStored(cid) => self.init_cid = Some(cid),
            EdgeUpdate::Part(p) => {
                let len = p.bytes.len();
                let seg = self.segment_mut(p.seq);
                // Parts arrive in order; one out of order (a number reused) is not listed.
                if seg.complete.is_none() && usize::try_from(p.index).is_ok_and(|i| i == seg.parts.len()) {
                    seg.parts.push(EdgePart { duration: p.duration, independent: p.independent, bytes: p.bytes.into() });
                    self.bytes += len;
                }
            }
            EdgeUpdate::Complete { seq, duration } => {
                let seg = self.segment_mut(seq);
                seg.complete.get_or_insert(duration);
            }
            EdgeUpdate::Lost(seq) => self.segment_mut(seq).lost = true,
        }
        self.prune();
    }

    /// The segment `seq`, inserted in order when new.
    fn segment_mut(&mut self, seq: u64) -> &mut EdgeSegment {
        let pos = match self.segments.iter().position(|s| s.seq == seq) {
            Some(pos) => pos,
            None => {
                let at = self.segments.iter().position(|s| s.seq > seq).unwrap_or(self.segments.len());
                self.segments.insert(at, EdgeSegment { seq, parts: Vec::new(), complete: None, lost: false });
                at
            }
        };
        &mut self.segments[pos]
    }

    fn prune(&mut self) {
        let complete = self.segments.iter().filter(|s| s.complete.is_some() || s.lost).count();
        let mut excess = complete.saturating_sub(EDGE_SEGMENTS);
        while let Some(front) = self.segments.front() {
            let done = front.complete.is_some() || front.lost;
            if !((excess > 0 && done) || (self.bytes > MAX_EDGE_BYTES && self.segments.len() > 1)) {
                break;
            }
            if done {
                excess = excess.saturating_sub(1);
            }
            self.bytes = self.bytes.saturating_sub(front.bytes());
            self.segments.pop_front();
        }
    }

    /// Part `index` of segment `seq`, if held.
    pub fn part(&self, seq: u64, index: u32) -> Option<Arc<[u8]>> {
        let s = self.segments.iter().find(|s| s.seq == seq)?;
        s.parts.get(usize::try_from(index).ok()?).map(|p| p.bytes.clone())
    }

    /// Where a playlist rendered now from `m` stops (see [`Tip`]); `None` before the init segment
    /// is durable or once the recording ended (no parts are listed then).
    fn tip(&self, m: &Manifest) -> Option<Tip> {
        if self.init_cid.is_none() || m.ended {
            return None;
        }
        let after = m.segments.last().map_or(0, |s| s.seq.saturating_add(1));
        let mut seq = after;
        for s in self.segments.iter().filter(|s| s.seq >= after) {
            if s.seq != seq {
                break;
            }
            if s.lost {
                seq = seq.saturating_add(1);
                continue;
            }
            return Some(Tip { seq, parts: s.parts.len(), closing: s.complete.is_some() });
        }
        Some(Tip { seq, parts: 0, closing: false })
    }

    /// The part a player will ask for next, `(seq, index)`, if the playlist hints at one.
    pub fn next_part(&self, m: &Manifest) -> Option<(u64, u32)> {
        let tip = self.tip(m)?;
        (!tip.closing).then(|| (tip.seq, u32::try_from(tip.parts).unwrap_or(u32::MAX)))
    }

    /// The newest media sequence number the playlist shows (complete or being written).
    pub fn last_seq(&self, m: &Manifest) -> Option<u64> {
        let durable = m.segments.last().map(|s| s.seq);
        durable.max(self.tip(m).map(|t| t.seq))
    }

    /// Whether the playlist rendered now holds segment `seq` complete (with `part`: its part
    /// `part`) or something later: a blocking reload for it can be answered.
    pub fn contains(&self, m: &Manifest, seq: u64, part: Option<u32>) -> bool {
        if m.ended || m.segments.last().is_some_and(|s| s.seq >= seq) {
            return true;
        }
        let Some(tip) = self.tip(m) else { return false };
        seq < tip.seq || (seq == tip.seq && part.is_some_and(|p| usize::try_from(p).is_ok_and(|p| p < tip.parts)))
    }

    /// The low-latency live playlist: the last `window` durable segments of `m` (URIs
    /// `<prefix><cid><suffix>`), the parts held (`<edge_prefix><seq>.<index>.m4s<suffix>`, `.webm`
    /// for a WebM recording), gaps
    /// for segments never stored, and a preload hint for the next part.
    pub fn render(&self, m: &Manifest, window: usize, prefix: &str, edge_prefix: &str, suffix: &str) -> String {
        let tip = self.tip(m);
        let ext = match crate::mux::Container::of_codecs(&m.codecs) {
            crate::mux::Container::Fmp4 => "m4s",
            crate::mux::Container::Webm => "webm",
        };
        let first = m.segments.len().saturating_sub(window.max(1));
        let durable = &m.segments[first..];
        let discontinuity_seq = m.segments[..first]
            .windows(2)
            .filter(|w| m.init_of(&w[0]) != m.init_of(&w[1]))
            .count()
            + usize::from(first > 0 && first < m.segments.len() && m.init_of(&m.segments[first - 1]) != m.init_of(&m.segments[first]));
        // Lost segments between the last durable one and the tip: gaps.
        let after = m.segments.last().map_or(0, |s| s.seq.saturating_add(1));
        let gaps: Vec<&EdgeSegment> = match tip {
            Some(t) => self.segments.iter().filter(|s| s.seq >= after && s.seq < t.seq && s.lost).collect(),
            None => Vec::new(),
        };
        let max_duration = m
            .segments
            .iter()
            .map(|s| s.duration)
            .chain(gaps.iter().filter_map(|s| s.complete.map(|d| d.as_secs_f64())))
            .fold(self.segment_target.as_secs_f64(), f64::max);
        let target = (((max_duration * 1000.0).round() / 1000.0).ceil() as u64).max(1);
        let part_target = self.part_target.as_secs_f64();

        let mut out = String::new();
        out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        if tip.is_some() {
            let _ = writeln!(out, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}", 3.0 * part_target);
            let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
        }
        let first_seq = durable.first().map(|s| s.seq).or(tip.map(|t| t.seq.min(gaps.first().map_or(t.seq, |g| g.seq)))).unwrap_or(0);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_seq}");
        if discontinuity_seq > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}");
        }
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        let mut current_init: Option<String> = None;
        let mut map = |out: &mut String, init: &str| {
            if current_init.as_deref() != Some(init) {
                if current_init.is_some() {
                    out.push_str("#EXT-X-DISCONTINUITY\n");
                }
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{prefix}{init}{suffix}\"");
                current_init = Some(init.to_string());
            }
        };
        let write_parts = |out: &mut String, seq: u64| {
            if tip.is_none() {
                return;
            }
            if let Some(s) = self.segments.iter().find(|s| s.seq == seq) {
                for (i, p) in s.parts.iter().enumerate() {
                    let _ = write!(out, "#EXT-X-PART:DURATION={:.3},URI=\"{edge_prefix}{seq}.{i}.{ext}{suffix}\"", p.duration.as_secs_f64());
                    out.push_str(if p.independent { ",INDEPENDENT=YES\n" } else { "\n" });
                }
            }
        };
        let mut prev: Option<&ManifestSegment> = None;
        for s in durable {
            map(&mut out, m.init_of(s));
            if let Some(p) = prev {
                crate::playlist::write_gaps(&mut out, p, s, prefix, suffix);
            }
            prev = Some(s);
            write_parts(&mut out, s.seq);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(s.start_unix_ms));
            let _ = writeln!(out, "#EXTINF:{:.3},\n{prefix}{}{suffix}", s.duration, s.cid);
        }
        if let (Some(t), Some(init)) = (tip, &self.init_cid) {
            map(&mut out, init);
            for g in &gaps {
                let d = g.complete.unwrap_or(self.segment_target).as_secs_f64();
                let _ = writeln!(out, "#EXTINF:{d:.3},\n#EXT-X-GAP\n{prefix}{}{suffix}", crate::playlist::GAP_URI);
            }
            write_parts(&mut out, t.seq);
            if !t.closing {
                let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{edge_prefix}{}.{}.{ext}{suffix}\"", t.seq, t.parts);
            }
        }
        if m.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn part(seq: u64, index: u32) -> EdgeUpdate {
        EdgeUpdate::Part(Part { seq, index, duration: Duration::from_millis(500), independent: index == 0, bytes: vec![seq as u8, index as u8] })
    }

    fn complete(seq: u64) -> EdgeUpdate {
        EdgeUpdate::Complete { seq, duration: Duration::from_secs(2) }
    }

    fn manifest(durable: u64) -> Manifest {
        let mut m = Manifest::new("binit", "avc1.42e01f,opus");
        for seq in 0..durable {
            m.push_segment(seq, format!("bseg{seq}"), Duration::from_secs(2), UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 2 * seq), "binit");
        }
        m
    }

    /// An edge that has seen segments 0..complete (four parts each) and `open_parts` parts of the
    /// next.
    fn edge(complete_segments: u64, open_parts: u32) -> LiveEdge {
        let mut e = LiveEdge::new(Duration::from_millis(500), Duration::from_secs(2));
        e.apply(EdgeUpdate::Init);
        e.apply(EdgeUpdate::InitStored("binit".into()));
        for seq in 0..complete_segments {
            for i in 0..4 {
                e.apply(part(seq, i));
            }
            e.apply(complete(seq));
        }
        for i in 0..open_parts {
            e.apply(part(complete_segments, i));
        }
        e
    }

    #[test]
    fn durable_segments_by_cid_then_the_parts_being_written_and_a_preload_hint() {
        let e = edge(5, 2);
        let m = manifest(5);
        let p = e.render(&m, 6, "/ipfs/", "/replay/s/ll/", "");
        assert!(p.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n"), "{p}");
        assert!(p.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"));
        assert!(p.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{p}");
        assert_eq!(p.matches("#EXTINF:").count(), 5);
        assert!(p.contains("#EXT-X-PART:DURATION=0.500,URI=\"/replay/s/ll/4.3.m4s\"\n#EXT-X-PROGRAM-DATE-TIME"), "a durable segment's parts precede it: {p}");
        assert!(p.contains("#EXTINF:2.000,\n/ipfs/bseg4\n#EXT-X-PART:DURATION=0.500,URI=\"/replay/s/ll/5.0.m4s\",INDEPENDENT=YES\n"), "{p}");
        assert!(p.ends_with("#EXT-X-PART:DURATION=0.500,URI=\"/replay/s/ll/5.1.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/replay/s/ll/5.2.m4s\"\n"), "{p}");
        // The edge keeps the parts of three complete segments.
        assert!(!p.contains("/replay/s/ll/1.0.m4s"));
        assert!(p.contains("URI=\"/replay/s/ll/2.0.m4s\""), "{p}");
        assert_eq!(p.matches("#EXT-X-MAP:").count(), 1);
        assert_eq!(e.part(5, 1).as_deref(), Some(&[5u8, 1][..]));
        assert!(e.part(1, 0).is_none());
    }

    #[test]
    fn a_complete_segment_is_listed_only_once_durable_and_the_next_ones_parts_wait_for_it() {
        let mut e = edge(3, 0);
        e.apply(part(3, 0));
        // Segment 2 is complete but not durable yet: its parts, no URI, no hint, nothing of 3.
        let m = manifest(2);
        let p = e.render(&m, 6, "/ipfs/", "/ll/", "");
        assert!(p.ends_with("#EXT-X-PART:DURATION=0.500,URI=\"/ll/2.3.m4s\"\n"), "{p}");
        assert!(!p.contains("/ll/3.0.m4s") && !p.contains("PRELOAD-HINT"));
        assert_eq!(e.next_part(&m), None);
        assert!(e.contains(&m, 2, Some(3)));
        assert!(!e.contains(&m, 2, Some(4)), "segment 2 is not complete in the playlist yet");
        assert!(!e.contains(&m, 3, Some(0)));
        // Durable: its CID, then segment 3's part and the hint.
        let m = manifest(3);
        let p = e.render(&m, 6, "/ipfs/", "/ll/", "");
        assert!(p.ends_with("/ipfs/bseg2\n#EXT-X-PART:DURATION=0.500,URI=\"/ll/3.0.m4s\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/ll/3.1.m4s\"\n"), "{p}");
        assert!(e.contains(&m, 2, Some(4)) && e.contains(&m, 2, None) && e.contains(&m, 3, Some(0)));
        assert!(!e.contains(&m, 3, Some(1)) && !e.contains(&m, 3, None) && !e.contains(&m, 4, Some(0)));
        assert_eq!(e.next_part(&m), Some((3, 1)));
        assert_eq!(e.last_seq(&m), Some(3));
    }

    #[test]
    fn a_segment_never_stored_is_a_gap_and_the_edge_goes_on() {
        let mut e = edge(3, 0);
        e.apply(EdgeUpdate::Lost(2));
        e.apply(part(3, 0));
        let m = manifest(2);
        let p = e.render(&m, 6, "/ipfs/", "/ll/", "");
        assert!(p.contains("/ipfs/bseg1\n#EXTINF:2.000,\n#EXT-X-GAP\n/ipfs/gap\n#EXT-X-PART:DURATION=0.500,URI=\"/ll/3.0.m4s\""), "{p}");
        assert!(e.contains(&m, 2, None) && e.contains(&m, 3, Some(0)));
    }

    #[test]
    fn nothing_from_memory_is_listed_before_its_init_segment_is_durable() {
        let mut e = edge(2, 1);
        e.apply(EdgeUpdate::Init);
        e.apply(part(2, 0));
        let m = manifest(2);
        let p = e.render(&m, 6, "/ipfs/", "/ll/", "");
        assert!(!p.contains("/ll/") && !p.contains("SERVER-CONTROL"), "{p}");
        assert!(!e.contains(&m, 2, Some(0)));
        e.apply(EdgeUpdate::InitStored("binit2".into()));
        let p = e.render(&m, 6, "/ipfs/", "/ll/", "");
        assert!(p.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"/ipfs/binit2\"\n#EXT-X-PART:DURATION=0.500,URI=\"/ll/2.0.m4s\""), "{p}");
    }

    #[test]
    fn an_ended_recording_lists_no_parts_and_ends() {
        let e = edge(3, 1);
        let mut m = manifest(3);
        m.end();
        let p = e.render(&m, 6, "/ipfs/", "/ll/", "?token=t");
        assert!(!p.contains("EXT-X-PART") && !p.contains("PRELOAD-HINT") && !p.contains("SERVER-CONTROL"), "{p}");
        assert!(p.ends_with("#EXT-X-ENDLIST\n"));
        assert!(p.contains("/ipfs/bseg2?token=t\n"));
        assert!(e.contains(&m, 9, None), "an ended playlist answers every blocking reload");
    }

    #[test]
    fn the_window_slides_and_memory_is_bounded() {
        let e = edge(8, 0);
        let m = manifest(8);
        let p = e.render(&m, 4, "/ipfs/", "/ll/", "");
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{p}");
        assert_eq!(p.matches("#EXTINF:").count(), 4);
        assert!(e.segments.len() <= EDGE_SEGMENTS + 1);
        let mut big = LiveEdge::new(Duration::from_millis(500), Duration::from_secs(2));
        for seq in 0..10 {
            big.apply(EdgeUpdate::Part(Part { seq, index: 0, duration: Duration::from_millis(500), independent: true, bytes: vec![0; MAX_EDGE_BYTES / 4] }));
        }
        assert!(big.bytes <= MAX_EDGE_BYTES, "{}", big.bytes);
        assert_eq!(big.segments.back().map(|s| s.seq), Some(9));
    }
}
