//! CMAF fragmented MP4: the init segment (`ftyp` + `moov` with `mvex`) and media segments
//! (`styp` + `moof` + `mdat`).
//!
//! Sample entries and the init segment come from `shiguredo_mp4`. Its `Fmp4SegmentMuxer` derives
//! each track's `tfdt` by summing the durations it was given, starting at 0 for every track, and
//! has no `styp` box; media segments here are therefore assembled from the crate's box types so
//! that `tfdt` comes straight from RTP timestamps (audio and video stay aligned across gaps), and
//! `styp` is written by hand.

use std::num::NonZeroU32;

use shiguredo_mp4::bitstream::h264::{H264SampleEntryConfig, LengthSize, build_avc1_box};
use shiguredo_mp4::bitstream::opus::{ChannelCount, OpusSampleEntryConfig, build_opus_box};
use shiguredo_mp4::bitstream::vp8::{Vp8SampleEntryConfig, build_vp08_box};
use shiguredo_mp4::boxes::{
    MfhdBox, MoofBox, SampleEntry, TfdtBox, TfhdBox, TrafBox, TrunBox, TrunSample,
};
use shiguredo_mp4::mux::{Fmp4SegmentMuxer, Sample};
use shiguredo_mp4::{Encode, SampleFlags, TrackKind};

/// Video timescale (RTP clock of VP8 and H264).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Audio timescale (RTP clock of Opus).
pub const AUDIO_TIMESCALE: u32 = 48_000;

/// Errors from building fMP4 boxes.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// `shiguredo_mp4` refused the input.
    #[error("mp4: {0}")]
    Mp4(String),
    /// A segment was asked for a track the init segment does not have.
    #[error("no {0} track in this init segment")]
    NoSuchTrack(&'static str),
    /// A segment exceeds what 32-bit box sizes and offsets can express.
    #[error("segment too large")]
    TooLarge,
}

fn mp4_err(e: impl std::fmt::Display) -> MuxError {
    MuxError::Mp4(e.to_string())
}

/// The video codec and what its sample entry needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoParams {
    /// VP8 (`vp08` + `vpcC`) with the size from a key frame header.
    Vp8 {
        /// Frame width in pixels.
        width: u16,
        /// Frame height in pixels.
        height: u16,
    },
    /// H264 (`avc1` + `avcC`) from one SPS and one PPS (NAL units without start codes).
    H264 {
        /// Sequence parameter set NAL unit.
        sps: Vec<u8>,
        /// Picture parameter set NAL unit.
        pps: Vec<u8>,
    },
}

impl VideoParams {
    /// Codec name as ffprobe and the manifest spell it (`vp8`, `h264`).
    pub fn codec_name(&self) -> &'static str {
        match self {
            Self::Vp8 { .. } => "vp8",
            Self::H264 { .. } => "h264",
        }
    }

    /// Frame size in pixels (from the key frame header, or the SPS), if it can be read.
    pub fn resolution(&self) -> Option<(u32, u32)> {
        match self {
            Self::Vp8 { width, height } => Some((u32::from(*width), u32::from(*height))),
            Self::H264 { sps, .. } => relaycast_codec::h264::sps_size(sps.get(1..)?).ok(),
        }
    }

    /// Codec string for a `CODECS` attribute and an MSE type: RFC 6381 `avc1.PPCCLL` for H264
    /// (in fMP4), WebM's `vp8` for VP8 (recorded in WebM, see [`Container`]).
    pub fn codec_string(&self) -> String {
        match self {
            Self::Vp8 { .. } => "vp8".to_string(),
            Self::H264 { sps, .. } => match sps.get(1..4) {
                Some(p) => format!("avc1.{:02x}{:02x}{:02x}", p[0], p[1], p[2]),
                None => "avc1".to_string(),
            },
        }
    }
}

/// The Opus track's parameters (`Opus` + `dOps`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioParams {
    /// 1 (mono) or 2 (stereo); WebRTC Opus is signalled as 2.
    pub channels: u8,
    /// Samples at 48 kHz to discard at the start of decoding.
    pub pre_skip: u16,
}

impl Default for AudioParams {
    fn default() -> Self {
        Self {
            channels: 2,
            pre_skip: 0,
        }
    }
}

/// What an init segment describes: an optional video and an optional audio track.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackParams {
    /// The video track, if any.
    pub video: Option<VideoParams>,
    /// The audio track, if any.
    pub audio: Option<AudioParams>,
}

/// One sample of a media segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MuxSample {
    /// Duration in the track's timescale.
    pub duration: u32,
    /// True for a sync sample.
    pub keyframe: bool,
    /// The coded sample.
    pub data: Vec<u8>,
}

/// One track's run of samples in a media segment.
#[derive(Clone, Copy, Debug)]
pub struct TrackRun<'a> {
    /// Decode time of the first sample in the track's timescale (`tfdt`).
    pub base_decode_time: u64,
    /// The samples, in decode order.
    pub samples: &'a [MuxSample],
}

/// The file format of a recording's init and media segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// CMAF fragmented MP4 (`init.mp4`, `segment-NNNNNN.m4s`): H264, and Opus-only recordings.
    Fmp4,
    /// WebM (`init.webm`, `segment-NNNNNN.webm`): VP8, which browsers' MSE plays only in WebM.
    Webm,
}

impl Container {
    /// The container segments of `params` are written in: WebM for VP8, fMP4 otherwise.
    pub fn for_params(params: &TrackParams) -> Self {
        match params.video {
            Some(VideoParams::Vp8 { .. }) => Self::Webm,
            _ => Self::Fmp4,
        }
    }

    /// The container of a recording whose codecs string is `codecs` (as in its manifest): WebM
    /// when a codec is `vp8`. (Recordings of VP8 in fMP4 say `vp08.…` and stay fMP4.)
    pub fn of_codecs(codecs: &str) -> Self {
        if codecs.split(',').any(|c| c.trim() == "vp8") { Self::Webm } else { Self::Fmp4 }
    }

    /// Name of the `n`th init segment (from 0) in a VOD directory.
    pub fn init_name(self, n: usize) -> String {
        let ext = match self {
            Self::Fmp4 => "mp4",
            Self::Webm => "webm",
        };
        if n == 0 { format!("init.{ext}") } else { format!("init-{n}.{ext}") }
    }

    /// Name of media segment `seq` in a VOD directory.
    pub fn segment_name(self, seq: u64) -> String {
        match self {
            Self::Fmp4 => format!("segment-{seq:06}.m4s"),
            Self::Webm => format!("segment-{seq:06}.webm"),
        }
    }

    /// The MSE / `<video>` type of a recording with `codecs`, e.g. `video/webm; codecs="vp8,opus"`.
    pub fn mime_type(self, codecs: &str) -> String {
        let audio_only = codecs.split(',').all(|c| c.trim() == "opus" || c.trim().starts_with("mp4a"));
        let (kind, sub) = match self {
            Self::Fmp4 => (if audio_only { "audio" } else { "video" }, "mp4"),
            Self::Webm => (if audio_only { "audio" } else { "video" }, "webm"),
        };
        format!("{kind}/{sub}; codecs=\"{codecs}\"")
    }
}

/// Writes a recording's init and media segments in one [`Container`].
///
/// Track 1 is video when there is video, audio takes the next number.
#[derive(Clone, Debug)]
pub struct Muxer {
    container: Container,
    params: TrackParams,
    init: Vec<u8>,
}

/// Track numbers (fMP4 track ids, WebM track numbers): video 1 when there is video, audio the
/// next.
pub fn track_numbers(params: &TrackParams) -> (Option<u32>, Option<u32>) {
    let video = params.video.as_ref().map(|_| 1);
    let audio = params.audio.map(|_| if video.is_some() { 2 } else { 1 });
    (video, audio)
}

impl Muxer {
    /// A muxer for `params` in the container they call for ([`Container::for_params`]).
    pub fn new(params: TrackParams) -> Result<Self, MuxError> {
        Self::with_container(Container::for_params(&params), params)
    }

    /// A muxer for `params` in `container`.
    pub fn with_container(container: Container, params: TrackParams) -> Result<Self, MuxError> {
        let init = match container {
            Container::Fmp4 => build_init(&params)?,
            Container::Webm => crate::webm::init_segment(&params)?,
        };
        Ok(Self { container, params, init })
    }

    /// The container written.
    pub fn container(&self) -> Container {
        self.container
    }

    /// The tracks written.
    pub fn params(&self) -> &TrackParams {
        &self.params
    }

    /// The init segment (fMP4: `ftyp` + `moov`; WebM: EBML header, `Segment`, `Info`, `Tracks`).
    pub fn init_segment(&self) -> &[u8] {
        &self.init
    }

    /// One media segment (`sequence` is fMP4's `mfhd` number; WebM has none).
    pub fn media_segment(&self, sequence: u32, video: Option<TrackRun<'_>>, audio: Option<TrackRun<'_>>) -> Result<Vec<u8>, MuxError> {
        match self.container {
            Container::Fmp4 => self.cmaf_segment(sequence, video, audio),
            Container::Webm => crate::webm::media_segment(&self.params, video, audio),
        }
    }

    /// An fMP4 media segment (`styp` + `moof` + `mdat`) with sequence number `sequence`.
    fn cmaf_segment(
        &self,
        sequence: u32,
        video: Option<TrackRun<'_>>,
        audio: Option<TrackRun<'_>>,
    ) -> Result<Vec<u8>, MuxError> {
        let (video_id, audio_id) = track_numbers(&self.params);
        let mut runs = Vec::new();
        if let Some(run) = video.filter(|r| !r.samples.is_empty()) {
            runs.push((video_id.ok_or(MuxError::NoSuchTrack("video"))?, run));
        }
        if let Some(run) = audio.filter(|r| !r.samples.is_empty()) {
            runs.push((audio_id.ok_or(MuxError::NoSuchTrack("audio"))?, run));
        }
        let moof_with = |offsets: &[i32]| -> MoofBox {
            let traf_boxes = runs
                .iter()
                .zip(offsets)
                .map(|((track_id, run), offset)| TrafBox {
                    tfhd_box: TfhdBox {
                        track_id: *track_id,
                        base_data_offset: None,
                        sample_description_index: None,
                        default_sample_duration: None,
                        default_sample_size: None,
                        default_sample_flags: None,
                        duration_is_empty: false,
                        default_base_is_moof: true,
                    },
                    tfdt_box: Some(TfdtBox {
                        version: u8::from(run.base_decode_time > u64::from(u32::MAX)),
                        base_media_decode_time: run.base_decode_time,
                    }),
                    trun_boxes: vec![TrunBox {
                        data_offset: Some(*offset),
                        first_sample_flags: None,
                        samples: run
                            .samples
                            .iter()
                            .map(|s| TrunSample {
                                duration: Some(s.duration),
                                size: Some(s.data.len() as u32),
                                flags: Some(sample_flags(s.keyframe)),
                                composition_time_offset: None,
                            })
                            .collect(),
                    }],
                    unknown_boxes: Vec::new(),
                })
                .collect();
            MoofBox {
                mfhd_box: MfhdBox {
                    sequence_number: sequence,
                },
                traf_boxes,
                unknown_boxes: Vec::new(),
            }
        };
        let zeros = vec![0i32; runs.len()];
        let moof_len = moof_with(&zeros).encode_to_vec().map_err(mp4_err)?.len();
        let mut offsets = Vec::with_capacity(runs.len());
        let mut at = moof_len + 8;
        let mut payload = 0usize;
        for (_, run) in &runs {
            offsets.push(i32::try_from(at).map_err(|_| MuxError::TooLarge)?);
            let bytes: usize = run.samples.iter().map(|s| s.data.len()).sum();
            if run.samples.iter().any(|s| s.data.len() > u32::MAX as usize) {
                return Err(MuxError::TooLarge);
            }
            at += bytes;
            payload += bytes;
        }
        let moof = moof_with(&offsets).encode_to_vec().map_err(mp4_err)?;
        let mdat_size = u32::try_from(payload + 8).map_err(|_| MuxError::TooLarge)?;
        let mut out = Vec::with_capacity(STYP.len() + moof.len() + 8 + payload);
        out.extend_from_slice(STYP);
        out.extend_from_slice(&moof);
        out.extend_from_slice(&mdat_size.to_be_bytes());
        out.extend_from_slice(b"mdat");
        for (_, run) in &runs {
            for s in run.samples {
                out.extend_from_slice(&s.data);
            }
        }
        Ok(out)
    }
}

/// `styp` with major brand `msdh` and compatible brands `msdh`, `msix` (HLS/DASH media segment).
const STYP: &[u8] = &[
    0, 0, 0, 24, b's', b't', b'y', b'p', b'm', b's', b'd', b'h', 0, 0, 0, 0, b'm', b's', b'd',
    b'h', b'm', b's', b'i', b'x',
];

fn sample_flags(keyframe: bool) -> SampleFlags {
    if keyframe {
        SampleFlags::from_fields(0, 2, 0, 0, 0, false, 0)
    } else {
        SampleFlags::from_fields(0, 1, 0, 0, 0, true, 0)
    }
}

fn video_entry(v: &VideoParams) -> Result<SampleEntry, MuxError> {
    Ok(match v {
        VideoParams::Vp8 { width, height } => {
            SampleEntry::Vp08(build_vp08_box(&Vp8SampleEntryConfig {
                video_full_range_flag: false,
                colour_primaries: Vp8SampleEntryConfig::COLOUR_PRIMARIES_UNSPECIFIED,
                transfer_characteristics:
                    Vp8SampleEntryConfig::TRANSFER_CHARACTERISTICS_UNSPECIFIED,
                matrix_coefficients: Vp8SampleEntryConfig::MATRIX_COEFFICIENTS_UNSPECIFIED,
                width: *width,
                height: *height,
            }))
        }
        VideoParams::H264 { sps, pps } => SampleEntry::Avc1(
            build_avc1_box(
                std::slice::from_ref(sps),
                std::slice::from_ref(pps),
                &H264SampleEntryConfig {
                    length_size: LengthSize::FourBytes,
                },
            )
            .map_err(mp4_err)?,
        ),
    })
}

fn audio_entry(a: &AudioParams) -> SampleEntry {
    SampleEntry::Opus(build_opus_box(&OpusSampleEntryConfig {
        channel_count: if a.channels == 1 {
            ChannelCount::Mono
        } else {
            ChannelCount::Stereo
        },
        pre_skip: a.pre_skip,
        input_sample_rate: AUDIO_TIMESCALE,
        output_gain: 0,
    }))
}

fn build_init(params: &TrackParams) -> Result<Vec<u8>, MuxError> {
    // The segment muxer learns tracks from samples; one empty sample per track registers them
    // (video first, so it gets track id 1) without producing media.
    let mut samples = Vec::new();
    if let Some(v) = &params.video {
        samples.push(Sample {
            track_kind: TrackKind::Video,
            sample_entry: Some(video_entry(v)?),
            keyframe: true,
            timescale: NonZeroU32::new(VIDEO_TIMESCALE).ok_or(MuxError::TooLarge)?,
            duration: 0,
            composition_time_offset: None,
            data_offset: 0,
            data_size: 0,
        });
    }
    if let Some(a) = &params.audio {
        samples.push(Sample {
            track_kind: TrackKind::Audio,
            sample_entry: Some(audio_entry(a)),
            keyframe: true,
            timescale: NonZeroU32::new(AUDIO_TIMESCALE).ok_or(MuxError::TooLarge)?,
            duration: 0,
            composition_time_offset: None,
            data_offset: 0,
            data_size: 0,
        });
    }
    let mut muxer = Fmp4SegmentMuxer::new().map_err(mp4_err)?;
    muxer
        .create_media_segment_metadata(&samples)
        .map_err(mp4_err)?;
    muxer.init_segment_bytes().map_err(mp4_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shiguredo_mp4::demux::Fmp4SegmentDemuxer;

    fn params() -> TrackParams {
        TrackParams {
            video: Some(VideoParams::Vp8 {
                width: 640,
                height: 360,
            }),
            audio: Some(AudioParams::default()),
        }
    }

    #[test]
    fn init_and_segment_round_trip_through_a_demuxer() {
        let m = Muxer::with_container(Container::Fmp4, params()).expect("muxer");
        let init = m.init_segment();
        assert_eq!(&init[4..8], b"ftyp");
        let video = [
            MuxSample {
                duration: 3000,
                keyframe: true,
                data: vec![1; 100],
            },
            MuxSample {
                duration: 3000,
                keyframe: false,
                data: vec![2; 50],
            },
        ];
        let audio = [MuxSample {
            duration: 960,
            keyframe: true,
            data: vec![3; 20],
        }];
        let seg = m
            .media_segment(
                7,
                Some(TrackRun {
                    base_decode_time: 180_000,
                    samples: &video,
                }),
                Some(TrackRun {
                    base_decode_time: 96_000,
                    samples: &audio,
                }),
            )
            .expect("segment");
        assert_eq!(&seg[4..8], b"styp");
        // The demuxer of shiguredo_mp4 expects the segment to begin at moof.
        let seg = &seg[STYP.len()..];
        let mut demux = Fmp4SegmentDemuxer::new();
        demux.handle_init_segment(init).expect("init parses");
        assert_eq!(demux.tracks().expect("tracks").len(), 2);
        let samples = demux.handle_media_segment(seg).expect("segment parses");
        let got: Vec<(u32, u64, bool, usize)> = samples
            .iter()
            .map(|s| (s.track.track_id, s.timestamp, s.keyframe, s.data_size))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 180_000, true, 100),
                (1, 183_000, false, 50),
                (2, 96_000, true, 20)
            ]
        );
        // Payload bytes sit where the demuxer says.
        for s in &samples {
            let at = s.data_offset as usize;
            let first = seg[at];
            assert!(seg[at..at + s.data_size].iter().all(|b| *b == first));
        }
    }

    #[test]
    fn audio_only_uses_track_one_and_rejects_video_runs() {
        let m = Muxer::with_container(Container::Fmp4, TrackParams {
            video: None,
            audio: Some(AudioParams::default()),
        })
        .expect("muxer");
        let a = [MuxSample {
            duration: 960,
            keyframe: true,
            data: vec![1],
        }];
        assert!(
            m.media_segment(
                1,
                None,
                Some(TrackRun {
                    base_decode_time: 0,
                    samples: &a
                })
            )
            .is_ok()
        );
        assert!(matches!(
            m.media_segment(
                1,
                Some(TrackRun {
                    base_decode_time: 0,
                    samples: &a
                }),
                None
            ),
            Err(MuxError::NoSuchTrack("video"))
        ));
    }

    #[test]
    fn bad_h264_parameter_sets_are_an_error() {
        let p = TrackParams {
            video: Some(VideoParams::H264 {
                sps: vec![0x67],
                pps: vec![0x68],
            }),
            audio: None,
        };
        assert!(Muxer::new(p).is_err());
    }
}
