//! Unit tests of the recording core: a storage stand-in completes each step as told.

use std::collections::HashSet;
use std::sync::Arc;

use super::*;

/// A VP8 RTP payload: descriptor (start of partition), then a keyframe header of 640×360 or
/// an interframe tag.
fn vp8(key: bool) -> Vec<u8> {
    let mut p = vec![0x10];
    if key {
        let tag: u32 = (4 << 5) | 0x10; // key frame, version 0, show_frame, 4-byte partition
        p.extend_from_slice(&[tag as u8, (tag >> 8) as u8, (tag >> 16) as u8, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&640u16.to_le_bytes());
        p.extend_from_slice(&360u16.to_le_bytes());
        p.extend_from_slice(&[0xaa; 4]);
    } else {
        p.extend_from_slice(&[0x01, 0, 0, 7, 7]);
    }
    p
}

/// The core with a storage stand-in that completes each step at once, as told.
struct Sim {
    core: Core,
    t0: Instant,
    wall0: SystemTime,
    /// Every action, in order.
    log: Vec<Action>,
    /// Media segments whose write fails.
    fail_writes: HashSet<u64>,
    /// Whether init segment writes fail.
    fail_init: bool,
    /// Whether index writes fail.
    fail_persist: bool,
    /// Leave storage steps outstanding (collected here) instead of completing them.
    hold: bool,
    /// Leave only this recording's storage steps outstanding.
    hold_rec: Option<RecordingId>,
    held: Vec<Action>,
    next_cid: u64,
}

impl Sim {
    fn new(layer: Option<u8>) -> Self {
        Self {
            core: Core::new(layer),
            t0: Instant::now(),
            wall0: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            log: Vec::new(),
            fail_writes: HashSet::new(),
            fail_init: false,
            fail_persist: false,
            hold: false,
            hold_rec: None,
            held: Vec::new(),
            next_cid: 0,
        }
    }

    fn at(&self, ms: u64) -> (Instant, SystemTime) {
        (self.t0 + Duration::from_millis(ms), self.wall0 + Duration::from_millis(ms))
    }

    fn input(&mut self, input: TapInput, ms: u64) {
        let (now, wall) = self.at(ms);
        let actions = self.core.handle(input, now, wall);
        self.run(actions, now);
    }

    fn start(&mut self, stream_id: u64, generation: u32, ms: u64) {
        self.input(TapInput::Started { stream_id, stream: format!("s{stream_id}"), generation }, ms);
    }

    fn end(&mut self, stream_id: u64, generation: u32, ms: u64) {
        self.input(TapInput::Ended { stream_id, generation }, ms);
    }

    /// Video frames `from..to` at 30 fps of one layer, one packet each, a keyframe every
    /// `key_every` frames; frame `i` arrives at `i × 33 ms`.
    fn video(&mut self, stream_id: u64, generation: u32, layer: u8, frames: std::ops::Range<u64>, key_every: u64) {
        for i in frames {
            let ms = i * 100 / 3;
            let key = i % key_every == 0;
            let (arrival, _) = self.at(ms);
            let pkt = TapPacket {
                stream_id,
                generation,
                layer,
                keyframe_start: key,
                codec: VideoCodec::Vp8,
                rtp: RtpPacket {
                    kind: MediaKind::Video,
                    seq: 1000 + i,
                    timestamp: (i * 3000) as u32,
                    marker: true,
                    payload: Arc::from(vp8(key)),
                    arrival,
                    capture: None,
                },
            };
            self.input(TapInput::Packet(pkt), ms);
        }
    }

    /// Performs `actions` the way the driver does, completing storage steps at once.
    fn run(&mut self, actions: Vec<Action>, now: Instant) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            self.log.push(a.clone());
            let held_rec = match &a {
                Action::Write { rec, .. } | Action::Persist { rec, .. } | Action::BuildVod { rec, .. } => Some(*rec),
                _ => None,
            };
            if held_rec.is_some() && (self.hold || held_rec == self.hold_rec) {
                self.held.push(a);
                continue;
            }
            queue.extend(self.complete(&a, now));
        }
    }

    fn complete(&mut self, a: &Action, now: Instant) -> Vec<Action> {
        match a {
            Action::Write { rec, kind, bytes } => {
                let fail = match kind {
                    FileKind::Init => self.fail_init,
                    FileKind::Segment { seq } => self.fail_writes.contains(seq),
                };
                self.next_cid += 1;
                let entry = StoredEntry { cid: format!("cid{}", self.next_cid), size: bytes.len() as u64, dag_size: bytes.len() as u64 + 10 };
                self.core.stored(*rec, (!fail).then_some(entry))
            }
            Action::Persist { rec, .. } => self.core.persisted(*rec, !self.fail_persist, now),
            Action::BuildVod { rec, .. } => self.core.vod_built(*rec, Some(format!("vod{}", rec.0))),
            _ => Vec::new(),
        }
    }

    /// Completes the storage steps held so far.
    fn release(&mut self, ms: u64) {
        let (now, _) = self.at(ms);
        for a in std::mem::take(&mut self.held) {
            let more = self.complete(&a, now);
            self.run(more, now);
        }
    }

    fn announced(&self) -> Vec<(RecordingId, u64, u64)> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Announce { rec, segment, duration_ms, .. } => Some((*rec, segment.seq, *duration_ms)),
                _ => None,
            })
            .collect()
    }

    fn position(&self, f: impl Fn(&Action) -> bool) -> Option<usize> {
        self.log.iter().position(f)
    }

    fn last_index(&self, rec: RecordingId) -> Option<&RecordingIndex> {
        self.log.iter().rev().find_map(|a| match a {
            Action::Persist { rec: r, index } if *r == rec => Some(index),
            _ => None,
        })
    }
}

const R0: RecordingId = RecordingId(0);
const R1: RecordingId = RecordingId(1);

#[test]
fn segments_are_cut_on_keyframes_and_announced_after_their_index_is_durable() {
    let mut sim = Sim::new(None);
    sim.start(7, 1, 0);
    // 7 s of the top layer with a keyframe every 2 s.
    sim.video(7, 1, 2, 0..210, 60);
    // The top layer is chosen at once, and a keyframe asked for.
    assert!(sim.log.contains(&Action::RequestKeyframe { stream_id: 7, layer: 2 }));
    let announced = sim.announced();
    assert_eq!(
        announced.iter().map(|a| (a.1, a.2)).collect::<Vec<_>>(),
        vec![(0, 2000), (1, 2000), (2, 2000)],
        "one segment per keyframe interval"
    );
    // Init first; each segment's write, then its index write, then its announcement.
    assert!(matches!(sim.log.iter().find(|a| matches!(a, Action::Write { .. })), Some(Action::Write { kind: FileKind::Init, .. })));
    for seq in 0..3 {
        let write = sim.position(|a| matches!(a, Action::Write { kind: FileKind::Segment { seq: s }, .. } if *s == seq)).unwrap();
        let announce = sim.position(|a| matches!(a, Action::Announce { segment, .. } if segment.seq == seq)).unwrap();
        let persist = sim
            .position(|a| matches!(a, Action::Persist { index, .. } if index.manifest.as_ref().is_some_and(|m| m.segments.len() == seq as usize + 1)))
            .unwrap();
        let shown = sim
            .position(|a| matches!(a, Action::Publish { index, .. } if index.manifest.as_ref().is_some_and(|m| m.segments.len() == seq as usize + 1)))
            .unwrap();
        assert!(write < persist && persist < shown && shown < announce, "segment {seq}: write {write}, persist {persist}, shown {shown}, announce {announce}");
    }
    let ix = sim.last_index(R0).unwrap();
    assert_eq!(ix.layer.as_deref(), Some("f"));
    assert_eq!(ix.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["init.webm", "segment-000000.webm", "segment-000001.webm", "segment-000002.webm"]);
    let Some(Action::Announce { segment, .. }) = sim.log.iter().find(|a| matches!(a, Action::Announce { .. })) else { panic!() };
    assert_eq!((segment.stream.as_str(), segment.init.as_str(), segment.codecs.as_str()), ("s7", "cid1", "vp8,opus"));
}

#[test]
fn a_lower_layer_is_chosen_after_the_settle_time_and_a_configured_one_at_once() {
    let mut sim = Sim::new(None);
    sim.start(1, 1, 0);
    sim.video(1, 1, 0, 0..20, 60);
    assert!(!sim.log.iter().any(|a| matches!(a, Action::RequestKeyframe { .. })), "waits for higher layers");
    sim.video(1, 1, 0, 20..40, 60);
    assert!(sim.log.contains(&Action::RequestKeyframe { stream_id: 1, layer: 0 }), "the highest layer seen after 1 s");

    let mut sim = Sim::new(Some(1));
    sim.start(1, 1, 0);
    sim.video(1, 1, 2, 0..3, 60);
    sim.video(1, 1, 1, 0..3, 60);
    assert!(sim.log.contains(&Action::RequestKeyframe { stream_id: 1, layer: 1 }), "the configured layer once it sent a keyframe");
    assert!(!sim.log.contains(&Action::RequestKeyframe { stream_id: 1, layer: 2 }));
}

#[test]
fn every_layer_is_recorded_the_highest_as_the_main_rendition_with_keyframes_asked_together() {
    let mut sim = Sim::new(None);
    sim.start(3, 1, 0);
    // Three layers, frames interleaved, a keyframe every 2 s on each.
    for i in 0..210u64 {
        for layer in [2u8, 1, 0] {
            sim.video(3, 1, layer, i..i + 1, 60);
        }
    }
    let ix = sim.last_index(R0).unwrap().clone();
    assert_eq!(ix.layer.as_deref(), Some("f"));
    assert_eq!(ix.renditions.iter().map(|r| r.rid.as_str()).collect::<Vec<_>>(), ["h", "q"]);
    let main = ix.manifest.as_ref().unwrap();
    assert_eq!(main.segments.len(), 3);
    assert_eq!(ix.resolution, Some([640, 360]));
    for r in &ix.renditions {
        let m = r.manifest.as_ref().unwrap();
        assert_eq!(m.segments.len(), 3, "{} records the same segments", r.rid);
        // Aligned with the main rendition's: same starts and durations.
        for (a, b) in m.segments.iter().zip(&main.segments) {
            assert_eq!((a.start_unix_ms, a.duration), (b.start_unix_ms, b.duration));
        }
        assert!(ix.files.iter().any(|f| f.name == format!("{}/init.webm", r.rid)));
        assert!(ix.files.iter().any(|f| f.name == format!("{}/segment-000002.webm", r.rid)));
    }
    assert!(ix.files.iter().any(|f| f.name == "segment-000002.webm"), "the main rendition's files at the top level");
    // Only the main rendition is announced; every layer is asked for a keyframe.
    assert_eq!(sim.announced().len(), 3);
    for layer in 0..3 {
        assert!(sim.log.contains(&Action::RequestKeyframe { stream_id: 3, layer }), "layer {layer}");
    }
    // The stream ends: every rendition's manifest ends with the VOD root.
    sim.end(3, 1, 7000);
    let ix = sim.last_index(R0).unwrap();
    assert!(ix.vod.is_some());
    assert!(ix.renditions.iter().all(|r| r.manifest.as_ref().is_some_and(|m| m.ended)));
}

#[test]
fn a_layer_that_starts_later_is_recorded_on_the_main_renditions_timeline() {
    let mut sim = Sim::new(None);
    sim.start(3, 1, 0);
    // The top layer from the start; layer q only from 2 s on (frame 60, a keyframe).
    for i in 0..240u64 {
        sim.video(3, 1, 2, i..i + 1, 60);
        if i >= 60 {
            sim.video(3, 1, 0, i..i + 1, 60);
        }
    }
    let ix = sim.last_index(R0).unwrap().clone();
    let main = ix.manifest.as_ref().unwrap();
    let q = ix.renditions[0].manifest.as_ref().unwrap();
    assert_eq!(ix.renditions[0].rid, "q");
    assert!(q.segments.len() >= 2, "{q:?}");
    // Its segments start where the main rendition's do, 2 s in: one timeline.
    for (a, b) in q.segments.iter().zip(&main.segments[1..]) {
        assert_eq!((a.start_unix_ms, a.duration), (b.start_unix_ms, b.duration), "q {a:?} / f {b:?}");
    }
}

#[test]
fn layers_a_browser_adds_later_are_recorded_too_and_listed_highest_first() {
    let mut sim = Sim::new(None);
    sim.start(3, 1, 0);
    // Only q for the first 2 s (the main rendition is chosen after the settle time), then f
    // from 2 s and h from 4 s, as a browser ramping up its bandwidth does.
    for i in 0..300u64 {
        sim.video(3, 1, 0, i..i + 1, 60);
        if i >= 60 {
            sim.video(3, 1, 2, i..i + 1, 60);
        }
        if i >= 120 {
            sim.video(3, 1, 1, i..i + 1, 60);
        }
    }
    let ix = sim.last_index(R0).unwrap().clone();
    assert_eq!(ix.layer.as_deref(), Some("q"));
    assert_eq!(ix.renditions.iter().map(|r| r.rid.as_str()).collect::<Vec<_>>(), ["f", "h"]);
    let uris: Vec<String> = ix.variants(|rid| rid.unwrap_or("q").to_string()).into_iter().map(|v| v.uri).collect();
    assert_eq!(uris, ["f", "h", "q"], "variants highest first");
}

#[test]
fn a_publisher_of_audio_alone_is_recorded_as_audio_only() {
    let mut sim = Sim::new(None);
    sim.start(4, 1, 0);
    // 7 s of 20 ms Opus frames, no video.
    for i in 0..350u64 {
        let ms = i * 20;
        let (arrival, _) = sim.at(ms);
        let pkt = TapPacket {
            stream_id: 4,
            generation: 1,
            layer: 0,
            keyframe_start: false,
            codec: VideoCodec::Vp8,
            rtp: RtpPacket {
                kind: MediaKind::Audio,
                seq: 100 + i,
                timestamp: (i * 960) as u32,
                marker: false,
                payload: Arc::from(&[0xfc, 0xff, 0xfe][..]),
                arrival,
                capture: None,
            },
        };
        sim.input(TapInput::Packet(pkt), ms);
    }
    sim.end(4, 1, 7100);
    let ix = sim.last_index(R0).unwrap();
    let m = ix.manifest.as_ref().expect("recorded");
    assert_eq!(m.codecs, "opus");
    assert!(m.segments.len() >= 3, "{m:?}");
    // From the first packet on: the audio of the settle time is kept.
    assert!((m.duration() - 7.0).abs() < 0.1, "{} s recorded of 7 s", m.duration());
    assert_eq!(m.segments[0].start_unix_ms, 1_700_000_000_000, "it starts with the first packet");
    assert!(ix.files.iter().any(|f| f.name == "init.mp4"), "Opus alone is recorded in fMP4");
    assert!(ix.vod.is_some());
    assert!(sim.log.iter().any(|a| matches!(a, Action::Edge { update: EdgeUpdate::Part(_), .. })), "with low-latency parts");
}

#[test]
fn a_configured_layer_is_recorded_alone() {
    let mut sim = Sim::new(Some(1));
    sim.start(3, 1, 0);
    for i in 0..90u64 {
        for layer in [2u8, 1, 0] {
            sim.video(3, 1, layer, i..i + 1, 60);
        }
    }
    let ix = sim.last_index(R0).unwrap();
    assert_eq!(ix.layer.as_deref(), Some("h"));
    assert!(ix.renditions.is_empty());
}

#[test]
fn stream_end_flushes_the_last_segment_then_builds_the_vod_root() {
    let mut sim = Sim::new(None);
    sim.start(3, 4, 0);
    sim.video(3, 4, 2, 0..100, 60);
    assert!(!sim.log.iter().any(|a| matches!(a, Action::BuildVod { .. })));
    // Another generation's end is not this one's.
    sim.end(3, 3, 3400);
    assert!(!sim.log.iter().any(|a| matches!(a, Action::BuildVod { .. })));
    sim.end(3, 4, 3400);
    assert_eq!(sim.announced().iter().map(|a| a.1).collect::<Vec<_>>(), [0, 1], "the partial last segment is stored");
    let last_write = sim.log.iter().rposition(|a| matches!(a, Action::Write { .. })).unwrap();
    let vod = sim.position(|a| matches!(a, Action::BuildVod { .. })).unwrap();
    assert!(last_write < vod, "the VOD root is built after every file is stored");
    let Some(Action::BuildVod { index, .. }) = sim.log.get(vod) else { panic!() };
    assert_eq!(index.files.len(), 3);
    assert!(sim.log.contains(&Action::Finished { rec: R0, stream: "s3".into(), vod: "vod0".into(), segments: 2 }));
    let ix = sim.last_index(R0).unwrap();
    assert_eq!(ix.vod.as_deref(), Some("vod0"));
    assert!(ix.manifest.as_ref().is_some_and(|m| m.ended));
    assert_eq!(sim.log.last(), Some(&Action::Closed { rec: R0 }));
    assert!(sim.core.is_idle());
    // Packets after the end belong to no recording.
    let n = sim.log.len();
    sim.video(3, 4, 2, 100..110, 60);
    assert_eq!(sim.log.len(), n);
}

#[test]
fn a_new_publisher_generation_closes_the_old_recording_and_starts_a_new_one() {
    let mut sim = Sim::new(None);
    sim.start(5, 1, 0);
    sim.video(5, 1, 2, 0..70, 60);
    sim.start(5, 2, 2400);
    assert!(matches!(sim.log.iter().filter(|a| matches!(a, Action::Started { .. })).nth(1), Some(Action::Started { rec: R1, .. })));
    assert!(sim.log.contains(&Action::Finished { rec: R0, stream: "s5".into(), vod: "vod0".into(), segments: 2 }));
    // The old publisher's late packets and its end are ignored; the new one is recorded.
    let n = sim.announced().len();
    sim.video(5, 1, 2, 70..200, 60);
    sim.end(5, 1, 7000);
    assert_eq!(sim.announced().len(), n);
    assert!(!sim.log.iter().any(|a| matches!(a, Action::Write { rec: R1, .. })));
    sim.video(5, 2, 2, 0..130, 60);
    assert!(sim.announced().iter().any(|a| a.0 == R1 && a.1 == 0), "the new generation's first segment");
    sim.end(5, 2, 5000);
    assert!(sim.log.contains(&Action::Finished { rec: R1, stream: "s5".into(), vod: "vod1".into(), segments: 3 }));
    assert!(sim.core.is_idle());
}

#[test]
fn a_failed_write_is_never_announced_nor_indexed() {
    let mut sim = Sim::new(None);
    sim.fail_writes.insert(1);
    sim.start(2, 1, 0);
    sim.video(2, 1, 2, 0..190, 60);
    sim.end(2, 1, 6400);
    assert_eq!(sim.announced().iter().map(|a| a.1).collect::<Vec<_>>(), [0, 2, 3]);
    let ix = sim.last_index(R0).unwrap();
    assert!(ix.files.iter().any(|f| f.name == "segment-000000.webm"));
    assert!(!ix.files.iter().any(|f| f.name.starts_with("segment-000001")));
    let seqs: Vec<u64> = ix.manifest.as_ref().unwrap().segments.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [0, 2, 3]);
    assert!(sim.log.iter().any(|a| matches!(a, Action::Finished { segments: 3, .. })));
}

#[test]
fn a_failed_index_write_is_not_announced() {
    let mut sim = Sim::new(None);
    sim.fail_persist = true;
    sim.start(2, 1, 0);
    sim.video(2, 1, 2, 0..140, 60);
    assert!(sim.log.iter().any(|a| matches!(a, Action::Write { kind: FileKind::Segment { seq: 1 }, .. })));
    assert!(sim.announced().is_empty());
    assert!(
        !sim.log.iter().any(|a| matches!(a, Action::Publish { index, .. } if !index.files.is_empty())),
        "files whose index is not durable are not shown"
    );
}

#[test]
fn segments_after_a_failed_init_write_are_dropped() {
    let mut sim = Sim::new(None);
    sim.fail_init = true;
    sim.start(2, 1, 0);
    sim.video(2, 1, 2, 0..130, 60);
    assert!(sim.log.contains(&Action::Dropped { rec: R0, seq: 0, reason: DropReason::NoInit }));
    assert!(!sim.log.iter().any(|a| matches!(a, Action::Write { kind: FileKind::Segment { .. }, .. })));
    sim.end(2, 1, 4400);
    // Nothing stored: no VOD root, the (empty) index is written and the recording closed.
    assert!(!sim.log.iter().any(|a| matches!(a, Action::BuildVod { .. })));
    assert_eq!(sim.log.last(), Some(&Action::Closed { rec: R0 }));
}

/// One recording's storage stalls (a slow or full disk): its newest segments are dropped
/// once WRITE_QUEUE files wait, while the other recording stores and announces every one.
#[test]
fn a_stalled_recording_drops_its_own_segments_and_no_other_recording_waits() {
    let mut sim = Sim::new(None);
    sim.hold_rec = Some(R0);
    sim.start(2, 1, 0);
    sim.start(3, 1, 0);
    let frames = (WRITE_QUEUE as u64 + 10) * 60;
    for chunk in (0..frames).step_by(60) {
        sim.video(2, 1, 2, chunk..chunk + 60, 60);
        sim.video(3, 1, 2, chunk..chunk + 60, 60);
    }
    let dropped: Vec<u64> = sim
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Dropped { rec: R0, seq, reason: DropReason::Backlog } => Some(*seq),
            Action::Dropped { rec, .. } => panic!("{rec:?} dropped a segment"),
            _ => None,
        })
        .collect();
    assert!(dropped.len() >= 8, "the stalled recording drops its newest segments ({dropped:?})");
    let other: Vec<u64> = sim.announced().iter().filter(|a| a.0 == R1).map(|a| a.1).collect();
    assert_eq!(other, (0..other.len() as u64).collect::<Vec<_>>(), "the other recording announces every segment");
    assert!(other.len() as u64 >= WRITE_QUEUE as u64 + 8);
    assert!(sim.announced().iter().all(|a| a.0 == R1));
    // The disk comes back: what was queued is stored and announced, the dropped ones never.
    sim.hold_rec = None;
    for _ in 0..400 {
        if sim.held.is_empty() {
            break;
        }
        sim.release(frames * 34);
    }
    let mine: Vec<u64> = sim.announced().iter().filter(|a| a.0 == R0).map(|a| a.1).collect();
    assert!(mine.len() >= WRITE_QUEUE - 2, "{}", mine.len());
    assert!(mine.iter().all(|s| !dropped.contains(s)));
}

#[test]
fn one_storage_step_is_outstanding_per_recording() {
    let mut sim = Sim::new(None);
    sim.hold = true;
    sim.start(2, 1, 0);
    sim.video(2, 1, 2, 0..210, 60);
    // Init and three segments are due, but only the init write was issued.
    assert_eq!(sim.held.len(), 1);
    assert!(matches!(sim.held[0], Action::Write { kind: FileKind::Init, .. }));
    // Completing each step issues the next, in order.
    for _ in 0..20 {
        if sim.held.is_empty() {
            break;
        }
        sim.release(8000);
    }
    let writes: Vec<FileKind> = sim
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Write { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(writes, [FileKind::Init, FileKind::Segment { seq: 0 }, FileKind::Segment { seq: 1 }, FileKind::Segment { seq: 2 }]);
    assert_eq!(sim.announced().len(), 3);
    let announce_ms: Vec<f64> = sim
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Announce { announce_ms, .. } => Some(*announce_ms),
            _ => None,
        })
        .collect();
    assert!(announce_ms.iter().all(|ms| *ms > 0.0), "time from close to announcement is measured: {announce_ms:?}");
}
