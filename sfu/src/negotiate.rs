//! Video codec choice for WHIP and WHEP answers (RFC 3264 order, RFC 6184 H264 profiles).
//!
//! The node forwards video without transcoding, so every session carries one video format:
//!
//! - a **publisher** gets the first format of its offer's video m-line that the node forwards
//!   (VP8, or H264 of any profile in packetization mode 0 or 1), in the offerer's order;
//! - a **viewer** gets a format of its own offer that can carry the stream: the same codec and,
//!   for H264, a profile whose decoder can decode the stream's profile and a packetization mode
//!   that allows the stream's packets. The answer keeps the viewer's payload type and `fmtp`.
//!
//! The str0m session is then configured with that one video format (plus Opus), so its answer
//! lists nothing else. Everything here is plain functions over the SDP text: no I/O.

use std::fmt;

use str0m::format::{Codec, CodecConfig, FormatParams, PayloadParams};
use str0m::media::Frequency;

use crate::codec::VideoCodec;

/// Most payload types read from one m-line (an m-line lists at most 128 distinct ones).
const MAX_FORMATS: usize = 128;
/// Longest encoding name kept for error messages.
const MAX_NAME: usize = 32;
/// RFC 6184 section 8.1: `profile-level-id` when the fmtp leaves it out (Baseline, level 1.0).
const DEFAULT_PROFILE_LEVEL_ID: u32 = 0x42_00_0a;

/// H264 parameters of one payload type (RFC 6184 section 8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct H264Params {
    /// `profile-level-id`: profile_idc, profile-iop (constraint flags), level_idc.
    pub profile_level_id: u32,
    /// `packetization-mode` (0: single NAL units only; 1: also STAP-A and FU-A).
    pub packetization_mode: u8,
    /// `level-asymmetry-allowed=1`.
    pub level_asymmetry_allowed: bool,
}

impl H264Params {
    /// The profile named by `profile-level-id`.
    pub fn profile(&self) -> H264Profile {
        H264Profile::from_profile_level_id(self.profile_level_id)
    }
}

/// One video format a session sends or receives: codec, payload type, RTX payload type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VideoFormat {
    /// The codec.
    pub codec: VideoCodec,
    /// Payload type in the offer.
    pub pt: u8,
    /// Payload type of its RTX stream (`apt=`), if offered.
    pub rtx: Option<u8>,
    /// H264 parameters (None for VP8).
    pub h264: Option<H264Params>,
}

impl VideoFormat {
    /// The format as str0m payload parameters for a [`CodecConfig`].
    fn add_to(&self, config: &mut CodecConfig) {
        let (codec, format) = match (self.codec, self.h264) {
            (VideoCodec::Vp8, _) => (Codec::Vp8, FormatParams::default()),
            (VideoCodec::H264, h) => {
                let h = h.unwrap_or(H264Params {
                    profile_level_id: DEFAULT_PROFILE_LEVEL_ID,
                    packetization_mode: 0,
                    level_asymmetry_allowed: false,
                });
                let format = FormatParams {
                    profile_level_id: Some(h.profile_level_id),
                    packetization_mode: Some(h.packetization_mode),
                    level_asymmetry_allowed: h.level_asymmetry_allowed.then_some(true),
                    ..FormatParams::default()
                };
                (Codec::H264, format)
            }
        };
        config.add_config(self.pt.into(), self.rtx.map(Into::into), codec, Frequency::NINETY_KHZ, None, format);
    }

    /// The stream format a publisher's payload parameters describe (a relay's incoming packets
    /// carry the parameters this node negotiated with its upstream node).
    pub fn from_params(params: &PayloadParams) -> Option<VideoFormat> {
        let spec = params.spec();
        let codec = match spec.codec {
            Codec::Vp8 => VideoCodec::Vp8,
            Codec::H264 => VideoCodec::H264,
            _ => return None,
        };
        let h264 = (codec == VideoCodec::H264).then(|| H264Params {
            profile_level_id: spec.format.profile_level_id.unwrap_or(DEFAULT_PROFILE_LEVEL_ID),
            packetization_mode: spec.format.packetization_mode.unwrap_or(0),
            level_asymmetry_allowed: spec.format.level_asymmetry_allowed.unwrap_or(false),
        });
        Some(VideoFormat { codec, pt: *params.pt(), rtx: params.resend().map(|p| *p), h264 })
    }
}

impl fmt::Display for VideoFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.h264 {
            Some(h) => write!(
                f,
                "H264 {} (profile-level-id {:06x}, packetization-mode {})",
                h.profile(),
                h.profile_level_id,
                h.packetization_mode
            ),
            None => f.write_str(self.codec.name()),
        }
    }
}

/// H264 profiles as RFC 6184 table 5 names them from `profile-level-id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum H264Profile {
    /// Constrained Baseline: the subset every other profile here decodes.
    ConstrainedBaseline,
    /// Baseline (may use FMO, ASO and redundant slices).
    Baseline,
    /// Main.
    Main,
    /// Extended.
    Extended,
    /// Constrained High (High without B slices).
    ConstrainedHigh,
    /// High.
    High,
    /// High 10, High 4:2:2 or High 4:4:4 Predictive (profile_idc 110, 122, 244).
    HighPlus(u8),
    /// Any other profile_idc.
    Other(u8),
}

impl H264Profile {
    /// The profile of a `profile-level-id` value (RFC 6184 table 5).
    pub fn from_profile_level_id(id: u32) -> Self {
        let [_, idc, iop, _level] = id.to_be_bytes();
        let (set0, set1) = (iop & 0x80 != 0, iop & 0x40 != 0);
        match idc {
            0x42 if set1 => Self::ConstrainedBaseline,
            0x42 => Self::Baseline,
            0x4d if set0 => Self::ConstrainedBaseline,
            0x4d => Self::Main,
            0x58 if set0 && set1 => Self::ConstrainedBaseline,
            0x58 if set0 => Self::Baseline,
            0x58 => Self::Extended,
            // H.264 A.2.4.2: constraint_set4 and constraint_set5 both set.
            0x64 if iop & 0x0c == 0x0c => Self::ConstrainedHigh,
            0x64 => Self::High,
            0x6e | 0x7a | 0xf4 => Self::HighPlus(idc),
            other => Self::Other(other),
        }
    }

    /// Whether a decoder of this profile decodes every stream of profile `stream` (H.264 Annex A:
    /// Constrained Baseline is a subset of Baseline, Main, Extended and the High profiles; Baseline
    /// of Extended; Main and Constrained High of High; High of the High profiles above it).
    pub fn decodes(self, stream: H264Profile) -> bool {
        use H264Profile::*;
        if self == stream {
            return true;
        }
        match stream {
            ConstrainedBaseline => matches!(self, Baseline | Main | Extended | ConstrainedHigh | High | HighPlus(_)),
            Baseline => self == Extended,
            Main | ConstrainedHigh => matches!(self, High | HighPlus(_)),
            High => matches!(self, HighPlus(_)),
            Extended | HighPlus(_) | Other(_) => false,
        }
    }
}

impl fmt::Display for H264Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConstrainedBaseline => f.write_str("Constrained Baseline"),
            Self::Baseline => f.write_str("Baseline"),
            Self::Main => f.write_str("Main"),
            Self::Extended => f.write_str("Extended"),
            Self::ConstrainedHigh => f.write_str("Constrained High"),
            Self::High => f.write_str("High"),
            Self::HighPlus(idc) | Self::Other(idc) => write!(f, "profile_idc {idc}"),
        }
    }
}

/// Why no video format fits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A publisher offered video in no codec the node forwards.
    #[error("the offer has no video codec this node forwards (VP8, H264); it offers {offered}")]
    NoSupportedCodec {
        /// The encoding names offered, comma-separated.
        offered: String,
    },
    /// A viewer's offer lacks the stream's codec.
    #[error("the stream is {stream} and the offer has no {codec} (the node does not transcode)")]
    MissingCodec {
        /// The stream's format.
        stream: String,
        /// The codec the offer lacks.
        codec: &'static str,
    },
    /// A viewer's offer has the stream's codec, but no H264 profile or packetization mode that
    /// can carry it.
    #[error(
        "the stream is {stream} and no H264 payload type of the offer can decode it (it offers {offered}; the node does not transcode)"
    )]
    MissingProfile {
        /// The stream's format.
        stream: String,
        /// The offer's H264 formats.
        offered: String,
    },
    /// A second source of a live stream (its backup, or a primary joining a backup) chose a
    /// different codec from the one viewers were answered in.
    #[error("the stream is {stream} and a second source must send {stream} too (this offer would send {offered})")]
    SourceCodec {
        /// The stream's codec.
        stream: &'static str,
        /// The codec this offer would send.
        offered: &'static str,
    },
}

/// One payload type of an offer's video m-line, before interpretation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Offered {
    pt: u8,
    /// Encoding name from `a=rtpmap`, upper-cased (empty until seen).
    name: String,
    clock: u32,
    /// H264 parameters from `a=fmtp`.
    h264: Option<H264Params>,
    /// The payload type this one retransmits (`apt=` of an rtx format).
    apt: Option<u8>,
}

/// The video formats of an SDP's first active video m-line, in the offerer's order; RTX and
/// other repair formats are folded into the format they repair. None when there is no active
/// video m-line (an audio-only session).
fn offered_video(sdp: &str) -> Option<Vec<Offered>> {
    let mut formats: Option<Vec<Offered>> = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if formats.is_some() {
                break; // the next m-line: only the first active video m-line counts
            }
            let mut parts = m.split_ascii_whitespace();
            let (kind, port) = (parts.next(), parts.next());
            if kind == Some("video") && port != Some("0") {
                let pts = parts.skip(1).filter_map(|p| p.parse::<u8>().ok()).take(MAX_FORMATS);
                formats = Some(pts.map(|pt| Offered { pt, ..Offered::default() }).collect());
            }
            continue;
        }
        let Some(list) = formats.as_mut() else { continue };
        if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let Some((pt, enc)) = split_pt(rest) else { continue };
            let Some(f) = list.iter_mut().find(|f| f.pt == pt) else { continue };
            let mut enc = enc.split('/');
            f.name = enc.next().unwrap_or("").chars().take(MAX_NAME).collect::<String>().to_ascii_uppercase();
            f.clock = enc.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("a=fmtp:") {
            let Some((pt, params)) = split_pt(rest) else { continue };
            let Some(f) = list.iter_mut().find(|f| f.pt == pt) else { continue };
            let mut h = H264Params { profile_level_id: DEFAULT_PROFILE_LEVEL_ID, packetization_mode: 0, level_asymmetry_allowed: false };
            for kv in params.split(';') {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("apt") {
                    f.apt = v.parse().ok();
                } else if k.eq_ignore_ascii_case("profile-level-id") {
                    if let Ok(id) = u32::from_str_radix(v, 16)
                        && v.len() == 6
                    {
                        h.profile_level_id = id;
                    }
                } else if k.eq_ignore_ascii_case("packetization-mode") {
                    h.packetization_mode = v.parse().unwrap_or(u8::MAX);
                } else if k.eq_ignore_ascii_case("level-asymmetry-allowed") {
                    h.level_asymmetry_allowed = v == "1";
                }
            }
            f.h264 = Some(h);
        }
    }
    formats
}

/// Splits `"PT rest"` of an `a=rtpmap`/`a=fmtp` value.
fn split_pt(s: &str) -> Option<(u8, &str)> {
    let (pt, rest) = s.split_once(' ')?;
    Some((pt.trim().parse().ok()?, rest.trim()))
}

/// The offered formats the node can forward, in the offer's order, each with its RTX payload type.
fn forwardable(offered: &[Offered]) -> Vec<VideoFormat> {
    offered
        .iter()
        .filter(|f| f.clock == 90_000)
        .filter_map(|f| {
            let (codec, h264) = match f.name.as_str() {
                "VP8" => (VideoCodec::Vp8, None),
                "H264" => {
                    let h = f.h264.unwrap_or(H264Params {
                        profile_level_id: DEFAULT_PROFILE_LEVEL_ID,
                        packetization_mode: 0,
                        level_asymmetry_allowed: false,
                    });
                    // Mode 2 (interleaved) reorders NAL units by DON: not forwarded.
                    if h.packetization_mode > 1 {
                        return None;
                    }
                    (VideoCodec::H264, Some(h))
                }
                _ => return None,
            };
            let rtx = offered.iter().find(|r| r.name == "RTX" && r.apt == Some(f.pt)).map(|r| r.pt);
            Some(VideoFormat { codec, pt: f.pt, rtx, h264 })
        })
        .collect()
}

/// Names of the offered media formats (repair formats left out), for error messages.
fn offered_names(offered: &[Offered]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for f in offered {
        let name = if f.name.is_empty() { "an unnamed payload type" } else { f.name.as_str() };
        if !matches!(name, "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03") && !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
}

/// The video format of a publisher's offer: the first one the node forwards (RFC 3264 section
/// 6.1: the answer follows the offerer's preference order). `Ok(None)` when the offer has no
/// active video m-line.
pub fn choose_for_publisher(sdp: &str) -> Result<Option<VideoFormat>, CodecError> {
    let Some(offered) = offered_video(sdp) else { return Ok(None) };
    match forwardable(&offered).into_iter().next() {
        Some(f) => Ok(Some(f)),
        None => Err(CodecError::NoSupportedCodec { offered: offered_names(&offered) }),
    }
}

/// The video format of a viewer's offer that carries a stream sent as `stream`. An H264 format
/// of the same profile and packetization mode comes first, then one of the same profile, then
/// one whose profile decodes the stream's; the viewer's order breaks ties. Levels are not
/// compared: the answer keeps the viewer's `profile-level-id`. `Ok(None)` when the offer has no
/// active video m-line.
pub fn choose_for_viewer(sdp: &str, stream: &VideoFormat) -> Result<Option<VideoFormat>, CodecError> {
    let Some(offered) = offered_video(sdp) else { return Ok(None) };
    let candidates: Vec<VideoFormat> = forwardable(&offered).into_iter().filter(|f| f.codec == stream.codec).collect();
    if candidates.is_empty() {
        return Err(CodecError::MissingCodec { stream: stream.to_string(), codec: stream.codec.name() });
    }
    let Some(want) = stream.h264 else { return Ok(candidates.into_iter().next()) };
    let rank = |f: &VideoFormat| -> Option<u8> {
        let h = f.h264?;
        // A mode-1 receiver takes single NAL units too; a mode-0 receiver takes nothing else.
        if h.packetization_mode < want.packetization_mode {
            return None;
        }
        let same_mode = h.packetization_mode == want.packetization_mode;
        if h.profile() == want.profile() {
            Some(if same_mode { 0 } else { 1 })
        } else if h.profile().decodes(want.profile()) {
            Some(if same_mode { 2 } else { 3 })
        } else {
            None
        }
    };
    let best = candidates.iter().filter_map(|f| rank(f).map(|r| (r, *f))).min_by_key(|(r, _)| *r);
    match best {
        Some((_, f)) => Ok(Some(f)),
        None => {
            let offered = candidates.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ");
            Err(CodecError::MissingProfile { stream: stream.to_string(), offered })
        }
    }
}

/// Replaces every video codec of a session's codec config with `format` alone (audio stays).
pub fn configure(config: &mut CodecConfig, format: &VideoFormat) {
    config.enable_vp8(false);
    config.enable_h264(false);
    config.enable_vp9(false);
    config.enable_av1(false);
    config.enable_h265(false);
    config.enable_h266(false);
    format.add_to(config);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Chromium 1xx offer's video m-line after `setCodecPreferences` put H264 first.
    const CHROMIUM_H264_FIRST: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102 103 104 105 106 107 108 109 96 97 39 40\r\na=mid:1\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
        a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
        a=rtpmap:104 H264/90000\r\na=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
        a=rtpmap:105 rtx/90000\r\na=fmtp:105 apt=104\r\n\
        a=rtpmap:106 H264/90000\r\na=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
        a=rtpmap:107 rtx/90000\r\na=fmtp:107 apt=106\r\n\
        a=rtpmap:108 H264/90000\r\na=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640034\r\n\
        a=rtpmap:109 rtx/90000\r\na=fmtp:109 apt=108\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
        a=rtpmap:39 AV1/90000\r\na=rtpmap:40 rtx/90000\r\na=fmtp:40 apt=39\r\n";

    fn video(lines: &str) -> String {
        format!("v=0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n{lines}")
    }

    fn h264(profile_level_id: u32, mode: u8, pt: u8) -> VideoFormat {
        let h264 = Some(H264Params { profile_level_id, packetization_mode: mode, level_asymmetry_allowed: true });
        VideoFormat { codec: VideoCodec::H264, pt, rtx: None, h264 }
    }

    const VP8: VideoFormat = VideoFormat { codec: VideoCodec::Vp8, pt: 96, rtx: None, h264: None };

    #[test]
    fn publisher_gets_the_first_offered_codec() {
        let f = choose_for_publisher(CHROMIUM_H264_FIRST).expect("ok").expect("video");
        assert_eq!(f, VideoFormat { rtx: Some(103), ..h264(0x42001f, 1, 102) });
        // VP8 first: VP8 with its RTX.
        let sdp = video("m=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n\
            a=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n");
        assert_eq!(choose_for_publisher(&sdp), Ok(Some(VideoFormat { rtx: Some(97), ..VP8 })));
        // Unsupported codecs before a supported one are skipped; interleaved H264 is not forwarded.
        let sdp = video("m=video 9 UDP/TLS/RTP/SAVPF 98 100 45 101 96\r\na=rtpmap:98 VP9/90000\r\n\
            a=rtpmap:100 H264/90000\r\na=fmtp:100 packetization-mode=2\r\na=rtpmap:45 AV1/90000\r\n\
            a=rtpmap:101 h264/90000\r\na=rtpmap:96 VP8/90000\r\n");
        let want = VideoFormat {
            h264: Some(H264Params { profile_level_id: 0x42000a, packetization_mode: 0, level_asymmetry_allowed: false }),
            ..h264(0, 0, 101)
        };
        assert_eq!(choose_for_publisher(&sdp), Ok(Some(want)));
    }

    #[test]
    fn publisher_without_a_forwardable_codec_is_refused() {
        let sdp = video("m=video 9 UDP/TLS/RTP/SAVPF 98 99 45\r\na=rtpmap:98 VP9/90000\r\na=rtpmap:99 rtx/90000\r\n\
            a=fmtp:99 apt=98\r\na=rtpmap:45 AV1/90000\r\n");
        let err = choose_for_publisher(&sdp).expect_err("refused");
        assert_eq!(err, CodecError::NoSupportedCodec { offered: "VP9, AV1".into() });
        assert!(err.to_string().contains("(VP8, H264); it offers VP9, AV1"), "{err}");
        // VP8 at a wrong clock rate is not VP8 as RFC 7741 defines it.
        assert!(choose_for_publisher(&video("m=video 9 RTP/SAVPF 96\r\na=rtpmap:96 VP8/8000\r\n")).is_err());
    }

    #[test]
    fn audio_only_and_disabled_video_choose_nothing() {
        assert_eq!(choose_for_publisher(&video("")), Ok(None));
        let sdp = video("m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n");
        assert_eq!(choose_for_publisher(&sdp), Ok(None));
        assert_eq!(choose_for_viewer(&sdp, &VP8), Ok(None));
        // A second video m-line is not read: the first active one decides.
        let sdp = video("m=video 0 RTP/SAVPF 98\r\na=rtpmap:98 VP9/90000\r\nm=video 9 RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n\
            m=video 9 RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n");
        assert_eq!(choose_for_publisher(&sdp), Ok(Some(VP8)));
    }

    #[test]
    fn viewer_gets_the_streams_codec_or_a_reason() {
        let f = choose_for_viewer(CHROMIUM_H264_FIRST, &VideoFormat { pt: 120, rtx: None, ..VP8 }).expect("ok");
        assert_eq!(f, Some(VideoFormat { rtx: Some(97), ..VP8 }));
        let vp8_only = video("m=video 9 RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n");
        let err = choose_for_viewer(&vp8_only, &h264(0x42e01f, 1, 100)).expect_err("no H264");
        assert!(matches!(err, CodecError::MissingCodec { codec: "H264", .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the stream is H264 Constrained Baseline (profile-level-id 42e01f, packetization-mode 1) and the offer \
             has no H264 (the node does not transcode)"
        );
    }

    #[test]
    fn viewer_keeps_its_h264_profile() {
        // Exact profile and mode first, whatever the viewer's order.
        let f = choose_for_viewer(CHROMIUM_H264_FIRST, &h264(0x42e01f, 1, 125)).expect("ok").expect("video");
        assert_eq!((f.pt, f.rtx, f.h264.map(|h| h.profile_level_id)), (106, Some(107), Some(0x42e01f)));
        let f = choose_for_viewer(CHROMIUM_H264_FIRST, &h264(0x42001f, 0, 125)).expect("ok").expect("video");
        assert_eq!(f.pt, 104);
        // A level difference is not a mismatch: the viewer's own level is answered.
        let f = choose_for_viewer(CHROMIUM_H264_FIRST, &h264(0x640028, 1, 125)).expect("ok").expect("video");
        assert_eq!((f.pt, f.h264.map(|h| h.profile_level_id)), (108, Some(0x640034)));
    }

    #[test]
    fn safari_style_viewer_takes_only_constrained_baseline() {
        let safari = video("m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\na=rtpmap:98 H264/90000\r\n\
            a=fmtp:98 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
            a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\n");
        // A constrained baseline stream (any spelling of it) plays.
        for id in [0x42e01f, 0x42c01f, 0x4d801e] {
            let f = choose_for_viewer(&safari, &h264(id, 1, 125)).expect("decodable").expect("video");
            assert_eq!((f.pt, f.rtx, f.h264.map(|h| h.profile_level_id)), (98, Some(99), Some(0x42e01f)));
        }
        // A single-NAL stream fits a mode-1 receiver.
        assert!(choose_for_viewer(&safari, &h264(0x42e01f, 0, 125)).is_ok());
        // Baseline, Main and High streams do not.
        for id in [0x42001f, 0x4d001f, 0x640c1f] {
            let err = choose_for_viewer(&safari, &h264(id, 1, 125)).expect_err("not decodable");
            assert!(matches!(err, CodecError::MissingProfile { .. }), "{err:?}");
        }
        let err = choose_for_viewer(&safari, &h264(0x4d001f, 1, 125)).expect_err("main");
        assert_eq!(
            err.to_string(),
            "the stream is H264 Main (profile-level-id 4d001f, packetization-mode 1) and no H264 payload type of the \
             offer can decode it (it offers H264 Constrained Baseline (profile-level-id 42e01f, packetization-mode 1); \
             the node does not transcode)"
        );
        // A mode-0-only receiver cannot take FU-A packets.
        let mode0 = video("m=video 9 RTP/SAVPF 98\r\na=rtpmap:98 H264/90000\r\na=fmtp:98 profile-level-id=42e01f\r\n");
        assert!(choose_for_viewer(&mode0, &h264(0x42e01f, 1, 125)).is_err());
        assert!(choose_for_viewer(&mode0, &h264(0x42e01f, 0, 125)).is_ok());
    }

    #[test]
    fn a_high_decoder_takes_a_constrained_baseline_stream_when_nothing_closer_is_offered() {
        let high_only = video("m=video 9 RTP/SAVPF 100 101\r\na=rtpmap:100 H264/90000\r\n\
            a=fmtp:100 packetization-mode=1;profile-level-id=4d0032\r\na=rtpmap:101 H264/90000\r\n\
            a=fmtp:101 packetization-mode=1;profile-level-id=640032\r\n");
        let f = choose_for_viewer(&high_only, &h264(0x42e01f, 1, 125)).expect("ok").expect("video");
        assert_eq!(f.pt, 100);
        let f = choose_for_viewer(&high_only, &h264(0x4d001f, 1, 125)).expect("ok").expect("video");
        assert_eq!(f.pt, 100);
        assert!(choose_for_viewer(&high_only, &h264(0x42001f, 1, 125)).is_err());
    }

    #[test]
    fn profiles_from_profile_level_id() {
        use H264Profile::*;
        let cases = [
            (0x42e01f, ConstrainedBaseline),
            (0x42c015, ConstrainedBaseline),
            (0x42001f, Baseline),
            (0x4de01f, ConstrainedBaseline),
            (0x4d001f, Main),
            (0x58c01e, ConstrainedBaseline),
            (0x58801e, Baseline),
            (0x58001e, Extended),
            (0x640c1f, ConstrainedHigh),
            (0x64001f, High),
            (0xf4001f, HighPlus(0xf4)),
            (0x2c001f, Other(0x2c)),
        ];
        for (id, want) in cases {
            assert_eq!(H264Profile::from_profile_level_id(id), want, "{id:06x}");
        }
        assert!(High.decodes(ConstrainedBaseline) && High.decodes(Main) && High.decodes(ConstrainedHigh));
        assert!(!Main.decodes(Baseline) && !Main.decodes(High) && !ConstrainedBaseline.decodes(Baseline));
        assert!(Extended.decodes(Baseline) && HighPlus(0x6e).decodes(High) && !Other(0x2c).decodes(High));
    }

    #[test]
    fn malformed_lines_are_ignored_without_panicking() {
        let sdp = video("m=video 9 RTP/SAVPF 96 300 x 102\r\na=rtpmap:\r\na=rtpmap:96\r\na=rtpmap:abc VP8/90000\r\n\
            a=fmtp:102 profile-level-id=zz;packetization-mode=1;=;;apt\r\na=rtpmap:102 H264/90000/x\r\n\
            a=rtpmap:102 H264/90000\r\na=fmtp:96 apt=96\r\n");
        // 96 never got a valid rtpmap; a bad profile-level-id leaves the RFC 6184 default.
        let f = choose_for_publisher(&sdp).expect("ok").expect("video");
        assert_eq!((f.pt, f.h264.map(|h| h.profile_level_id)), (102, Some(0x42000a)));
        // `packetization-mode=` with no value is no mode this node knows.
        let sdp = video("m=video 9 RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=\r\n");
        assert!(choose_for_publisher(&sdp).is_err());
        let names: String = "v".repeat(1000);
        let sdp = video(&format!("m=video 9 RTP/SAVPF 96\r\na=rtpmap:96 {names}/90000\r\n"));
        let err = choose_for_publisher(&sdp).expect_err("unknown codec");
        assert!(err.to_string().len() < 200);
    }

    #[test]
    fn configured_session_answers_only_the_chosen_format() {
        let mut config = CodecConfig::new_with_defaults();
        configure(&mut config, &VideoFormat { rtx: Some(107), ..h264(0x42e01f, 1, 106) });
        let video: Vec<_> = config.params().iter().filter(|p| p.spec().codec.is_video()).collect();
        assert_eq!(video.len(), 1);
        let p = video[0];
        assert_eq!((*p.pt(), p.resend().map(|r| *r)), (106, Some(107)));
        assert_eq!(VideoFormat::from_params(p), Some(VideoFormat { rtx: Some(107), ..h264(0x42e01f, 1, 106) }));
        assert!(config.params().iter().any(|p| p.spec().codec == Codec::Opus));
    }
}
