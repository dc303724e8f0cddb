//! Codec parsing shared by the SFU's forwarding path and the archive's depacketizers.
//!
//! It holds the RTP payload formats Relaycast carries: VP8 payload descriptors and key frame
//! headers ([`vp8`], RFC 7741 and RFC 6386), H264 single NAL unit, STAP-A and FU-A payloads and
//! the SPS frame size ([`h264`], RFC 6184 and H.264 7.3.2.1), and Opus packet durations
//! ([`opus`], RFC 6716). [`parse_video`] reads in one pass everything the forwarding path needs
//! from a video packet, so the SFU parses each incoming packet once and every viewer only reads
//! the result. Every parser takes untrusted bytes, never panics, uses checked arithmetic on
//! lengths and offsets, and reports malformed input as a [`CodecError`].

pub mod h264;
pub mod opus;
pub mod vp8;

/// Why a payload could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The payload is shorter than its headers say.
    #[error("payload truncated")]
    Truncated,
    /// The payload breaks a rule of its format.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
    /// A valid structure this crate does not handle (for example an H264 STAP-B or MTAP).
    #[error("unsupported payload: {0}")]
    Unsupported(&'static str),
}

/// Media codecs Relaycast forwards and records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Codec {
    /// VP8 video (RFC 7741 payload format).
    Vp8,
    /// H.264 video (RFC 6184 payload format).
    H264,
    /// Opus audio (RFC 7587 payload format).
    Opus,
}

impl Codec {
    /// The codec's name as SDP spells it: "VP8", "H264" or "opus".
    pub fn name(self) -> &'static str {
        match self {
            Codec::Vp8 => "VP8",
            Codec::H264 => "H264",
            Codec::Opus => "opus",
        }
    }

    /// The codec by its SDP name (case-insensitive), None for any other.
    pub fn from_name(name: &str) -> Option<Self> {
        [Codec::Vp8, Codec::H264, Codec::Opus]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The video codec, None for audio.
    pub fn video(self) -> Option<VideoCodec> {
        match self {
            Codec::Vp8 => Some(VideoCodec::Vp8),
            Codec::H264 => Some(VideoCodec::H264),
            Codec::Opus => None,
        }
    }

    /// RTP clock rate in Hz (90 kHz video, 48 kHz Opus).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Vp8 | Codec::H264 => 90_000,
            Codec::Opus => 48_000,
        }
    }
}

/// Video codecs the forwarding path and the recorder understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum VideoCodec {
    /// VP8 (RFC 7741 payload format).
    Vp8,
    /// H.264 (RFC 6184 payload format, packetization mode 0 or 1).
    H264,
}

impl VideoCodec {
    /// The codec's name as used in SDP: "VP8" or "H264".
    pub fn name(&self) -> &'static str {
        Codec::from(*self).name()
    }
}

impl From<VideoCodec> for Codec {
    fn from(v: VideoCodec) -> Self {
        match v {
            VideoCodec::Vp8 => Codec::Vp8,
            VideoCodec::H264 => Codec::H264,
        }
    }
}

/// What the forwarding path needs from one video RTP payload, read in one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoPayload {
    /// True on the first packet of a keyframe (VP8 key frame start; H264 IDR or SPS).
    pub keyframe_start: bool,
    /// Frame size from a VP8 key frame header or an H264 SPS carried in this packet.
    pub frame_size: Option<(u32, u32)>,
    /// The VP8 payload descriptor (VP8 only).
    pub vp8: Option<vp8::Descriptor>,
}

/// Parses a video RTP payload once: keyframe start, frame size and (VP8) the descriptor.
///
/// VP8: the descriptor must be valid ([`vp8::Descriptor::parse`]); the size is read from a key
/// frame's first packet. H264: the payload structure must be valid up to the first IDR or SPS;
/// a malformed SPS leaves the size unknown without failing the packet.
pub fn parse_video(codec: VideoCodec, payload: &[u8]) -> Result<VideoPayload, CodecError> {
    match codec {
        VideoCodec::Vp8 => {
            let d = vp8::Descriptor::parse(payload)?;
            let frame_size = if d.starts_keyframe {
                payload
                    .get(d.len..)
                    .and_then(vp8::keyframe_size)
                    .map(|(w, h)| (u32::from(w), u32::from(h)))
            } else {
                None
            };
            Ok(VideoPayload {
                keyframe_start: d.starts_keyframe,
                frame_size,
                vp8: Some(d),
            })
        }
        VideoCodec::H264 => {
            let k = h264::inspect(payload)?;
            Ok(VideoPayload {
                keyframe_start: k.keyframe_start,
                frame_size: k.sps_size,
                vp8: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_and_kinds() {
        assert_eq!(
            (
                VideoCodec::Vp8.name(),
                VideoCodec::H264.name(),
                Codec::Opus.name()
            ),
            ("VP8", "H264", "opus")
        );
        assert_eq!(Codec::from_name("h264"), Some(Codec::H264));
        assert_eq!(Codec::from_name("OPUS"), Some(Codec::Opus));
        assert_eq!(Codec::from_name("VP9"), None);
        assert_eq!(Codec::Opus.video(), None);
        assert_eq!(
            Codec::from(VideoCodec::H264).video(),
            Some(VideoCodec::H264)
        );
        assert_eq!(
            (Codec::Vp8.clock_rate(), Codec::Opus.clock_rate()),
            (90_000, 48_000)
        );
    }

    #[test]
    fn parse_video_vp8() {
        // S, partition 0; key frame tag, start code, 1280x720.
        let key = [
            0x10, 0x90, 0x77, 0x01, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02, 0x00,
        ];
        let v = parse_video(VideoCodec::Vp8, &key).expect("valid");
        assert!(v.keyframe_start);
        assert_eq!(v.frame_size, Some((1280, 720)));
        assert_eq!(v.vp8.map(|d| d.len), Some(1));
        // Interframe: no keyframe, no size; the descriptor is still there.
        let inter = [0x90, 0x80, 0x05, 0xb1, 0x0e];
        let v = parse_video(VideoCodec::Vp8, &inter).expect("valid");
        assert_eq!((v.keyframe_start, v.frame_size), (false, None));
        assert_eq!(v.vp8.and_then(|d| d.picture_id), Some(5));
        // A key frame start whose header is cut short: a keyframe without a size.
        let v = parse_video(VideoCodec::Vp8, &key[..6]).expect("valid");
        assert_eq!((v.keyframe_start, v.frame_size), (true, None));
        assert_eq!(
            parse_video(VideoCodec::Vp8, &[0x90]),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn parse_video_h264() {
        let sps = [
            0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
            0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
        ];
        let v = parse_video(VideoCodec::H264, &sps).expect("valid");
        assert_eq!(
            v,
            VideoPayload {
                keyframe_start: true,
                frame_size: Some((640, 360)),
                vp8: None
            }
        );
        let v = parse_video(VideoCodec::H264, &[0x41, 0x9a]).expect("valid");
        assert_eq!(v, VideoPayload::default());
        assert_eq!(
            parse_video(VideoCodec::H264, &[]),
            Err(CodecError::Truncated)
        );
    }
}
