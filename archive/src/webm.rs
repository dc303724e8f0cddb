//! WebM (Matroska) segments for VP8 recordings, in the WebM byte stream format of Media Source
//! Extensions: the init segment is the EBML header, a `Segment` of unknown size, its `Info` and
//! `Tracks`; each media segment is one or more `Cluster`s of `SimpleBlock`s.
//!
//! Browsers' MSE plays VP8 in WebM (Chromium has no VP8 in MP4), and the same files concatenated
//! (init, then segments in order) are a live WebM file that ffmpeg reads. Frames are the
//! publisher's bytes; timestamps are milliseconds (`TimestampScale` 1 ms) from the RTP clocks.

use crate::mux::{
    AUDIO_TIMESCALE, AudioParams, MuxError, TrackParams, TrackRun, VIDEO_TIMESCALE, VideoParams, track_numbers,
};

const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const FLAG_LACING: u32 = 0x9C;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const CODEC_DELAY: u32 = 0x56AA;
const SEEK_PRE_ROLL: u32 = 0x56BB;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const CLUSTER_TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;

/// A `Segment` size of "unknown" (all value bits set, 8-byte length).
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
/// Opus decoders need 80 ms of audio before a seek point to converge (RFC 7845).
const OPUS_SEEK_PRE_ROLL_NS: u64 = 80_000_000;
/// A block's timestamp is a signed 16-bit offset from its cluster's.
const MAX_BLOCK_OFFSET_MS: u64 = i16::MAX as u64;

fn write_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// An EBML variable-size integer of the fewest bytes (the all-ones value of a length is
/// reserved for "unknown").
fn write_size(out: &mut Vec<u8>, n: u64) -> Result<(), MuxError> {
    let len = (1..=8u32).find(|l| n < (1u64 << (7 * l)) - 1).ok_or(MuxError::TooLarge)?;
    let marked = n | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len as usize..]);
    Ok(())
}

fn element(out: &mut Vec<u8>, id: u32, body: &[u8]) -> Result<(), MuxError> {
    write_id(out, id);
    write_size(out, body.len() as u64)?;
    out.extend_from_slice(body);
    Ok(())
}

fn uint(out: &mut Vec<u8>, id: u32, v: u64) -> Result<(), MuxError> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    element(out, id, &bytes[skip..])
}

fn float(out: &mut Vec<u8>, id: u32, v: f64) -> Result<(), MuxError> {
    element(out, id, &v.to_be_bytes())
}

fn string(out: &mut Vec<u8>, id: u32, v: &str) -> Result<(), MuxError> {
    element(out, id, v.as_bytes())
}

/// The `OpusHead` of RFC 7845 §5.1 (channel mapping family 0), WebM's `CodecPrivate` for Opus.
pub fn opus_head(a: &AudioParams) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1);
    h.push(a.channels.clamp(1, 2));
    h.extend_from_slice(&a.pre_skip.to_le_bytes());
    h.extend_from_slice(&AUDIO_TIMESCALE.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// The init segment of `params` (EBML header, a `Segment` of unknown size, `Info`, `Tracks`);
/// video, if any, must be VP8.
pub fn init_segment(params: &TrackParams) -> Result<Vec<u8>, MuxError> {
    let mut header = Vec::new();
    uint(&mut header, EBML_VERSION, 1)?;
    uint(&mut header, EBML_READ_VERSION, 1)?;
    uint(&mut header, EBML_MAX_ID_LENGTH, 4)?;
    uint(&mut header, EBML_MAX_SIZE_LENGTH, 8)?;
    string(&mut header, DOC_TYPE, "webm")?;
    uint(&mut header, DOC_TYPE_VERSION, 4)?;
    uint(&mut header, DOC_TYPE_READ_VERSION, 2)?;

    let mut info = Vec::new();
    uint(&mut info, TIMESTAMP_SCALE, 1_000_000)?;
    string(&mut info, MUXING_APP, "relaycast")?;
    string(&mut info, WRITING_APP, "relaycast")?;

    let (video_no, audio_no) = track_numbers(params);
    let (video_no, audio_no) = (video_no.map(u64::from), audio_no.map(u64::from));
    let mut tracks = Vec::new();
    if let (Some(v), Some(no)) = (&params.video, video_no) {
        let VideoParams::Vp8 { width, height } = v else {
            return Err(MuxError::Mp4("WebM segments carry VP8 video only".into()));
        };
        let mut video = Vec::new();
        uint(&mut video, PIXEL_WIDTH, u64::from(*width))?;
        uint(&mut video, PIXEL_HEIGHT, u64::from(*height))?;
        let mut entry = Vec::new();
        uint(&mut entry, TRACK_NUMBER, no)?;
        uint(&mut entry, TRACK_UID, no)?;
        uint(&mut entry, TRACK_TYPE, 1)?;
        uint(&mut entry, FLAG_LACING, 0)?;
        string(&mut entry, CODEC_ID, "V_VP8")?;
        element(&mut entry, VIDEO, &video)?;
        element(&mut tracks, TRACK_ENTRY, &entry)?;
    }
    if let (Some(a), Some(no)) = (&params.audio, audio_no) {
        let mut audio = Vec::new();
        float(&mut audio, SAMPLING_FREQUENCY, f64::from(AUDIO_TIMESCALE))?;
        uint(&mut audio, CHANNELS, u64::from(a.channels.clamp(1, 2)))?;
        let mut entry = Vec::new();
        uint(&mut entry, TRACK_NUMBER, no)?;
        uint(&mut entry, TRACK_UID, no)?;
        uint(&mut entry, TRACK_TYPE, 2)?;
        uint(&mut entry, FLAG_LACING, 0)?;
        string(&mut entry, CODEC_ID, "A_OPUS")?;
        element(&mut entry, CODEC_PRIVATE, &opus_head(a))?;
        uint(&mut entry, CODEC_DELAY, u64::from(a.pre_skip) * 1_000_000_000 / u64::from(AUDIO_TIMESCALE))?;
        uint(&mut entry, SEEK_PRE_ROLL, OPUS_SEEK_PRE_ROLL_NS)?;
        element(&mut entry, AUDIO, &audio)?;
        element(&mut tracks, TRACK_ENTRY, &entry)?;
    }

    let mut out = Vec::new();
    element(&mut out, EBML, &header)?;
    write_id(&mut out, SEGMENT);
    out.extend_from_slice(&UNKNOWN_SIZE);
    element(&mut out, INFO, &info)?;
    element(&mut out, TRACKS, &tracks)?;
    Ok(out)
}

/// One frame placed for a cluster: track, absolute milliseconds, keyframe, bytes.
struct Block<'a> {
    track: u64,
    ms: u64,
    keyframe: bool,
    data: &'a [u8],
}

fn blocks<'a>(track: u64, run: &TrackRun<'a>, timescale: u32, out: &mut Vec<Block<'a>>) {
    let mut t = run.base_decode_time;
    for s in run.samples {
        let ms = u64::try_from(u128::from(t) * 1000 / u128::from(timescale)).unwrap_or(u64::MAX);
        out.push(Block { track, ms, keyframe: s.keyframe, data: &s.data });
        t = t.saturating_add(u64::from(s.duration));
    }
}

/// One media segment of `params`: `Cluster`s holding the runs' frames in time order (a new
/// cluster whenever a frame is more than 32.767 s after the cluster's start).
pub fn media_segment(
    params: &TrackParams,
    video: Option<TrackRun<'_>>,
    audio: Option<TrackRun<'_>>,
) -> Result<Vec<u8>, MuxError> {
    let (video_no, audio_no) = track_numbers(params);
    let (video_no, audio_no) = (video_no.map(u64::from), audio_no.map(u64::from));
    let mut all = Vec::new();
    if let Some(run) = video.filter(|r| !r.samples.is_empty()) {
        blocks(video_no.ok_or(MuxError::NoSuchTrack("video"))?, &run, VIDEO_TIMESCALE, &mut all);
    }
    if let Some(run) = audio.filter(|r| !r.samples.is_empty()) {
        blocks(audio_no.ok_or(MuxError::NoSuchTrack("audio"))?, &run, AUDIO_TIMESCALE, &mut all);
    }
    // Stable: at equal times video stays before audio.
    all.sort_by_key(|b| b.ms);
    let mut out = Vec::new();
    let mut body = Vec::new();
    let mut cluster_ms: Option<u64> = None;
    for b in &all {
        let start = match cluster_ms {
            Some(c) if b.ms - c <= MAX_BLOCK_OFFSET_MS => c,
            _ => {
                if cluster_ms.is_some() {
                    element(&mut out, CLUSTER, &body)?;
                    body.clear();
                }
                cluster_ms = Some(b.ms);
                uint(&mut body, CLUSTER_TIMESTAMP, b.ms)?;
                b.ms
            }
        };
        let offset = i16::try_from(b.ms - start).map_err(|_| MuxError::TooLarge)?;
        let block_len = 1 + 2 + 1 + b.data.len();
        write_id(&mut body, SIMPLE_BLOCK);
        write_size(&mut body, block_len as u64)?;
        // Track numbers here are 1 or 2: one-byte vints.
        body.push(0x80 | (b.track as u8 & 0x7F));
        body.extend_from_slice(&offset.to_be_bytes());
        body.push(if b.keyframe { 0x80 } else { 0x00 });
        body.extend_from_slice(b.data);
    }
    if cluster_ms.is_some() {
        element(&mut out, CLUSTER, &body)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::MuxSample;

    fn params() -> TrackParams {
        TrackParams { video: Some(VideoParams::Vp8 { width: 640, height: 360 }), audio: Some(AudioParams::default()) }
    }

    /// Reads one element header: (id, size or None for unknown, header length).
    fn header(b: &[u8]) -> (u32, Option<u64>, usize) {
        let id_len = b[0].leading_zeros() as usize + 1;
        let id = b[..id_len].iter().fold(0u32, |a, x| (a << 8) | u32::from(*x));
        let s = &b[id_len..];
        let len = s[0].leading_zeros() as usize + 1;
        let mut v = u64::from(s[0]) & ((1 << (8 - len)) - 1);
        for x in &s[1..len] {
            v = (v << 8) | u64::from(*x);
        }
        let unknown = v == (1u64 << (7 * len)) - 1;
        (id, (!unknown).then_some(v), id_len + len)
    }

    #[test]
    fn sizes_are_minimal_vints_and_all_ones_is_never_a_size() {
        let enc = |n| {
            let mut v = Vec::new();
            write_size(&mut v, n).expect("size");
            v
        };
        assert_eq!(enc(0), [0x80]);
        assert_eq!(enc(126), [0xFE]);
        // 127 in one byte would read as "unknown".
        assert_eq!(enc(127), [0x40, 0x7F]);
        assert_eq!(enc(16_382), [0x7F, 0xFE]);
        assert_eq!(enc(16_383), [0x20, 0x3F, 0xFF]);
        assert!(write_size(&mut Vec::new(), u64::MAX).is_err());
    }

    #[test]
    fn init_segment_is_ebml_then_an_open_segment_with_info_and_tracks() {
        let init = init_segment(&params()).expect("init");
        let b = &init[..];
        let (id, size, h) = header(b);
        assert_eq!(id, EBML);
        let header_end = h + size.expect("sized") as usize;
        assert!(b[h..header_end].windows(4).any(|w| w == b"webm"));
        let (id, size, h2) = header(&b[header_end..]);
        assert_eq!((id, size), (SEGMENT, None));
        let rest = &b[header_end + h2..];
        let (id, size, h3) = header(rest);
        assert_eq!(id, INFO);
        let (id, size2, _) = header(&rest[h3 + size.expect("sized") as usize..]);
        assert_eq!(id, TRACKS);
        assert!(size2.is_some());
        assert!(b.windows(5).any(|w| w == b"V_VP8") && b.windows(6).any(|w| w == b"A_OPUS"));
        assert!(b.windows(8).any(|w| w == b"OpusHead"));
    }

    #[test]
    fn h264_is_refused() {
        let p = TrackParams { video: Some(VideoParams::H264 { sps: vec![0x67], pps: vec![0x68] }), audio: None };
        assert!(init_segment(&p).is_err());
    }

    #[test]
    fn blocks_are_interleaved_by_time_with_millisecond_offsets_and_key_flags() {
        let video = [
            MuxSample { duration: 3000, keyframe: true, data: vec![1; 10] },
            MuxSample { duration: 3000, keyframe: false, data: vec![2; 5] },
        ];
        let audio = [
            MuxSample { duration: 960, keyframe: true, data: vec![3; 4] },
            MuxSample { duration: 960, keyframe: true, data: vec![4; 4] },
        ];
        // Video at 2 s and 2.0333 s; audio at 2.01 s and 2.03 s.
        let seg = media_segment(
            &params(),
            Some(TrackRun { base_decode_time: 180_000, samples: &video }),
            Some(TrackRun { base_decode_time: 96_480, samples: &audio }),
        )
        .expect("segment");
        let (id, size, h) = header(&seg);
        assert_eq!(id, CLUSTER);
        assert_eq!(h + size.expect("sized") as usize, seg.len(), "one cluster");
        let mut at = h;
        let mut got = Vec::new();
        while at < seg.len() {
            let (id, size, hl) = header(&seg[at..]);
            let body = &seg[at + hl..at + hl + size.expect("sized") as usize];
            if id == CLUSTER_TIMESTAMP {
                assert_eq!(body, [0x07, 0xD0], "cluster at 2000 ms");
            } else {
                assert_eq!(id, SIMPLE_BLOCK);
                let offset = i16::from_be_bytes([body[1], body[2]]);
                got.push((body[0] & 0x7F, offset, body[3] & 0x80 != 0, body[4]));
            }
            at += hl + size.expect("sized") as usize;
        }
        assert_eq!(got, vec![(1, 0, true, 1), (2, 10, true, 3), (2, 30, true, 4), (1, 33, false, 2)]);
    }

    #[test]
    fn a_long_segment_opens_a_new_cluster_before_the_offset_overflows() {
        let audio_only = TrackParams { video: None, audio: Some(AudioParams::default()) };
        // 40 s of 20 ms frames.
        let audio: Vec<MuxSample> =
            (0..2000).map(|_| MuxSample { duration: 960, keyframe: true, data: vec![0; 3] }).collect();
        let seg =
            media_segment(&audio_only, None, Some(TrackRun { base_decode_time: 0, samples: &audio })).expect("segment");
        let mut clusters = 0;
        let mut at = 0;
        while at < seg.len() {
            let (id, size, hl) = header(&seg[at..]);
            assert_eq!(id, CLUSTER);
            clusters += 1;
            at += hl + size.expect("sized") as usize;
        }
        assert_eq!(clusters, 2);
    }
}
