//! The sans-IO recording pipeline: RTP packets in; init segments, media segments and keyframe
//! requests out.
//!
//! Per track: reorder buffer → depacketizer → timestamps from the recording origin → segmenter →
//! muxer (CMAF fMP4, or WebM for VP8). The origin is the first video keyframe (or the first audio frame when there is no
//! video). Audio is placed on the video timeline by the publisher's clock: packets carry their
//! capture instant, from the publisher's RTCP sender reports, and audio goes where its capture
//! falls relative to the video's (refitted when the two disagree by more than 5 ms); before the
//! first reports, by the arrival of its first frame relative to the keyframe. Between refits
//! audio follows its own RTP clock.

use std::time::{Duration, Instant, SystemTime};

use crate::depacketize::h264::H264Format;
use crate::depacketize::opus::{OpusFormat, packet_duration};
use crate::depacketize::vp8::{Vp8Format, frame_size};
use crate::depacketize::{DepacketizeStats, Depacketizer, Frame};
use crate::mux::{AUDIO_TIMESCALE, AudioParams, Container, Muxer, TrackParams, TrackRun, VideoParams};
use crate::reorder::{ReorderBuffer, ReorderConfig};
use crate::rtp::{MediaKind, RtpPacket, TsUnwrapper};
use crate::segmenter::{CutPart, CutSegment, Segmenter, SegmenterConfig, SegmenterEvent, TimedFrame};

/// The video codec of a recording: the codec crate's, shared with the SFU's tap.
pub use relaycast_codec::VideoCodec;

/// What to record and how.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// The video codec, or `None` for audio-only recordings.
    pub video: Option<VideoCodec>,
    /// Whether an Opus audio track is recorded.
    pub audio: Option<AudioParams>,
    /// Segment duration and limits.
    pub segment: SegmenterConfig,
    /// Reorder buffer limits (per track).
    pub reorder: ReorderConfig,
    /// Least time between two [`RecorderOutput::RequestKeyframe`] outputs.
    pub keyframe_request_interval: Duration,
    /// Media time 0 of another recorder of the same publisher (see [`Recorder::zero`]): the local
    /// instant on the publisher's capture timeline and its wall-clock time. With it, this
    /// recording's first keyframe is placed at its capture minus that instant, so that the
    /// simulcast layers of one publisher share one timeline (players switch between them); without
    /// it, the first keyframe is media time 0.
    pub zero: Option<(Instant, SystemTime)>,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            video: Some(VideoCodec::Vp8),
            audio: Some(AudioParams::default()),
            segment: SegmenterConfig::default(),
            reorder: ReorderConfig::default(),
            keyframe_request_interval: Duration::from_millis(500),
            zero: None,
        }
    }
}

/// A new init segment; every following [`Segment`] needs it (until the next one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitSegment {
    /// `ftyp` + `moov`.
    pub bytes: Vec<u8>,
    /// The tracks it describes.
    pub params: TrackParams,
}

impl InitSegment {
    /// `CODECS` value, e.g. `vp8,opus` or `avc1.42e01f,opus`.
    pub fn codecs(&self) -> String {
        let mut c: Vec<String> = Vec::new();
        if let Some(v) = &self.params.video {
            c.push(v.codec_string());
        }
        if self.params.audio.is_some() {
            c.push("opus".to_string());
        }
        c.join(",")
    }

    /// The container of the segments that follow.
    pub fn container(&self) -> Container {
        Container::for_params(&self.params)
    }
}

/// One finished media segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number, 0 for the first segment of the recording.
    pub seq: u64,
    /// `styp` + `moof` + `mdat`.
    pub bytes: Vec<u8>,
    /// Length of the segment's time span (from RTP timestamps).
    pub duration: Duration,
    /// Wall-clock time of the segment's start (for `EXT-X-PROGRAM-DATE-TIME`).
    pub start_wallclock: SystemTime,
    /// Start from the recording origin (media time).
    pub start_offset: Duration,
    /// Whether the segment holds video (if so, its first video sample is a keyframe).
    pub has_video: bool,
}

/// A partial segment of the segment being written (low-latency HLS), in the segments'
/// container: `moof` + `mdat` of the frames since the previous part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Media sequence number of the segment it belongs to.
    pub seq: u64,
    /// Its index in that segment, from 0.
    pub index: u32,
    /// Length of its time span.
    pub duration: Duration,
    /// Whether it starts with a keyframe.
    pub independent: bool,
    /// The fragment.
    pub bytes: Vec<u8>,
}

/// What the caller must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecorderOutput {
    /// Store this init segment; it applies to the segments that follow.
    InitSegment(InitSegment),
    /// A part of the segment being written: serve it to low-latency players (not stored; the
    /// segment it belongs to follows as a [`RecorderOutput::Segment`]).
    Part(Part),
    /// Store this media segment.
    Segment(Segment),
    /// Send a keyframe request (PLI/FIR) to the publisher.
    RequestKeyframe,
}

/// Counters of a [`Recorder`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Packets offered.
    pub packets: u64,
    /// Packets dropped by the reorder buffers (late, duplicate, garbage).
    pub packets_dropped: u64,
    /// Video depacketizer counters.
    pub video: DepacketizeStats,
    /// Audio depacketizer counters.
    pub audio: DepacketizeStats,
    /// Segments emitted.
    pub segments: u64,
    /// Segments that could not be muxed.
    pub mux_errors: u64,
    /// Times audio was placed anew from the publisher's sender reports.
    pub audio_resyncs: u64,
    /// Audio frames skipped because a refit put them before audio already cut.
    pub audio_overlap_dropped: u64,
}

/// An audio frame's extended RTP timestamp and its media time (48 kHz ticks); later frames
/// follow from their RTP timestamps.
#[derive(Clone, Copy, Debug)]
struct AudioAnchor {
    ext: u64,
    time: u64,
    /// Placed from sender reports (else by arrival).
    synced: bool,
}

/// How far (48 kHz ticks, 5 ms) the sender reports may disagree with audio's own clock before
/// audio is placed anew.
const SYNC_TOLERANCE_TICKS: i128 = 240;

/// The largest correction sender reports may make (48 kHz ticks, 3 s): network delays differ by
/// less; a larger disagreement is a publisher's clock being stepped and is ignored.
const MAX_SYNC_STEP_TICKS: i128 = 3 * 48_000;

/// `a - b` in ticks of `rate` Hz, signed.
fn signed_ticks(a: Instant, b: Instant, rate: u32) -> i128 {
    let ns = match a.checked_duration_since(b) {
        Some(d) => d.as_nanos() as i128,
        None => -(b.duration_since(a).as_nanos() as i128),
    };
    ns * i128::from(rate) / 1_000_000_000
}

#[derive(Debug)]
enum VideoDepacketizer {
    Vp8(Depacketizer<Vp8Format>),
    H264(Depacketizer<H264Format>),
}

impl VideoDepacketizer {
    fn push(&mut self, pkt: &RtpPacket, lost: bool, out: &mut Vec<Frame>) {
        match self {
            Self::Vp8(d) => d.push(pkt, lost, out),
            Self::H264(d) => d.push(pkt, lost, out),
        }
    }

    fn flush(&mut self, out: &mut Vec<Frame>) {
        match self {
            Self::Vp8(d) => d.flush(out),
            Self::H264(d) => d.flush(out),
        }
    }

    fn waiting_for_keyframe(&self) -> bool {
        match self {
            Self::Vp8(d) => d.waiting_for_keyframe(),
            Self::H264(d) => d.waiting_for_keyframe(),
        }
    }

    fn stats(&self) -> DepacketizeStats {
        match self {
            Self::Vp8(d) => d.stats(),
            Self::H264(d) => d.stats(),
        }
    }

    /// Codec parameters carried by (or known at) a keyframe.
    fn params(&self, keyframe: &Frame) -> Option<VideoParams> {
        match self {
            Self::Vp8(_) => {
                frame_size(&keyframe.data).map(|(width, height)| VideoParams::Vp8 { width, height })
            }
            Self::H264(d) => Some(VideoParams::H264 {
                sps: d.format().sps()?.to_vec(),
                pps: d.format().pps()?.to_vec(),
            }),
        }
    }
}

/// The recording state machine for one stream.
#[derive(Debug)]
pub struct Recorder {
    cfg: RecorderConfig,
    clock: (Instant, SystemTime),
    video_rb: ReorderBuffer<RtpPacket>,
    audio_rb: ReorderBuffer<RtpPacket>,
    video_dp: Option<VideoDepacketizer>,
    audio_dp: Depacketizer<OpusFormat>,
    video_ts: TsUnwrapper,
    audio_ts: TsUnwrapper,
    /// Media time 0: the first keyframe's extended RTP timestamp and its arrival.
    video_origin: Option<(u64, Instant)>,
    /// The local instant of media time 0 on the publisher's capture timeline, refitted with
    /// every video frame that has a capture time (its track had a sender report).
    video_zero: Option<Instant>,
    /// Where audio sits on the video timeline.
    audio_anchor: Option<AudioAnchor>,
    /// End of the last audio frame handed to the segmenter (48 kHz ticks).
    audio_end: u64,
    origin_wall: Option<SystemTime>,
    segmenter: Segmenter,
    muxer: Option<Muxer>,
    next_seq: u64,
    /// Index of the next part of segment `next_seq`.
    next_part: u32,
    last_request: Option<Instant>,
    stats: RecorderStats,
    frames: Vec<Frame>,
    last_now: Instant,
}

impl Recorder {
    /// Creates a recorder whose wall clock is anchored at the current time.
    pub fn new(cfg: RecorderConfig) -> Self {
        Self::with_clock(cfg, Instant::now(), SystemTime::now())
    }

    /// Creates a recorder for which `instant` happened at wall-clock time `wall`.
    pub fn with_clock(cfg: RecorderConfig, instant: Instant, wall: SystemTime) -> Self {
        let video_dp = cfg.video.map(|c| match c {
            VideoCodec::Vp8 => VideoDepacketizer::Vp8(Depacketizer::new(Vp8Format)),
            VideoCodec::H264 => VideoDepacketizer::H264(Depacketizer::new(H264Format::default())),
        });
        Self {
            segmenter: Segmenter::new(cfg.segment, cfg.video.is_some(), cfg.audio.is_some()),
            video_rb: ReorderBuffer::new(cfg.reorder),
            audio_rb: ReorderBuffer::new(cfg.reorder),
            cfg,
            clock: (instant, wall),
            video_dp,
            audio_dp: Depacketizer::new(OpusFormat),
            video_ts: TsUnwrapper::default(),
            audio_ts: TsUnwrapper::default(),
            video_origin: None,
            video_zero: None,
            audio_anchor: None,
            audio_end: 0,
            origin_wall: None,
            muxer: None,
            next_seq: 0,
            next_part: 0,
            last_request: None,
            stats: RecorderStats::default(),
            frames: Vec::new(),
            last_now: instant,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> RecorderStats {
        let mut s = self.stats;
        if let Some(d) = &self.video_dp {
            s.video = d.stats();
        }
        s.audio = self.audio_dp.stats();
        s
    }

    /// Media time 0 on the publisher's capture timeline (the local instant; the arrival of the
    /// first keyframe until sender reports place it) and its wall-clock time, once the first
    /// keyframe has arrived: what [`RecorderConfig::zero`] of a recorder sharing this timeline
    /// takes.
    pub fn zero(&self) -> Option<(Instant, SystemTime)> {
        let (_, arrival) = self.video_origin?;
        let at = self.video_zero.unwrap_or(arrival);
        Some((at, self.origin_wall.unwrap_or_else(|| self.wall(at))))
    }

    /// The init segment currently in force, if codec parameters are known.
    pub fn init_segment(&self) -> Option<InitSegment> {
        self.muxer.as_ref().map(|m| InitSegment {
            bytes: m.init_segment().to_vec(),
            params: m.params().clone(),
        })
    }

    /// Offers one packet that arrived at `pkt.arrival`; `now` is the current time.
    pub fn push(&mut self, pkt: RtpPacket, now: Instant) -> Vec<RecorderOutput> {
        self.stats.packets += 1;
        let outcome = match pkt.kind {
            MediaKind::Video if self.cfg.video.is_some() => {
                self.video_rb.push(pkt.seq, pkt.arrival, pkt)
            }
            MediaKind::Audio if self.cfg.audio.is_some() => {
                self.audio_rb.push(pkt.seq, pkt.arrival, pkt)
            }
            _ => crate::reorder::PushOutcome::Garbage,
        };
        if !matches!(
            outcome,
            crate::reorder::PushOutcome::Accepted | crate::reorder::PushOutcome::Restarted
        ) {
            self.stats.packets_dropped += 1;
        }
        self.poll(now)
    }

    /// Releases whatever the reorder buffers give up waiting for by `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<RecorderOutput> {
        self.last_now = self.last_now.max(now);
        let mut out = Vec::new();
        while let Some(r) = self.video_rb.pop(now) {
            self.on_video_packet(&r.item, r.lost_before > 0, now, &mut out);
        }
        while let Some(r) = self.audio_rb.pop(now) {
            self.on_audio_packet(&r.item, r.lost_before > 0, &mut out);
        }
        out
    }

    /// When [`poll`](Self::poll) should next be called even if no packet arrives.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.video_rb.next_deadline(), self.audio_rb.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends the recording: everything buffered becomes the last segment(s).
    pub fn finish(&mut self) -> Vec<RecorderOutput> {
        let mut out = Vec::new();
        let now = self.last_now;
        for r in self.video_rb.flush() {
            self.on_video_packet(&r.item, r.lost_before > 0, now, &mut out);
        }
        for r in self.audio_rb.flush() {
            self.on_audio_packet(&r.item, r.lost_before > 0, &mut out);
        }
        let mut frames = std::mem::take(&mut self.frames);
        if let Some(dp) = self.video_dp.as_mut() {
            dp.flush(&mut frames);
        }
        for f in frames.drain(..) {
            self.on_video_frame(f, &mut out);
        }
        self.audio_dp.flush(&mut frames);
        for f in frames.drain(..) {
            self.on_audio_frame(f, &mut out);
        }
        self.frames = frames;
        let mut ev = Vec::new();
        self.segmenter.flush(&mut ev);
        self.handle(ev, &mut out);
        out
    }

    fn on_video_packet(
        &mut self,
        pkt: &RtpPacket,
        lost: bool,
        now: Instant,
        out: &mut Vec<RecorderOutput>,
    ) {
        let Some(dp) = self.video_dp.as_mut() else {
            return;
        };
        let mut frames = std::mem::take(&mut self.frames);
        let before = dp.stats();
        dp.push(pkt, lost, &mut frames);
        let after = dp.stats();
        // Ask for a keyframe when a frame had to be thrown away for want of one.
        let waiting = dp.waiting_for_keyframe()
            && (after.corrupt_frames > before.corrupt_frames
                || after.skipped_waiting_keyframe > before.skipped_waiting_keyframe);
        for f in frames.drain(..) {
            self.on_video_frame(f, out);
        }
        self.frames = frames;
        if waiting {
            self.request_keyframe(now, out);
        }
    }

    fn on_audio_packet(&mut self, pkt: &RtpPacket, lost: bool, out: &mut Vec<RecorderOutput>) {
        let mut frames = std::mem::take(&mut self.frames);
        self.audio_dp.push(pkt, lost, &mut frames);
        for f in frames.drain(..) {
            self.on_audio_frame(f, out);
        }
        self.frames = frames;
    }

    fn request_keyframe(&mut self, now: Instant, out: &mut Vec<RecorderOutput>) {
        let due = self
            .last_request
            .is_none_or(|l| now.saturating_duration_since(l) >= self.cfg.keyframe_request_interval);
        if due {
            self.last_request = Some(now);
            out.push(RecorderOutput::RequestKeyframe);
        }
    }

    fn wall(&self, at: Instant) -> SystemTime {
        let (i, w) = self.clock;
        if at >= i {
            w + (at - i)
        } else {
            w.checked_sub(i - at).unwrap_or(w)
        }
    }

    /// Switches to a muxer for `params` if they differ from the current ones.
    fn ensure_muxer(&mut self, params: TrackParams, out: &mut Vec<RecorderOutput>) -> bool {
        if self.muxer.as_ref().is_some_and(|m| *m.params() == params) {
            return true;
        }
        match Muxer::new(params) {
            Ok(m) => {
                if self.muxer.is_some() {
                    // Segments cut so far belong to the previous init segment.
                    let mut ev = Vec::new();
                    self.segmenter.flush(&mut ev);
                    self.handle(ev, out);
                }
                out.push(RecorderOutput::InitSegment(InitSegment {
                    bytes: m.init_segment().to_vec(),
                    params: m.params().clone(),
                }));
                // Parts (low-latency HLS) are fMP4 fragments, or WebM clusters.
                self.segmenter.set_part_target(self.cfg.segment.part_target);
                self.muxer = Some(m);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an init segment for these codec parameters");
                false
            }
        }
    }

    fn on_video_frame(&mut self, frame: Frame, out: &mut Vec<RecorderOutput>) {
        let ext = self.video_ts.extend(frame.timestamp);
        if frame.keyframe {
            let Some(video) = self.video_dp.as_ref().and_then(|d| d.params(&frame)) else {
                return;
            };
            let params = TrackParams {
                video: Some(video),
                audio: self.cfg.audio,
            };
            if !self.ensure_muxer(params, out) {
                return;
            }
            if self.video_origin.is_none() {
                let shared = self.cfg.zero.and_then(|(zero, wall)| {
                    // Where this keyframe sits on the shared timeline.
                    let at = frame.capture.unwrap_or(frame.arrival);
                    let ticks = u64::try_from(at.saturating_duration_since(zero).as_nanos() * u128::from(crate::mux::VIDEO_TIMESCALE) / 1_000_000_000).ok()?;
                    Some((ext.checked_sub(ticks)?, zero, wall))
                });
                match shared {
                    Some((origin, zero, wall)) => {
                        self.video_origin = Some((origin, frame.arrival));
                        self.video_zero = Some(zero);
                        self.origin_wall = Some(wall);
                    }
                    None => {
                        self.video_origin = Some((ext, frame.arrival));
                        self.origin_wall = Some(self.wall(frame.arrival));
                    }
                }
            }
        }
        let Some((origin, _)) = self.video_origin else {
            return;
        };
        let Some(time) = ext.checked_sub(origin) else {
            return;
        };
        if let Some(c) = frame.capture {
            self.video_zero = c.checked_sub(crate::segmenter::ticks_to_duration(time, crate::mux::VIDEO_TIMESCALE)).or(self.video_zero);
            // Until the first segment is out, the recording's wall clock (its program date
            // times) follows the capture, not the arrival, of its first frame (a recorder on a
            // shared timeline keeps the one it was given).
            if self.next_seq == 0
                && self.cfg.zero.is_none()
                && let Some(zero) = self.video_zero
            {
                self.origin_wall = Some(self.wall(zero));
            }
        }
        let mut ev = Vec::new();
        self.segmenter.push_video(
            TimedFrame {
                time,
                keyframe: frame.keyframe,
                duration_hint: 0,
                data: frame.data,
            },
            &mut ev,
        );
        self.handle(ev, out);
    }

    fn on_audio_frame(&mut self, frame: Frame, out: &mut Vec<RecorderOutput>) {
        let ext = self.audio_ts.extend(frame.timestamp);
        // Where the publisher's clock puts this frame on the video timeline (48 kHz ticks), once
        // both tracks have had a sender report.
        let synced = match (frame.capture, self.video_zero) {
            (Some(c), Some(zero)) => Some(signed_ticks(c, zero, AUDIO_TIMESCALE)),
            _ => None,
        };
        if self.audio_anchor.is_none() {
            match self.video_origin {
                Some((_, video_arrival)) => {
                    let time = match synced {
                        Some(t) => t,
                        // Before any report: by arrival relative to the first keyframe.
                        None => signed_ticks(frame.arrival, video_arrival, AUDIO_TIMESCALE),
                    };
                    let Ok(time) = u64::try_from(time) else { return };
                    self.audio_anchor = Some(AudioAnchor { ext, time, synced: synced.is_some() });
                }
                None if self.cfg.video.is_none() => {
                    let params = TrackParams {
                        video: None,
                        audio: self.cfg.audio,
                    };
                    if !self.ensure_muxer(params, out) {
                        return;
                    }
                    self.audio_anchor = Some(AudioAnchor { ext, time: 0, synced: true });
                    self.origin_wall = Some(self.wall(frame.arrival));
                }
                None => return,
            }
        }
        let Some(anchor) = self.audio_anchor else {
            return;
        };
        let predicted = i128::from(anchor.time) + (i128::from(ext) - i128::from(anchor.ext));
        let time = match synced {
            // The first report, or the publisher's clock and the audio's own disagree: refit.
            // A jump of more than MAX_SYNC_STEP is the publisher's wall clock being stepped,
            // not the network: audio keeps its own clock then.
            Some(t) if (!anchor.synced || (t - predicted).abs() > SYNC_TOLERANCE_TICKS) && (t - predicted).abs() <= MAX_SYNC_STEP_TICKS => {
                let Ok(at) = u64::try_from(t) else { return };
                tracing::debug!(from = predicted, to = t, "audio placed by the publisher's sender reports");
                self.audio_anchor = Some(AudioAnchor { ext, time: at, synced: true });
                self.stats.audio_resyncs += 1;
                t
            }
            _ => predicted,
        };
        let Ok(time) = u64::try_from(time) else { return };
        if time < self.audio_end {
            // A refit moved audio earlier than what is already cut: skip until past it.
            self.stats.audio_overlap_dropped += 1;
            return;
        }
        let duration_hint = packet_duration(&frame.data).unwrap_or(960);
        self.audio_end = time.saturating_add(u64::from(duration_hint));
        let mut ev = Vec::new();
        self.segmenter.push_audio(
            TimedFrame {
                time,
                keyframe: true,
                duration_hint,
                data: frame.data,
            },
            &mut ev,
        );
        self.handle(ev, out);
    }

    fn handle(&mut self, events: Vec<SegmenterEvent>, out: &mut Vec<RecorderOutput>) {
        for e in events {
            match e {
                SegmenterEvent::RequestKeyframe => {
                    // The segmenter rate-limits in media time; pass it on.
                    out.push(RecorderOutput::RequestKeyframe);
                }
                SegmenterEvent::Part(part) => self.emit_part(part, out),
                SegmenterEvent::Segment(seg) => self.emit(seg, out),
            }
        }
    }

    /// Muxes a part of segment `next_seq` (no part of a later segment is cut before the
    /// segment before it is emitted).
    fn emit_part(&mut self, part: CutPart, out: &mut Vec<RecorderOutput>) {
        let Some(muxer) = self.muxer.as_ref() else { return };
        let index = self.next_part;
        self.next_part = self.next_part.saturating_add(1);
        let video = (!part.video.is_empty()).then_some(TrackRun { base_decode_time: part.video_base, samples: &part.video });
        let audio = (!part.audio.is_empty()).then_some(TrackRun { base_decode_time: part.audio_base, samples: &part.audio });
        match muxer.media_segment(u32::try_from(self.next_seq + 1).unwrap_or(u32::MAX), video, audio) {
            Ok(bytes) => out.push(RecorderOutput::Part(Part {
                seq: self.next_seq,
                index,
                duration: part.duration(),
                independent: part.independent,
                bytes,
            })),
            Err(e) => tracing::warn!(error = %e, "dropping a part that could not be muxed"),
        }
    }

    fn emit(&mut self, seg: CutSegment, out: &mut Vec<RecorderOutput>) {
        let Some(muxer) = self.muxer.as_ref() else {
            return;
        };
        let seq = self.next_seq;
        let video = (!seg.video.is_empty()).then_some(TrackRun {
            base_decode_time: seg.video_base,
            samples: &seg.video,
        });
        let audio = (!seg.audio.is_empty()).then_some(TrackRun {
            base_decode_time: seg.audio_base,
            samples: &seg.audio,
        });
        if video.is_none() && audio.is_none() {
            return;
        }
        // The number is used either way: parts of it may have gone out, and a segment that
        // cannot be muxed is a gap, not a shift of the numbers after it.
        self.next_seq += 1;
        self.next_part = 0;
        match muxer.media_segment(u32::try_from(seq + 1).unwrap_or(u32::MAX), video, audio) {
            Ok(bytes) => {
                self.stats.segments += 1;
                let start_wallclock = self.origin_wall.unwrap_or(self.clock.1) + seg.start_offset();
                out.push(RecorderOutput::Segment(Segment {
                    seq,
                    bytes,
                    duration: seg.duration(),
                    start_wallclock,
                    start_offset: seg.start_offset(),
                    has_video: !seg.video.is_empty(),
                }));
            }
            Err(e) => {
                self.stats.mux_errors += 1;
                tracing::warn!(error = %e, "dropping a segment that could not be muxed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A VP8 frame of `w`×`h` (key) or an inter frame, as one RTP payload with descriptor.
    fn vp8_payload(key: bool, w: u16, h: u16) -> Vec<u8> {
        let mut p = vec![0x10];
        if key {
            p.extend(crate::depacketize::test_util::vp8_keyframe(w, h, 4));
        } else {
            p.extend_from_slice(&[0x01, 0, 0, 7, 7]);
        }
        p
    }

    struct Feed {
        rec: Recorder,
        t0: Instant,
        out: Vec<RecorderOutput>,
    }

    impl Feed {
        fn new(cfg: RecorderConfig) -> Self {
            let t0 = Instant::now();
            Self {
                rec: Recorder::with_clock(cfg, t0, SystemTime::UNIX_EPOCH),
                t0,
                out: Vec::new(),
            }
        }

        fn push(&mut self, kind: MediaKind, seq: u64, ts: u32, payload: Vec<u8>, ms: u64) {
            self.push_captured(kind, seq, ts, payload, ms, None);
        }

        /// A packet that arrived at `ms` and was captured at `capture_us` (microseconds).
        fn push_captured(&mut self, kind: MediaKind, seq: u64, ts: u32, payload: Vec<u8>, ms: u64, capture_us: Option<u64>) {
            let at = self.t0 + Duration::from_millis(ms);
            let pkt = RtpPacket {
                kind,
                seq,
                timestamp: ts,
                marker: true,
                payload: Arc::from(payload),
                arrival: at,
                capture: capture_us.map(|us| self.t0 + Duration::from_micros(us)),
            };
            let o = self.rec.push(pkt, at);
            self.out.extend(o);
        }

        fn segments(&self) -> Vec<&Segment> {
            self.out
                .iter()
                .filter_map(|o| match o {
                    RecorderOutput::Segment(s) => Some(s),
                    _ => None,
                })
                .collect()
        }

        fn inits(&self) -> Vec<&InitSegment> {
            self.out
                .iter()
                .filter_map(|o| match o {
                    RecorderOutput::InitSegment(i) => Some(i),
                    _ => None,
                })
                .collect()
        }
    }

    fn video_only() -> RecorderConfig {
        RecorderConfig {
            video: Some(VideoCodec::Vp8),
            audio: None,
            ..RecorderConfig::default()
        }
    }

    /// (track, milliseconds) of every block of a WebM media segment.
    fn webm_blocks(seg: &[u8]) -> Vec<(u8, u64)> {
        fn vint(b: &[u8]) -> (u64, usize) {
            let len = b[0].leading_zeros() as usize + 1;
            let mut v = u64::from(b[0]) & ((1u64 << (8 - len)) - 1);
            for x in &b[1..len] {
                v = (v << 8) | u64::from(*x);
            }
            (v, len)
        }
        let mut out = Vec::new();
        let mut at = 0;
        while at < seg.len() {
            // Cluster: 4-byte id, size, then children.
            let (size, n) = vint(&seg[at + 4..]);
            let body = &seg[at + 4 + n..at + 4 + n + size as usize];
            let mut cluster_ms = 0;
            let mut i = 0;
            while i < body.len() {
                let id = body[i];
                let (len, n) = vint(&body[i + 1..]);
                let child = &body[i + 1 + n..i + 1 + n + len as usize];
                if id == 0xE7 {
                    cluster_ms = child.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
                } else if id == 0xA3 {
                    let rel = i16::from_be_bytes([child[1], child[2]]);
                    out.push((child[0] & 0x7F, (cluster_ms as i64 + i64::from(rel)) as u64));
                }
                i += 1 + n + len as usize;
            }
            at += 4 + n + size as usize;
        }
        out
    }

    /// Audio captured with the video but 210 ms later on the network: by arrival until its first
    /// sender report, then where the publisher's clock puts it, with what overlaps dropped once.
    #[test]
    fn audio_follows_the_publishers_clock_once_its_tracks_have_sender_reports() {
        let mut f = Feed::new(RecorderConfig::default());
        let opus = vec![0xFC, 0xFF, 0xFE];
        // 6 s; video every 33.3 ms (captures known from the start), audio every 20 ms (captures
        // known from 1 s on).
        let mut v = 0u64;
        let mut a = 0u64;
        loop {
            let v_us = v * 100_000 / 3;
            let a_us = a * 20_000;
            if v_us.min(a_us) > 6_000_000 {
                break;
            }
            if v_us <= a_us + 210_000 {
                f.push_captured(MediaKind::Video, 1000 + v, (v * 3000) as u32, vp8_payload(v % 60 == 0, 640, 360), v_us / 1000, Some(v_us));
                v += 1;
            } else {
                let capture = (a_us >= 1_000_000).then_some(a_us);
                f.push_captured(MediaKind::Audio, 5000 + a, (a * 960) as u32, opus.clone(), (a_us + 210_000) / 1000, capture);
                a += 1;
            }
        }
        // The publisher's wall clock is stepped 10 s forward for its audio: ignored.
        for k in 0..50u64 {
            let a = 300 + k;
            let a_us = a * 20_000;
            f.push_captured(MediaKind::Audio, 5000 + a, (a * 960) as u32, opus.clone(), (a_us + 210_000) / 1000, Some(a_us + 10_000_000));
        }
        f.out.extend(f.rec.finish());
        let stats = f.rec.stats();
        assert_eq!(stats.audio_resyncs, 1, "{stats:?}");
        assert!((9..=12).contains(&stats.audio_overlap_dropped), "{stats:?}");
        let blocks: Vec<(u8, u64)> = f.segments().iter().flat_map(|s| webm_blocks(&s.bytes)).collect();
        let audio: Vec<u64> = blocks.iter().filter(|b| b.0 == 2).map(|b| b.1).collect();
        // Before the reports audio sits 210 ms late (10 ms past a 20 ms step); after, on time.
        assert!(audio.iter().any(|t| *t < 1000 && t % 20 == 10), "{audio:?}");
        let late: Vec<u64> = audio.iter().copied().filter(|t| *t > 1500).collect();
        assert!(!late.is_empty() && late.iter().all(|t| t % 20 == 0), "{late:?}");
        // The frame captured at 4 s is at 4000 ms in both tracks.
        assert!(blocks.contains(&(1, 4000)) && blocks.contains(&(2, 4000)), "{blocks:?}");
    }

    /// Program date times follow the publisher's capture (its sender reports), not the arrival.
    #[test]
    fn a_recorder_given_another_ones_zero_shares_its_timeline() {
        let mut main = Feed::new(video_only());
        let mut other: Option<Feed> = None;
        // 6 s at 30 fps, a keyframe every 2 s; the second layer starts 2 s in (its RTP clock has
        // another random base), on the first recorder's zero.
        for v in 0..180u64 {
            let ms = v * 100 / 3;
            main.push(MediaKind::Video, v, (v * 3000) as u32, vp8_payload(v % 60 == 0, 640, 360), ms);
            if v == 60 {
                let zero = main.rec.zero().expect("the main recorder has started");
                let cfg = RecorderConfig { zero: Some(zero), ..video_only() };
                other = Some(Feed { rec: Recorder::with_clock(cfg, main.t0, SystemTime::UNIX_EPOCH), t0: main.t0, out: Vec::new() });
            }
            if let Some(o) = other.as_mut() {
                o.push(MediaKind::Video, v, (777_000 + v * 3000) as u32, vp8_payload(v % 60 == 0, 320, 180), ms);
            }
        }
        main.out.extend(main.rec.finish());
        let mut other = other.unwrap();
        let tail = other.rec.finish();
        other.out.extend(tail);
        let (a, b) = (main.segments(), other.segments());
        assert_eq!(b.len(), 2);
        for (x, y) in b.iter().zip(&a[1..]) {
            assert_eq!((x.start_offset, x.start_wallclock, x.duration), (y.start_offset, y.start_wallclock, y.duration));
        }
        assert_eq!(b[0].start_offset, Duration::from_secs(2), "media time 2 s, not 0: the players' timeline is one");
    }

    #[test]
    fn the_recordings_wall_clock_is_its_first_frames_capture() {
        let mut f = Feed::new(video_only());
        for i in 0..130u64 {
            let capture_us = i * 100_000 / 3;
            // Every frame arrives 150 ms after its capture.
            f.push_captured(MediaKind::Video, 1000 + i, (i * 3000) as u32, vp8_payload(i % 60 == 0, 640, 360), capture_us / 1000 + 150, Some(capture_us));
        }
        f.out.extend(f.rec.finish());
        let segs = f.segments();
        assert!(segs.len() >= 2);
        assert_eq!(segs[0].start_wallclock, SystemTime::UNIX_EPOCH, "the first frame was captured at t0, not at its arrival");
        assert_eq!(segs[1].start_wallclock, SystemTime::UNIX_EPOCH + segs[0].duration);
    }

    #[test]
    fn resolution_change_emits_a_new_init_segment_between_segments() {
        let mut f = Feed::new(video_only());
        for i in 0..240u64 {
            let (w, h) = if i < 150 { (640, 360) } else { (320, 180) };
            f.push(
                MediaKind::Video,
                1000 + i,
                (i * 3000) as u32,
                vp8_payload(i % 60 == 0 || i == 150, w, h),
                i * 33,
            );
        }
        f.out.extend(f.rec.finish());
        let inits = f.inits();
        assert_eq!(inits.len(), 2);
        assert_eq!(
            inits[0].params.video,
            Some(VideoParams::Vp8 {
                width: 640,
                height: 360
            })
        );
        assert_eq!(
            inits[1].params.video,
            Some(VideoParams::Vp8 {
                width: 320,
                height: 180
            })
        );
        assert_eq!(inits[0].codecs(), "vp8");
        // Order: init, segments of the first size, init, segments of the second size.
        let kinds: Vec<char> = f
            .out
            .iter()
            .filter_map(|o| match o {
                RecorderOutput::InitSegment(_) => Some('I'),
                RecorderOutput::Segment(_) => Some('S'),
                RecorderOutput::RequestKeyframe | RecorderOutput::Part(_) => None,
            })
            .collect();
        assert_eq!(kinds.iter().collect::<String>(), "ISSSIS");
        let segs = f.segments();
        assert_eq!(
            segs.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(segs[2].duration, Duration::from_secs(1)); // 120..150 cut at the change
        let total: Duration = segs.iter().map(|s| s.duration).sum();
        assert_eq!(total, Duration::from_secs(8));
    }

    #[test]
    fn loss_drops_frames_until_keyframe_and_requests_one() {
        let mut f = Feed::new(video_only());
        for i in 0..120u64 {
            if i == 10 {
                continue; // lost
            }
            f.push(
                MediaKind::Video,
                i,
                (i * 3000) as u32,
                vp8_payload(i % 60 == 0, 640, 360),
                i * 33,
            );
            let later = f.t0 + Duration::from_millis(i * 33 + 20);
            let o = f.rec.poll(later);
            f.out.extend(o);
        }
        f.out.extend(f.rec.finish());
        let requests = f
            .out
            .iter()
            .filter(|o| **o == RecorderOutput::RequestKeyframe)
            .count();
        // Repeated every 500 ms while waiting (1.6 s here), not once per dropped frame.
        assert!((2..=4).contains(&requests), "{requests} keyframe requests");
        let stats = f.rec.stats();
        assert_eq!(stats.video.frames, 10 + 60);
        assert!(stats.video.skipped_waiting_keyframe >= 40);
        let segs = f.segments();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].duration, Duration::from_secs(2));
    }

    #[test]
    fn audio_only_recording_starts_at_first_packet() {
        let cfg = RecorderConfig {
            video: None,
            ..RecorderConfig::default()
        };
        let mut f = Feed::new(cfg);
        for i in 0..200u64 {
            f.push(
                MediaKind::Audio,
                5 + i,
                (i * 960) as u32 + 77,
                vec![0xfc, 1, 2, 3],
                i * 20,
            );
            // Video packets are ignored in an audio-only recording.
            f.push(
                MediaKind::Video,
                9 + i,
                0,
                vp8_payload(true, 64, 64),
                i * 20,
            );
        }
        f.out.extend(f.rec.finish());
        let inits = f.inits();
        assert_eq!(inits.len(), 1);
        assert_eq!(inits[0].codecs(), "opus");
        let segs = f.segments();
        assert!(segs.len() >= 2);
        assert!(segs.iter().all(|s| !s.has_video));
        let total: f64 = segs.iter().map(|s| s.duration.as_secs_f64()).sum();
        assert!((total - 4.0).abs() < 0.05, "{total}");
        assert_eq!(
            segs[1].start_wallclock,
            SystemTime::UNIX_EPOCH + segs[1].start_offset
        );
    }

    #[test]
    fn sequence_and_timestamp_wraparound_keep_segments_continuous() {
        use crate::rtp::SeqUnwrapper;
        let mut f = Feed::new(video_only());
        let mut unwrap = SeqUnwrapper::default();
        let ts0 = u32::MAX - 90_000; // wraps one second in
        for i in 0..180u32 {
            let seq = 65_500u16.wrapping_add(i as u16);
            let ts = ts0.wrapping_add(i * 3000);
            let mut raw = vec![0x80, 0x80 | 96];
            raw.extend_from_slice(&seq.to_be_bytes());
            raw.extend_from_slice(&ts.to_be_bytes());
            raw.extend_from_slice(&[0, 0, 0, 1]);
            raw.extend_from_slice(&vp8_payload(i % 60 == 0, 640, 360));
            let at = f.t0 + Duration::from_millis(u64::from(i) * 33);
            let pkt =
                RtpPacket::from_bytes(&raw, MediaKind::Video, &mut unwrap, at).expect("valid RTP");
            let o = f.rec.push(pkt, at);
            f.out.extend(o);
        }
        f.out.extend(f.rec.finish());
        let segs = f.segments();
        assert_eq!(segs.len(), 3);
        assert!(
            segs.iter().all(|s| s.duration == Duration::from_secs(2)),
            "{:?}",
            segs.iter().map(|s| s.duration).collect::<Vec<_>>()
        );
        assert_eq!(f.rec.stats().video.frames, 180);
    }

    #[test]
    fn garbage_payloads_produce_nothing_and_never_panic() {
        let mut f = Feed::new(RecorderConfig::default());
        let junk: [&[u8]; 6] = [
            &[],
            &[0xff; 3],
            &[0x80, 0x80],
            &[0x10, 0x00, 0x9d, 0x01, 0x2a],
            &[0x90; 40],
            &[0x10],
        ];
        for (i, j) in junk.iter().enumerate() {
            f.push(
                MediaKind::Video,
                i as u64,
                i as u32 * 3000,
                j.to_vec(),
                i as u64,
            );
            f.push(
                MediaKind::Audio,
                i as u64,
                i as u32 * 960,
                j.to_vec(),
                i as u64,
            );
        }
        f.out.extend(f.rec.finish());
        assert!(f.segments().is_empty());
        assert!(f.inits().is_empty());
    }
}
