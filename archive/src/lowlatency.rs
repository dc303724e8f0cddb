//! The live edge of a recording for low-latency HLS (RFC 8216bis §4.4.4.9, §6.2.5).
//!
//! [`LiveEdge`] keeps, in memory, the partial segments of the segment being written and of the
//! last few complete ones, and the complete segments themselves until the archive has them: what
//! a low-latency player needs before a segment's CID exists. [`LiveEdge::render`] writes the live
//! playlist: the durable segments of the [`Manifest`] (URIs `/ipfs/<cid>`), then the complete
//! segments still only in memory, each recent segment with its `EXT-X-PART`s, the parts of the
//! segment being written and an `EXT-X-PRELOAD-HINT` for the next part, under
//! `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES`. [`LiveEdge::contains`] answers whether a
//! blocking playlist reload (`_HLS_msn`, `_HLS_part`) can be answered.
//!
//! Memory segments are only listed once the init segment they need is durable (its CID is then
//! in `EXT-X-MAP`), so that a player never sees a discontinuity appear and vanish between
//! reloads. A new init segment (the publisher changed resolution) empties the edge.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::manifest::{Manifest, rfc3339_ms};
use crate::recorder::{Part, Segment};

/// Part target of live recordings: parts of about half a second (a player in low-latency mode
/// holds back three of them).
pub const PART_TARGET: Duration = Duration::from_millis(500);

/// Complete segments whose parts and bytes the edge keeps.
pub const EDGE_SEGMENTS: usize = 3;

/// Most bytes an edge holds (parts and complete segments); the oldest segments go first.
pub const MAX_EDGE_BYTES: usize = 48 * 1024 * 1024;

/// One part in memory.
#[derive(Clone, Debug)]
struct EdgePart {
    duration: Duration,
    independent: bool,
    bytes: Arc<[u8]>,
}

/// A segment at the live edge: its parts so far, and once complete, the segment.
#[derive(Clone, Debug)]
struct EdgeSegment {
    seq: u64,
    parts: Vec<EdgePart>,
    complete: Option<Complete>,
}

#[derive(Clone, Debug)]
struct Complete {
    duration: Duration,
    start_unix_ms: u64,
    bytes: Arc<[u8]>,
}

impl EdgeSegment {
    fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.bytes.len()).sum::<usize>() + self.complete.as_ref().map_or(0, |c| c.bytes.len())
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
    /// A segment is complete (its bytes; not yet durable).
    Segment(Segment),
}

/// The in-memory live edge of one recording; see the module documentation.
#[derive(Clone, Debug)]
pub struct LiveEdge {
    part_target: Duration,
    segments: VecDeque<EdgeSegment>,
    init_cid: Option<String>,
    bytes: usize,
}

impl LiveEdge {
    /// An empty edge whose parts are cut at about `part_target`.
    pub fn new(part_target: Duration) -> Self {
        Self { part_target, segments: VecDeque::new(), init_cid: None, bytes: 0 }
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
            EdgeUpdate::Segment(s) => {
                let start_unix_ms = s.start_wallclock.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                let len = s.bytes.len();
                let seg = self.segment_mut(s.seq);
                if seg.complete.is_none() {
                    seg.complete = Some(Complete { duration: s.duration, start_unix_ms, bytes: s.bytes.into() });
                    self.bytes += len;
                }
            }
        }
        self.prune();
    }

    /// The segment `seq`, appended when it is newer than every segment held.
    fn segment_mut(&mut self, seq: u64) -> &mut EdgeSegment {
        let pos = match self.segments.iter().position(|s| s.seq == seq) {
            Some(pos) => pos,
            None => {
                // A number below what the edge holds is long gone from the live window: it is
                // dropped at the next prune.
                let at = self.segments.iter().position(|s| s.seq > seq).unwrap_or(self.segments.len());
                self.segments.insert(at, EdgeSegment { seq, parts: Vec::new(), complete: None });
                at
            }
        };
        &mut self.segments[pos]
    }

    fn prune(&mut self) {
        let complete = self.segments.iter().filter(|s| s.complete.is_some()).count();
        let mut excess = complete.saturating_sub(EDGE_SEGMENTS);
        while let Some(front) = self.segments.front() {
            let drop = (excess > 0 && front.complete.is_some()) || self.bytes > MAX_EDGE_BYTES && self.segments.len() > 1;
            if !drop {
                break;
            }
            if front.complete.is_some() {
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

    /// Complete segment `seq`, if held.
    pub fn segment(&self, seq: u64) -> Option<Arc<[u8]>> {
        self.segments.iter().find(|s| s.seq == seq)?.complete.as_ref().map(|c| c.bytes.clone())
    }

    /// The part a player will ask for next: `(seq, index)` after the newest part held.
    pub fn next_part(&self) -> Option<(u64, u32)> {
        let last = self.segments.back()?;
        match last.complete {
            Some(_) => Some((last.seq.checked_add(1)?, 0)),
            None => Some((last.seq, u32::try_from(last.parts.len()).ok()?)),
        }
    }

    /// The newest media sequence number the playlist shows (complete or being written).
    pub fn last_seq(&self, m: &Manifest) -> Option<u64> {
        let durable = m.segments.last().map(|s| s.seq);
        let edge = self.init_cid.as_ref().and(self.segments.back().map(|s| s.seq));
        durable.max(edge)
    }

    /// Whether the playlist rendered now holds segment `seq` (with `part`: its part `part`) or
    /// something later: a blocking reload for it can be answered.
    pub fn contains(&self, m: &Manifest, seq: u64, part: Option<u32>) -> bool {
        if m.ended || m.segments.last().is_some_and(|s| s.seq > seq || (s.seq == seq && part.is_none())) {
            return true;
        }
        if m.segments.last().is_some_and(|s| s.seq == seq) && self.segments.iter().all(|s| s.seq != seq) {
            // Durable, and its parts are no longer held: complete, so every part is in it.
            return true;
        }
        if self.init_cid.is_none() {
            return false;
        }
        self.segments.iter().any(|s| {
            s.seq > seq
                || (s.seq == seq
                    && match part {
                        None => s.complete.is_some(),
                        Some(p) => s.complete.is_some() || usize::try_from(p).is_ok_and(|p| p < s.parts.len()),
                    })
        })
    }

    /// The low-latency live playlist: the last `window` segments (durable ones from `m`, with
    /// URIs `<prefix><cid><suffix>`; memory ones `<edge_prefix><seq>.m4s<suffix>`), the parts
    /// held (`<edge_prefix><seq>.<index>.m4s<suffix>`) and a preload hint for the next part.
    pub fn render(&self, m: &Manifest, window: usize, prefix: &str, edge_prefix: &str, suffix: &str) -> String {
        let last_durable = m.segments.last().map(|s| s.seq);
        // Memory segments after the last durable one, contiguous, once their init is durable.
        let mut memory: Vec<&EdgeSegment> = Vec::new();
        if self.init_cid.is_some() && !m.ended {
            let mut expect = last_durable.map_or(Some(0), |s| s.checked_add(1));
            for s in self.segments.iter().filter(|s| last_durable.is_none_or(|d| s.seq > d)) {
                if Some(s.seq) != expect {
                    break;
                }
                memory.push(s);
                expect = s.seq.checked_add(1);
            }
        }
        let memory_complete = memory.iter().filter(|s| s.complete.is_some()).count();
        let first = m.segments.len().saturating_sub(window.max(1).saturating_sub(memory_complete).max(1));
        let durable = &m.segments[first..];
        let discontinuity_seq = m.segments[..first]
            .windows(2)
            .filter(|w| m.init_of(&w[0]) != m.init_of(&w[1]))
            .count()
            + usize::from(first > 0 && first < m.segments.len() && m.init_of(&m.segments[first - 1]) != m.init_of(&m.segments[first]));
        let max_duration = durable
            .iter()
            .map(|s| s.duration)
            .chain(memory.iter().filter_map(|s| s.complete.as_ref().map(|c| c.duration.as_secs_f64())))
            .chain(m.segments.iter().map(|s| s.duration))
            .fold(0.0, f64::max);
        let target = (((max_duration * 1000.0).round() / 1000.0).ceil() as u64).max(1);
        let part_target = self.part_target.as_secs_f64();

        let mut out = String::new();
        out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        if !m.ended {
            let _ = writeln!(out, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}", 3.0 * part_target);
            let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
        }
        let first_seq = durable.first().map(|s| s.seq).or_else(|| memory.first().map(|s| s.seq)).unwrap_or(0);
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
            if m.ended {
                return;
            }
            if let Some(s) = self.segments.iter().find(|s| s.seq == seq) {
                for (i, p) in s.parts.iter().enumerate() {
                    let _ = write!(out, "#EXT-X-PART:DURATION={:.3},URI=\"{edge_prefix}{seq}.{i}.m4s{suffix}\"", p.duration.as_secs_f64());
                    out.push_str(if p.independent { ",INDEPENDENT=YES\n" } else { "\n" });
                }
            }
        };
        let mut prev: Option<&crate::manifest::ManifestSegment> = None;
        for s in durable {
            map(&mut out, m.init_of(s));
            if let Some(p) = prev {
                write_gaps(&mut out, p.seq, p.start_unix_ms, p.duration, s.seq, s.start_unix_ms, prefix, suffix);
            }
            prev = Some(s);
            write_parts(&mut out, s.seq);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(s.start_unix_ms));
            let _ = writeln!(out, "#EXTINF:{:.3},\n{prefix}{}{suffix}", s.duration, s.cid);
        }
        if let Some(init) = &self.init_cid {
            for s in &memory {
                map(&mut out, init);
                write_parts(&mut out, s.seq);
                if let Some(c) = &s.complete {
                    let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(c.start_unix_ms));
                    let _ = writeln!(out, "#EXTINF:{:.3},\n{edge_prefix}{}.m4s{suffix}", c.duration.as_secs_f64(), s.seq);
                }
            }
        }
        if m.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        } else if self.init_cid.is_some()
            && let Some((seq, index)) = self.next_part()
            && last_durable.is_none_or(|d| seq > d)
        {
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{edge_prefix}{seq}.{index}.m4s{suffix}\"");
        }
        out
    }
}

/// `EXT-X-GAP` entries for the sequence numbers missing between two durable segments (see
/// [`crate::playlist`]).
#[allow(clippy::too_many_arguments)]
fn write_gaps(out: &mut String, prev_seq: u64, prev_start_ms: u64, prev_duration: f64, seq: u64, start_ms: u64, prefix: &str, suffix: &str) {
    let missing = seq.saturating_sub(prev_seq).saturating_sub(1);
    if missing == 0 {
        return;
    }
    let entries = missing.min(crate::playlist::MAX_GAP_ENTRIES);
    let span = start_ms.saturating_sub(prev_start_ms) as f64 / 1000.0 - prev_duration;
    let each = (span / entries as f64).max(0.001);
    for _ in 0..entries {
        let _ = writeln!(out, "#EXTINF:{each:.3},\n#EXT-X-GAP\n{prefix}{}{suffix}", crate::playlist::GAP_URI);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(seq: u64, index: u32, independent: bool) -> EdgeUpdate {
        EdgeUpdate::Part(Part { seq, index, duration: Duration::from_millis(500), independent, bytes: vec![seq as u8, index as u8] })
    }

    fn segment(seq: u64) -> EdgeUpdate {
        EdgeUpdate::Segment(Segment {
            seq,
            bytes: vec![seq as u8; 4],
            duration: Duration::from_secs(2),
            start_wallclock: UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 2 * seq),
            start_offset: Duration::from_secs(2 * seq),
            has_video: true,
        })
    }

    fn manifest(durable: u64) -> Manifest {
        let mut m = Manifest::new("binit", "avc1.42e01f,opus");
        for seq in 0..durable {
            m.push_segment(seq, format!("bseg{seq}"), Duration::from_secs(2), UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 2 * seq), "binit");
        }
        m
    }

    /// An edge that has seen segments 0..complete and `open_parts` parts of the next.
    fn edge(complete: u64, open_parts: u32) -> LiveEdge {
        let mut e = LiveEdge::new(Duration::from_millis(500));
        e.apply(EdgeUpdate::Init);
        e.apply(EdgeUpdate::InitStored("binit".into()));
        for seq in 0..complete {
            for i in 0..4 {
                e.apply(part(seq, i, i == 0));
            }
            e.apply(segment(seq));
        }
        for i in 0..open_parts {
            e.apply(part(complete, i, i == 0));
        }
        e
    }

    #[test]
    fn memory_segments_and_parts_follow_the_durable_ones_with_a_preload_hint() {
        let e = edge(5, 2);
        let m = manifest(3);
        let p = e.render(&m, 6, "/ipfs/", "/replay/s/ll/", "");
        assert!(p.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n"), "{p}");
        assert!(p.contains("#EXT-X-PART-INF:PART-TARGET=0.500\n"));
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{p}");
        assert!(p.contains("/ipfs/bseg2\n"), "durable segments by CID");
        assert!(p.contains("#EXTINF:2.000,\n/replay/s/ll/3.m4s\n"), "{p}");
        assert!(p.contains("#EXTINF:2.000,\n/replay/s/ll/4.m4s\n"));
        assert!(p.contains("#EXT-X-PART:DURATION=0.500,URI=\"/replay/s/ll/5.0.m4s\",INDEPENDENT=YES\n"));
        assert!(p.contains("#EXT-X-PART:DURATION=0.500,URI=\"/replay/s/ll/5.1.m4s\"\n"));
        assert!(p.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/replay/s/ll/5.2.m4s\"\n"), "{p}");
        // Parts of segments the edge dropped (0 and 1: it keeps three complete) are not listed;
        // those of a durable segment it still holds are.
        assert!(!p.contains("/replay/s/ll/1.0.m4s"));
        assert!(p.contains("URI=\"/replay/s/ll/2.0.m4s\""), "{p}");
        assert_eq!(p.matches("#EXT-X-MAP:").count(), 1);
        assert_eq!(e.part(5, 1).as_deref(), Some(&[5u8, 1][..]));
        assert_eq!(e.segment(4).as_deref(), Some(&[4u8; 4][..]));
        assert!(e.segment(1).is_none());
    }

    #[test]
    fn blocking_reload_is_answered_once_the_part_or_anything_later_is_listed() {
        let mut e = edge(2, 1);
        let m = manifest(2);
        assert!(e.contains(&m, 2, Some(0)));
        assert!(!e.contains(&m, 2, Some(1)));
        assert!(!e.contains(&m, 2, None));
        assert!(!e.contains(&m, 3, Some(0)));
        assert!(e.contains(&m, 1, Some(7)), "an earlier segment is complete: every part of it is in");
        e.apply(part(2, 1, false));
        assert!(e.contains(&m, 2, Some(1)));
        e.apply(segment(2));
        assert!(e.contains(&m, 2, Some(5)), "complete");
        assert!(!e.contains(&m, 3, Some(0)));
        e.apply(part(3, 0, true));
        assert!(e.contains(&m, 3, Some(0)));
        assert_eq!(e.next_part(), Some((3, 1)));
        assert_eq!(e.last_seq(&m), Some(3));
    }

    #[test]
    fn nothing_from_memory_is_listed_before_its_init_segment_is_durable() {
        let mut e = edge(2, 1);
        e.apply(EdgeUpdate::Init);
        e.apply(part(2, 0, true));
        let m = manifest(2);
        let p = e.render(&m, 6, "/ipfs/", "/ll/", "");
        assert!(!p.contains("/ll/"), "{p}");
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
    fn the_window_counts_memory_segments_and_memory_is_bounded() {
        let e = edge(8, 0);
        let m = manifest(6);
        let p = e.render(&m, 4, "/ipfs/", "/ll/", "");
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{p}");
        assert_eq!(p.matches("#EXTINF:").count(), 4);
        assert!(e.segments.len() <= EDGE_SEGMENTS + 1);
        let mut big = LiveEdge::new(Duration::from_millis(500));
        for seq in 0..10 {
            big.apply(EdgeUpdate::Part(Part { seq, index: 0, duration: Duration::from_millis(500), independent: true, bytes: vec![0; MAX_EDGE_BYTES / 4] }));
        }
        assert!(big.bytes <= MAX_EDGE_BYTES, "{}", big.bytes);
        assert_eq!(big.segments.back().map(|s| s.seq), Some(9));
    }
}
