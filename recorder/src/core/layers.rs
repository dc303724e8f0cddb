//! Which simulcast layers a recording records: the main rendition (the configured layer, else the
//! highest sending once the layers have settled), every other layer as a rendition on the main
//! one's timeline, or audio alone when no video comes.

use std::time::{Duration, Instant, SystemTime};

use relaycast_archive::lowlatency::PART_TARGET;
use relaycast_archive::segmenter::SegmenterConfig;
use relaycast_archive::{MediaKind, Recorder, RecorderConfig, RtpPacket};
use relaycast_sfu::layer::MAX_LAYERS;
use relaycast_sfu::stream::RIDS;

use super::{Action, MAIN, Rec, RecordingId, TapPacket};

/// How long after the first video packet the archive waits for higher simulcast layers before
/// it records the highest one that has sent a keyframe.
pub const LAYER_SETTLE: Duration = Duration::from_millis(1000);

/// How long a publisher may send audio without any video before its stream is recorded as
/// audio only (a radio); the audio of that time is kept and recorded.
pub const AUDIO_ONLY_SETTLE: Duration = Duration::from_millis(2000);

/// Most audio packets kept while a stream may still turn out to be audio only (Opus frames of
/// 20 ms: 2.5× the settle time).
pub const EARLY_AUDIO: usize = 250;

/// One simulcast layer a recording records.
#[derive(Debug)]
pub(super) struct Track {
    pub(super) layer: u8,
    pub(super) recorder: Option<Recorder>,
    pub(super) init_cid: Option<String>,
    pub(super) codecs: String,
}

impl Track {
    /// Where its files go in the VOD directory: the top level for the main rendition, else
    /// `{rid}/`.
    pub(super) fn dir(&self, track: usize) -> String {
        if track == MAIN { String::new() } else { format!("{}/", rid(self.layer)) }
    }
}

/// The layer index of rid `rid` (`q` 0, `h` 1, `f` 2; anything else below them).
pub fn rid_rank(rid: &str) -> i32 {
    RIDS.iter().position(|r| *r == rid).map_or(-1, |i| i as i32)
}

/// The rid of simulcast layer `layer` (`q`, `h`, `f`).
pub(super) fn rid(layer: u8) -> &'static str {
    RIDS.get(usize::from(layer)).copied().unwrap_or("")
}

/// Chooses the archived layers and creates their recorders: the main one as before — the
/// configured layer once it has sent a keyframe, else the highest layer that has sent one (at
/// once when that is the top layer, else after the settle time: simulcast layers start one after
/// the other) — and, without a configured layer, every lower layer as soon as it sends a
/// keyframe, as a rendition of its own.
///
/// Returns the audio kept from before an audio-only recording began, for its recorder (empty
/// otherwise).
pub(super) fn select(r: &mut Rec, configured: Option<u8>, rec: RecordingId, pkt: &TapPacket, now: Instant, wall: SystemTime, out: &mut Vec<Action>) -> Vec<RtpPacket> {
    if pkt.rtp.kind != MediaKind::Video {
        if !r.tracks.is_empty() || r.first_video.is_some() {
            return Vec::new();
        }
        // Audio and no video at all for a while: an audio-only recording (Opus in fMP4), from
        // the audio kept meanwhile on.
        let first = *r.first_audio.get_or_insert(now);
        if now.saturating_duration_since(first) < AUDIO_ONLY_SETTLE {
            if r.early_audio.len() < EARLY_AUDIO {
                r.early_audio.push(pkt.rtp.clone());
            }
            return Vec::new();
        }
        tracing::debug!(stream = %r.index.stream, "audio-only recording");
        let segment = SegmenterConfig { part_target: Some(PART_TARGET), ..SegmenterConfig::default() };
        let cfg = RecorderConfig { video: None, segment, ..RecorderConfig::default() };
        let clock = r.early_audio.first().map_or(now, |p| p.arrival);
        let wall_then = wall.checked_sub(now.saturating_duration_since(clock)).unwrap_or(wall);
        r.tracks.push(Track { layer: 0, recorder: Some(Recorder::with_clock(cfg, clock, wall_then)), init_cid: None, codecs: String::new() });
        out.push(Action::Publish { rec, index: r.index.clone() });
        return std::mem::take(&mut r.early_audio);
    }
    r.early_audio = Vec::new();
    let bit = 1u8 << pkt.layer.min(7);
    if pkt.keyframe_start {
        r.keyframed_layers |= bit;
    }
    let first = *r.first_video.get_or_insert(now);
    let layer = match r.tracks.first() {
        None if r.keyframed_layers != 0 => {
            let configured_sent = configured.filter(|l| r.keyframed_layers & (1 << l) != 0);
            let highest = 7 - r.keyframed_layers.leading_zeros() as u8;
            let top = usize::from(highest) + 1 >= MAX_LAYERS;
            // A configured layer that never sends is given up on after a while.
            let waited = now.saturating_duration_since(first);
            let may_pick = configured.is_none() || waited >= 3 * LAYER_SETTLE;
            if configured_sent.is_none() && !(may_pick && (top || waited >= LAYER_SETTLE)) {
                return Vec::new();
            }
            let layer = configured_sent.unwrap_or(highest);
            r.index.layer = Some(rid(layer).to_string());
            layer
        }
        // Another layer's first keyframe once the main rendition has started: a rendition on the
        // main one's timeline (unless one layer is configured). A higher layer too: a browser
        // whose bandwidth estimate starts low adds its top layers only after a few seconds.
        Some(main)
            if configured.is_none()
                && pkt.keyframe_start
                && pkt.layer != main.layer
                && usize::from(pkt.layer) < MAX_LAYERS
                && main.recorder.as_ref().and_then(Recorder::zero).is_some()
                && r.tracks.iter().all(|t| t.layer != pkt.layer) =>
        {
            pkt.layer
        }
        _ => return Vec::new(),
    };
    let main = r.tracks.is_empty();
    tracing::debug!(stream = %r.index.stream, layer, main, codec = ?pkt.codec, "archive layer chosen");
    // Low-latency parts for the main rendition only; the others share its timeline.
    let segment = SegmenterConfig { part_target: main.then_some(PART_TARGET), ..SegmenterConfig::default() };
    let zero = r.tracks.first().and_then(|t| t.recorder.as_ref()).and_then(Recorder::zero);
    let cfg = RecorderConfig { video: Some(pkt.codec), segment, zero, ..RecorderConfig::default() };
    r.tracks.push(Track { layer, recorder: Some(Recorder::with_clock(cfg, now, wall)), init_cid: None, codecs: String::new() });
    if main {
        out.push(Action::Publish { rec, index: r.index.clone() });
        out.push(Action::RequestKeyframe { stream_id: r.stream_id, layer });
    } else {
        // Segments of every layer start together from the next keyframes.
        for t in &r.tracks {
            out.push(Action::RequestKeyframe { stream_id: r.stream_id, layer: t.layer });
        }
    }
    Vec::new()
}

