//! Cutting timed frames into keyframe-aligned segments of about a target duration.
//!
//! Video times are in the 90 kHz RTP clock, audio times in the 48 kHz Opus clock, both counted
//! from the same origin (the recording's first video keyframe, or its first audio frame when there
//! is no video). A segment ends where the next one's first keyframe begins; audio goes into the
//! segment whose time span covers it. When no keyframe comes in time the segmenter asks for one.

use std::time::Duration;

use crate::mux::{AUDIO_TIMESCALE, MuxSample, VIDEO_TIMESCALE};

/// Segmenting limits.
#[derive(Clone, Copy, Debug)]
pub struct SegmenterConfig {
    /// Desired segment duration; segments end at the first keyframe at or after it (less 10 %).
    pub target: Duration,
    /// Ask for a keyframe once a segment reaches `target × keyframe_request_factor` without one.
    pub keyframe_request_factor: f64,
    /// Cut regardless of keyframes at this duration (the next segment's video then waits for a
    /// keyframe); bounds memory when the sender ignores keyframe requests.
    pub max_duration: Duration,
    /// Cut regardless of keyframes once a segment holds this many bytes.
    pub max_bytes: usize,
    /// How far video may run past a cut before the segment is closed without the audio that
    /// would end it (audio stalled or absent).
    pub audio_wait: Duration,
    /// Cut each segment into partial segments of at most about this duration as its frames
    /// arrive (low-latency HLS parts); `None`: no parts.
    pub part_target: Option<Duration>,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self {
            target: Duration::from_secs(2),
            keyframe_request_factor: 1.0,
            max_duration: Duration::from_secs(8),
            max_bytes: 32 * 1024 * 1024,
            audio_wait: Duration::from_millis(500),
            part_target: None,
        }
    }
}

/// A frame with its decode time in its track's timescale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedFrame {
    /// Decode time from the recording origin (90 kHz video, 48 kHz audio).
    pub time: u64,
    /// True for a sync sample.
    pub keyframe: bool,
    /// Duration to assume when no later frame tells (0 = unknown).
    pub duration_hint: u32,
    /// The coded frame.
    pub data: Vec<u8>,
}

/// A finished segment's samples, ready for the muxer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutSegment {
    /// Start of the segment's time span, 90 kHz from the origin.
    pub start: u64,
    /// End of the segment's time span (the next segment's start), 90 kHz.
    pub end: u64,
    /// Decode time of the first video sample (90 kHz).
    pub video_base: u64,
    /// Video samples (the first one is a keyframe).
    pub video: Vec<MuxSample>,
    /// Decode time of the first audio sample (48 kHz).
    pub audio_base: u64,
    /// Audio samples.
    pub audio: Vec<MuxSample>,
}

impl CutSegment {
    /// Length of the segment's time span.
    pub fn duration(&self) -> Duration {
        ticks_to_duration(self.end.saturating_sub(self.start), VIDEO_TIMESCALE)
    }

    /// Start of the span from the recording origin.
    pub fn start_offset(&self) -> Duration {
        ticks_to_duration(self.start, VIDEO_TIMESCALE)
    }
}

/// A partial segment: the frames of the open segment since its previous part, as soon as the
/// next frame shows where they end. The parts of a segment, in order, hold exactly its frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutPart {
    /// Length of the part's time span (90 kHz).
    pub duration: u64,
    /// Whether the part starts with a keyframe (a player may start decoding at it).
    pub independent: bool,
    /// The segment's last part (emitted just before the [`SegmenterEvent::Segment`] it ends).
    pub last: bool,
    /// Decode time of the first video sample (90 kHz).
    pub video_base: u64,
    /// Video samples.
    pub video: Vec<MuxSample>,
    /// Decode time of the first audio sample (48 kHz).
    pub audio_base: u64,
    /// Audio samples.
    pub audio: Vec<MuxSample>,
}

impl CutPart {
    /// Length of the part's time span.
    pub fn duration(&self) -> Duration {
        ticks_to_duration(self.duration, VIDEO_TIMESCALE)
    }
}

/// What the segmenter asks its caller to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmenterEvent {
    /// A part of the open segment is complete (only with [`SegmenterConfig::part_target`]).
    Part(CutPart),
    /// A segment is complete.
    Segment(CutSegment),
    /// The current GOP is longer than the target: ask the sender for a keyframe.
    RequestKeyframe,
}

/// Converts ticks of a clock to a [`Duration`].
pub fn ticks_to_duration(ticks: u64, rate: u32) -> Duration {
    let rate = u64::from(rate.max(1));
    Duration::from_secs(ticks / rate) + Duration::from_nanos((ticks % rate) * 1_000_000_000 / rate)
}

fn dur_to_video(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(VIDEO_TIMESCALE) / 1_000_000_000) as u64
}

fn audio_to_video(t: u64) -> u64 {
    t.saturating_mul(u64::from(VIDEO_TIMESCALE)) / u64::from(AUDIO_TIMESCALE)
}

fn video_to_audio_ceil(t: u64) -> u64 {
    let v = u64::from(VIDEO_TIMESCALE);
    t.saturating_mul(u64::from(AUDIO_TIMESCALE)).div_ceil(v)
}

#[derive(Debug)]
struct Open {
    start: u64,
    video: Vec<TimedFrame>,
    audio: Vec<TimedFrame>,
    bytes: usize,
    /// Start of the next part's span (90 kHz).
    part_start: u64,
    /// Video and audio frames already handed out in parts.
    parted_video: usize,
    parted_audio: usize,
}

impl Open {
    fn new(start: u64) -> Self {
        Self {
            start,
            video: Vec::new(),
            audio: Vec::new(),
            bytes: 0,
            part_start: start,
            parted_video: 0,
            parted_audio: 0,
        }
    }

    /// The frames since the last part as a part ending at `end` (90 kHz; audio durations from
    /// `audio_end`, 48 kHz, else each frame's own).
    fn take_part(&mut self, end: u64, audio_end: Option<u64>, last: bool) -> Option<CutPart> {
        let video = self.video.get(self.parted_video..).unwrap_or_default();
        let audio = self.audio.get(self.parted_audio..).unwrap_or_default();
        if video.is_empty() && audio.is_empty() {
            return None;
        }
        let part = CutPart {
            duration: end.saturating_sub(self.part_start),
            independent: video.first().is_some_and(|f| f.keyframe),
            last,
            video_base: video.first().map_or(self.part_start, |f| f.time),
            video: samples(video.to_vec(), Some(end)),
            audio_base: audio.first().map_or(video_to_audio_ceil(self.part_start), |f| f.time),
            audio: samples(audio.to_vec(), audio_end),
        };
        self.parted_video = self.video.len();
        self.parted_audio = self.audio.len();
        self.part_start = end;
        Some(part)
    }
}

#[derive(Debug)]
struct Closing {
    seg: Open,
    end: u64,
}

/// The segmenting state machine.
#[derive(Debug)]
pub struct Segmenter {
    cfg: SegmenterConfig,
    has_video: bool,
    has_audio: bool,
    open: Option<Open>,
    closing: Option<Closing>,
    waiting_keyframe: bool,
    last_request: Option<u64>,
    last_video: Option<u64>,
    last_audio: Option<u64>,
    last_video_delta: u32,
}

impl Segmenter {
    /// Creates a segmenter for a recording with the given tracks.
    pub fn new(cfg: SegmenterConfig, has_video: bool, has_audio: bool) -> Self {
        Self {
            cfg,
            has_video,
            has_audio,
            open: None,
            closing: None,
            waiting_keyframe: false,
            last_request: None,
            last_video: None,
            last_audio: None,
            last_video_delta: 3000,
        }
    }

    /// Starts or stops cutting parts (see [`SegmenterConfig::part_target`]).
    pub fn set_part_target(&mut self, target: Option<Duration>) {
        self.cfg.part_target = target;
    }

    /// True once the first segment has begun.
    pub fn started(&self) -> bool {
        self.open.is_some() || self.closing.is_some()
    }

    /// Adds a video frame.
    pub fn push_video(&mut self, frame: TimedFrame, out: &mut Vec<SegmenterEvent>) {
        if !self.has_video || self.last_video.is_some_and(|l| frame.time <= l) {
            return;
        }
        if let Some(c) = &self.closing
            && frame.time >= c.end + dur_to_video(self.cfg.audio_wait)
        {
            self.release(None, out);
        }
        let target = dur_to_video(self.cfg.target);
        let Some(open) = self.open.as_ref() else {
            if frame.keyframe {
                self.open = Some(Open::new(frame.time));
                self.append_video(frame);
            }
            return;
        };
        let elapsed = frame.time.saturating_sub(open.start);
        let over_limit =
            elapsed >= dur_to_video(self.cfg.max_duration) || open.bytes >= self.cfg.max_bytes;
        if frame.keyframe && open.video.is_empty() {
            self.waiting_keyframe = false;
            self.append_video(frame);
        } else if frame.keyframe && elapsed + target / 10 >= target {
            self.cut(frame.time, None, out);
            self.waiting_keyframe = false;
            self.append_video(frame);
        } else if over_limit {
            self.cut(frame.time, None, out);
            self.waiting_keyframe = !frame.keyframe;
            if frame.keyframe {
                self.append_video(frame);
            } else {
                self.request(frame.time, out);
            }
        } else if self.waiting_keyframe && !frame.keyframe {
            self.request(frame.time, out);
        } else {
            let late = elapsed as f64 >= target as f64 * self.cfg.keyframe_request_factor;
            if late && !frame.keyframe {
                self.request(frame.time, out);
            }
            self.part_before(frame.time, out);
            self.append_video(frame);
        }
    }

    /// Hands out the open segment's frames since its last part as a part when a frame at
    /// `next` (90 kHz) would take the part past the part target: parts end where the next
    /// frame begins and stay within the target while frames come at a steady rate.
    fn part_before(&mut self, next: u64, out: &mut Vec<SegmenterEvent>) {
        let Some(target) = self.cfg.part_target.map(dur_to_video) else { return };
        // The previous segment's last part goes first: until it is released, this segment's
        // frames wait for the part after.
        if self.closing.is_some() {
            return;
        }
        let step = if self.has_video { u64::from(self.last_video_delta) } else { 0 };
        let Some(open) = self.open.as_mut() else { return };
        let span = next.saturating_sub(open.part_start);
        if (span >= target || span.saturating_add(step) > target)
            && let Some(part) = open.take_part(next, None, false)
        {
            out.push(SegmenterEvent::Part(part));
        }
    }

    /// Adds an audio frame.
    pub fn push_audio(&mut self, frame: TimedFrame, out: &mut Vec<SegmenterEvent>) {
        if !self.has_audio || self.last_audio.is_some_and(|l| frame.time <= l) {
            return;
        }
        if !self.started() {
            if self.has_video {
                return;
            }
            self.open = Some(Open::new(audio_to_video(frame.time)));
        }
        if let Some(c) = self.closing.as_mut() {
            if frame.time < video_to_audio_ceil(c.end) {
                c.seg.bytes += frame.data.len();
                self.last_audio = Some(frame.time);
                c.seg.audio.push(frame);
                return;
            }
            self.release(Some(frame.time), out);
        }
        let Some(open) = self.open.as_ref() else {
            return;
        };
        if frame.time < video_to_audio_ceil(open.start) {
            return;
        }
        let elapsed = audio_to_video(frame.time).saturating_sub(open.start);
        let target = dur_to_video(self.cfg.target);
        let over_limit =
            elapsed >= dur_to_video(self.cfg.max_duration) || open.bytes >= self.cfg.max_bytes;
        if (!self.has_video && elapsed + target / 10 >= target) || over_limit {
            let at = audio_to_video(frame.time).max(open.start + 1);
            self.cut(at, Some(frame.time), out);
            if self.has_video {
                self.waiting_keyframe = true;
                self.request(at, out);
            }
        } else if !self.has_video {
            self.part_before(audio_to_video(frame.time), out);
        }
        if let Some(open) = self.open.as_mut() {
            open.bytes += frame.data.len();
            self.last_audio = Some(frame.time);
            open.audio.push(frame);
        }
    }

    /// Closes everything at the end of the recording.
    pub fn flush(&mut self, out: &mut Vec<SegmenterEvent>) {
        self.release(None, out);
        if let Some(open) = self.open.take() {
            let video_end = open
                .video
                .last()
                .map(|f| f.time + u64::from(self.last_video_delta.max(1)));
            let audio_end = open
                .audio
                .last()
                .map(|f| audio_to_video(f.time + u64::from(f.duration_hint.max(1))));
            let end = video_end
                .max(audio_end)
                .unwrap_or(open.start)
                .max(open.start + 1);
            if !open.video.is_empty() || !open.audio.is_empty() {
                self.closing = Some(Closing { seg: open, end });
                self.release(None, out);
            }
        }
    }

    fn append_video(&mut self, frame: TimedFrame) {
        if let Some(last) = self.last_video {
            self.last_video_delta = u32::try_from(frame.time - last).unwrap_or(u32::MAX);
        }
        self.last_video = Some(frame.time);
        if let Some(open) = self.open.as_mut() {
            open.bytes += frame.data.len();
            open.video.push(frame);
        }
    }

    fn request(&mut self, now: u64, out: &mut Vec<SegmenterEvent>) {
        let interval = dur_to_video(self.cfg.target) / 2;
        if self.last_request.is_none_or(|l| now >= l + interval) {
            self.last_request = Some(now);
            out.push(SegmenterEvent::RequestKeyframe);
        }
    }

    /// Ends the open segment at `end` and opens the next one there.
    fn cut(&mut self, end: u64, next_audio: Option<u64>, out: &mut Vec<SegmenterEvent>) {
        self.release(None, out);
        if let Some(seg) = self.open.take() {
            self.closing = Some(Closing { seg, end });
        }
        self.open = Some(Open::new(end));
        if !self.has_audio || next_audio.is_some() {
            self.release(next_audio, out);
        }
    }

    fn release(&mut self, next_audio: Option<u64>, out: &mut Vec<SegmenterEvent>) {
        let Some(Closing { mut seg, end }) = self.closing.take() else {
            return;
        };
        if self.cfg.part_target.is_some()
            && let Some(part) = seg.take_part(end, next_audio, true)
        {
            out.push(SegmenterEvent::Part(part));
        }
        let video_base = seg.video.first().map_or(seg.start, |f| f.time);
        let audio_base = seg
            .audio
            .first()
            .map_or(video_to_audio_ceil(seg.start), |f| f.time);
        let video = samples(seg.video, Some(end));
        let audio_end = next_audio.or_else(|| {
            seg.audio
                .last()
                .map(|f| f.time + u64::from(f.duration_hint.max(1)))
        });
        let audio = samples(seg.audio, audio_end);
        out.push(SegmenterEvent::Segment(CutSegment {
            start: seg.start,
            end,
            video_base,
            video,
            audio_base,
            audio,
        }));
    }
}

/// Turns frames into samples whose durations run to the next frame (the last one to `end`).
fn samples(frames: Vec<TimedFrame>, end: Option<u64>) -> Vec<MuxSample> {
    let times: Vec<u64> = frames.iter().map(|f| f.time).collect();
    frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let next = times.get(i + 1).copied().or(end);
            let duration = match next {
                Some(n) if n > f.time => u32::try_from(n - f.time).unwrap_or(u32::MAX),
                _ => f.duration_hint.max(1),
            };
            MuxSample {
                duration,
                keyframe: f.keyframe,
                data: f.data,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(time: u64, keyframe: bool) -> TimedFrame {
        TimedFrame {
            time,
            keyframe,
            duration_hint: 0,
            data: vec![0; 10],
        }
    }

    fn a(time: u64) -> TimedFrame {
        TimedFrame {
            time,
            keyframe: true,
            duration_hint: 960,
            data: vec![1; 3],
        }
    }

    fn segments(ev: &[SegmenterEvent]) -> Vec<&CutSegment> {
        ev.iter()
            .filter_map(|e| match e {
                SegmenterEvent::Segment(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// 30 fps video with a keyframe every `gop` frames, 20 ms audio, for `secs` seconds.
    fn run(s: &mut Segmenter, gop: u64, secs: u64) -> Vec<SegmenterEvent> {
        let mut out = Vec::new();
        let mut next_audio = 0u64;
        for i in 0..secs * 30 {
            let t = i * 3000;
            s.push_video(v(t, i % gop == 0), &mut out);
            while audio_to_video(next_audio) < t + 3000 {
                s.push_audio(a(next_audio), &mut out);
                next_audio += 960;
            }
        }
        s.flush(&mut out);
        out
    }

    #[test]
    fn parts_cover_each_segment_in_order_within_the_part_target() {
        let cfg = SegmenterConfig { part_target: Some(Duration::from_millis(500)), ..Default::default() };
        let mut s = Segmenter::new(cfg, true, true);
        let out = run(&mut s, 60, 6);
        let mut parts: Vec<&CutPart> = Vec::new();
        let mut segs = 0;
        for e in &out {
            match e {
                SegmenterEvent::Part(p) => parts.push(p),
                SegmenterEvent::Segment(seg) => {
                    segs += 1;
                    assert!(parts.last().is_some_and(|p| p.last), "a segment's last part comes just before it");
                    assert!(parts[0].independent, "a segment's first part starts with its keyframe");
                    assert!(parts[1..].iter().all(|p| !p.independent));
                    assert!(parts.iter().all(|p| p.duration() <= Duration::from_millis(500) && p.duration() >= Duration::from_millis(400)), "{parts:?}");
                    assert_eq!(parts.iter().map(|p| p.duration).sum::<u64>(), seg.end - seg.start);
                    assert_eq!(parts.iter().map(|p| p.video.len()).sum::<usize>(), seg.video.len());
                    assert_eq!(parts.iter().map(|p| p.audio.len()).sum::<usize>(), seg.audio.len());
                    assert_eq!(parts[0].video_base, seg.video_base);
                    assert_eq!(parts[0].audio_base, seg.audio_base);
                    let video: Vec<&[u8]> = parts.iter().flat_map(|p| p.video.iter().map(|v| &v.data[..])).collect();
                    assert_eq!(video, seg.video.iter().map(|v| &v.data[..]).collect::<Vec<_>>());
                    // Each part's tfdt is where the previous part's samples end.
                    for w in parts.windows(2) {
                        let end = w[0].video_base + w[0].video.iter().map(|v| u64::from(v.duration)).sum::<u64>();
                        assert_eq!(end, w[1].video_base);
                    }
                    parts.clear();
                }
                SegmenterEvent::RequestKeyframe => {}
            }
        }
        assert_eq!(segs, 3);
        assert!(parts.is_empty());
    }

    #[test]
    fn audio_only_recordings_are_parted_by_audio_time() {
        let cfg = SegmenterConfig { part_target: Some(Duration::from_millis(500)), ..Default::default() };
        let mut s = Segmenter::new(cfg, false, true);
        let mut out = Vec::new();
        for i in 0..150u64 {
            s.push_audio(a(i * 960), &mut out);
        }
        s.flush(&mut out);
        let parts: Vec<&CutPart> = out.iter().filter_map(|e| if let SegmenterEvent::Part(p) = e { Some(p) } else { None }).collect();
        assert!(parts.len() >= 5, "{}", parts.len());
        assert_eq!(parts.iter().map(|p| p.audio.len()).sum::<usize>(), 150);
        assert!(parts.iter().all(|p| p.video.is_empty() && p.duration() <= Duration::from_millis(520)));
    }

    #[test]
    fn cuts_at_keyframes_near_target_with_covering_audio() {
        let mut s = Segmenter::new(SegmenterConfig::default(), true, true);
        let out = run(&mut s, 60, 6);
        let segs = segments(&out);
        assert_eq!(segs.len(), 3);
        assert!(!out.contains(&SegmenterEvent::RequestKeyframe));
        for (i, seg) in segs.iter().enumerate() {
            assert_eq!(seg.start, i as u64 * 180_000);
            assert_eq!(seg.duration(), Duration::from_secs(2));
            assert_eq!(seg.video.len(), 60);
            assert!(seg.video[0].keyframe && seg.video[1..].iter().all(|s| !s.keyframe));
            assert_eq!(seg.video_base, seg.start);
            assert_eq!(
                seg.video.iter().map(|s| u64::from(s.duration)).sum::<u64>(),
                180_000
            );
            // Audio is continuous: each segment's audio starts where the previous one's ended.
            assert_eq!(seg.audio_base, i as u64 * 96_000);
            assert_eq!(seg.audio.len(), 100);
        }
    }

    #[test]
    fn long_gop_requests_a_keyframe_and_max_duration_forces_a_cut() {
        let mut s = Segmenter::new(SegmenterConfig::default(), true, false);
        let out = run(&mut s, 300, 10); // keyframes at 0 s and 10 s only
        let requests = out
            .iter()
            .filter(|e| **e == SegmenterEvent::RequestKeyframe)
            .count();
        assert!(requests >= 2, "{requests} requests");
        let first_request = out
            .iter()
            .position(|e| *e == SegmenterEvent::RequestKeyframe);
        assert_eq!(first_request, Some(0));
        let segs = segments(&out);
        // Forced cut at 8 s; the following segment has no video (waiting for a keyframe).
        assert_eq!(segs[0].duration(), Duration::from_secs(8));
        assert!(segs[0].video[0].keyframe);
        assert!(
            segs.iter()
                .skip(1)
                .all(|s| s.video.first().is_none_or(|v| v.keyframe))
        );
    }

    #[test]
    fn audio_only_cuts_by_time() {
        let mut s = Segmenter::new(SegmenterConfig::default(), false, true);
        let mut out = Vec::new();
        for i in 0..250u64 {
            s.push_audio(a(i * 960), &mut out);
        }
        s.flush(&mut out);
        let segs = segments(&out);
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[0].audio.len(), 90); // cut at 1.8 s (target less 10 %)
        assert_eq!(segs.iter().map(|s| s.audio.len()).sum::<usize>(), 250);
        assert!(segs.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn closing_segment_waits_for_audio_then_times_out() {
        let mut s = Segmenter::new(SegmenterConfig::default(), true, true);
        let mut out = Vec::new();
        s.push_audio(a(0), &mut out); // before the first keyframe: dropped
        s.push_video(v(0, true), &mut out);
        s.push_video(v(180_000, true), &mut out);
        assert!(segments(&out).is_empty(), "waits for audio past the cut");
        s.push_video(v(180_000 + 45_000, false), &mut out);
        assert_eq!(
            segments(&out).len(),
            1,
            "released after audio_wait of video time"
        );
        assert!(segments(&out)[0].audio.is_empty());
    }

    #[test]
    fn non_monotonic_frames_are_dropped() {
        let mut s = Segmenter::new(SegmenterConfig::default(), true, false);
        let mut out = Vec::new();
        s.push_video(v(3000, true), &mut out);
        s.push_video(v(3000, false), &mut out);
        s.push_video(v(0, false), &mut out);
        s.push_video(v(6000, false), &mut out);
        s.flush(&mut out);
        let segs = segments(&out);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].video.len(), 2);
    }
}
